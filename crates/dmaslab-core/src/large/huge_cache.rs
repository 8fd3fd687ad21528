//! The cache of freed huge segments: kept mapped and resident for the next large requests,
//! and the resident tails of the segments it hands out to smaller ones, within the bound the
//! text of `large.rs` gives (the live peak's spare room plus [`HUGE_CACHE_SLACK_BYTES`], at most
//! [`HUGE_CACHE_BYTES`] and [`HUGE_CACHE_SLOTS`] segments), with decay back to the source.

use crate::page_layer::PageLayer;
use crate::page_source::PageSource;
use crate::segment::{SegmentHeader, SEG_HUGE};
use crate::segment_map::SegmentMap;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Freed huge segments the cache keeps at most.
pub const HUGE_CACHE_SLOTS: usize = 16;
/// Bytes of freed huge segments the cache keeps at most, whatever is live (beyond, the oldest
/// go back).
pub const HUGE_CACHE_BYTES: usize = 64 << 20;
/// Slack of the cache's bound over the peak of live large bytes (see [`HugeCache`]).
pub const HUGE_CACHE_SLACK_BYTES: usize = 8 << 20;
/// A cached huge segment idle this long goes back to the page source (with a clock)...
const DECAY_MS: u64 = 1000;
/// ... or, without one, after this many large allocations and frees.
const DECAY_OPS: u64 = 1024;
/// Where the source cannot protect (so a cached segment cannot be trimmed), a cached segment
/// serves a request only if its object wastes at most 1/this of itself.
const FIT_SLACK: usize = 4;

/// Freed huge segments kept, mapped and resident, for the next large requests (malloc-large:
/// blocks of a few MiB allocated and freed over and over would otherwise map, fault in and
/// unmap each time), within the bound the text of `large.rs` gives.
///
/// # Invariants
/// `segs[..len]` are registered huge segments with `cached` set and no object, oldest first
/// (where the source protects pages, a cached segment's pages are all inaccessible);
/// `pages` is the sum of their spans, at most `HUGE_CACHE_BYTES` worth; `tail_bytes` is the sum,
/// over huge segments in use, of their resident tails (`resident - object_len`). After every
/// large allocation and free, the cache's bytes plus `tail_bytes` are within the cap of
/// `huge_cache_cap`, or the cache is empty. `ops` counts large
/// allocations and frees (the clock of a source without one).
pub(crate) struct HugeCache {
    pub(super) segs: [*mut SegmentHeader; HUGE_CACHE_SLOTS],
    pub(super) len: usize,
    pages: usize,
    tail_bytes: usize,
    ops: u64,
    /// The most bytes of large runs and huge segments ever in use at once.
    live_peak: usize,
}

impl HugeCache {
    pub(crate) const EMPTY: HugeCache = HugeCache {
        segs: [core::ptr::null_mut(); HUGE_CACHE_SLOTS],
        len: 0,
        pages: 0,
        tail_bytes: 0,
        ops: 0,
        live_peak: 0,
    };

    pub(super) fn remove(&mut self, at: usize) -> *mut SegmentHeader {
        let seg = self.segs[at];
        self.segs.copy_within(at + 1..self.len, at);
        self.len -= 1;
        seg
    }
}

impl<P: PageSource> PageLayer<P> {
    /// The bytes the huge-segment cache may hold now: what keeps live large bytes plus the
    /// cache within the peak of live large bytes so far (plus [`HUGE_CACHE_SLACK_BYTES`]), at
    /// most [`HUGE_CACHE_BYTES`]. So the cache never raises the peak of memory held by much:
    /// it fills while the program holds less than it once did and shrinks as it grows again.
    fn huge_cache_cap(&self) -> usize {
        self.cap_with_live(self.usage.in_use)
    }

    /// [`huge_cache_cap`](Self::huge_cache_cap) were `live` bytes in use.
    pub(super) fn cap_with_live(&self, live: usize) -> usize {
        let spare = self.huge_cache.live_peak.saturating_sub(live);
        (spare + HUGE_CACHE_SLACK_BYTES).min(HUGE_CACHE_BYTES)
    }

    /// Bytes the cache holds beyond the objects in use: its segments' spans and the resident
    /// tails of the segments it handed out.
    pub(super) fn cache_held(&self) -> usize {
        (self.huge_cache.pages << self.page_shift) + self.huge_cache.tail_bytes
    }

    /// May a cached segment handing out `len` bytes keep `tail` resident bytes past them? Only
    /// if the cache's bound still holds once the object counts as live.
    fn keeps_tail(&self, len: usize, tail: usize) -> bool {
        self.cache_held() + tail <= self.cap_with_live(self.usage.in_use + len)
    }

    /// Records a new peak of live large bytes, and gives back cached segments beyond the cap.
    pub(crate) fn note_live_peak(&mut self, map: &SegmentMap) {
        let c = &mut self.huge_cache;
        c.live_peak = c.live_peak.max(self.usage.in_use);
        self.trim_huge_cache(map);
    }

    /// Gives back the oldest cached segments while the cache and the kept tails are over the
    /// cap.
    fn trim_huge_cache(&mut self, map: &SegmentMap) {
        while self.huge_cache.len > 0 && self.cache_held() > self.huge_cache_cap() {
            let old = self.huge_cache.remove(0);
            // SAFETY: just taken off the cache.
            unsafe { self.uncache(map, old) };
        }
    }

    /// The page layer's clock: the source's milliseconds, or else the count of large
    /// allocations and frees (advanced here).
    pub(super) fn tick(&mut self) -> u64 {
        self.huge_cache.ops += 1;
        self.source.now_ms().unwrap_or(self.huge_cache.ops)
    }

    /// Gives back cached huge segments idle for [`DECAY_MS`] (or [`DECAY_OPS`] operations).
    pub(crate) fn decay(&mut self, map: &SegmentMap) {
        if self.huge_cache.len == 0 {
            return;
        }
        let (now, idle) = match self.source.now_ms() {
            Some(ms) => (ms, DECAY_MS),
            None => (self.huge_cache.ops, DECAY_OPS),
        };
        // Oldest first: stop at the first one still fresh.
        while self.huge_cache.len > 0 {
            let seg = self.huge_cache.segs[0];
            // SAFETY: cached entries are live huge segments (cache invariant).
            let at = unsafe { (*SegmentHeader::huge_info(seg)).cached_at };
            if now.wrapping_sub(at) < idle {
                break;
            }
            self.huge_cache.remove(0);
            // SAFETY: just taken off the cache.
            unsafe { self.uncache(map, seg) };
        }
    }

    /// Gives every cached huge segment back to the source.
    pub(crate) fn flush_huge_cache(&mut self, map: &SegmentMap) {
        while self.huge_cache.len > 0 {
            let seg = self.huge_cache.remove(0);
            // SAFETY: just taken off the cache.
            unsafe { self.uncache(map, seg) };
        }
    }

    /// Releases `seg`, just taken off the cache.
    ///
    /// # Safety
    /// `seg` was a cache entry (a live huge segment without an object).
    pub(super) unsafe fn uncache(&mut self, map: &SegmentMap, seg: *mut SegmentHeader) {
        // SAFETY: as the caller promises.
        unsafe {
            let pages = (*SegmentHeader::huge_info(seg)).span_pages;
            self.huge_cache.pages -= pages;
            self.counts.cached_huge_pages -= pages;
            self.release_huge(map, seg);
        }
    }

    /// The best-fitting cached huge segment for `len` bytes aligned to `align`: the smallest
    /// whose room (its span after the object's start) holds `len`. Where the segment has a
    /// guard page (the source maps and protects pages), the object is trimmed to `len`: pages
    /// past it are discarded and made inaccessible, so they cost no memory and the guard stays
    /// right after the object; elsewhere only an object wasting at most 1/[`FIT_SLACK`] of
    /// itself is taken. Returns the object and its usable size.
    pub(super) fn take_cached(
        &mut self,
        map: &SegmentMap,
        len: usize,
        align: usize,
    ) -> Option<(NonNull<u8>, usize)> {
        let c = &self.huge_cache;
        // The best: the smallest whose resident pages hold `len` (nothing to fault in), else
        // the smallest room.
        let mut best: Option<(usize, (bool, usize), usize)> = None;
        for (at, &seg) in c.segs[..c.len].iter().enumerate() {
            // SAFETY: cached entries are live huge segments (cache invariant).
            let (start, room, had, trims) = unsafe {
                let info = &*SegmentHeader::huge_info(seg);
                let room = (info.span_pages << self.page_shift) - info.object_off;
                (
                    seg as usize + info.object_off,
                    room,
                    info.resident,
                    info.guard_pages > 0,
                )
            };
            let fits = room >= len && (trims || room - len <= room / FIT_SLACK);
            let key = (had < len, if had >= len { had } else { room });
            if fits && start % align == 0 && best.is_none_or(|(_, b, _)| key < b) {
                best = Some((at, key, room));
            }
        }
        let (at, _, room) = best?;
        let seg = self.huge_cache.remove(at);
        // SAFETY: a live huge segment just taken off the cache; its object is handed out, and
        // its pages past the object's start up to the span's end are ours.
        unsafe {
            let ip = SegmentHeader::huge_info(seg);
            let (span_pages, object_off, had, guarded) = {
                let info = &*ip;
                (
                    info.span_pages,
                    info.object_off,
                    info.resident,
                    info.guard_pages > 0,
                )
            };
            self.huge_cache.pages -= span_pages;
            self.counts.cached_huge_pages -= span_pages;
            let start = seg.cast::<u8>().add(object_off);
            let (got, resident) = if guarded {
                // Every page of a cached guarded segment is inaccessible (see
                // `free_huge_object`): open the new object's pages, resident or not.
                if !self
                    .source
                    .protect(NonNull::new_unchecked(start), len, true)
                {
                    // Cannot open the pages: this segment cannot serve the request.
                    self.release_huge(map, seg);
                    return None;
                }
                // Past the object: no access still (the guard moves with the end). Its pages
                // stay for a later larger request while the bound allows, else they go.
                let resident = if len < had && !self.keeps_tail(len, had - len) {
                    self.source
                        .discard(NonNull::new_unchecked(start.add(len)), had - len);
                    len
                } else {
                    had.max(len)
                };
                self.huge_cache.tail_bytes += resident - len;
                (len, resident)
            } else {
                (room, room)
            };
            // Plain field first, through the raw pointer; the atomics after, through it too.
            (*ip).resident = resident;
            (*ip).object_len.store(got, Ordering::Relaxed);
            (*ip).cached.store(false, Ordering::Release);
            self.tick();
            NonNull::new(start).map(|p| (p, got))
        }
    }

    /// Checks the cache's invariant; panics naming the first breach (an internal bug).
    pub(crate) fn validate_huge_cache(&self, map: &SegmentMap) {
        let c = &self.huge_cache;
        let mut pages = 0;
        for &seg in &c.segs[..c.len] {
            assert!(
                map.lookup(seg as usize).is_some(),
                "huge cache: {seg:p} is not registered"
            );
            // SAFETY: registered, so its header is readable.
            unsafe {
                assert!((*seg).kind == SEG_HUGE, "huge cache: {seg:p} is not huge");
                let info = &*SegmentHeader::huge_info(seg);
                assert!(
                    info.cached.load(Ordering::Relaxed),
                    "huge cache: {seg:p} not marked"
                );
                assert!(
                    info.resident <= (info.span_pages << self.page_shift) - info.object_off,
                    "huge cache: {seg:p} resident past its span"
                );
                pages += info.span_pages;
            }
        }
        assert_eq!(
            pages, c.pages,
            "huge cache: pages held != sum of its segments"
        );
        assert_eq!(pages, self.counts.cached_huge_pages, "huge cache: counts");
        assert!(
            pages << self.page_shift <= HUGE_CACHE_BYTES,
            "huge cache over its cap"
        );
        assert!(
            c.len == 0 || self.cache_held() <= self.huge_cache_cap(),
            "huge cache and resident tails over the bound"
        );
    }

    /// Keeps the freed huge segment `seg` (its object of `len` bytes just given up and counted
    /// out of the usage) in the cache within its bound, inaccessible where the source protects
    /// pages, or gives it back to the source.
    ///
    /// # Safety
    /// `seg` is a live registered huge segment, not cached, whose object is no longer used.
    pub(super) unsafe fn cache_or_release(
        &mut self,
        map: &SegmentMap,
        seg: *mut SegmentHeader,
        len: usize,
    ) {
        // SAFETY: as the caller promises.
        unsafe {
            let info = SegmentHeader::huge_info(seg);
            self.huge_cache.tail_bytes -= (*info).resident - len;
            let now = self.tick();
            if (*info).span_pages << self.page_shift <= self.huge_cache_cap() {
                if self.huge_cache.len == HUGE_CACHE_SLOTS {
                    let old = self.huge_cache.remove(0);
                    self.uncache(map, old);
                }
                if (*info).guard_pages > 0 {
                    // No access while cached (address space only: the pages stay resident for
                    // the next request): a read, write or zeroing after the free faults, as
                    // glibc's unmapped large chunks do. A source that cannot leaves it open.
                    let obj = NonNull::new_unchecked(seg.cast::<u8>().add((*info).object_off));
                    let _ = self.source.protect(obj, len, false);
                }
                (*info).cached.store(true, Ordering::Release);
                (*info).cached_at = now;
                let c = &mut self.huge_cache;
                c.segs[c.len] = seg;
                c.len += 1;
                c.pages += (*info).span_pages;
                self.counts.cached_huge_pages += (*info).span_pages;
                self.trim_huge_cache(map);
            } else {
                self.release_huge(map, seg);
            }
        }
    }
}
