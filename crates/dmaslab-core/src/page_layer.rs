//! The page layer: segments from the page source, carved by a buddy allocator into slabs and
//! large kmalloc runs, plus huge segments for allocations too big for a segment (`large.rs`).

use crate::buddy::{for_each_block, BuddyLink, FreeArea, Zone};
use crate::large::HugeCache;
use crate::page_source::PageSource;
use crate::segment::{header_pages, PageDesc, PageKind, SegmentHeader, SEG_NORMAL};
use crate::segment_map::SegmentMap;
use crate::stats::Usage;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Page-layer counters, in pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageCounts {
    /// Normal segments held.
    pub segments: usize,
    /// Pages of all normal segments.
    pub segment_pages: usize,
    /// Header (descriptor) pages of those segments.
    pub header_pages: usize,
    /// Pages in slabs.
    pub slab_pages: usize,
    /// Pages in large kmalloc runs (inside segments).
    pub large_pages: usize,
    /// Pages of huge segments (header page included), cached ones too.
    pub huge_pages: usize,
    /// Pages of freed huge segments kept for reuse (part of `huge_pages`).
    pub cached_huge_pages: usize,
    /// Resident pages moved from cached huge segments into new ones instead of faulting fresh
    /// pages in (a running total; `large/gather.rs`).
    pub gathered_pages: usize,
    /// Free pages inside segments.
    pub free_pages: usize,
    /// Pages of the segment map's tables.
    pub map_pages: usize,
    /// The most pages of segments and huge segments held at any time.
    pub peak_pages: usize,
}

/// Free pages are given back to the OS in aligned blocks of this order (64 pages, 256 KiB), and
/// slab pages are mapped in by the same blocks.
pub const DISCARD_ORDER: u32 = 6;

/// Blocks of a segment whose population is tracked (`SegmentHeader::populated`); in a larger
/// segment (over 2048 pages) the blocks beyond are left to page faults.
const TRACKED_BLOCKS: usize = u32::BITS as usize;

/// The page layer.
///
/// # Invariants
/// Every block on `free` lies in a live normal segment registered in the map; a segment's
/// `used_pages` is the number of its non-header pages not on `free`. `spare`, if set, is an empty
/// normal segment kept to avoid giving a segment back and asking for it again.
pub(crate) struct PageLayer<P> {
    pub(crate) source: P,
    free: FreeArea,
    pub(crate) seg_order: u32,
    pub(crate) page_shift: u32,
    spare: Option<NonNull<SegmentHeader>>,
    /// The largest order a run inside a segment can have (fixed by the geometry).
    max_run_order: u32,
    /// Discard (MADV_DONTNEED) freed runs while more than this many pages are free.
    discard_threshold: usize,
    pub(crate) counts: PageCounts,
    /// Freed huge segments kept for reuse (`large.rs`).
    pub(crate) huge_cache: HugeCache,
    /// Bytes and allocations of large runs and huge segments, and the cumulative counts of
    /// destroyed caches (see [`Usage`]).
    pub(crate) usage: Usage,
}

// SAFETY: the raw pointers point into segments owned by this layer; it moves with them.
unsafe impl<P: Send> Send for PageLayer<P> {}

impl<P: PageSource> PageLayer<P> {
    pub(crate) fn new(source: P, seg_order: u32, discard_threshold: usize) -> Self {
        let page_shift = source.page_size().trailing_zeros();
        let hp = header_pages(seg_order, 1 << page_shift);
        // Blocks are aligned; the header occupies the start of the first half at least.
        let mut max_run_order = seg_order - 1;
        while max_run_order > 0 && hp > (1 << seg_order) - (1 << max_run_order) {
            max_run_order -= 1;
        }
        PageLayer {
            source,
            free: FreeArea::new(seg_order),
            seg_order,
            page_shift,
            spare: None,
            max_run_order,
            discard_threshold,
            counts: PageCounts::default(),
            huge_cache: HugeCache::EMPTY,
            usage: Usage::ZERO,
        }
    }

    /// The largest order a run inside a segment can have.
    pub(crate) fn max_run_order(&self) -> u32 {
        self.max_run_order
    }

    pub(crate) fn counts(&self, map: &SegmentMap) -> PageCounts {
        PageCounts {
            free_pages: self.free.free_pages,
            map_pages: map.pages(),
            ..self.counts
        }
    }

    fn segment_of(&self, p: *mut u8) -> *mut SegmentHeader {
        let mask = (1usize << (self.seg_order + self.page_shift)) - 1;
        p.wrapping_sub(p as usize & mask).cast()
    }

    pub(crate) fn note_peak(&mut self) {
        let held = self.counts.segment_pages + self.counts.huge_pages;
        self.counts.peak_pages = self.counts.peak_pages.max(held);
    }

    /// Takes a run of `2^order` pages from a segment and marks it `kind` for `cache`.
    /// Returns the segment and the run's first page index.
    pub(crate) fn alloc_run(
        &mut self,
        map: &SegmentMap,
        order: u32,
        kind: PageKind,
        cache: u16,
    ) -> Option<(*mut SegmentHeader, usize)> {
        self.alloc_pages_exact(map, order, 1 << order, kind, cache)
    }

    /// Takes the first `pages` pages of a block of `2^order` (so the run is aligned to the
    /// block) and gives the rest back to the free lists at once, as Linux's `alloc_pages_exact`:
    /// a large run costs its pages, not the next power of two. A `Large` head's `freelist`
    /// holds the run's length in pages; slabs are whole blocks.
    pub(crate) fn alloc_pages_exact(
        &mut self,
        map: &SegmentMap,
        order: u32,
        pages: usize,
        kind: PageKind,
        cache: u16,
    ) -> Option<(*mut SegmentHeader, usize)> {
        debug_assert!(pages >= 1 && pages <= 1 << order);
        debug_assert!(kind == PageKind::Large || pages == 1 << order);
        if order > self.max_run_order() {
            return None;
        }
        if !self.free.has_block(order) && !self.add_segment(map) {
            return None;
        }
        let mask = (1usize << (self.seg_order + self.page_shift)) - 1;
        let zone_of = |n: *mut BuddyLink| -> Zone {
            let seg = n
                .cast::<u8>()
                .wrapping_sub(n as usize & mask)
                .cast::<SegmentHeader>();
            // SAFETY: free blocks lie in live normal segments (type invariant).
            unsafe { SegmentHeader::zone(seg) }
        };
        // SAFETY: every block on `free` lies in the zone `zone_of` computes (type invariant).
        let (node, zone, i) = unsafe { self.free.alloc(order, zone_of) }?;
        let seg = self.segment_of(node.cast());
        if self.spare == NonNull::new(seg) {
            self.spare = None;
        }
        // SAFETY: `seg` is a live normal segment and the block `i..i+2^order` lies inside it,
        // off every list; its tail beyond `pages` goes back as aligned blocks.
        unsafe {
            (*seg).used_pages += pages as u32;
            let head = SegmentHeader::desc_ptr(seg, i);
            (*head).cache.store(cache, Ordering::Relaxed);
            (*head).head.store(i as u32, Ordering::Relaxed);
            if kind == PageKind::Large {
                (*head).freelist.store(pages as u32, Ordering::Relaxed);
            }
            PageDesc::set_kind_of(head, kind);
            let tail = if kind == PageKind::Slab {
                PageKind::SlabTail
            } else {
                PageKind::LargeTail
            };
            for j in i + 1..i + pages {
                let d = SegmentHeader::desc_ptr(seg, j);
                (*d).head.store(i as u32, Ordering::Relaxed);
                (*d).cache.store(cache, Ordering::Relaxed);
                // A slab tail's buddy link holds live flags (`kmalloc/live.rs`): none yet.
                (*d).link.next = core::ptr::null_mut();
                (*d).link.prev = core::ptr::null_mut();
                PageDesc::set_kind_of(d, tail);
            }
            for_each_block(i + pages, i + (1 << order), |j, k| {
                let _ = self.free.free(&zone, j, k);
            });
        }
        if kind == PageKind::Slab {
            // SAFETY: as above.
            unsafe { self.populate_run(seg, i, order) };
            self.counts.slab_pages += pages;
        } else {
            self.counts.large_pages += pages;
        }
        Some((seg, i))
    }

    /// The order of the blocks pages are discarded and populated by.
    fn block_order(&self) -> u32 {
        DISCARD_ORDER.min(self.max_run_order())
    }

    /// Asks the source to map in, ahead of their first writes, the blocks of the slab run
    /// `i..i + 2^order` of `seg` not populated since the segment was made or the block was last
    /// discarded, once the layer holds a block of slab pages: one call per 256 KiB instead of a
    /// page fault per page. A slab's pages are
    /// all written soon (its objects are handed out in address order), and its neighbours in
    /// the block are the next slabs the buddy hands out.
    ///
    /// # Safety
    /// `seg` is a live normal segment and the run lies in it; the page-layer lock is held.
    unsafe fn populate_run(&mut self, seg: *mut SegmentHeader, i: usize, order: u32) {
        let d = self.block_order();
        if self.counts.slab_pages < 1 << d {
            // Less than a block of slabs: the pages fault in as they are written, so a small
            // program's heap costs the pages it touches, not 256 KiB.
            return;
        }
        let end = ((i + (1 << order) - 1) >> d) + 1;
        for b in (i >> d)..end.min(TRACKED_BLOCKS) {
            // SAFETY: `seg` is live and its bitmap is ours under the lock (caller).
            unsafe {
                let populated = SegmentHeader::populated(seg);
                if populated.load(Ordering::Relaxed) & (1u32 << b) == 0 {
                    populated.fetch_or(1u32 << b, Ordering::Relaxed);
                    let p = SegmentHeader::page_ptr(seg, b << d, self.page_shift);
                    self.source
                        .populate(NonNull::new_unchecked(p), 1 << (d + self.page_shift));
                }
            }
        }
    }

    /// Gives back the run whose first page is `i` in `seg`.
    ///
    /// # Safety
    /// The run was handed out by [`alloc_run`](Self::alloc_run) or
    /// [`alloc_pages_exact`](Self::alloc_pages_exact), is not on any list, and nothing uses its
    /// memory any more.
    pub(crate) unsafe fn free_run(&mut self, map: &SegmentMap, seg: *mut SegmentHeader, i: usize) {
        // SAFETY: `seg` is live and `i` heads an allocated run in it (caller).
        unsafe {
            let head = SegmentHeader::desc_ptr(seg, i);
            let pages = if PageDesc::kind_of(head) == PageKind::Slab {
                let pages = 1usize << (*head).link.order;
                self.counts.slab_pages -= pages;
                pages
            } else {
                let pages = (*head).freelist.load(Ordering::Relaxed) as usize;
                self.counts.large_pages -= pages;
                pages
            };
            for j in i..i + pages {
                let d = SegmentHeader::desc_ptr(seg, j);
                PageDesc::set_kind_of(d, PageKind::Free);
                (*d).head.store(j as u32, Ordering::Relaxed);
            }
            let zone = SegmentHeader::zone(seg);
            for_each_block(i, i + pages, |j, k| self.free_block(&zone, seg, j, k));
            (*seg).used_pages -= pages as u32;
            if (*seg).used_pages == 0 {
                if self.spare.is_none() {
                    self.spare = NonNull::new(seg);
                } else {
                    self.release_segment(map, seg);
                }
            }
        }
    }

    /// Puts the block of `2^order` pages at `i` of `seg` (marked free) on the free lists, and
    /// gives memory back in blocks of 2^DISCARD_ORDER pages, once each, when such a block has
    /// just become wholly free: one madvise per 256 KiB rather than per slab.
    ///
    /// # Safety
    /// `zone` is `seg`'s, the block lies in it and is on no list.
    unsafe fn free_block(&mut self, zone: &Zone, seg: *mut SegmentHeader, i: usize, order: u32) {
        // SAFETY: as the caller promises.
        unsafe {
            let merged = self.free.free(zone, i, order);
            let d = self.block_order();
            if self.free.free_pages >= self.discard_threshold && merged >= d {
                let (start, len) = if order >= d {
                    (i, order)
                } else {
                    (i & !((1 << d) - 1), d)
                };
                let p = SegmentHeader::page_ptr(seg, start, self.page_shift);
                self.source
                    .discard(NonNull::new_unchecked(p), 1 << (len + self.page_shift));
                for b in (start >> d)..((start + (1 << len)) >> d).min(TRACKED_BLOCKS) {
                    SegmentHeader::populated(seg).fetch_and(!(1u32 << b), Ordering::Relaxed);
                }
            }
        }
    }

    /// Adds a fresh normal segment's pages to the free lists.
    fn add_segment(&mut self, map: &SegmentMap) -> bool {
        let Some(run) = self.source.alloc_pages(self.seg_order) else {
            return false;
        };
        // SAFETY: the page-layer lock is held by our caller (we have `&mut self`).
        if !unsafe { map.insert(&mut self.source, run) } {
            // SAFETY: the run came from the source with this order and is unused.
            unsafe { self.source.free_pages(run, self.seg_order) };
            return false;
        }
        let page_size = 1usize << self.page_shift;
        // SAFETY: the run is ours, aligned to its size, and `2^seg_order` pages long.
        let seg =
            unsafe { SegmentHeader::init(run.as_ptr(), SEG_NORMAL, self.seg_order, page_size) };
        // SAFETY: just initialised.
        let zone = unsafe { SegmentHeader::zone(seg) };
        for_each_block(zone.first, zone.end, |i, k| {
            // SAFETY: the block lies in the new segment's zone and is on no list.
            let _ = unsafe { self.free.free(&zone, i, k) };
        });
        let hp = zone.first;
        self.counts.segments += 1;
        self.counts.segment_pages += 1 << self.seg_order;
        self.note_peak();
        self.counts.header_pages += hp;
        true
    }

    /// Takes an empty segment's blocks off the free lists and gives it back to the source.
    ///
    /// # Safety
    /// `seg` is a live, registered normal segment with no used pages.
    unsafe fn release_segment(&mut self, map: &SegmentMap, seg: *mut SegmentHeader) {
        // SAFETY: `seg` is live and empty (caller): its non-header pages form free blocks.
        unsafe {
            let zone = SegmentHeader::zone(seg);
            let mut i = zone.first;
            while i < zone.end {
                let n = zone.node(i).expect("inside the zone");
                debug_assert!((*n).free);
                let k = (*n).order as u32;
                self.free.remove(n);
                i += 1 << k;
            }
            map.remove(seg as usize);
            SegmentHeader::kill(seg);
            self.source
                .free_pages(NonNull::new_unchecked(seg.cast()), self.seg_order);
        }
        self.counts.segments -= 1;
        self.counts.segment_pages -= 1 << self.seg_order;
        self.counts.header_pages -= header_pages(self.seg_order, 1 << self.page_shift);
    }

    /// Gives the spare segment back (when shrinking).
    pub(crate) fn release_spare(&mut self, map: &SegmentMap) {
        self.flush_huge_cache(map);
        if let Some(seg) = self.spare.take() {
            // SAFETY: the spare is a live, registered, empty normal segment (type invariant).
            unsafe { self.release_segment(map, seg.as_ptr()) };
        }
    }
}

/// The descriptor type's size, for documentation of the header cost.
pub const PAGE_DESC_BYTES: usize = core::mem::size_of::<PageDesc>();
