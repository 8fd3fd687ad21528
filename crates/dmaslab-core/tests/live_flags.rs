//! Live flags (normal mode, classes of 2 KiB and more): a free of an object start that is not out
//! with a caller is refused and changes nothing, wherever the object sits (its slab, a
//! magazine, the depot), and a correct free never is.

mod common;

use common::{kmalloc, region, region_zeroed};
use dmaslab_core::{ArenaPageSource, CpuCache, FreeError, Gfp, Kmalloc, Policy, NO_CLASS};

const SIZES: &[usize] = &[2048, 3000, 4096, 8192];

/// `kmalloc_cpu(size)` through `cc`, written whole.
///
/// # Safety
/// `cc` is used with `k` only.
unsafe fn cpu_alloc(k: &Kmalloc<ArenaPageSource<'_>>, cc: &mut CpuCache, size: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { common::cpu_alloc(k, cc, size, 0x55) }
}

/// Runs `check` for each size of [`SIZES`] on one allocator with a fresh CPU cache, which is
/// flushed after; then checks the invariants, and that nothing is left allocated.
fn each_size(check: impl Fn(&Kmalloc<ArenaPageSource<'_>>, &mut CpuCache, usize)) {
    // Zeroed: the misused frees below make the allocator read slots never written.
    let mut mem = region_zeroed(if cfg!(miri) { 2 << 20 } else { 8 << 20 });
    let k = kmalloc(&mut mem, Policy::C, 64);
    for &size in SIZES {
        let mut cc = CpuCache::NEW;
        check(&k, &mut cc, size);
        // SAFETY: `cc` was used with `k` only.
        unsafe { k.cpu_cache_flush(&mut cc) }.unwrap();
        clean(&k);
    }
    all_back(&k);
}

fn clean(k: &Kmalloc<ArenaPageSource<'_>>) {
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
}

/// Nothing is allocated but the depots' magazines and the objects they hold.
fn all_back(k: &Kmalloc<ArenaPageSource<'_>>) {
    let (full, empty, objs) = k.depot_counts();
    assert_eq!(k.totals().live_allocations as usize, full + empty + objs);
}

/// Was the free of `p` refused, as a double free (the freed-object tag, the magazine's top) or
/// as an invalid free (the live flag)?
fn refused(r: Result<(), FreeError>, p: *mut u8) -> bool {
    match r {
        Err(FreeError::InvalidPointer(a)) | Err(FreeError::DoubleFree(a)) => a == p as usize,
        Err(FreeError::Found(f)) => f.object == p as usize,
        Ok(()) | Err(_) => false,
    }
}

/// A double free after the object went back to its slab (its freed-object tag replaced by a
/// free-list link) was taken in before the live flags, and the object then handed out twice.
#[test]
fn a_double_free_after_the_object_went_back_to_its_slab_is_refused() {
    each_size(|k, cc, size| {
        // SAFETY: `cc` is used with `k` only; `p` is freed once correctly, then misused.
        unsafe {
            let p = cpu_alloc(k, cc, size);
            k.kfree_cpu(cc, p, 0).unwrap();
            // Out of this CPU's magazines: into the depot or back to its slab.
            k.cpu_cache_flush(cc).unwrap();
            assert!(refused(k.kfree_cpu(cc, p, 0), p), "size {size}");
            // The slab path finds no free-list link to compare (the object may sit in a depot
            // magazine): only the flag tells.
            assert_eq!(k.kfree(p), Err(FreeError::InvalidPointer(p as usize)));
            clean(k);
            // Nothing was taken in: two allocations are two objects.
            let (a, b) = (cpu_alloc(k, cc, size), cpu_alloc(k, cc, size));
            assert_ne!(a, b);
            k.kfree_cpu(cc, a, 0).unwrap();
            k.kfree_cpu(cc, b, 0).unwrap();
        }
    });
}

/// A refill puts objects in the magazine that were never handed out; freeing one of them (a
/// neighbour's address) would put it in the magazine twice.
#[test]
fn a_free_of_a_magazine_object_never_handed_out_is_refused() {
    each_size(|k, cc, size| {
        // SAFETY: `cc` is used with `k` only; each live object is freed once.
        unsafe {
            let p = cpu_alloc(k, cc, size);
            let stride = k.ksize(p).unwrap();
            // The slab neighbours of `p` that are not out: in the magazine, in the slab, or
            // fresh. Each free is refused and leaves everything as it was.
            let mut n = 0;
            for q in [p.wrapping_sub(stride), p.wrapping_add(stride)] {
                if k.cache_of(q) != k.cache_of(p) {
                    continue;
                }
                assert!(refused(k.kfree_cpu(cc, q, 0), q), "size {size}");
                assert_eq!(k.kfree(q), Err(FreeError::InvalidPointer(q as usize)));
                n += 1;
            }
            assert!(n > 0, "size {size}: p has a neighbour in its slab");
            clean(k);
            k.kfree_cpu(cc, p, 0).unwrap();
        }
    });
}

/// Live objects, the bulk forms and `kfree` of objects from `kmalloc_cpu` (and back): the flag
/// follows the object whichever path hands it out or takes it back.
#[test]
fn every_path_sets_and_clears_the_flag() {
    each_size(|k, cc, size| {
        let x = k.cpu_class(size, Gfp::KERNEL);
        assert_ne!(x, NO_CLASS, "size {size}: a class of the fast path");
        let id = k.kmalloc_cache(size, Gfp::KERNEL).unwrap();
        // SAFETY: `cc` is used with `k` only; each live object is freed once, the misused
        // pointers are refused.
        unsafe {
            let a = cpu_alloc(k, cc, size);
            let b = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
            // The lock-free pair too: freed, taken back with `kmalloc_fast`, freed again.
            assert!(k.kfree_fast(cc, a) || k.kfree_cpu(cc, a, 0).is_ok());
            assert!(
                !k.kfree_fast(cc, a),
                "a's flag is clear: the fast path refuses"
            );
            assert_eq!(k.kmalloc_fast(cc, x).map(|p| p.as_ptr()), Some(a));
            // Across paths: the per-CPU layer takes back what kmalloc handed out, and kfree
            // what the per-CPU layer did.
            k.kfree_cpu(cc, b, 0).unwrap();
            k.kfree(a).unwrap();
            assert_eq!(k.kfree(a), Err(FreeError::InvalidPointer(a as usize)));
            let mut objs = [std::ptr::null_mut(); 4];
            assert_eq!(k.kmem_cache_alloc_bulk(id, &mut objs), 4);
            clean(k);
            // A bulk free stops at the first object that is not out, and frees those before.
            let c = objs[1];
            k.kmem_cache_free_bulk(id, &objs[1..2]).unwrap();
            assert_eq!(
                k.kmem_cache_free_bulk(id, &[objs[0], c, objs[2]]),
                Err((1, FreeError::InvalidPointer(c as usize)))
            );
            clean(k);
            // objs[0] went; objs[2] and objs[3] are still out.
            assert_eq!(
                k.kfree(objs[0]),
                Err(FreeError::InvalidPointer(objs[0] as usize))
            );
            k.kmem_cache_free_bulk(id, &objs[2..]).unwrap();
        }
    });
}

/// With no memory left for a magazine, a free goes straight to its slab: the live flag the
/// per-CPU layer took is given back first, so it is still a correct free.
#[test]
#[cfg_attr(miri, ignore = "fills the arena object by object")]
fn a_free_without_memory_for_a_magazine_is_still_a_free() {
    let mut mem = region(4 << 20);
    let k = kmalloc(&mut mem, Policy::C, 64);
    let mut held = Vec::new();
    for size in [2048, 1 << 20, 64 << 10, 8192, 512, 64, 8] {
        held.extend(
            std::iter::from_fn(|| k.kmalloc(size, Gfp::KERNEL)).map(|p| (p.as_ptr(), size)),
        );
    }
    let (p, _) = *held
        .iter()
        .find(|&&(_, size)| size == 2048)
        .expect("a 2 KiB object");
    let mut cc = CpuCache::NEW;
    // SAFETY: `cc` is used with `k` only; every object is freed once.
    unsafe {
        assert_eq!(k.kfree_cpu(&mut cc, p, 0), Ok(()));
        clean(&k);
        assert_eq!(k.kmalloc(2048, Gfp::KERNEL).map(|q| q.as_ptr()), Some(p));
        for (q, _) in held {
            k.kfree(q).unwrap();
        }
        k.cpu_cache_flush(&mut cc).unwrap();
    }
    clean(&k);
    all_back(&k);
}

/// The recent object (the one a lock-free free just put aside for the next allocation) keeps
/// its live flag, so that a pair stores none: every other free of it must still be refused —
/// through the CPU cache (its freed-object tag), the thread-less slab path, and after it went
/// into a magazine behind a later free.
#[test]
fn a_free_of_the_recent_object_is_refused_on_every_path() {
    each_size(|k, cc, size| {
        let x = k.cpu_class(size, Gfp::KERNEL);
        assert_ne!(x, NO_CLASS);
        // SAFETY: `cc` is used with `k` only; `p` and `q` are freed once correctly, then misused.
        unsafe {
            // A free through the full path first: it loads a magazine and the segment hint
            // the lock-free path needs.
            let w = cpu_alloc(k, cc, size);
            k.kfree_cpu(cc, w, 0).unwrap();
            let p = cpu_alloc(k, cc, size);
            let q = cpu_alloc(k, cc, size);
            assert!(
                k.kfree_fast(cc, p),
                "size {size}: p becomes the recent object"
            );
            assert!(
                !k.kfree_fast(cc, p),
                "the fast path leaves a second free to the full one"
            );
            assert!(refused(k.kfree_cpu(cc, p, 0), p), "size {size}");
            assert!(
                refused(k.kfree(p), p),
                "size {size}: thread-less free of the recent object"
            );
            clean(k);
            // A pair of the recent object: handed out again, freed again, correctly.
            assert_eq!(k.kmalloc_fast(cc, x).map(|n| n.as_ptr()), Some(p));
            assert!(k.kfree_fast(cc, p));
            // `q`'s free pushes `p` into its magazine: `p` gives its flag up there.
            assert!(k.kfree_fast(cc, q));
            assert!(refused(k.kfree(p), p), "size {size}: p in a magazine");
            assert!(
                refused(k.kfree(q), q),
                "size {size}: q is the recent object now"
            );
            clean(k);
            // Nothing was taken in: two allocations are the two objects, once each.
            let (a, b) = (cpu_alloc(k, cc, size), cpu_alloc(k, cc, size));
            assert_ne!(a, b);
            assert!([a, b].contains(&p) && [a, b].contains(&q));
            k.kfree_cpu(cc, a, 0).unwrap();
            k.kfree_cpu(cc, b, 0).unwrap();
        }
    });
}
