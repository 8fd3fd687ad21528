//! The page layer's hints to its page source: free memory is discarded only beyond
//! `Config::discard_threshold` free pages, and slab pages are populated ahead of use, each in
//! whole aligned blocks of 64 pages, a block never populated twice without a discard between.

mod common;

use common::region;
use dmaslab_core::{ArenaPageSource, Config, Gfp, Kmalloc, PageSource, Policy, DEFAULT_PAGE_SIZE};
use std::collections::BTreeSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Pages are discarded and populated in blocks of this many bytes (64 pages).
const BLOCK: usize = 64 * DEFAULT_PAGE_SIZE;

/// An arena that records the hints it gets, and keeps the set of blocks populated and not
/// discarded or freed since.
struct Recording<'a> {
    arena: ArenaPageSource<'a>,
    discards: usize,
    discarded_bytes: usize,
    /// Shared, so that a test can read it while the allocator owns the source.
    populates: Arc<AtomicUsize>,
    populated: BTreeSet<usize>,
}

impl<'a> Recording<'a> {
    fn new(arena: ArenaPageSource<'a>) -> Self {
        Recording {
            arena,
            discards: 0,
            discarded_bytes: 0,
            populates: Arc::new(AtomicUsize::new(0)),
            populated: BTreeSet::new(),
        }
    }

    fn forget(&mut self, ptr: NonNull<u8>, len: usize) {
        let start = ptr.as_ptr() as usize;
        self.populated.retain(|&b| b < start || b >= start + len);
    }
}

impl PageSource for Recording<'_> {
    fn page_size(&self) -> usize {
        self.arena.page_size()
    }
    fn alloc_pages(&mut self, order: u32) -> Option<NonNull<u8>> {
        self.arena.alloc_pages(order)
    }
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32) {
        self.forget(ptr, DEFAULT_PAGE_SIZE << order);
        // SAFETY: forwarded from the caller.
        unsafe { self.arena.free_pages(ptr, order) }
    }
    fn discard(&mut self, ptr: NonNull<u8>, len: usize) {
        assert_eq!(
            ptr.as_ptr() as usize % len,
            0,
            "blocks are aligned to their size"
        );
        assert_eq!(len % BLOCK, 0, "whole blocks");
        self.discards += 1;
        self.discarded_bytes += len;
        self.forget(ptr, len);
    }
    fn populate(&mut self, ptr: NonNull<u8>, len: usize) {
        let start = ptr.as_ptr() as usize;
        assert_eq!(
            (start % BLOCK, len),
            (0, BLOCK),
            "one aligned block at a time"
        );
        assert!(
            self.populated.insert(start),
            "block {start:#x} populated twice"
        );
        self.populates.fetch_add(1, Ordering::Relaxed);
    }
}

/// Segments of 2^9 pages (2 MiB): the heap's geometry, eight blocks each.
const SEG_ORDER: u32 = 9;

fn config(threshold: usize) -> Config {
    Config::new(Policy::C)
        .seg_order(SEG_ORDER)
        .discard_threshold(threshold)
}

/// Fills four segments with 64 KiB kmalloc runs, frees them all, and returns the discard calls
/// and bytes the page source saw with `threshold`.
fn churn_large(threshold: usize) -> (usize, usize) {
    let mut mem = region(16 << 20);
    let mut src = Recording::new(ArenaPageSource::new(&mut mem).expect("arena"));
    {
        let k = Kmalloc::new(&mut src, config(threshold)).expect("config");
        let runs: Vec<_> = (0..100)
            .map(|_| k.kmalloc(64 << 10, Gfp::KERNEL).expect("memory"))
            .collect();
        for p in runs {
            // SAFETY: each run is live and freed once.
            unsafe { k.kfree(p.as_ptr()) }.expect("valid free");
        }
    }
    assert_eq!(
        src.populates.load(Ordering::Relaxed),
        0,
        "large runs are left to page faults"
    );
    (src.discards, src.discarded_bytes)
}

#[test]
fn nothing_is_discarded_below_the_threshold() {
    // 100 runs of 16 pages free at most 1600 pages plus the segments' untouched rest.
    assert_eq!(churn_large(1 << 20), (0, 0));
}

#[test]
fn a_lower_threshold_discards_more() {
    let (calls_low, low) = churn_large(256);
    let (_, mid) = churn_large(1024);
    assert!(calls_low > 0, "1 MiB threshold: freeing 6 MiB discards");
    assert!(
        low > mid,
        "256 pages kept: {low} bytes discarded; 1024 kept: {mid}"
    );
}

#[test]
fn slab_blocks_are_populated_once_until_discarded() {
    let rounds = if cfg!(miri) { 2 } else { 5 };
    // 0.3 MiB (1.5 MiB outside Miri) of objects of 16 B to 2 KiB: more than the first block
    // holds, and all in the first segment, which a pinned object keeps from one round to the
    // next.
    let objects = if cfg!(miri) { 600 } else { 3000 };
    let slab_bytes: usize = (0..objects).map(|i| 16usize << (i % 8)).sum();
    let mut mem = region(8 << 20);
    let mut src = Recording::new(ArenaPageSource::new(&mut mem).expect("arena"));
    let seen = Arc::clone(&src.populates);
    let k = Kmalloc::new(&mut src, config(64)).expect("config");
    let pinned = k.kmalloc(8, Gfp::KERNEL).expect("memory");
    let mut populates = Vec::new();
    for _ in 0..rounds {
        let before = k.totals().pages.segments;
        let live: Vec<_> = (0..objects)
            .map(|i| k.kmalloc(16 << (i % 8), Gfp::KERNEL).expect("memory"))
            .collect();
        assert_eq!(k.totals().pages.segments, before.max(1), "one segment");
        // A block is never populated twice while populated (`Recording::populate` asserts it).
        for p in live {
            // SAFETY: each object is live and freed once.
            unsafe { k.kfree(p.as_ptr()) }.expect("valid free");
        }
        // Empty slabs go back, and with 64 pages kept their blocks are discarded.
        assert!(k.shrink_all() > 0);
        populates.push(seen.load(Ordering::Relaxed));
    }
    // SAFETY: live, freed once.
    unsafe { k.kfree(pinned.as_ptr()) }.expect("valid free");
    drop(k);
    let per_round: Vec<usize> = populates.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(per_round.len(), rounds - 1);
    // The first block's slabs fault in as written (less than a block of slabs held).
    assert!(
        (populates[0] + 1) * BLOCK >= slab_bytes,
        "{} blocks populated for {slab_bytes} bytes of objects",
        populates[0]
    );
    assert!(
        per_round.iter().all(|&n| n > 0),
        "discarded blocks are populated again when reused: {per_round:?}"
    );
    assert!(src.discards > 0);
}

#[test]
fn a_small_heap_is_not_populated_ahead() {
    let mut mem = region(8 << 20);
    let mut src = Recording::new(ArenaPageSource::new(&mut mem).expect("arena"));
    let seen = Arc::clone(&src.populates);
    let k = Kmalloc::new(&mut src, config(64)).expect("config");
    // Objects of 16 B to 2 KiB while the slabs hold less than a block: they fault in as
    // written. The next slabs past a block are populated ahead again.
    let block_pages = BLOCK / k.page_size();
    let mut live = Vec::new();
    let mut i = 0;
    while k.totals().pages.slab_pages < block_pages {
        assert_eq!(
            seen.load(Ordering::Relaxed),
            0,
            "populated with a small heap"
        );
        live.push(k.kmalloc(16 << (i % 8), Gfp::KERNEL).expect("memory"));
        i += 1;
    }
    while seen.load(Ordering::Relaxed) == 0 {
        assert!(i < 100_000, "a larger heap is populated ahead");
        live.push(k.kmalloc(16 << (i % 8), Gfp::KERNEL).expect("memory"));
        i += 1;
    }
    for p in live {
        // SAFETY: each object is live and freed once.
        unsafe { k.kfree(p.as_ptr()) }.expect("valid free");
    }
}
