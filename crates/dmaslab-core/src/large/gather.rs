//! Gathering: a new huge segment takes the resident pages of cached ones instead of faulting in
//! fresh pages while the cache gives as many back.
//!
//! The huge-segment cache serves a request only from one segment whose room holds it. When the
//! program's large blocks keep changing size (malloc-large: 64 KiB .. 4 MiB, one replaced at a
//! time), a request is often larger than every cached segment: it maps a new span, faults in
//! every page, and the cache's bound then gives back the oldest cached segments, resident pages
//! and all. Where the source can move pages ([`PageSource::move_pages`], `mremap` on Linux), the
//! new object's first pages are instead the resident pages of cached segments, moved whole
//! (page tables, not contents), largest first; only the rest faults in. A segment that gave its
//! pages leaves the cache and is released, so memory held does not grow.
//!
//! A move takes pages of one mapping only: a segment's `movable` bytes (`HugeInfo`) from its
//! object's start. A fresh segment's object is one mapping; a gathered one keeps as movable only
//! its first piece (pieces of different origins stay separate mappings in the kernel).

use crate::page_layer::PageLayer;
use crate::page_source::PageSource;
use crate::segment::SegmentHeader;
use crate::segment_map::SegmentMap;
use core::ptr::NonNull;

/// The fewest bytes worth a move: a move is one system call (and its TLB flush), about the
/// cost of faulting in a few pages.
const MIN_MOVE: usize = 64 << 10;

impl<P: PageSource> PageLayer<P> {
    /// Gives back the cached huge segments the cache's bound would give back once the fresh
    /// object of `len` bytes at `obj` (a new huge segment's, not handed out, on a source that
    /// protects pages) counts as live, oldest first, as the bound's trim does; but first moves
    /// their resident pages into the object, from its front, and opens what was moved in
    /// (cached pages are inaccessible).
    /// Returns the bytes of the first piece moved (0: none), or `None` if the moved pages could
    /// not be opened (the object must not be handed out).
    ///
    /// # Safety
    /// `obj..obj + len` is the object of a huge segment of this page layer that nobody uses.
    pub(super) unsafe fn gather_cached(
        &mut self,
        map: &SegmentMap,
        obj: *mut u8,
        len: usize,
    ) -> Option<usize> {
        let page_mask = (1usize << self.page_shift) - 1;
        let (mut filled, mut first) = (0, 0);
        // The cache's bound once the object counts as live: the oldest segments beyond it
        // would be given back right after this allocation; they give their pages first.
        let cap = self.cap_with_live(self.usage.in_use + len);
        while self.huge_cache.len > 0 && self.cache_held() > cap {
            let seg = self.huge_cache.remove(0);
            // SAFETY: cached entries are live huge segments (cache invariant).
            let (off, n) = unsafe {
                let info = &*SegmentHeader::huge_info(seg);
                (info.object_off, info.movable.min(info.resident))
            };
            let n = n.min(len - filled) & !page_mask;
            // SAFETY: `seg` was cached: its object's first `n` bytes are one mapping of its
            // span, unused; the target lies in the caller's fresh object, past what is filled.
            let moved = n >= MIN_MOVE
                && unsafe {
                    self.source.move_pages(
                        NonNull::new_unchecked(seg.cast::<u8>().add(off)),
                        NonNull::new_unchecked(obj.add(filled)),
                        n,
                    )
                };
            // SAFETY: just taken off the cache; what is left of it is released whole.
            unsafe { self.uncache(map, seg) };
            if moved {
                if filled == 0 {
                    first = n;
                }
                filled += n;
            }
        }
        if filled > 0 {
            // SAFETY: `obj` starts the caller's object: not null.
            let start = unsafe { NonNull::new_unchecked(obj) };
            if !self.source.protect(start, filled, true) {
                return None;
            }
        }
        self.counts.gathered_pages += filled >> self.page_shift;
        Some(first)
    }
}
