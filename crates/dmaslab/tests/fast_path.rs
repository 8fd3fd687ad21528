//! The process-wide heap's inline fast paths (`fast_malloc`, `fast_free`): what they accept,
//! what they leave to the full path, and the thread's recent object.

use dmaslab::{fast_free, fast_malloc, heap};

/// Warms this thread up: the heap built, a loaded magazine for 64-byte objects and a segment
/// hint (both set by the full path).
fn warm() -> *mut u8 {
    let h = heap();
    let p = h.malloc(64);
    assert!(!p.is_null());
    // SAFETY: a live block, freed once.
    unsafe { h.free(p) };
    h.malloc(64)
}

#[test]
fn rejects_what_is_not_an_object_start_and_leaves_it_to_the_full_path() {
    let p = warm();
    let mut on_stack = [0u64; 8];
    // SAFETY (all): `fast_free` only inspects pointers it does not accept; nothing is freed
    // twice or used after it is accepted.
    unsafe {
        assert!(!fast_free(std::ptr::null_mut()), "free(NULL)");
        assert!(!fast_free(on_stack.as_mut_ptr().cast()), "a stack address");
        assert!(!fast_free(p.add(8)), "an interior pointer");
        assert!(!fast_free(0x10 as *mut u8), "a wild low address");
        assert!(fast_free(p), "a live object of a warm class");
        // `p` is now the recent object: freeing it again is refused here and reported by the
        // full path (tested under the preload, tests/misuse.rs there).
        assert!(!fast_free(p), "a double free");
    }
    on_stack[0] = 1;
    assert_eq!(on_stack[0], 1);
}

#[test]
fn the_recent_object_comes_back_first_and_only_for_its_class() {
    let p = warm();
    let q = heap().malloc(64);
    // SAFETY: live blocks of this heap, each freed once.
    unsafe {
        assert!(fast_free(p));
        // Another class does not take it.
        let r = fast_malloc(128).map_or(std::ptr::null_mut(), |r| r.as_ptr());
        assert_ne!(r, p);
        let again = fast_malloc(64).expect("the recent object").as_ptr();
        assert_eq!(
            again, p,
            "malloc of the same class takes the recent object back"
        );
        // The old recent object went onto its magazine when `q` replaced it.
        assert!(fast_free(again));
        assert!(fast_free(q));
        let top = fast_malloc(64).expect("recent").as_ptr();
        assert_eq!(top, q);
        let next = fast_malloc(64).expect("magazine top").as_ptr();
        assert_eq!(next, p);
        heap().free(top);
        heap().free(next);
        if !r.is_null() {
            heap().free(r);
        }
    }
}

#[test]
fn large_sizes_take_the_full_path() {
    warm();
    assert!(fast_malloc(8193).is_none());
    assert!(fast_malloc(usize::MAX).is_none());
    let big = heap().malloc(100_000);
    // SAFETY: a live block; `fast_free` refuses it (no slab), the full path frees it.
    unsafe {
        assert!(!fast_free(big));
        heap().free(big);
    }
}

#[test]
fn every_small_class_is_freed_on_the_fast_path() {
    warm();
    let mut kept = Vec::new();
    for size in (8..=8192).step_by(8) {
        let (a, b) = (heap().malloc(size), heap().malloc(size));
        // SAFETY (all): live blocks of this heap, each freed once; those taken back are freed
        // at the end.
        unsafe {
            // The full path sets up the class's magazine and the segments' hints.
            heap().free(a);
            heap().free(b);
            let (c, d) = (heap().malloc(size), heap().malloc(size));
            for p in [c, d] {
                assert!(
                    fast_free(p),
                    "malloc({size}) = {p:p} was not freed on the fast path"
                );
            }
            // And back on the fast path: the recent object, then the magazine's top.
            let e = fast_malloc(size).expect("the recent object").as_ptr();
            let f = fast_malloc(size).expect("the magazine's top").as_ptr();
            assert_eq!((e, f), (d, c), "malloc({size})");
            kept.extend([e, f]);
        }
    }
    for p in kept {
        // SAFETY: as above.
        unsafe { heap().free(p) };
    }
}
