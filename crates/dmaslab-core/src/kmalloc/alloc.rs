//! The kmalloc family: `kmalloc`, `kzalloc`, `kmalloc_aligned`, `kfree`, `ksize` and the
//! class rule they share (`cache_for`), and the large runs above the slab classes.

use super::*;
use crate::large::debug_run_ksize;

impl<P: PageSource> Kmalloc<P> {
    /// The cache serving kmalloc requests of `size` with `gfp`, if a slab cache serves them.
    pub fn kmalloc_cache(&self, size: usize, gfp: Gfp) -> Option<CacheId> {
        self.cache_for(size, 1, gfp).map(CacheId)
    }

    pub(crate) fn cache_for(&self, size: usize, align: usize, gfp: Gfp) -> Option<u16> {
        let dma = gfp.contains(Gfp::DMA) && self.dma_caches.iter().any(|&c| c != NO_CACHE);
        let (table, ids) = if dma {
            (&self.dma_classes, &self.dma_caches)
        } else {
            (&self.classes, &self.kmalloc_caches)
        };
        let mut i = if align <= 8 {
            table.index_for(size)?
        } else {
            table.index_for_aligned(size, align)?
        };
        if self.config.debug && table.class(i) == size {
            // Debug mode: a request that fills its slot exactly moves to the next class with the
            // same natural alignment, so that it has a red zone.
            i = table.index_for_aligned(size + 1, align.max(natural_align(size)))?;
        }
        let id = ids[i];
        (id != NO_CACHE).then_some(id)
    }

    /// Allocates `size` bytes: a slab object up to 8 KiB, whole pages above.
    #[inline]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        self.kmalloc_aligned(size, 1, gfp)
    }

    /// Allocates `size` zeroed bytes.
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        self.kmalloc_aligned(size, 1, gfp | Gfp::ZERO)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two).
    ///
    /// The rule: the smallest class that holds `size` and whose natural alignment (largest power
    /// of two dividing it) is at least `align`; if no slab class qualifies, a page run of
    /// `max(size, align)` bytes rounded up to a power-of-two number of pages, aligned to its size,
    /// while that is at most [`max_natural_align`](Self::max_natural_align); beyond, a huge
    /// segment of its own: `size` rounded up to whole pages, aligned to `max(align, page)`.
    /// Every power-of-two alignment succeeds that the page source can map; `None` means out of
    /// memory (an arena without a free run that large and that aligned).
    pub fn kmalloc_aligned(&self, size: usize, align: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        self.kmalloc_checked(size, align, gfp, 0)
            .unwrap_or_else(|e| corrupted(e))
    }

    /// [`kmalloc_aligned`](Self::kmalloc_aligned) for hosts that report misuse themselves: a
    /// corrupted free list, or in debug mode a use after free found when an object is handed out
    /// again, is returned instead of panicking. `site` is the caller's address (0: unknown),
    /// recorded in debug mode.
    pub fn kmalloc_checked(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        site: usize,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        if !align.is_power_of_two() {
            return Ok(None);
        }
        if !self.config.debug {
            return self.kmalloc_once(size, align, gfp, site);
        }
        self.quarantine_recheck()?;
        match self.kmalloc_once(size, align, gfp, site)? {
            // Out of memory: what the quarantine holds may be what is missing.
            None if self.quarantine.lock().len() > 0 => {
                self.quarantine_flush()?;
                self.kmalloc_once(size, align, gfp, site)
            }
            p => Ok(p),
        }
    }

    /// One try of [`kmalloc_checked`](Self::kmalloc_checked) (`align` a power of two).
    fn kmalloc_once(
        &self,
        size: usize,
        align: usize,
        gfp: Gfp,
        site: usize,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        let p = match self.cache_for(size, align, gfp) {
            Some(id) => {
                let handle = self.site_handle(site);
                let mut c = self.caches[id as usize].lock();
                let res = c.alloc(&self.pages, &self.map, size, handle);
                if let Ok(Some(_)) = res {
                    c.count_alloc(size, 1);
                }
                drop(c);
                let Some(p) = res.map_err(|e| self.resolve(e))? else {
                    return Ok(None);
                };
                // SAFETY: an object of cache `id`, just handed out.
                unsafe { self.mark_live(id as usize, p.as_ptr()) };
                p
            }
            None => match self.alloc_large(size, align, site) {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: the allocation is at least `size` bytes and ours.
            unsafe { p.as_ptr().write_bytes(0, size) };
        }
        Ok(Some(p))
    }

    /// A page run or a huge segment for a request of `size` bytes aligned to `align`
    /// (`large.rs`); in debug mode a huge segment with red zones and guard pages, allocated at
    /// `site` (`large/debug_run.rs`).
    pub(super) fn alloc_large(
        &self,
        size: usize,
        align: usize,
        site: usize,
    ) -> Option<NonNull<u8>> {
        if !self.config.debug {
            return self.pages.lock().alloc_large(&self.map, size, align);
        }
        let handle = self.site_handle(site);
        let align = align.max(self.classes.minalign());
        self.pages
            .lock()
            .alloc_debug_run(&self.map, size, align, handle)
    }

    /// Frees an allocation from kmalloc or any cache of this allocator. Null is ignored.
    ///
    /// Pointers this allocator never handed out, interior pointers and pointers into free memory
    /// are reported as [`FreeError::InvalidPointer`] and change nothing; freeing the object at the
    /// head of its slab's free list again is [`FreeError::DoubleFree`].
    ///
    /// # Safety
    /// If `ptr` is a live allocation of this allocator, nothing uses it afterwards.
    pub unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.free_checked(ptr, None, 0) }
    }

    /// [`kfree`](Self::kfree) with the caller's address, recorded in debug mode.
    ///
    /// # Safety
    /// As for [`kfree`](Self::kfree).
    pub unsafe fn kfree_at(&self, ptr: *mut u8, site: usize) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.free_checked(ptr, None, site) }
    }

    /// # Safety
    /// As for [`kfree`](Self::kfree).
    pub(super) unsafe fn free_checked(
        &self,
        ptr: *mut u8,
        expect: Option<u16>,
        site: usize,
    ) -> Result<(), FreeError> {
        let addr = ptr as usize;
        self.quarantine_recheck()?;
        match self.locate(addr) {
            Loc::Slab { head, cache, base } => {
                if expect.is_some_and(|e| e != cache) {
                    return Err(FreeError::WrongCache(addr));
                }
                // SAFETY: just located in a live slab of `cache` at `base`.
                if self.keeps_live_flags(cache as usize)
                    && !unsafe { self.take_live_located(cache, base, ptr) }
                {
                    // Not an object, or one that is not out: nothing changes.
                    return Err(FreeError::InvalidPointer(addr));
                }
                let handle = self.site_handle(site);
                let hold = self.quarantines(cache);
                let Some(mut c) = self.lock_slab(head, cache) else {
                    return Err(FreeError::InvalidPointer(addr));
                };
                // SAFETY: `head` is a slab of this cache (checked under its lock) holding `ptr`.
                let res = unsafe {
                    if hold {
                        c.quarantine_free(head, ptr, handle)
                    } else {
                        c.free(head, ptr, &self.pages, &self.map, handle)
                    }
                };
                if res.is_ok() {
                    c.count_free(1);
                }
                let bytes = c.size;
                drop(c);
                res.map_err(|e| self.resolve(e))?;
                if hold {
                    self.quarantine_put(Entry { addr, bytes })?;
                }
                Ok(())
            }
            Loc::Large { seg, head } => {
                if expect.is_some() {
                    return Err(FreeError::WrongCache(addr));
                }
                // SAFETY: `seg` is a registered normal segment holding `addr`; the caller gives
                // the allocation up.
                unsafe { self.pages.lock().free_large_run(&self.map, seg, head, addr) }
            }
            Loc::Huge { seg, start, .. } => {
                if addr != start || expect.is_some() {
                    return Err(FreeError::InvalidPointer(addr));
                }
                if !self.config.debug {
                    // SAFETY: found as a huge segment; the caller gives its object up.
                    return unsafe { self.pages.lock().free_huge_object(&self.map, seg, addr) };
                }
                let handle = self.site_handle(site);
                // SAFETY: as above.
                let res = unsafe {
                    self.pages
                        .lock()
                        .free_debug_run(&self.map, seg, addr, handle)
                };
                match res.map_err(|e| self.resolve(e))? {
                    Some(bytes) => self.quarantine_put(Entry { addr, bytes }),
                    None => Ok(()),
                }
            }
            Loc::Header { .. } | Loc::FreePage | Loc::Foreign => {
                Err(FreeError::InvalidPointer(addr))
            }
        }
    }

    /// The usable size of the allocation starting at `ptr`, or `None` if `ptr` is not the start
    /// of a live allocation's slot of this allocator (slab objects are not checked for being
    /// free: that costs a free-list walk; see [`owner_of`](Self::owner_of)).
    pub fn ksize(&self, ptr: *const u8) -> Option<usize> {
        self.ksize_at(ptr as usize, self.locate(ptr as usize))
    }

    pub(super) fn ksize_at(&self, addr: usize, loc: Loc) -> Option<usize> {
        match loc {
            Loc::Slab { head, cache, .. } => {
                let c = self.lock_slab(head, cache)?;
                // SAFETY: `head` heads a slab of this cache (checked under its lock).
                let base = unsafe { c.slab_base(head) };
                c.geom()
                    .is_object_start(addr.wrapping_sub(base as usize))
                    .then_some(c.size)
            }
            // SAFETY: descriptors of a registered segment stay readable; only atomics are read
            // (a large run's length is in its `cache` field, set before its kind is published).
            Loc::Large { seg, head } => unsafe {
                let d = SegmentHeader::desc_ptr(seg, head);
                let start = SegmentHeader::page_ptr(seg, head, self.page_shift) as usize;
                (is_large_object(d) && start == addr)
                    .then(|| ((*d).cache.load(Ordering::Acquire) as usize) << self.page_shift)
            },
            Loc::Huge { seg, start, end } => (addr == start).then(|| {
                // SAFETY: found as a registered huge segment.
                unsafe { debug_run_ksize(seg) }.unwrap_or(end - start)
            }),
            _ => None,
        }
    }

    /// The bytes a caller may use at `ptr`: [`ksize`](Self::ksize), except in debug mode, where
    /// a slab object's usable size is the size it was last requested with (the rest of its slot
    /// is red zone). `None` where `ksize` gives `None`.
    pub fn usable_size(&self, ptr: *const u8) -> Option<usize> {
        let full = self.ksize(ptr)?;
        if !self.config.debug {
            return Some(full);
        }
        match self.locate(ptr as usize) {
            Loc::Slab { head, cache, base } => {
                let c = self.lock_slab(head, cache)?;
                if !c.geom().is_object_start((ptr as usize).wrapping_sub(base)) {
                    return None;
                }
                // SAFETY: an object start of a slab of this cache (checked under its lock).
                Some(unsafe { c.requested(head, ptr as *mut u8) })
            }
            // A debug page run's own bytes (`ksize` gives its request's pages).
            Loc::Huge { start, end, .. } => Some(end - start),
            _ => Some(full),
        }
    }

    /// The size kmalloc would really hand out for a request of `size` bytes.
    pub fn kmalloc_size_roundup(&self, size: usize) -> usize {
        match self.classes.class_for(size) {
            Some(c) => c,
            None => size.div_ceil(self.page_size()) << self.page_shift,
        }
    }

    /// Resizes the allocation at `ptr` to `new_size` bytes, in place when it fits (and the place
    /// is naturally aligned for `new_size`, so krealloc keeps kmalloc's alignment promise). Null `ptr`
    /// allocates; `new_size == 0` frees `ptr` and returns `None`. On failure `ptr` is untouched.
    ///
    /// # Safety
    /// `ptr` is null or a live allocation of this allocator; on success the caller uses only the
    /// returned pointer afterwards.
    pub unsafe fn krealloc(&self, ptr: *mut u8, new_size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        if ptr.is_null() {
            return self.kmalloc(new_size, gfp);
        }
        if new_size == 0 {
            // SAFETY: forwarded from the caller.
            let _ = unsafe { self.kfree(ptr) };
            return None;
        }
        let old = self.usable_size(ptr)?;
        // In place when it fits without wasting half of it, and keeps the natural alignment a
        // fresh kmalloc(new_size) would have. Debug mode always moves, so the red zone of the
        // new size is painted and checked.
        let natural = natural_align(new_size).min(self.max_natural_align());
        if !self.config.debug
            && new_size <= old
            && self.kmalloc_size_roundup(new_size) * 2 > old
            && (ptr as usize).is_multiple_of(natural)
        {
            return NonNull::new(ptr);
        }
        let new = self.kmalloc(new_size, gfp)?;
        // SAFETY: both are live allocations of at least the copied length, and distinct.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, new.as_ptr(), old.min(new_size));
            let _ = self.kfree(ptr);
        }
        Some(new)
    }
}
