//! Bad frees, destroy with live objects, out of memory, owner queries and the seed geometry.

mod common;

use common::{kmalloc, region};
use dmaslab_core::{
    ArenaPageSource, CacheError, Config, FreeError, Gfp, Kmalloc, Owner, Policy, DEFAULT_PAGE_SIZE,
};
use std::ptr::NonNull;

#[test]
fn invalid_frees_are_reported_and_change_nothing() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let a = k.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr();
    let big = k.kmalloc(20_000, Gfp::KERNEL).unwrap().as_ptr();
    let mut on_stack = [0u8; 64];
    let before = k.totals();
    // SAFETY (all below): none of these pointers is a live allocation to give up, except where
    // the free is expected to succeed.
    unsafe {
        let stack = on_stack.as_mut_ptr();
        assert_eq!(
            k.kfree(stack),
            Err(FreeError::InvalidPointer(stack as usize))
        );
        let interior = a.add(8);
        assert_eq!(
            k.kfree(interior),
            Err(FreeError::InvalidPointer(interior as usize))
        );
        let big_interior = big.add(4096);
        assert_eq!(
            k.kfree(big_interior),
            Err(FreeError::InvalidPointer(big_interior as usize))
        );
        // A free page: the segment's last (the two allocations use its first half).
        let seg = a as usize & !((DEFAULT_PAGE_SIZE << common::SEG_ORDER) - 1);
        let free_page =
            (seg + (DEFAULT_PAGE_SIZE << common::SEG_ORDER) - DEFAULT_PAGE_SIZE) as *mut u8;
        assert_eq!(k.owner_of(free_page as usize), Owner::Unused);
        assert_eq!(
            k.kfree(free_page),
            Err(FreeError::InvalidPointer(free_page as usize))
        );
        // The segment header.
        assert!(matches!(k.owner_of(seg), Owner::Metadata { .. }));
        assert_eq!(k.kfree(seg as *mut u8), Err(FreeError::InvalidPointer(seg)));
        assert_eq!(
            k.totals().live_allocations,
            before.live_allocations,
            "nothing changed"
        );
        k.kfree(a).unwrap();
        assert_eq!(
            k.kfree(a),
            Err(FreeError::DoubleFree(a as usize)),
            "double free at the list head"
        );
        k.kfree(big).unwrap();
        assert!(k.kfree(big).is_err(), "double free of a large run");
        assert_eq!(k.kfree(std::ptr::null_mut()), Ok(()));
    }
    assert_eq!(k.owner_of(on_stack.as_ptr() as usize), Owner::Foreign);
    assert_eq!(k.totals().live_allocations, 0);
}

#[test]
fn owner_of_tells_live_free_and_tail() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let a = k.kmalloc(96, Gfp::KERNEL).unwrap().as_ptr() as usize;
    let b = k.kmalloc(96, Gfp::KERNEL).unwrap().as_ptr() as usize;
    match k.owner_of(a + 95) {
        Owner::Object {
            start, size, live, ..
        } => assert_eq!((start, size, live), (a, 96, true)),
        o => panic!("{o:?}"),
    }
    // SAFETY: `b` is live and not used again.
    unsafe { k.kfree(b as *mut u8).unwrap() };
    match k.owner_of(b) {
        Owner::Object { start, live, .. } => assert_eq!((start, live), (b, false)),
        o => panic!("{o:?}"),
    }
    // 42 objects of 96 bytes use 4032 bytes of the page: the last 64 are nobody's.
    let page = a & !(DEFAULT_PAGE_SIZE - 1);
    assert_eq!(k.owner_of(page + 4032), Owner::Unused);
}

#[test]
fn destroy_with_live_objects_is_an_error_and_the_cache_stays_usable() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::B, 64);
    fn ctor(p: NonNull<u8>) {
        // SAFETY: the cache hands the constructor a fresh object of 40 bytes.
        unsafe { p.as_ptr().write_bytes(0xab, 40) };
    }
    let c = k.kmem_cache_create("test-40", 40, 8, Some(ctor)).unwrap();
    let objs: Vec<_> = (0..300).map(|_| k.kmem_cache_alloc(c).unwrap()).collect();
    for o in &objs {
        // SAFETY: 40 bytes of a live object.
        assert!(unsafe { std::slice::from_raw_parts(o.as_ptr(), 40) }
            .iter()
            .all(|&b| b == 0xab));
    }
    assert_eq!(k.kmem_cache_destroy(c), Err(CacheError::Busy { live: 300 }));
    let more = k
        .kmem_cache_alloc(c)
        .expect("still usable after the refused destroy");
    let info = k.slabinfo(c).unwrap();
    assert_eq!(info.active_objs, 301);
    assert_eq!(info.objsize, 40);
    assert_eq!(info.objperslab, 4096 / 40);
    // SAFETY: all live, freed once.
    unsafe {
        assert_eq!(k.kmem_cache_free(c, more.as_ptr()), Ok(()));
        for o in objs {
            k.kmem_cache_free(c, o.as_ptr()).unwrap();
        }
    }
    assert_eq!(k.kmem_cache_destroy(c), Ok(()));
    assert_eq!(k.kmem_cache_destroy(c), Err(CacheError::NotACache));
    assert_eq!(k.kmem_cache_alloc(c), None);
    let kc = k.kmalloc_cache(64, Gfp::KERNEL).unwrap();
    assert_eq!(
        k.kmem_cache_destroy(kc),
        Err(CacheError::NotACache),
        "kmalloc caches are permanent"
    );
    assert_eq!(
        k.kmem_cache_create("x", 8, 3, None),
        Err(CacheError::BadAlign(3))
    );
}

#[test]
fn wrong_cache_free_is_refused() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let c1 = k.kmem_cache_create("one", 24, 8, None).unwrap();
    let c2 = k.kmem_cache_create("two", 24, 8, None).unwrap();
    let p = k.kmem_cache_alloc(c1).unwrap().as_ptr();
    // SAFETY: `p` is live; the wrong-cache free must not release it.
    unsafe {
        assert_eq!(
            k.kmem_cache_free(c2, p),
            Err(FreeError::WrongCache(p as usize))
        );
        k.kmem_cache_free(c1, p).unwrap();
    }
}

#[test]
fn out_of_memory_returns_none_and_the_allocator_stays_usable() {
    let mut mem = region(if cfg!(miri) { 600 << 10 } else { 3 << 20 });
    let k = kmalloc(&mut mem, Policy::B, 64);
    let mut got = Vec::new();
    while let Some(p) = k.kmalloc(2048, Gfp::KERNEL) {
        got.push(p.as_ptr());
    }
    assert!(!got.is_empty());
    assert!(
        k.kmalloc(1 << 20, Gfp::KERNEL).is_none(),
        "a huge request fails cleanly"
    );
    assert!(k.kmalloc(4096, Gfp::KERNEL).is_none());
    let active = k
        .slabinfo(k.kmalloc_cache(2048, Gfp::KERNEL).unwrap())
        .unwrap()
        .active_objs;
    assert_eq!(active, got.len(), "statistics intact after exhaustion");
    for p in got.drain(..got.len() / 2) {
        // SAFETY: live, freed once.
        unsafe { k.kfree(p).unwrap() };
    }
    let again = k
        .kmalloc(2048, Gfp::KERNEL)
        .expect("memory freed is usable again");
    got.push(again.as_ptr());
    for p in got {
        // SAFETY: live, freed once.
        unsafe { k.kfree(p).unwrap() };
    }
    assert_eq!(k.totals().live_allocations, 0);
}

#[test]
fn huge_allocations_come_and_go() {
    let mut mem = region(if cfg!(miri) { 1 << 20 } else { 8 << 20 });
    let k = kmalloc(&mut mem, Policy::C, 64);
    let seg = DEFAULT_PAGE_SIZE << common::SEG_ORDER;
    let p = k
        .kmalloc(seg, Gfp::KERNEL)
        .expect("a segment-sized allocation")
        .as_ptr();
    assert_eq!(p as usize % DEFAULT_PAGE_SIZE, 0);
    let got = k.ksize(p).unwrap();
    assert!(got >= seg);
    assert!(
        matches!(k.owner_of(p as usize + 100), Owner::Large { start, .. } if start == p as usize)
    );
    // Counted as what `ksize` says, both ways (the free once took more than the allocation
    // had added).
    let t = k.totals();
    assert_eq!((t.bytes_in_use, t.live_allocations), (got as u64, 1));
    assert_eq!(
        (t.bytes_requested, t.bytes_handed_out),
        (seg as u64, got as u64)
    );
    // SAFETY: live, freed once.
    unsafe { k.kfree(p).unwrap() };
    let t = k.totals();
    // The freed segment waits in the huge cache until `shrink_all` (or decay).
    assert_eq!(t.pages.huge_pages, t.pages.cached_huge_pages);
    assert_eq!((t.bytes_in_use, t.live_allocations), (0, 0));
    k.shrink_all();
    assert_eq!(k.totals().pages.huge_pages, 0);
}

/// The report's workload: the seed's active counts under B fill exactly the one-page slabs the
/// geometry implies, and A's extra pages are the arithmetic's.
#[test]
fn seed_workload_geometry() {
    if cfg!(miri) {
        return; // 190k allocations: too slow for the interpreter, covered natively.
    }
    let seed = [
        (8usize, 17141usize),
        (16, 26844),
        (32, 80325),
        (64, 54406),
        (96, 11527),
    ];
    let pages_for = |policy: Policy, line: usize| -> usize {
        let mut mem = region(64 << 20);
        let arena = ArenaPageSource::new(&mut mem).unwrap();
        let k = Kmalloc::new(arena, Config::new(policy).dma_minalign(line)).unwrap();
        for &(size, n) in &seed {
            for _ in 0..n {
                k.kmalloc(size, Gfp::KERNEL).unwrap();
            }
        }
        let mut pages = 0;
        k.for_each_cache(|id, info| {
            if k.is_kmalloc(id) {
                pages += info.num_slabs * info.pagesperslab;
            }
        });
        pages
    };
    let b: usize = seed.iter().map(|&(s, n)| n.div_ceil(4096 / s)).sum();
    assert_eq!(b, 34 + 105 + 628 + 851 + 275);
    assert_eq!(pages_for(Policy::B, 64), b);
    assert_eq!(pages_for(Policy::C, 64), b);
    // A, line 64: 8..64 share kmalloc-64 (64 per page), 96 moves to kmalloc-128 (32 per page).
    let a64 = (17141 + 26844 + 80325 + 54406usize).div_ceil(64) + 11527usize.div_ceil(32);
    assert_eq!(pages_for(Policy::A, 64), a64);
    // A, line 128: everything in kmalloc-128.
    let a128 = (17141 + 26844 + 80325 + 54406 + 11527usize).div_ceil(32);
    assert_eq!(pages_for(Policy::A, 128), a128);
}

#[test]
fn bad_configuration_is_refused() {
    let mut mem = region(1 << 20);
    let arena = ArenaPageSource::new(&mut mem).unwrap();
    assert!(Kmalloc::new(arena, Config::new(Policy::A).dma_minalign(48)).is_err());
}

#[test]
fn slabinfo_text_has_both_header_lines() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::B, 64);
    let _p = k.kmalloc(8, Gfp::KERNEL).unwrap();
    let mut s = String::new();
    k.write_slabinfo(&mut s).unwrap();
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"));
    assert!(lines
        .next()
        .unwrap()
        .starts_with("# name            <active_objs> <num_objs> <objsize>"));
    let row = s.lines().find(|l| l.starts_with("kmalloc-8 ")).unwrap();
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&f[1..6], ["1", "512", "8", "512", "1"]);
    assert!(s.lines().any(|l| l.starts_with("dma-kmalloc-64 ")));
    assert!(!s.lines().any(|l| l.starts_with("dma-kmalloc-32 ")));
}

#[test]
fn bulk_alloc_and_free_under_one_lock() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let c = k.kmalloc_cache(48, Gfp::KERNEL).unwrap();
    let mut objs = [std::ptr::null_mut(); 62];
    assert_eq!(k.kmem_cache_alloc_bulk(c, &mut objs), 62);
    assert_eq!(k.slabinfo(c).unwrap().active_objs, 62);
    let other = k.kmalloc(8, Gfp::KERNEL).unwrap().as_ptr();
    let mut with_bad = objs[..10].to_vec();
    with_bad.push(other);
    // SAFETY: the first ten are live objects of `c`; `other` is of another cache and must not
    // be freed.
    let r = unsafe { k.kmem_cache_free_bulk(c, &with_bad) };
    assert_eq!(r, Err((10, FreeError::WrongCache(other as usize))));
    // SAFETY: the rest are live objects of `c`, freed once.
    unsafe { k.kmem_cache_free_bulk(c, &objs[10..]) }.unwrap();
    assert_eq!(k.slabinfo(c).unwrap().active_objs, 0);
    assert_eq!(k.totals().live_allocations, 1);
    assert!(k.totals().pages.peak_pages >= k.totals().pages.segment_pages);
}

#[test]
fn cache_of_accepts_only_object_starts() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let p = k.kmalloc(96, Gfp::KERNEL).unwrap().as_ptr();
    let c = k.kmalloc_cache(96, Gfp::KERNEL).unwrap();
    assert_eq!(k.cache_of(p), Some(c));
    // SAFETY: pointer arithmetic inside the object, never dereferenced.
    assert_eq!(k.cache_of(unsafe { p.add(32) }), None, "interior pointer");
    let big = k.kmalloc(10_000, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(k.cache_of(big), None, "large runs are not slab objects");
    let on_stack = 0u64;
    assert_eq!(k.cache_of(&on_stack as *const u64 as *const u8), None);
}

#[test]
fn a_free_object_written_after_free_is_caught_by_the_next_refill() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let c = k.kmalloc_cache(64, Gfp::KERNEL).unwrap();
    let mut objs = [std::ptr::null_mut(); 8];
    assert_eq!(k.kmem_cache_alloc_bulk(c, &mut objs), 8);
    // SAFETY: live objects of `c`, freed once.
    unsafe { k.kmem_cache_free_bulk(c, &objs) }.unwrap();
    // The last one freed heads its slab's free list; a use after free overwrites its link.
    let victim = objs[7];
    // SAFETY: deliberate misuse of memory that stays mapped inside the arena.
    unsafe { victim.cast::<usize>().write(0x4141_4141_4141_4141) };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut again = [std::ptr::null_mut(); 8];
        k.kmem_cache_alloc_bulk(c, &mut again)
    }));
    let msg = r.expect_err("the refill must not follow a forged link");
    let msg = msg
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(msg.contains("corrupted free list"), "{msg}");
}

#[test]
fn freeing_a_slot_never_handed_out_is_an_invalid_free() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let a = k.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    // The next slot of a's new slab is fresh: never handed out, never written.
    let next = a.wrapping_add(64);
    assert_eq!(
        k.cache_of(next),
        k.cache_of(a),
        "an object start of the same cache"
    );
    // SAFETY: `next` is no allocation; the free must be refused without touching anything.
    assert_eq!(
        unsafe { k.kfree(next) },
        Err(FreeError::InvalidPointer(next as usize))
    );
    let b = k.kmalloc(64, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(
        b, next,
        "the refused slot is still the slab's next fresh object"
    );
    // SAFETY: both live, freed once.
    unsafe {
        k.kfree(a).unwrap();
        k.kfree(b).unwrap();
    }
    assert_eq!(k.totals().live_allocations, 0);
}
