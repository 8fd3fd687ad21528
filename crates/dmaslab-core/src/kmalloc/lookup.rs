//! Lock-free lookups for the DMA layer and the free paths: which cache, slab or run an address
//! belongs to (`owner_of`, `cache_of`), through the segment map or a CPU cache's segment hint.

use super::*;

impl<P: PageSource> Kmalloc<P> {
    pub(super) fn locate(&self, addr: usize) -> Loc {
        let seg_addr = addr & !((1usize << self.seg_shift) - 1);
        let found = self.map.lookup(seg_addr);
        let Some(seg) = found.or_else(|| huge_below(&self.map, seg_addr, self.seg_shift)) else {
            return Loc::Foreign;
        };
        // SAFETY: the map holds only live segments.
        unsafe { self.locate_in(seg.as_ptr().cast(), addr) }
    }

    /// The head descriptor and base of the slab of cache `cache` holding `addr`, for a free
    /// under that cache's lock (which keeps the answer true); `None` if `addr` is in no slab of
    /// that cache. Skips the segment-map probe when `hint` holds for `addr`.
    #[inline]
    pub(super) fn slab_of_hinted(
        &self,
        addr: usize,
        cache: u16,
        hint: &mut SegmentHint,
    ) -> Option<(*mut PageDesc, *mut u8)> {
        let seg = self.normal_segment_hinted(addr, hint)?;
        // (Header pages have descriptors of kind `Header`.)
        // SAFETY: `seg` is a live normal segment (hint or map, generation unchanged) holding
        // `addr`; descriptors are readable, and a slab page's `head`, `kind` and `cache` change
        // only under its cache's lock, which the caller holds for `cache`.
        unsafe {
            let i = SegmentHeader::page_index(seg, addr, self.page_shift);
            let d = SegmentHeader::desc_ptr(seg, i);
            if !matches!(PageDesc::kind_of(d), PageKind::Slab | PageKind::SlabTail) {
                return None;
            }
            let hi = (*d).head.load(Ordering::Acquire) as usize;
            let head = SegmentHeader::desc_ptr(seg, hi);
            if PageDesc::kind_of(head) != PageKind::Slab
                || (*head).cache.load(Ordering::Acquire) != cache
            {
                return None;
            }
            Some((head, SegmentHeader::page_ptr(seg, hi, self.page_shift)))
        }
    }

    /// [`locate`](Self::locate) in a segment known to be live.
    ///
    /// # Safety
    /// `seg` is a segment registered in the map (headers are never freed while registered), and
    /// `addr` lies in its first `1 << seg_shift` bytes (a huge segment's: its first two
    /// segments).
    #[inline]
    pub(super) unsafe fn locate_in(&self, seg: *mut SegmentHeader, addr: usize) -> Loc {
        // SAFETY: `seg` is live (caller).
        unsafe {
            if !SegmentHeader::is_live(seg) {
                return Loc::Foreign;
            }
            if (*seg).kind == SEG_HUGE {
                return match huge_object(seg) {
                    _ if addr < seg as usize + self.page_size() => Loc::Header { seg, pages: 1 },
                    Some((start, end)) if addr >= start && addr < end => {
                        Loc::Huge { seg, start, end }
                    }
                    Some((_, end)) if addr >= end => Loc::Foreign,
                    _ => Loc::FreePage,
                };
            }
            let i = SegmentHeader::page_index(seg, addr, self.page_shift);
            let hp = (*seg).header_pages as usize;
            if i < hp {
                return Loc::Header { seg, pages: hp };
            }
            let d = SegmentHeader::desc_ptr(seg, i);
            match PageDesc::kind_of(d) {
                PageKind::Slab | PageKind::SlabTail => {
                    let hi = (*d).head.load(Ordering::Acquire) as usize;
                    let head = SegmentHeader::desc_ptr(seg, hi);
                    Loc::Slab {
                        head,
                        cache: (*head).cache.load(Ordering::Acquire),
                        base: SegmentHeader::page_ptr(seg, hi, self.page_shift) as usize,
                    }
                }
                PageKind::Large | PageKind::LargeTail => Loc::Large {
                    seg,
                    head: (*d).head.load(Ordering::Acquire) as usize,
                },
                PageKind::Free | PageKind::Header => Loc::FreePage,
            }
        }
    }

    /// The cache holding the object at `ptr`, if it is in a slab (no lock, no validation beyond
    /// the segment map: for routing frees to per-class magazines).
    ///
    /// Only the start of an object slot qualifies: an interior pointer, a pointer into a
    /// header, a free page or another allocator's memory gives `None`, and the caller's slow
    /// path ([`kfree`](Self::kfree)) then reports it. One segment-map probe, two descriptor
    /// loads and a remainder; no lock.
    #[inline]
    pub fn cache_of(&self, ptr: *const u8) -> Option<CacheId> {
        self.cache_of_loc(ptr, self.locate(ptr as usize))
    }

    /// [`cache_of`](Self::cache_of) with a caller-kept hint (one per thread): when `ptr` lies in
    /// the segment the hint names and no segment has been given back since the hint was taken,
    /// the segment-map probe is skipped. Same answers as `cache_of`.
    #[inline]
    pub(crate) fn cache_of_hinted(
        &self,
        ptr: *const u8,
        hint: &mut SegmentHint,
    ) -> Option<CacheId> {
        // Huge segments hold no slabs; outside normal segments nothing is an object of ours.
        let seg = self.normal_segment_hinted(ptr as usize, hint)?;
        // SAFETY: a live normal segment holding `ptr`.
        unsafe { self.slab_cache_in(seg, ptr as usize) }
    }

    /// [`ksize`](Self::ksize) with a caller-kept hint: a slab object's or a page run's size in
    /// a segment the hint holds is read without the segment-map probe. Same answers as `ksize`.
    pub(crate) fn ksize_hinted(&self, ptr: *const u8, hint: &mut SegmentHint) -> Option<usize> {
        let addr = ptr as usize;
        let Some(seg) = self.normal_segment_hinted(addr, hint) else {
            return self.ksize(ptr);
        };
        // SAFETY: a live normal segment holding `addr` (the hint's at this generation, or the
        // map's).
        unsafe {
            match self.slab_cache_in(seg, addr) {
                Some(id) => Some(self.cache_size(id.index())),
                None => self.ksize_at(addr, self.locate_in(seg, addr)),
            }
        }
    }

    /// [`cache_of_hinted`](Self::cache_of_hinted) when `hint` holds for `ptr`, else `None`
    /// without a probe: the inline part of a free fast path, whose caller retries the whole
    /// lookup on its slow path (which also reports an invalid pointer).
    #[inline(always)]
    pub(crate) fn slab_object_if_hinted(
        &self,
        ptr: *const u8,
        hint: &SegmentHint,
    ) -> Option<SlabObject> {
        let addr = ptr as usize;
        let seg_addr = addr & !((1usize << self.seg_shift) - 1);
        let seg = hint.holds(addr >> self.seg_shift, seg_addr, self.map.generation())?;
        // SAFETY: the hint's segment was a registered normal segment at this generation and
        // none has been removed since, so it still is; `addr` lies in it.
        unsafe { self.slab_object_in(seg.cast(), addr) }
    }

    /// The live normal segment holding `addr`: the hint's while `addr` lies in it and no
    /// segment has been given back since the hint was taken (the map's generation), else the
    /// map's (and the hint is updated). `None` when `addr` is in no normal segment.
    #[inline]
    pub(super) fn normal_segment_hinted(
        &self,
        addr: usize,
        hint: &mut SegmentHint,
    ) -> Option<*mut SegmentHeader> {
        let seg_addr = addr & !((1usize << self.seg_shift) - 1);
        let slot = addr >> self.seg_shift;
        let gen = self.map.generation();
        if let Some(s) = hint.holds(slot, seg_addr, gen) {
            return Some(s.cast());
        }
        let seg = self.map.lookup(seg_addr)?.as_ptr().cast::<SegmentHeader>();
        // SAFETY: just found in the map: registered, so readable.
        if unsafe { !SegmentHeader::is_live(seg) || (*seg).kind != SEG_NORMAL } {
            return None;
        }
        if hint.gen != gen {
            // A segment went back since: forget them all.
            *hint = SegmentHint::NONE;
            hint.gen = gen;
        }
        hint.segs[SegmentHint::slot(slot)] = seg.cast();
        Some(seg)
    }

    /// The cache whose slab object starts at `addr` in normal segment `h`.
    ///
    /// # Safety
    /// As for [`slab_object_in`](Self::slab_object_in).
    #[inline(always)]
    pub(super) unsafe fn slab_cache_in(
        &self,
        h: *mut SegmentHeader,
        addr: usize,
    ) -> Option<CacheId> {
        // SAFETY: as the caller promises.
        unsafe { self.slab_object_in(h, addr) }.map(|o| o.cache)
    }

    /// The slab object starting at `addr` in normal segment `h`: one descriptor (the page's
    /// own: every page of a slab names its cache and head page) and the stride test.
    ///
    /// # Safety
    /// `h` is a live, registered normal segment and `addr` lies in it.
    #[inline(always)]
    pub(super) unsafe fn slab_object_in(
        &self,
        h: *mut SegmentHeader,
        addr: usize,
    ) -> Option<SlabObject> {
        let i = SegmentHeader::page_index(h, addr, self.page_shift);
        // SAFETY: `i` is a page of the segment; every descriptor, 0 included, has a readable
        // kind (`SegmentHeader::init`), and a slab page's cache and head are set with its kind.
        unsafe {
            let d = SegmentHeader::desc_ptr(h, i);
            if !matches!(PageDesc::kind_of(d), PageKind::Slab | PageKind::SlabTail) {
                return None;
            }
            let cache = (*d).cache.load(Ordering::Relaxed);
            let hi = (*d).head.load(Ordering::Relaxed) as usize;
            let base = SegmentHeader::page_ptr(h, hi, self.page_shift) as usize;
            let index = self.object_index_of(cache, addr.wrapping_sub(base))?;
            Some(SlabObject {
                cache: CacheId(cache),
                index,
                head: SegmentHeader::desc_ptr(h, hi),
            })
        }
    }

    /// Is `off` (from its slab's base) the start of an object of cache `cache`? Lock-free.
    #[inline(always)]
    pub(super) fn object_start_of(&self, cache: u16, off: usize) -> Option<CacheId> {
        self.object_index_of(cache, off).map(|_| CacheId(cache))
    }

    /// The index in its slab of the object of cache `cache` starting at `off` from the slab's
    /// base, `None` if none starts there. Lock-free.
    #[inline(always)]
    fn object_index_of(&self, cache: u16, off: usize) -> Option<usize> {
        // A slab descriptor names a live cache, whose test is published (see `stride_shift`);
        // the mask only keeps the index in bounds without a branch.
        let i = cache as usize & (MAX_CACHES - 1);
        let d = Divisor {
            shift: self.stride_shift[i].load(Ordering::Relaxed),
            inv: self.stride_inv[i].load(Ordering::Relaxed),
            lim: self.stride_lim[i].load(Ordering::Relaxed),
        };
        d.exact_quotient(off)
    }

    #[inline]
    pub(super) fn cache_of_loc(&self, ptr: *const u8, loc: Loc) -> Option<CacheId> {
        match loc {
            Loc::Slab { cache, base, .. } => {
                self.object_start_of(cache, (ptr as usize).wrapping_sub(base))
            }
            _ => None,
        }
    }

    /// Who owns the byte at `addr`: the query the DMA layer uses to tell whether a cache line
    /// is shared. Walks the slab's free list to tell live objects from free ones.
    pub fn owner_of(&self, addr: usize) -> Owner {
        match self.locate(addr) {
            Loc::Slab { head, cache, .. } => {
                let Some(c) = self.lock_slab(head, cache) else {
                    return Owner::Unused;
                };
                // SAFETY: `head` heads a slab of this cache (checked under its lock).
                unsafe {
                    let base = c.slab_base(head) as usize;
                    let off = addr - base;
                    if off >= c.objects * c.size {
                        // Debug slabs end with their objects' records.
                        let recs = c.objects * crate::debug::RECORD_BYTES;
                        if c.debug && off >= c.records_off && off < c.records_off + recs {
                            let start = base + c.records_off;
                            return Owner::Metadata { start, size: recs };
                        }
                        return Owner::Unused;
                    }
                    let start = base + off / c.size * c.size;
                    let free = c.is_free(head, start as *mut u8);
                    let size = c.size;
                    // Release the lock before reporting: a report may allocate.
                    drop(c);
                    let live = !free.unwrap_or_else(|e| corrupted(e.into()));
                    Owner::Object {
                        start,
                        size,
                        live,
                        cache: CacheId(cache),
                    }
                }
            }
            Loc::Large { seg, head } => {
                let _pl = self.pages.lock();
                // SAFETY: stable under the page-layer lock.
                unsafe {
                    let d = SegmentHeader::desc_ptr(seg, head);
                    if PageDesc::kind_of(d) != PageKind::Large {
                        return Owner::Unused;
                    }
                    let start = SegmentHeader::page_ptr(seg, head, self.page_shift) as usize;
                    let size = run_pages(d) << self.page_shift;
                    if (*d).cache.load(Ordering::Acquire) == META_CACHE {
                        return Owner::Metadata { start, size };
                    }
                    Owner::Large { start, size }
                }
            }
            Loc::Huge { start, end, .. } => Owner::Large {
                start,
                size: end - start,
            },
            Loc::Header { seg, pages } => Owner::Metadata {
                start: seg as usize,
                size: pages << self.page_shift,
            },
            Loc::FreePage => Owner::Unused,
            Loc::Foreign => Owner::Foreign,
        }
    }
}
