//! Free memory is handed back to the page source (`discard`) only beyond
//! `Config::discard_threshold` free pages, in whole aligned blocks.

mod common;

use common::region;
use dmaslab_core::{ArenaPageSource, Config, Gfp, Kmalloc, PageSource, Policy, DEFAULT_PAGE_SIZE};
use std::ptr::NonNull;

/// An arena that records what it is asked to discard.
struct Counting<'a> {
    arena: ArenaPageSource<'a>,
    calls: usize,
    bytes: usize,
}

impl PageSource for Counting<'_> {
    fn page_size(&self) -> usize {
        self.arena.page_size()
    }
    fn alloc_pages(&mut self, order: u32) -> Option<NonNull<u8>> {
        self.arena.alloc_pages(order)
    }
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: forwarded from the caller.
        unsafe { self.arena.free_pages(ptr, order) }
    }
    fn discard(&mut self, ptr: NonNull<u8>, len: usize) {
        assert_eq!(
            ptr.as_ptr() as usize % len,
            0,
            "blocks are aligned to their size"
        );
        assert_eq!(len % DEFAULT_PAGE_SIZE, 0, "whole pages");
        self.calls += 1;
        self.bytes += len;
    }
}

/// Segments of 2^9 pages (2 MiB): the heap's geometry, where a discard block is 64 pages.
const SEG_ORDER: u32 = 9;

/// Fills four segments with 64 KiB kmalloc runs, frees them all, and returns the discard calls
/// and bytes the page source saw with `threshold`.
fn churn(threshold: usize) -> (usize, usize) {
    let mut mem = region(16 << 20);
    let mut src = Counting {
        arena: ArenaPageSource::new(&mut mem).expect("arena"),
        calls: 0,
        bytes: 0,
    };
    {
        let config = Config::new(Policy::C)
            .seg_order(SEG_ORDER)
            .discard_threshold(threshold);
        let k = Kmalloc::new(&mut src, config).expect("config");
        let runs: Vec<_> = (0..100)
            .map(|_| k.kmalloc(64 << 10, Gfp::KERNEL).expect("memory"))
            .collect();
        for p in runs {
            // SAFETY: each run is live and freed once.
            unsafe { k.kfree(p.as_ptr()) }.expect("valid free");
        }
    }
    (src.calls, src.bytes)
}

#[test]
fn nothing_is_discarded_below_the_threshold() {
    // 100 runs of 16 pages free at most 1600 pages plus the segments' untouched rest.
    assert_eq!(churn(1 << 20), (0, 0));
}

#[test]
fn a_lower_threshold_discards_more() {
    let (calls_low, low) = churn(256);
    let (_, mid) = churn(1024);
    assert!(calls_low > 0, "1 MiB threshold: freeing 6 MiB discards");
    assert!(
        low > mid,
        "256 pages kept: {low} bytes discarded; 1024 kept: {mid}"
    );
}
