//! Large kmalloc allocations: page runs inside segments, and huge segments of their own for
//! what does not fit a run (larger than half a segment, or aligned beyond it).
//!
//! A request costs its size rounded up to pages. A run is carved from the buddy block of the
//! next power of two (so a 2^k request is aligned to 2^k, and any run to the largest power of
//! two dividing its size) and the block's tail beyond the request goes straight back to the
//! free lists ([`PageLayer::alloc_pages_exact`]). A request that would take a block of the
//! largest run order while owing only page alignment gets a huge segment instead: a segment
//! has one such block, so the run would cost the whole segment's address space.
//!
//! A huge segment is a span of exactly the pages it needs from [`PageSource::alloc_span`]: one
//! header page, then the object at `object_off` = the requested alignment clamped to
//! `page..=segment`. The span is aligned so that the header is segment-aligned (the segment map
//! finds it by masking a pointer) and the object is aligned as asked: for an alignment above a
//! segment the object starts one segment after the header, at the alignment, and a lookup that
//! misses its own segment tries the one below ([`huge_below`]). Any power-of-two alignment the
//! source can map succeeds; a source that cannot (an arena too small) answers `None`.
//!
//! Freed huge segments wait in a small cache ([`HugeCache`]) for the next large requests. Its
//! bound (issue 13: peak RSS of malloc-large within 1.1× the lowest peer, keeping most of the
//! time the cache wins) is relative to what the program held before: live large bytes plus
//! cached bytes stay within the **peak of live large bytes so far plus
//! [`HUGE_CACHE_SLACK_BYTES`]** (8 MiB), and never above [`HUGE_CACHE_BYTES`] (64 MiB) or
//! [`HUGE_CACHE_SLOTS`] segments; idle ones go back after a second. So the cache fills while the
//! program holds less than it once did (a buffer freed and allocated again reuses its mapping
//! and resident pages) and gives back as the program grows again, instead of adding up to
//! 64 MiB on top of the peak. A cached segment serves any request that fits its span (best
//! fit: the smallest resident room that holds the request); where the source can protect
//! pages, the pages past the new object's end are made inaccessible (its guard stays right
//! after the object) and stay resident while the bound holds with them counted as cached
//! (`tail_bytes`), for a later larger request; past the bound they are discarded
//! (`MADV_DONTNEED`). A kept tail lives as long as its object (no decay: no list of live
//! segments is kept), within the bound it was kept under. There, too, a cached segment is inaccessible as a whole (its pages
//! stay resident): a read, write or zeroing after free of a large object faults, as it does
//! where glibc unmaps a large chunk at free (issue 15). malloc-large (`dmaslab-bench-work
//! malloc-large 1`): 64.7 k → 19.9 k minor faults with kept tails and the 8 MiB slack (glibc
//! 34 k, tcmalloc 7.9 k), peak RSS 20.6 → 30.3 MB (glibc 24.2, tcmalloc 34.4). A request no
//! cached segment holds takes, in a new segment, the resident pages of the cached ones the bound
//! gives back for it ([`gather`]): 19.9 k → 13.7 k faults.

mod debug_run;
mod gather;
mod huge_cache;

use crate::kmem_cache::{FreeError, META_CACHE};
use crate::page_layer::PageLayer;
use crate::page_source::PageSource;
use crate::segment::{HugeInfo, PageDesc, PageKind, SegmentHeader, SEG_HUGE};
use crate::segment_map::SegmentMap;
use crate::size_class::natural_align;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub(crate) use debug_run::{debug_run_ksize, HugeDebug};
pub(crate) use huge_cache::HugeCache;
pub use huge_cache::{HUGE_CACHE_BYTES, HUGE_CACHE_SLACK_BYTES, HUGE_CACHE_SLOTS};

/// From this size on, where the source maps spans of any length (mmap), a large request gets a
/// huge segment of its own even if a run would do, for the guard pages around it: the one
/// after the object, and the alignment padding between the header and the object, both
/// `PROT_NONE` (address space, no memory). An over- or underflow past such an object faults.
pub(crate) const GUARDED_RUN_BYTES: usize = 256 << 10;

impl<P: PageSource> PageLayer<P> {
    /// A page run or a huge segment for `size` bytes aligned to `align` (a power of two),
    /// counted in the page layer's usage.
    pub(crate) fn alloc_large(
        &mut self,
        map: &SegmentMap,
        size: usize,
        align: usize,
    ) -> Option<NonNull<u8>> {
        let page = 1usize << self.page_shift;
        let pages = size.max(1).checked_add(page - 1)? >> self.page_shift;
        // Natural alignment (the largest power of two dividing the size) is owed up to half a
        // segment.
        let natural = if size <= page << self.max_run_order() {
            natural_align(size.max(1))
        } else {
            1
        };
        let align = align.max(natural).max(page);
        let order = pages
            .checked_next_power_of_two()?
            .max(align >> self.page_shift)
            .trailing_zeros();
        // A run of the largest order takes the one such block a segment has (its header
        // fragments the other half): when only page alignment is owed, a huge segment of the
        // exact pages costs less address space.
        let exact_huge = order == self.max_run_order() && align == page;
        let guarded = size >= GUARDED_RUN_BYTES && self.source.capacity().is_none();
        let (p, got) = if order <= self.max_run_order() && !exact_huge && !guarded {
            // A large run's `cache` field holds its length in pages: `ksize` reads it without
            // the page-layer lock (`freelist` belongs to that lock). Runs are at most half a
            // segment, and segments at most 2^16 pages, so the length fits.
            let (seg, i) =
                self.alloc_pages_exact(map, order, pages, PageKind::Large, pages as u16)?;
            // SAFETY: the run lies in `seg`.
            let p = unsafe { SegmentHeader::page_ptr(seg, i, self.page_shift) };
            (NonNull::new(p)?, pages << self.page_shift)
        } else {
            self.alloc_huge(map, pages, align)?
        };
        self.usage.alloc(size, got, 1);
        self.note_live_peak(map);
        self.tick();
        self.decay(map);
        Some(p)
    }

    /// Frees the large run whose head is page `head` of `seg`, if `addr` is its start.
    ///
    /// # Safety
    /// `seg` is a registered normal segment holding `addr`; the caller gives the allocation at
    /// `addr` up.
    pub(crate) unsafe fn free_large_run(
        &mut self,
        map: &SegmentMap,
        seg: *mut SegmentHeader,
        head: usize,
        addr: usize,
    ) -> Result<(), FreeError> {
        // SAFETY: large-run descriptors are stable under the page-layer lock (we hold it).
        unsafe {
            let d = SegmentHeader::desc_ptr(seg, head);
            if !is_large_object(d)
                || SegmentHeader::page_ptr(seg, head, self.page_shift) as usize != addr
            {
                return Err(FreeError::InvalidPointer(addr));
            }
            let size = run_pages(d) << self.page_shift;
            self.free_run(map, seg, head);
            self.usage.free(size, 1);
        }
        self.tick();
        self.decay(map);
        Ok(())
    }

    /// A huge segment for `pages` pages aligned to `align` (a power of two, at least a page);
    /// returns the object's address and its usable size.
    fn alloc_huge(
        &mut self,
        map: &SegmentMap,
        pages: usize,
        align: usize,
    ) -> Option<(NonNull<u8>, usize)> {
        let page = 1usize << self.page_shift;
        let seg_bytes = page << self.seg_order;
        let object_off = align.clamp(page, seg_bytes);
        let (span_align, span_offset) = if align > seg_bytes {
            (align, seg_bytes)
        } else {
            (seg_bytes, 0)
        };
        let span_pages = (object_off >> self.page_shift).checked_add(pages)?;
        let object_len = pages.checked_mul(page)?;
        if let Some(hit) = self.take_cached(map, object_len, align) {
            return Some(hit);
        }
        // A guard page after the object, where the source maps spans of any length (an
        // address-space page, never written, so no memory): an overflow past a huge object
        // faults. A fixed region (an arena) would round the span up, so it goes without.
        let guard_pages = self.source.capacity().is_none() as usize;
        let taken = span_pages + guard_pages;
        let run = match self.source.alloc_span(taken, span_align, span_offset) {
            Some(run) => run,
            None if self.huge_cache.len > 0 => {
                // The cache may hold what the source lacks (an arena): give it back, retry.
                self.flush_huge_cache(map);
                self.source.alloc_span(taken, span_align, span_offset)?
            }
            None => return None,
        };
        debug_assert_eq!((run.as_ptr() as usize + span_offset) % span_align, 0);
        // SAFETY: the page-layer lock is held (we have `&mut self`).
        if !unsafe { map.insert(&mut self.source, run) } {
            // SAFETY: just taken from the source with these arguments, unused.
            unsafe { self.source.free_span(run, taken, span_align, span_offset) };
            return None;
        }
        if guard_pages > 0 {
            // SAFETY: the guard page is the span's last, inside the run just taken; the padding
            // up to an aligned object lies between the header page and the object.
            unsafe {
                let guard = NonNull::new_unchecked(run.as_ptr().add(span_pages * page));
                // A source that cannot protect leaves it as unused slack.
                let _ = self.source.protect(guard, page, false);
                if object_off > page {
                    let pad = NonNull::new_unchecked(run.as_ptr().add(page));
                    let _ = self.source.protect(pad, object_off - page, false);
                }
            }
        }
        // SAFETY: the span is ours, segment-aligned and at least two pages; its header page
        // holds the header and the info.
        let p = unsafe {
            let seg = SegmentHeader::init(run.as_ptr(), SEG_HUGE, 0, page);
            SegmentHeader::huge_info(seg).write(HugeInfo {
                object_off,
                object_len: AtomicUsize::new(object_len),
                resident: object_len,
                movable: object_len,
                cached: AtomicBool::new(false),
                cached_at: 0,
                span_pages,
                span_align,
                span_offset,
                guard_pages,
                debug: HugeDebug::NONE,
            });
            run.as_ptr().add(object_off)
        };
        self.counts.huge_pages += span_pages;
        if guard_pages > 0 && self.huge_cache.len > 0 {
            // SAFETY: `p` starts the fresh object of the segment just made, not handed out.
            let seg = run.as_ptr().cast::<SegmentHeader>();
            match unsafe { self.gather_cached(map, p, object_len) } {
                // SAFETY: the segment is ours (not handed out yet).
                Some(first) if first > 0 => unsafe {
                    (*SegmentHeader::huge_info(seg)).movable = first
                },
                Some(_) => {}
                None => {
                    // SAFETY: ours and unused: the object could not be opened.
                    unsafe { self.release_huge(map, seg) };
                    return None;
                }
            }
        }
        self.note_peak();
        Some((NonNull::new(p)?, object_len))
    }

    /// Frees the object of huge segment `seg` at `addr` (its start, checked by the caller).
    ///
    /// # Safety
    /// `seg` was found as a huge segment by a lookup; the caller gives the allocation up.
    pub(crate) unsafe fn free_huge_object(
        &mut self,
        map: &SegmentMap,
        seg: *mut SegmentHeader,
        addr: usize,
    ) -> Result<(), FreeError> {
        // Re-check under the lock: a racing free may have released it.
        if map.lookup(seg as usize).is_none() {
            return Err(FreeError::DoubleFree(addr));
        }
        // SAFETY: a live huge segment (registered, under the lock) whose object the caller
        // gives up.
        unsafe {
            let info = SegmentHeader::huge_info(seg);
            if (*info).cached.load(Ordering::Relaxed) {
                return Err(FreeError::DoubleFree(addr));
            }
            let len = (*info).object_len.load(Ordering::Relaxed);
            self.usage.free(len, 1);
            self.cache_or_release(map, seg, len);
        }
        self.decay(map);
        Ok(())
    }

    /// Unregisters huge segment `seg` and gives its span back to the source.
    ///
    /// # Safety
    /// `seg` is a live registered huge segment whose object is no longer used.
    pub(super) unsafe fn release_huge(&mut self, map: &SegmentMap, seg: *mut SegmentHeader) {
        // SAFETY: live huge segment (caller).
        unsafe {
            let info = &*SegmentHeader::huge_info(seg);
            let (pages, align, offset) = (info.span_pages, info.span_align, info.span_offset);
            let taken = pages + info.guard_pages;
            map.remove(seg as usize);
            SegmentHeader::kill(seg);
            self.counts.huge_pages -= pages;
            self.source
                .free_span(NonNull::new_unchecked(seg.cast()), taken, align, offset);
        }
    }

    /// Gives the memory of registered segment `seg` back to the source, whatever its state (for
    /// dropping the allocator).
    ///
    /// # Safety
    /// `seg` is registered and nothing uses it any more; it is unregistered by the caller.
    pub(crate) unsafe fn drop_segment(&mut self, seg: NonNull<u8>) {
        let h = seg.as_ptr().cast::<SegmentHeader>();
        // SAFETY: a registered segment (caller) has a live header.
        unsafe {
            if (*h).kind == SEG_HUGE {
                let info = &*SegmentHeader::huge_info(h);
                let taken = info.span_pages + info.guard_pages;
                let (align, offset) = (info.span_align, info.span_offset);
                SegmentHeader::kill(h);
                self.source.free_span(seg, taken, align, offset);
            } else {
                SegmentHeader::kill(h);
                self.source.free_pages(seg, self.seg_order);
            }
        }
    }
}

/// The huge segment one segment below `window` (a segment boundary), for a pointer whose own
/// segment is not registered: a huge object reaches into the segment after its header's (and
/// one aligned beyond a segment starts there).
pub(crate) fn huge_below(map: &SegmentMap, window: usize, seg_shift: u32) -> Option<NonNull<u8>> {
    let seg = map.lookup(window.checked_sub(1 << seg_shift)?)?;
    let h = seg.as_ptr().cast::<SegmentHeader>();
    // SAFETY: the map holds only registered segments, whose headers stay readable.
    let huge = unsafe { SegmentHeader::is_live(h) && (*h).kind == SEG_HUGE };
    huge.then_some(seg)
}

/// The object of huge segment `seg` as `(start, end)`, or `None` while the segment holds none.
///
/// # Safety
/// `seg` is a registered huge segment.
pub(crate) unsafe fn huge_object(seg: *mut SegmentHeader) -> Option<(usize, usize)> {
    // SAFETY: a registered huge segment's info is readable (caller); atomics only change.
    unsafe {
        let info = &*SegmentHeader::huge_info(seg);
        if info.cached.load(Ordering::Acquire) {
            return None;
        }
        let start = seg as usize + info.object_off;
        Some((start, start + info.object_len.load(Ordering::Acquire)))
    }
}

/// The length in pages of the large run `d` heads.
///
/// # Safety
/// `d` heads a large run; the caller holds the page-layer lock.
pub(crate) unsafe fn run_pages(d: *const PageDesc) -> usize {
    // SAFETY: as the caller promises.
    unsafe { (*d).freelist.load(Ordering::Relaxed) as usize }
}

/// Does descriptor `d` head a large kmalloc run (not the debug call-site table)?
///
/// # Safety
/// `d` is a live descriptor; the caller holds the page-layer lock.
pub(crate) unsafe fn is_large_object(d: *const PageDesc) -> bool {
    // SAFETY: as the caller promises; atomic fields only.
    unsafe {
        PageDesc::kind_of(d) == PageKind::Large && (*d).cache.load(Ordering::Acquire) != META_CACHE
    }
}
