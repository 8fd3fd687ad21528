//! Explicit alignment of large allocations (issue 13): every power-of-two alignment from 2^3 to
//! 2^30 with sizes around every boundary (class sizes, the page, half a segment, a segment)
//! succeeds on mmap, aligned as asked; on an arena, an alignment it cannot satisfy is `None`
//! and leaves the allocator as it was.

mod common;

use common::region;
use dmaslab_core::{Config, FreeError, Gfp, Kmalloc, Owner, PageSource, Policy};

/// Sizes on both sides of every boundary of the allocator's geometry.
fn boundary_sizes(page: usize, seg: usize) -> Vec<usize> {
    let mut v = vec![1, 7, 8, 9, 95, 96, 97, 191, 192, 193];
    for k in 4..=13 {
        let c = 1usize << k;
        v.extend([c - 1, c, c + 1]);
    }
    for b in [page, 2 * page, seg / 2, seg, 2 * seg] {
        v.extend([b - 1, b, b + 1]);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Allocates `size` bytes aligned to `align`, checks what it got, and frees it; `None` if the
/// allocator refused.
fn round_trip<P: PageSource>(k: &Kmalloc<P>, size: usize, align: usize) -> Option<()> {
    let live = k.totals().live_allocations;
    let p = k.kmalloc_aligned(size, align, Gfp::KERNEL)?.as_ptr();
    let addr = p as usize;
    assert_eq!(addr % align, 0, "size {size} align {align}: {p:p}");
    let got = k.ksize(p).expect("ksize of a live allocation");
    assert!(got >= size, "size {size} align {align}: ksize {got}");
    // SAFETY: `p` is live and `size` bytes long.
    unsafe {
        p.add(size - 1).write(0x5a);
        p.write(0xa5);
        assert_eq!(p.read(), 0xa5);
        assert_eq!(p.add(size - 1).read(), if size > 1 { 0x5a } else { 0xa5 });
    }
    // (Lookups reach the first two segments of a huge allocation.)
    let seg = k.max_natural_align() * 2;
    match k.owner_of(addr + size.min(seg) - 1) {
        Owner::Object {
            start, live: true, ..
        }
        | Owner::Large { start, .. } => assert_eq!(start, addr, "size {size} align {align}"),
        other => panic!("size {size} align {align}: owner_of says {other:?}"),
    }
    assert_eq!(k.totals().live_allocations, live + 1);
    // SAFETY: live, freed once.
    unsafe { k.kfree(p) }.expect("free of a live allocation");
    // SAFETY: `p` was just freed: a second free must be refused, not followed.
    let again = unsafe { k.kfree(p) };
    assert!(
        matches!(
            again,
            Err(FreeError::DoubleFree(_) | FreeError::InvalidPointer(_))
        ),
        "size {size} align {align}: second free gave {again:?}"
    );
    Some(())
}

#[cfg(not(miri))]
#[test]
fn every_alignment_and_boundary_size_on_mmap() {
    let k = Kmalloc::new(dmaslab_core::MmapPageSource::new(), Config::new(Policy::C)).unwrap();
    let page = k.page_size();
    let seg = k.max_natural_align() * 2;
    let sizes = boundary_sizes(page, seg);
    for log in 3..=30 {
        let align = 1usize << log;
        for &size in &sizes {
            round_trip(&k, size, align)
                .unwrap_or_else(|| panic!("kmalloc_aligned({size}, {align}) failed on mmap"));
        }
    }
    let t = k.totals();
    assert_eq!((t.live_allocations, t.bytes_in_use), (0, 0));
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
}

#[cfg(not(miri))]
#[test]
fn aligned_huge_objects_are_found_by_interior_pointers() {
    let k = Kmalloc::new(dmaslab_core::MmapPageSource::new(), Config::new(Policy::C)).unwrap();
    let seg = k.max_natural_align() * 2;
    for align in [k.page_size() * 2, seg, seg * 2, seg * 8] {
        let size = seg + 12345;
        let p = k
            .kmalloc_aligned(size, align, Gfp::KERNEL)
            .unwrap()
            .as_ptr();
        let addr = p as usize;
        for off in [0, 1, 4096, seg - 1] {
            assert!(
                matches!(k.owner_of(addr + off), Owner::Large { start, .. } if start == addr),
                "align {align}: byte {off} of the object"
            );
        }
        // SAFETY: interior pointers of a live allocation: refused, nothing freed.
        unsafe {
            assert_eq!(
                k.kfree(p.add(4096)),
                Err(FreeError::InvalidPointer(addr + 4096))
            );
            k.kfree(p).unwrap();
        }
        assert!(
            matches!(k.owner_of(addr), Owner::Foreign | Owner::Unused),
            "align {align}: freed (cached or unmapped)"
        );
    }
}

#[test]
fn an_arena_gives_what_it_can_and_refuses_the_rest_cleanly() {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 16 << 20 });
    let k = common::kmalloc(&mut mem, Policy::B, 64);
    let page = k.page_size();
    let seg = k.max_natural_align() * 2;
    let sizes: Vec<usize> = if cfg!(miri) {
        vec![1, 8193, seg / 2 + 1, seg + 1]
    } else {
        boundary_sizes(page, seg)
    };
    let keep = k.kmalloc(100, Gfp::KERNEL).unwrap().as_ptr();
    let (mut ok, mut refused) = (0, 0);
    for log in 3..=30 {
        let align = 1usize << log;
        for &size in &sizes {
            match round_trip(&k, size, align) {
                Some(()) => ok += 1,
                None => {
                    // What the arena cannot give is refused only beyond its largest runs.
                    assert!(
                        size.max(align) > seg,
                        "kmalloc_aligned({size}, {align}) refused"
                    );
                    refused += 1;
                    assert_eq!(k.totals().live_allocations, 1, "a refusal keeps nothing");
                }
            }
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok} refused {refused}");
    // Still usable, nothing leaked.
    let p = k
        .kmalloc_aligned(seg + 1, seg, Gfp::KERNEL)
        .expect("usable after refusals");
    assert_eq!(p.as_ptr() as usize % seg, 0);
    // SAFETY: both live, freed once.
    unsafe {
        k.kfree(p.as_ptr()).unwrap();
        k.kfree(keep).unwrap();
    }
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
    k.shrink_all();
    let t = k.totals();
    assert_eq!(
        (t.live_allocations, t.pages.huge_pages, t.pages.large_pages),
        (0, 0, 0)
    );
}
