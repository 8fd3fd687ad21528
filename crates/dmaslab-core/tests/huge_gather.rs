//! Gathering (`large/gather.rs`): a new huge segment takes the resident pages of the cached
//! segments the cache's bound is about to give back, moved rather than faulted in.

#[cfg(not(miri))]
use dmaslab_core::{Gfp, Kmalloc, MmapPageSource, PageSource, Policy};
#[cfg(not(miri))]
use std::ptr::NonNull;

/// Minor page faults of this process so far.
#[cfg(not(miri))]
fn minor_faults() -> i64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: a valid out-parameter.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    u.ru_minflt
}

#[test]
#[cfg_attr(miri, ignore = "mmap and mremap are not available under Miri")]
fn a_larger_request_takes_the_pages_the_cache_gives_back() {
    #[cfg(not(miri))]
    {
        let k = Kmalloc::new(MmapPageSource::new(), dmaslab_core::Config::new(Policy::C)).unwrap();
        let page = k.page_size();
        let (small, large) = (12usize << 20, 16usize << 20);
        // A 12 MiB block, written and freed: the cache keeps it (the program held that much).
        let a = k.kmalloc(small, Gfp::KERNEL).unwrap().as_ptr();
        // SAFETY: the whole object is usable.
        unsafe { a.write_bytes(7, small) };
        // SAFETY: live, freed once.
        unsafe { k.kfree(a).unwrap() };
        assert!(k.totals().pages.cached_huge_pages * page > small);
        // 16 MiB does not fit it, and once they count as live the bound (16 MiB of spare peak
        // room less: 8 MiB of slack) gives the cached segment back: its pages move instead.
        let b = k.kmalloc(large, Gfp::KERNEL).unwrap().as_ptr();
        let c = k.totals().pages;
        assert_eq!(c.cached_huge_pages, 0, "the donor left the cache");
        assert_eq!(c.gathered_pages, small / page, "its pages moved");
        let before = minor_faults();
        // SAFETY: the whole object is usable, readable and writable.
        unsafe {
            for off in (0..large).step_by(page) {
                b.add(off)
                    .write_volatile(b.add(off).read_volatile().wrapping_add(1));
            }
        }
        let faults = minor_faults() - before;
        let fresh = ((large - small) / page) as i64;
        assert!(
            faults < fresh + fresh / 4,
            "{faults} faults writing the object: only its {fresh} fresh pages should fault"
        );
        assert_ne!(b, a, "a new segment");
        // SAFETY: live, freed once.
        unsafe { k.kfree(b).unwrap() };
        assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
    }
}

#[test]
#[cfg_attr(miri, ignore = "mmap and mremap are not available under Miri")]
fn a_move_that_cannot_be_done_leaves_fresh_pages_behind() {
    #[cfg(not(miri))]
    {
        let mut src = MmapPageSource::new();
        let page = src.page_size();
        let from = src.alloc_span(4, page, 0).unwrap();
        let to = src.alloc_span(4, page, 0).unwrap();
        let gone = src.alloc_span(4, page, 0).unwrap();
        // SAFETY: the spans are ours; `gone` is given back, so nothing is mapped there and no
        // move can take it.
        unsafe {
            from.as_ptr().write_bytes(1, 4 * page);
            to.as_ptr().write_bytes(2, 4 * page);
            src.free_span(gone, 4, page, 0);
            assert!(!src.move_pages(gone, to, 4 * page), "nothing to move");
            // `to` is whole, readable and writable (its old contents or fresh zero pages).
            for off in (0..4 * page).step_by(page) {
                let v = to.as_ptr().add(off).read_volatile();
                assert!(v == 0 || v == 2, "{v} at {off}");
                to.as_ptr().add(off).write_volatile(3);
            }
            // One mapping moves: its contents arrive, the source range is gone.
            assert!(src.move_pages(
                NonNull::new_unchecked(from.as_ptr().add(2 * page)),
                to,
                2 * page
            ));
            assert_eq!(to.as_ptr().read_volatile(), 1, "the contents moved");
            assert_eq!(
                to.as_ptr().add(3 * page).read_volatile(),
                3,
                "past the move: as was"
            );
            src.free_span(from, 4, page, 0);
            src.free_span(to, 4, page, 0);
        }
    }
}
