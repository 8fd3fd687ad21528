//! Debug mode finds misuse, names the cache, object, offset and call sites, and keeps alignment.

mod common;

use common::{kmalloc_mode, natural_align, region};
use dmaslab_core::{FindingKind, FreeError, Gfp, Policy};

fn found(e: FreeError) -> dmaslab_core::Finding {
    match e {
        FreeError::Found(f) => f,
        other => panic!("expected a debug finding, got {other:?}"),
    }
}

#[test]
fn use_after_free_is_found_when_the_object_comes_back() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let p = k
        .kmalloc_checked(40, 1, Gfp::KERNEL, 0xa11c)
        .unwrap()
        .unwrap()
        .as_ptr();
    // SAFETY: live object of 40 bytes, freed once, then written on purpose (the misuse).
    unsafe {
        k.kfree_at(p, 0xf4ee).unwrap();
        p.add(20).write(7);
    }
    let e = k.kmalloc_checked(40, 1, Gfp::KERNEL, 0).unwrap_err();
    let f = found(e);
    assert_eq!(f.kind, FindingKind::UseAfterFree);
    assert_eq!(
        (f.object, f.offset, f.addr),
        (p as usize, 20, p as usize + 20)
    );
    assert_eq!(f.cache.as_str(), "kmalloc-64");
    assert_eq!((f.alloc_site, f.free_site), (0xa11c, 0xf4ee));
    let msg = format!("{}", FreeError::Found(f));
    assert!(msg.starts_with("use after free of 0x"), "{msg}");
    assert!(
        msg.contains("kmalloc-64") && msg.contains("0xa11c") && msg.contains("0xf4ee"),
        "{msg}"
    );
    // The allocator goes on working and does not hand the poisoned object out again.
    let q = k.kmalloc(40, Gfp::KERNEL).unwrap().as_ptr();
    assert_ne!(q, p);
}

#[test]
fn red_zone_overflow_is_found_at_free_and_by_validate() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::B, 64, true);
    let p = k
        .kmalloc_checked(100, 1, Gfp::KERNEL, 0x1000)
        .unwrap()
        .unwrap()
        .as_ptr();
    assert_eq!(k.ksize(p), Some(128));
    // SAFETY: one byte past the 100 asked for: inside the slot (the red zone), on purpose.
    unsafe { p.add(100).write(0) };
    let mut seen = Vec::new();
    assert_eq!(k.validate(|f| seen.push(*f)), 1);
    assert_eq!(seen[0].kind, FindingKind::RedZone);
    assert_eq!(seen[0].offset, 100);
    // SAFETY: live object freed once.
    let f = found(unsafe { k.kfree_at(p, 0x2000) }.unwrap_err());
    assert_eq!(
        (f.kind, f.offset, f.alloc_site, f.free_site),
        (FindingKind::RedZone, 100, 0x1000, 0x2000)
    );
}

#[test]
fn every_double_free_is_found_not_only_at_the_list_head() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let a = k.kmalloc(24, Gfp::KERNEL).unwrap().as_ptr();
    let b = k.kmalloc(24, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: each freed once, then `a` again on purpose (b is now at the list head).
    unsafe {
        k.kfree_at(a, 0x10).unwrap();
        k.kfree_at(b, 0x20).unwrap();
        let f = found(k.kfree_at(a, 0x30).unwrap_err());
        assert_eq!(
            (f.kind, f.object, f.free_site),
            (FindingKind::DoubleFree, a as usize, 0x10)
        );
    }
}

#[test]
fn exact_fits_keep_natural_alignment_and_get_a_red_zone() {
    let mut mem = region(8 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    for (size, align, slot) in [
        (8, 8, 16),
        (96, 32, 128),
        (192, 64, 256),
        (512, 512, 1024),
        (4096, 4096, 8192),
    ] {
        for _ in 0..5 {
            let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
            assert_eq!(p as usize % align, 0, "size {size}");
            assert_eq!(k.ksize(p), Some(slot), "size {size}");
        }
    }
    let p = k.kmalloc(500, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(
        k.ksize(p),
        Some(512),
        "a request with slack keeps its class"
    );
    assert_eq!(k.validate(|f| panic!("{f}")), 0);
}

#[test]
fn free_list_corruption_is_found_by_validate_in_normal_mode_too() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, false);
    let a = k.kmalloc(32, Gfp::KERNEL).unwrap().as_ptr();
    let _b = k.kmalloc(32, Gfp::KERNEL).unwrap();
    // SAFETY: freed once, then its link word overwritten on purpose.
    unsafe {
        k.kfree(a).unwrap();
        a.cast::<usize>().write(0x4141_4141);
    }
    let mut kinds = Vec::new();
    assert_eq!(k.validate(|f| kinds.push(f.kind)), 1);
    assert_eq!(kinds, [FindingKind::CorruptedFreeList]);
}

#[test]
fn records_live_at_the_end_of_each_slab() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let p = k.kmalloc(5, Gfp::KERNEL).unwrap().as_ptr();
    let c = k.kmalloc_cache(5, Gfp::KERNEL).unwrap();
    let info = k.slabinfo(c).unwrap();
    // 8-byte objects with an 8-byte record each: 256 per page instead of 512.
    assert_eq!(
        (info.objsize, info.objperslab, info.pagesperslab),
        (8, 256, 1)
    );
    let page = p as usize & !4095;
    assert_eq!(
        k.owner_of(page + 256 * 8),
        dmaslab_core::Owner::Metadata {
            start: page + 2048,
            size: 2048
        }
    );
    // SAFETY: live object freed once.
    unsafe { k.kfree(p).unwrap() };
}

#[test]
fn quarantine_delays_reuse_and_catches_a_write_after_free_at_the_next_call() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let p = k
        .kmalloc_checked(40, 1, Gfp::KERNEL, 0xa11c)
        .unwrap()
        .unwrap()
        .as_ptr();
    // SAFETY: live object freed once.
    unsafe { k.kfree_at(p, 0xf4ee).unwrap() };
    // A freed object is not handed out again while it is quarantined.
    let again: Vec<_> = (0..50)
        .map(|_| k.kmalloc(40, Gfp::KERNEL).unwrap().as_ptr())
        .collect();
    assert!(!again.contains(&p), "a quarantined object was handed out");
    let c = k.kmalloc_cache(40, Gfp::KERNEL).unwrap();
    assert_eq!(
        k.slabinfo(c).unwrap().active_objs,
        50,
        "quarantined is not active"
    );
    // A write at offset 0 (where a free object's link would be) after free, then any call.
    // SAFETY: the freed object is memory of the allocator; written on purpose (the misuse).
    unsafe { p.write(1) };
    let f = found(k.kmalloc_checked(8, 1, Gfp::KERNEL, 0).unwrap_err());
    assert_eq!(
        (f.kind, f.object, f.offset, f.alloc_site, f.free_site),
        (FindingKind::UseAfterFree, p as usize, 0, 0xa11c, 0xf4ee)
    );
    // Reported once, then out of circulation; validate still names it.
    let q = k.kmalloc(40, Gfp::KERNEL).unwrap().as_ptr();
    assert_ne!(q, p);
    let mut seen = Vec::new();
    k.validate(|f| seen.push((f.kind, f.object)));
    assert_eq!(seen, [(FindingKind::UseAfterFree, p as usize)]);
}

#[test]
fn quarantine_budget_bounds_the_delay() {
    let mut mem = region(4 << 20);
    let arena = dmaslab_core::ArenaPageSource::new(&mut mem).unwrap();
    let config = dmaslab_core::Config::new(Policy::C)
        .seg_order(common::SEG_ORDER)
        .debug(true)
        .quarantine(4 * 64);
    let k = dmaslab_core::Kmalloc::new(arena, config).unwrap();
    let ps: Vec<_> = (0..8)
        .map(|_| k.kmalloc(40, Gfp::KERNEL).unwrap().as_ptr())
        .collect();
    for &p in &ps {
        // SAFETY: each live, freed once.
        unsafe { k.kfree(p).unwrap() };
    }
    // 256 bytes hold four 64-byte objects: the four oldest are back in their slab, and are
    // handed out again (the newest first off its free list), the four newest are not.
    let again: Vec<_> = (0..4)
        .map(|_| k.kmalloc(40, Gfp::KERNEL).unwrap().as_ptr())
        .collect();
    for p in &again {
        assert!(ps[..4].contains(p), "{p:?} is not one of the oldest");
    }
    // A write after free of an object that left the quarantine is found at its reuse.
    k.quarantine_flush().unwrap();
    assert_eq!(k.validate(|f| panic!("{f}")), 0);
}

#[test]
fn an_underflow_into_the_left_neighbour_is_found_at_free() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    // Slot 0 of each slab is the guard: the first object handed out is slot 1, and each
    // object's left neighbour is the guard or an object with a red zone.
    let a = k.kmalloc(30, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(a as usize % 4096, 32, "kmalloc-32's first object is slot 1");
    let b = k
        .kmalloc_checked(30, 1, Gfp::KERNEL, 0xb0)
        .unwrap()
        .unwrap()
        .as_ptr();
    assert_eq!(b as usize, a as usize + 32);
    let c = k.kmalloc(30, Gfp::KERNEL).unwrap().as_ptr();
    // (`a`, once reported, is out of circulation and no longer checked as a neighbour.)
    for (victim, what) in [(a, "guard slot"), (c, "allocated neighbour")] {
        // SAFETY: one byte below the object: the neighbour's tail (misuse on purpose).
        unsafe { victim.sub(1).write(0) };
        // SAFETY: live object freed once.
        let f = found(unsafe { k.kfree_at(victim, 0xf0) }.unwrap_err());
        assert_eq!(f.kind, FindingKind::RedZone, "{what}");
        assert_eq!(
            (f.object, f.addr),
            (victim as usize, victim as usize - 1),
            "{what}"
        );
        assert_eq!(f.offset as isize, -1, "{what}");
        let msg = format!("{}", FreeError::Found(f));
        assert!(msg.contains("offset -1;"), "{msg}");
    }
}

#[test]
fn a_memcpy_past_the_red_zone_into_a_quarantined_neighbour_is_found_at_free() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let a = k.kmalloc(30, Gfp::KERNEL).unwrap().as_ptr();
    let b = k.kmalloc(30, Gfp::KERNEL).unwrap().as_ptr();
    let c = k.kmalloc(30, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!((b as usize - a as usize, c as usize - b as usize), (32, 32));
    let later: Vec<_> = (0..6)
        .map(|_| k.kmalloc(200, Gfp::KERNEL).unwrap().as_ptr())
        .collect();
    // SAFETY: each live, freed once: `c` is quarantined, poisoned, right of `b`, and older
    // than the newest few that every call re-checks.
    unsafe {
        k.kfree(c).unwrap();
        for p in later {
            k.kfree(p).unwrap();
        }
    }
    // 32 bytes copied 32 bytes into `b`: skips b's red zone, lands wholly in `c`.
    let src = [0x41u8; 32];
    // SAFETY: the misuse under test: writes the neighbour's slot.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), b.add(32), 32) };
    // SAFETY: live object freed once.
    let f = found(unsafe { k.kfree(b) }.unwrap_err());
    assert_eq!(
        (f.kind, f.object, f.offset),
        (FindingKind::RedZone, b as usize, 32)
    );
    // SAFETY: live object freed once; its own neighbours are fine.
    unsafe { k.kfree(a).unwrap() };
}

#[test]
fn natural_alignment_holds_with_guard_slots() {
    let mut mem = region(8 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    for size in [
        1usize, 8, 16, 24, 32, 64, 96, 128, 192, 255, 512, 1024, 2048, 4096,
    ] {
        let want = dmaslab_core::size_class::natural_align(size);
        for _ in 0..if cfg!(miri) { 3 } else { 40 } {
            let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
            assert_eq!(p as usize % want, 0, "kmalloc({size}) at {p:?}");
            if size < 256 {
                assert_ne!(
                    p as usize % 4096,
                    0,
                    "slot 0 of a one-page slab is the guard ({size})"
                );
            }
        }
    }
    let p = k.kmalloc_aligned(512, 512, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(p as usize % 512, 0);
    assert_eq!(k.validate(|f| panic!("{f}")), 0);
}

/// A debug page run (here 10001 bytes: three pages) ends as close to the end of its last page
/// as `malloc`'s 16-byte alignment allows, and the slack on both sides is red zone, checked at
/// free: one byte past the object and one byte before it are each reported, naming the page
/// run, the offset and both call sites.
#[test]
fn page_run_red_zones_on_both_sides_are_checked_at_free() {
    let mut mem = region(4 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let page = k.page_size();
    for (at, want) in [(10001isize, 10001isize), (-1, -1)] {
        let p = k
            .kmalloc_checked(10001, 1, Gfp::KERNEL, 0xa1)
            .unwrap()
            .unwrap()
            .as_ptr();
        let end = p as usize + 10001;
        assert_eq!(p as usize % 16, 0);
        assert_eq!(
            end.next_multiple_of(page) - end,
            15,
            "{p:p}: 16-aligned, as late as can be"
        );
        assert_eq!(k.usable_size(p), Some(10001));
        // SAFETY: a byte of the red zone just past or just before the object (the misuse); the
        // red zones lie in the object's first and last pages, mapped.
        unsafe { p.offset(at).write(0) };
        // SAFETY: live, freed once.
        let f = found(unsafe { k.kfree_at(p, 0xf1) }.unwrap_err());
        assert_eq!(f.kind, FindingKind::RedZone);
        assert_eq!((f.object, f.offset as isize), (p as usize, want));
        assert_eq!(f.cache.as_str(), "page run");
        assert_eq!((f.alloc_site, f.free_site), (0xa1, 0xf1));
        // Refused and out of circulation: a second free is a double free, not a crash.
        // SAFETY: as above (the free was refused).
        let f = found(unsafe { k.kfree(p) }.unwrap_err());
        assert_eq!(f.kind, FindingKind::DoubleFree);
    }
}

/// A freed debug page run is quarantined, poisoned (an arena cannot protect pages): it is not
/// handed out again while quarantined, a write after free is found at the next call, and a
/// second free is a double free naming the first free's site.
#[test]
fn page_runs_are_quarantined_poisoned_and_rechecked() {
    let mut mem = region(8 << 20);
    let k = kmalloc_mode(&mut mem, Policy::C, 64, true);
    let size = 5 * k.page_size();
    let p = k
        .kmalloc_checked(size, 1, Gfp::KERNEL, 0xa2)
        .unwrap()
        .unwrap()
        .as_ptr();
    assert_eq!(p as usize % natural_align(size), 0, "natural alignment");
    // SAFETY: the whole object is usable.
    unsafe { p.write_bytes(7, size) };
    // SAFETY: live, freed once.
    unsafe { k.kfree_at(p, 0xf2).unwrap() };
    let f = found(unsafe { k.kfree_at(p, 0xf3) }.unwrap_err());
    assert_eq!(f.kind, FindingKind::DoubleFree);
    assert_eq!((f.alloc_site, f.free_site), (0xa2, 0xf2));
    let q = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
    assert_ne!(q, p, "a quarantined page run is not handed out again");
    // SAFETY: a write after free (the misuse) into the poisoned, still mapped object.
    unsafe { p.add(size / 2).write(1) };
    let f = found(k.kmalloc_checked(16, 1, Gfp::KERNEL, 0).unwrap_err());
    assert_eq!(f.kind, FindingKind::UseAfterFree);
    assert_eq!((f.object, f.offset), (p as usize, size / 2));
    assert_eq!(f.cache.as_str(), "page run");
    // SAFETY: live, freed once; the allocator goes on working.
    unsafe { k.kfree(q).unwrap() };
    assert!(
        k.quarantine_flush().is_ok(),
        "the written run is out of the ring already"
    );
}
