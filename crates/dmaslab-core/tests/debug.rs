//! Debug mode finds misuse, names the cache, object, offset and call sites, and keeps alignment.

mod common;

use common::{kmalloc_mode, region};
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
