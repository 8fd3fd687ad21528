//! The heap in debug mode (`Settings::debug`): natural alignment still holds for every malloc
//! size 1..=65536 and for aligned allocations, `usable_size` is the size asked for, contents
//! survive random allocate/free sequences, and the slab walk finds nothing after correct use.
//!
//! A heap of its own (not the process-wide one): debug mode touches no thread magazines, so it
//! shares nothing with the global heap's thread caches.

use dmaslab::{Heap, Settings};
use proptest::prelude::*;
use std::sync::OnceLock;

fn heap() -> &'static Heap {
    static H: OnceLock<&'static Heap> = OnceLock::new();
    H.get_or_init(|| Box::leak(Box::new(Heap::new(Settings::default().debug(true)))))
}

fn natural_align(size: usize) -> usize {
    1 << size.trailing_zeros()
}

/// The alignment `malloc(size)` promises: natural (up to the core's limit), at least 8, and 16
/// from 16 bytes.
fn promised(h: &Heap, size: usize) -> usize {
    let floor = if size >= 16 { 16 } else { 8 };
    natural_align(size)
        .min(h.core().max_natural_align())
        .max(floor)
}

fn malloc_checked(h: &Heap, size: usize) -> *mut u8 {
    let p = h.malloc(size);
    assert!(!p.is_null(), "malloc({size})");
    let a = promised(h, size);
    assert_eq!(
        p as usize % a,
        0,
        "debug malloc({size}) at {p:p} is not {a}-aligned"
    );
    let usable = h.usable_size(p);
    if size <= dmaslab::heap::SMALL_MAX {
        assert_eq!(usable, size, "debug usable_size of malloc({size})");
    } else {
        assert!(usable >= size);
    }
    p
}

#[test]
fn debug_mode_is_on() {
    assert!(heap().debug());
    assert!(heap().core().config().debug);
}

#[test]
fn every_power_of_two_and_multiple_of_32_up_to_64k_is_naturally_aligned() {
    let h = heap();
    let mut sizes: Vec<usize> = (0..=16).map(|k| 1usize << k).collect();
    sizes.extend((1..=2048).map(|i| i * 32));
    sizes.extend([
        96, 192, 24, 48, 80, 160, 320, 384, 768, 1536, 3072, 6144, 12288,
    ]);
    for size in sizes {
        let p = malloc_checked(h, size);
        // SAFETY: `size` bytes of a live block; freed once.
        unsafe {
            p.write_bytes(0x5a, size);
            h.free(p);
        }
    }
    assert_eq!(h.validate(), 0, "the slab walk found problems");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn malloc_sizes_keep_natural_alignment(size in 1usize..=65536) {
        let h = heap();
        let p = malloc_checked(h, size);
        // SAFETY: `size` bytes of a live block; freed once.
        unsafe {
            p.write_bytes(0xa5, size);
            h.free(p);
        }
    }

    #[test]
    fn aligned_allocations_are_aligned(size in 1usize..=65536, align_log in 0u32..=16) {
        let h = heap();
        let align = 1usize << align_log;
        let p = h.malloc_aligned(size, align);
        prop_assert!(!p.is_null());
        prop_assert_eq!(p as usize % align, 0, "malloc_aligned({}, {}) at {:p}", size, align, p);
        prop_assert!(h.usable_size(p) >= size);
        // SAFETY: `size` bytes of a live block; freed once.
        unsafe {
            p.write_bytes(0x3c, size);
            h.free(p);
        }
    }

    #[test]
    fn random_sequences_keep_contents_and_leave_no_finding(
        ops in prop::collection::vec((1usize..=20_000, any::<bool>(), any::<u16>()), 1..200)
    ) {
        let h = heap();
        let mut live: Vec<(usize, usize, u8)> = Vec::new();
        for (i, (size, alloc, pick)) in ops.into_iter().enumerate() {
            if alloc || live.is_empty() {
                let p = malloc_checked(h, size);
                let tag = i as u8;
                // SAFETY: `size` bytes of a live block.
                unsafe { p.write_bytes(tag, size) };
                live.push((p as usize, size, tag));
            } else {
                let (p, size, tag) = live.swap_remove(pick as usize % live.len());
                // SAFETY: a live block of `size` bytes, freed once.
                let s = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                prop_assert!(s.iter().all(|&b| b == tag), "block at {p:#x} lost its contents");
                // SAFETY: as above.
                unsafe { h.free(p as *mut u8) };
            }
        }
        for (p, _, _) in live {
            // SAFETY: live, freed once.
            unsafe { h.free(p as *mut u8) };
        }
        prop_assert_eq!(h.validate(), 0);
    }
}

#[test]
fn the_quarantine_setting_delays_reuse_or_not() {
    let on = Heap::new(Settings::default().debug(true));
    let off = Heap::new(Settings {
        quarantine: 0,
        ..Settings::default().debug(true)
    });
    for (h, delayed) in [(&on, true), (&off, false)] {
        let p = h.malloc(100);
        // SAFETY: live, freed once.
        unsafe { h.free(p) };
        let q = h.malloc(100);
        assert_eq!(q != p, delayed, "quarantine {delayed}: {p:p} then {q:p}");
        // SAFETY: live, freed once.
        unsafe { h.free(q) };
    }
    assert_eq!(on.validate(), 0);
}

#[test]
fn a_write_after_free_is_found_at_the_next_call() {
    let h = Heap::new(Settings::default().debug(true));
    let p = h.malloc(64);
    // SAFETY: live, freed once; then written on purpose (the misuse under test), then the
    // core's checked call (the heap's would abort) must name it.
    unsafe {
        h.free(p);
        p.add(3).write(0);
    }
    match h
        .core()
        .kmalloc_checked(16, 1, dmaslab_core::Gfp::KERNEL, 0)
    {
        Err(dmaslab_core::FreeError::Found(f)) => {
            assert_eq!(f.kind, dmaslab_core::FindingKind::UseAfterFree);
            assert_eq!((f.object, f.offset), (p as usize, 3));
        }
        other => panic!("write after free not found: {other:?}"),
    }
}

#[test]
fn zero_size_allocations_are_distinct_and_all_red_zone() {
    let h = Heap::new(Settings::default().debug(true));
    let ps: Vec<_> = (0..16).map(|_| h.malloc(0)).collect();
    for (i, &p) in ps.iter().enumerate() {
        assert!(!p.is_null());
        assert_eq!(p as usize % 8, 0);
        assert_eq!(h.usable_size(p), 0, "nothing of malloc(0) is usable");
        assert!(!ps[..i].contains(&p), "malloc(0) handed out {p:p} twice");
    }
    // realloc of a zero-size allocation grows it.
    // SAFETY: live allocation; only the result is used afterwards.
    let r = unsafe { h.realloc(ps[0], 10) };
    assert_eq!(h.usable_size(r), 10);
    // SAFETY: live allocations, freed once.
    unsafe {
        h.free(r);
        for &p in &ps[2..] {
            h.free(p);
        }
    }
    // A 1-byte write into malloc(0) is found at its free.
    // SAFETY: the misuse under test: byte 0 of a zero-size object (its red zone).
    unsafe { ps[1].write(1) };
    // SAFETY: live allocation freed once (refused: the red zone is overwritten).
    match unsafe { h.core().kfree_at(ps[1], 0) } {
        Err(dmaslab_core::FreeError::Found(f)) => {
            assert_eq!(f.kind, dmaslab_core::FindingKind::RedZone);
            assert_eq!((f.object, f.offset), (ps[1] as usize, 0));
        }
        other => panic!("write into malloc(0) not found: {other:?}"),
    }
}
