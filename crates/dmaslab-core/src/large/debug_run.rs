//! Debug mode's page runs: every large allocation (above the slab classes, and `kmalloc(8192)`,
//! which has no larger class to move to) is a huge segment of its own, laid out as
//!
//! ```text
//! | header page | guard pages ... | red zone | object | red zone | guard page |
//!                                 ^ first object page            ^ object end rounded up
//! ```
//!
//! The object starts at its natural alignment (at least [`MIN_ALIGN`], or the alignment asked
//! for) as late as that allows, so its end is less than one alignment unit before the trailing
//! guard: a page-aligned object of whole pages ends right at the guard. The bytes between the
//! first object page and the object, and between its end and the guard, are [`RED_ZONE`],
//! checked at free. The pages between the header and the object (at least one) are a leading
//! guard, so an underflow faults too. Guards are `PROT_NONE` through [`PageSource::protect`]:
//! address space, never memory; a source that cannot protect (an arena) leaves them as slack.
//!
//! A freed object goes into the quarantine: the source discards its pages (no memory while it
//! waits) and makes them inaccessible, so any read or write after free faults at once, and it
//! is not handed out again (its span is given back only when it leaves the quarantine). A source that cannot protect poisons the object
//! instead ([`POISON_FREE`], checked when it leaves and by the quarantine's re-check).
//! Alignments beyond a segment get a plain huge segment (no red zone; [`HugeDebug::NONE`]).

use super::*;
use crate::debug::{Finding, FindingKind, POISON_FREE, RED_ZONE};
use crate::stats::CacheName;

/// The least alignment of a debug page run: `malloc`'s (`max_align_t`).
pub(crate) const MIN_ALIGN: usize = 16;

const STATE_NONE: u16 = 0;
const STATE_ALLOCATED: u16 = 0xa11c;
const STATE_QUARANTINED: u16 = 0x9a7e;
/// A free of it was refused for a finding, or it left the quarantine with changed poison: out
/// of circulation (its span is kept until the allocator goes).
const STATE_REPORTED: u16 = 0xbad0;

/// What debug mode knows about the object of a huge segment (in its [`HugeInfo`]).
///
/// # Invariants
/// `state` is [`STATE_NONE`] for a segment of normal mode (no field below means anything);
/// else `first_page` (a page multiple, at least two pages) is the offset of the object's first
/// page from the header, and `ksize` what [`debug_run_ksize`] reports (the whole pages a normal
/// mode page run of the request would have: what sized frees round to); the object's own bytes
/// are `object_len`. `protected` says the object's pages are inaccessible (a quarantined object
/// on a source that can). `first_page` and `ksize` never change while the segment is live; the
/// rest changes only under the page-layer lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HugeDebug {
    state: u16,
    alloc_site: u16,
    free_site: u16,
    protected: bool,
    first_page: usize,
    ksize: usize,
}

impl HugeDebug {
    pub(crate) const NONE: HugeDebug = HugeDebug {
        state: STATE_NONE,
        alloc_site: 0,
        free_site: 0,
        protected: false,
        first_page: 0,
        ksize: 0,
    };
}

/// Where a debug page run's parts lie, in bytes from the header.
struct Layout {
    /// The object's first page (after the header and the leading guard pages).
    first_page: usize,
    /// The object's start.
    start: usize,
    /// Pages of the span up to the end of the object's last page (the trailing guard follows).
    span_pages: usize,
}

impl<P: PageSource> PageLayer<P> {
    /// The layout of a debug page run of `len` bytes aligned to `align` (a power of two, at
    /// most a segment), or `None` on overflow.
    fn debug_layout(&self, len: usize, align: usize) -> Option<Layout> {
        let page = 1usize << self.page_shift;
        let obj_pages = len.checked_add(page - 1)? >> self.page_shift;
        let (first_page, lead) = if align >= page {
            ((2 * page).max(align), 0)
        } else {
            // As late in the first page as the alignment allows.
            (
                2 * page,
                ((obj_pages << self.page_shift) - len) & !(align - 1),
            )
        };
        Some(Layout {
            first_page,
            start: first_page + lead,
            span_pages: (first_page >> self.page_shift).checked_add(obj_pages)?,
        })
    }

    /// Debug mode's [`alloc_large`](Self::alloc_large): a huge segment of its own for `size`
    /// bytes aligned to `align`, with red zones and guard pages (this module's layout),
    /// allocated at call site handle `site`.
    pub(crate) fn alloc_debug_run(
        &mut self,
        map: &SegmentMap,
        size: usize,
        align: usize,
        site: u16,
    ) -> Option<NonNull<u8>> {
        let page = 1usize << self.page_shift;
        let seg_bytes = page << self.seg_order;
        let len = size.max(1);
        // As the sized-free rule rounds a request above the slab classes: to whole pages.
        let ksize = len.checked_next_multiple_of(page)?;
        let natural = if len <= page << self.max_run_order() {
            natural_align(len)
        } else {
            1
        };
        let align = align.max(natural).max(MIN_ALIGN);
        if align > seg_bytes {
            return self.alloc_large(map, size, align);
        }
        let l = self.debug_layout(len, align)?;
        let guard_pages = self.source.capacity().is_none() as usize;
        let taken = l.span_pages + guard_pages;
        let run = self.source.alloc_span(taken, seg_bytes, 0)?;
        // SAFETY: the page-layer lock is held (we have `&mut self`).
        if !unsafe { map.insert(&mut self.source, run) } {
            // SAFETY: just taken from the source with these arguments, unused.
            unsafe { self.source.free_span(run, taken, seg_bytes, 0) };
            return None;
        }
        let base = run.as_ptr();
        let end = l.span_pages << self.page_shift;
        // SAFETY: the leading guard (after the header, before the object's first page) and the
        // trailing one (after the span) lie in the run just taken. A source that cannot protect
        // leaves them as slack.
        unsafe {
            let lead = NonNull::new_unchecked(base.add(page));
            let _ = self.source.protect(lead, l.first_page - page, false);
            if guard_pages > 0 {
                let _ = self
                    .source
                    .protect(NonNull::new_unchecked(base.add(end)), page, false);
            }
        }
        // SAFETY: the span is ours and segment-aligned; its header page holds the header and
        // the info; the red zones lie in the object's first and last pages.
        let p = unsafe {
            let seg = SegmentHeader::init(base, SEG_HUGE, 0, page);
            SegmentHeader::huge_info(seg).write(HugeInfo {
                object_off: l.start,
                object_len: AtomicUsize::new(len),
                resident: len,
                movable: 0,
                cached: AtomicBool::new(false),
                cached_at: 0,
                span_pages: l.span_pages,
                span_align: seg_bytes,
                span_offset: 0,
                guard_pages,
                debug: HugeDebug {
                    state: STATE_ALLOCATED,
                    alloc_site: site,
                    free_site: 0,
                    protected: false,
                    first_page: l.first_page,
                    ksize,
                },
            });
            base.add(l.first_page)
                .write_bytes(RED_ZONE, l.start - l.first_page);
            base.add(l.start + len)
                .write_bytes(RED_ZONE, end - l.start - len);
            base.add(l.start)
        };
        self.counts.huge_pages += l.span_pages;
        self.note_peak();
        self.usage.alloc(size, end - l.first_page, 1);
        self.note_live_peak(map);
        self.tick();
        NonNull::new(p)
    }

    /// The checks of a debug free of the object at `addr` (its start) of huge segment `seg`:
    /// a second free, the red zones on both sides. If they pass, the object is made
    /// inaccessible (or poisoned) and marked quarantined, freed at `site`; returns its bytes,
    /// for the quarantine's budget. `Ok(None)`: a plain huge segment, freed as in normal mode.
    ///
    /// # Safety
    /// `seg` was found as a huge segment by a lookup; the caller gives the allocation up.
    pub(crate) unsafe fn free_debug_run(
        &mut self,
        map: &SegmentMap,
        seg: *mut SegmentHeader,
        addr: usize,
        site: u16,
    ) -> Result<Option<usize>, FreeError> {
        if map.lookup(seg as usize).is_none() {
            return Err(FreeError::DoubleFree(addr));
        }
        // SAFETY: a live huge segment (registered, under the lock): its header page is ours.
        let info = unsafe { &mut *SegmentHeader::huge_info(seg) };
        let base = seg as usize;
        let d = info.debug;
        match d.state {
            // SAFETY: forwarded from the caller.
            STATE_NONE => return unsafe { self.free_huge_object(map, seg, addr) }.map(|()| None),
            STATE_ALLOCATED => {}
            _ => {
                let mut f = self.run_finding(info, FindingKind::DoubleFree, addr);
                f.free_site = d.free_site as usize;
                return Err(FreeError::Found(f));
            }
        }
        let len = info.object_len.load(Ordering::Relaxed);
        let start = base + info.object_off;
        let end = base + (info.span_pages << self.page_shift);
        // SAFETY: both red zones lie in the object's pages, accessible while it is allocated.
        let bad = unsafe {
            first_not(base + d.first_page, start, RED_ZONE)
                .or_else(|| first_not(start + len, end, RED_ZONE))
        };
        if let Some(bad) = bad {
            info.debug.state = STATE_REPORTED;
            let mut f = self.run_finding(info, FindingKind::RedZone, bad);
            f.free_site = site as usize;
            return Err(FreeError::Found(f));
        }
        let bytes = end - (base + d.first_page);
        // SAFETY: the object's pages lie in the span, ours; nothing uses them any more.
        let protected = unsafe {
            let first = NonNull::new_unchecked((base + d.first_page) as *mut u8);
            // Nobody may read it any more: its memory goes back while it waits.
            self.source.discard(first, bytes);
            let done = self.source.protect(first, bytes, false);
            if !done {
                (start as *mut u8).write_bytes(POISON_FREE, len);
            }
            done
        };
        info.debug.state = STATE_QUARANTINED;
        info.debug.free_site = site;
        info.debug.protected = protected;
        self.usage.free(bytes, 1);
        self.tick();
        Ok(Some(bytes))
    }

    /// A quarantined debug page run's poison (none to check while it is inaccessible); `Ok`
    /// too when it is no longer quarantined.
    ///
    /// # Safety
    /// `seg` is a registered huge segment.
    pub(crate) unsafe fn check_debug_run(&self, seg: *mut SegmentHeader) -> Result<(), Finding> {
        // SAFETY: a registered huge segment's info is readable (caller, page-layer lock).
        let info = unsafe { &*SegmentHeader::huge_info(seg) };
        if info.debug.state != STATE_QUARANTINED || info.debug.protected {
            return Ok(());
        }
        let start = seg as usize + info.object_off;
        let len = info.object_len.load(Ordering::Relaxed);
        // SAFETY: an unprotected quarantined object is readable.
        match unsafe { first_not(start, start + len, POISON_FREE) } {
            Some(bad) => Err(self.run_finding(info, FindingKind::UseAfterFree, bad)),
            None => Ok(()),
        }
    }

    /// A debug page run leaves the quarantine: its poison is checked, then its span goes back
    /// to the source. On a finding it stays, out of circulation.
    ///
    /// # Safety
    /// `seg` is a registered huge segment whose object [`free_debug_run`](Self::free_debug_run)
    /// quarantined and which just left the quarantine.
    pub(crate) unsafe fn release_debug_run(
        &mut self,
        map: &SegmentMap,
        seg: *mut SegmentHeader,
    ) -> Result<(), Finding> {
        // SAFETY: as the caller promises.
        unsafe {
            if let Err(f) = self.check_debug_run(seg) {
                (*SegmentHeader::huge_info(seg)).debug.state = STATE_REPORTED;
                return Err(f);
            }
            self.release_huge(map, seg);
        }
        Ok(())
    }

    /// A finding about the object of debug page run `info` at `addr`.
    fn run_finding(&self, info: &HugeInfo, kind: FindingKind, addr: usize) -> Finding {
        let seg = info as *const HugeInfo as usize & !((1usize << self.page_shift) - 1);
        let object = seg + info.object_off;
        Finding {
            kind,
            addr,
            cache: CacheName::new("page run"),
            object,
            offset: addr.wrapping_sub(object),
            alloc_site: info.debug.alloc_site as usize,
            free_site: info.debug.free_site as usize,
        }
    }
}

/// What `ksize` reports for the object of huge segment `seg` if it is a debug page run: the
/// whole pages of its request (its own bytes are its usable size).
///
/// # Safety
/// `seg` is a registered huge segment.
pub(crate) unsafe fn debug_run_ksize(seg: *mut SegmentHeader) -> Option<usize> {
    // SAFETY: a registered huge segment's info is readable; `state` is set before the segment
    // is published and `ksize` never changes while it is live.
    let d = unsafe { (*SegmentHeader::huge_info(seg)).debug };
    (d.state != STATE_NONE).then_some(d.ksize)
}

/// The first byte in `from..to` that is not `fill`.
///
/// # Safety
/// The bytes are readable.
unsafe fn first_not(from: usize, to: usize, fill: u8) -> Option<usize> {
    // SAFETY: as the caller promises.
    let bytes = unsafe { core::slice::from_raw_parts(from as *const u8, to.saturating_sub(from)) };
    crate::debug::first_differing(bytes, fill).map(|i| from + i)
}
