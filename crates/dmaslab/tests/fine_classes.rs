//! The hosted heap runs on the core's fine size classes (`dmaslab_core::size_class`), and they
//! keep kmalloc's promises: 2^k sizes aligned to 2^k, 96 to 32, 192 to 64, every class to its
//! natural alignment, and under policy A only multiples of the DMA line.

use dmaslab::{Heap, Settings};
use dmaslab_core::size_class::{natural_align, ClassSet, SizeClasses, FINE_CLASSES};
use dmaslab_core::Policy;

fn heap(policy: Policy, line: usize) -> Heap {
    Heap::new(Settings {
        policy,
        dma_minalign: line,
        ..Settings::default()
    })
}

#[test]
fn malloc_rounds_to_the_fine_classes_and_aligns_naturally() {
    for (policy, line) in [
        (Policy::C, 64),
        (Policy::B, 64),
        (Policy::A, 64),
        (Policy::A, 128),
    ] {
        let h = heap(policy, line);
        let m = h.core().kmalloc_minalign();
        let t = SizeClasses::new(ClassSet::Fine, m).unwrap();
        let step = if cfg!(miri) { 97 } else { 1 };
        for size in (1..=8192).step_by(step).chain(FINE_CLASSES) {
            let p = h.malloc(size);
            assert!(!p.is_null(), "{policy} malloc({size})");
            let class = t.class_for(size).unwrap();
            assert_eq!(
                h.core().ksize(p),
                Some(class),
                "{policy}/{line} malloc({size})"
            );
            // The natural alignment of the size and of its class (96 -> 32, 192 -> 64, 2^k).
            let a = natural_align(class).max(natural_align(size));
            assert_eq!(p as usize % a, 0, "{policy}/{line} malloc({size}) at {p:p}");
            if policy == Policy::A {
                assert_eq!(
                    class % line,
                    0,
                    "A/{line}: class {class} not a line multiple"
                );
            }
            // SAFETY: allocated just above, freed once.
            unsafe { h.free(p) };
        }
        for k in 3..=13 {
            let p = h.malloc(1 << k);
            assert_eq!(p as usize % (1 << k), 0, "{policy} malloc(2^{k})");
            // SAFETY: allocated just above, freed once.
            unsafe { h.free(p) };
        }
        for (size, align) in [(96, 32), (192, 64), (1152, 128), (4608, 512)] {
            let p = h.malloc(size);
            assert_eq!(p as usize % align, 0, "{policy} malloc({size})");
            // SAFETY: allocated just above, freed once.
            unsafe { h.free(p) };
        }
    }
}

#[test]
fn slabinfo_names_the_fine_classes_apart() {
    let h = heap(Policy::C, 64);
    let mut names = Vec::new();
    h.core()
        .for_each_cache(|_, info| names.push(info.name.as_str().to_string()));
    for want in [
        "kmalloc-1k",
        "kmalloc-1152",
        "kmalloc-3k",
        "kmalloc-4608",
        "kmalloc-8k",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "two caches share a name: {names:?}"
    );
    // The dma-kmalloc caches keep Linux's classes.
    assert!(names.iter().any(|n| n == "dma-kmalloc-192"));
    assert!(!names.iter().any(|n| n == "dma-kmalloc-1152"));
}
