//! The `kmem_cache` API of [`Kmalloc`]: user caches (create, destroy, shrink) and the per-cache
//! allocation calls, the bulk ones the per-CPU layer refills and drains magazines with.

use super::*;
use crate::debug::FindingKind;
use crate::freed_tag::{self, first_word, tag_of};

impl<P: PageSource> Kmalloc<P> {
    /// Why [`slab_of_hinted`](Self::slab_of_hinted) refused `addr` for cache `cache`.
    #[cold]
    pub(super) fn bulk_free_error(&self, addr: usize, cache: u16) -> FreeError {
        match self.locate(addr) {
            Loc::Slab { cache: c, .. } if c != cache => FreeError::WrongCache(addr),
            _ => FreeError::InvalidPointer(addr),
        }
    }

    /// Locks cache `cache` if `head` still heads one of its slabs, else `None`. `kind` and
    /// `cache` of a slab head change only under its cache's lock, so the answer holds while the
    /// guard lives.
    pub(super) fn lock_slab(
        &self,
        head: *mut PageDesc,
        cache: u16,
    ) -> Option<SpinGuard<'_, KmemCache>> {
        let c = self.caches.get(cache as usize)?.lock();
        // SAFETY: descriptors of registered segments stay readable; only atomics are read.
        let still = unsafe {
            PageDesc::kind_of(head) == PageKind::Slab
                && (*head).cache.load(Ordering::Acquire) == cache
        };
        (still && c.live).then_some(c)
    }

    /// Creates a cache of `size`-byte objects aligned to `align`; `ctor` runs on every object
    /// handed out (documented difference from Linux, where it runs once per slab).
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        ctor: Option<Ctor>,
    ) -> Result<CacheId, CacheError> {
        let align = align.max(1);
        if !align.is_power_of_two() || align > self.page_size() {
            return Err(CacheError::BadAlign(align));
        }
        let red_zone = if self.config.debug {
            core::mem::size_of::<usize>()
        } else {
            0
        };
        let stride = (size + red_zone)
            .max(1)
            .next_multiple_of(align.max(core::mem::size_of::<usize>()));
        if crate::geometry::slab_order(stride, self.page_size()) > self.max_run_order
            || stride > u32::MAX as usize
        {
            return Err(CacheError::TooLarge(size));
        }
        let _g = self.create_lock.lock();
        for (i, slot) in self.caches.iter().enumerate() {
            let mut c = slot.lock();
            if !c.live {
                let env = self.cache_env(core::mem::size_of::<usize>());
                c.setup(i as u16, CacheName::new(name), size, align, ctor, &env);
                let size = c.size;
                drop(c);
                self.set_stride(i, size);
                return Ok(CacheId(i as u16));
            }
        }
        Err(CacheError::NoSlot)
    }

    /// Allocates an object from cache `id`; `None` when out of memory or `id` is dead.
    pub fn kmem_cache_alloc(&self, id: CacheId) -> Option<NonNull<u8>> {
        let mut c = self.caches.get(id.index())?.lock();
        if !c.live {
            return None;
        }
        let req = c.object_size;
        let res = c.alloc(&self.pages, &self.map, req, 0);
        if let Ok(Some(_)) = res {
            let size = c.size;
            c.count_alloc(size, 1);
        }
        // Release the lock before reporting: a report may allocate.
        drop(c);
        let p = res.unwrap_or_else(|e| corrupted(e))?;
        // SAFETY: an object of cache `id`, just handed out.
        unsafe { self.mark_live(id.index(), p.as_ptr()) };
        Some(p)
    }

    /// Fills `out` with objects from cache `id` under one lock; returns how many it got. A
    /// corrupted free list panics.
    pub fn kmem_cache_alloc_bulk(&self, id: CacheId, out: &mut [*mut u8]) -> usize {
        match self.cache_alloc_bulk(id.index(), out) {
            (n, None) => {
                for &p in &out[..n] {
                    // SAFETY: objects of cache `id`, just handed out.
                    unsafe { self.mark_live(id.index(), p) };
                }
                n
            }
            (_, Some(e)) => corrupted(e),
        }
    }

    /// [`kmem_cache_alloc_bulk`](Self::kmem_cache_alloc_bulk) of cache index `x` for the
    /// per-CPU layer: a free-list link that does not decode (memory written after it was freed)
    /// is returned with the number of objects already in `out`.
    pub(crate) fn cache_alloc_bulk(
        &self,
        x: usize,
        out: &mut [*mut u8],
    ) -> (usize, Option<FreeError>) {
        let Some(slot) = self.caches.get(x) else {
            return (0, None);
        };
        let mut c = slot.lock();
        if !c.live {
            return (0, None);
        }
        let (n, bad) = c.alloc_bulk(&self.pages, &self.map, out);
        let size = c.size;
        c.count_alloc(size, n);
        drop(c);
        (n, bad.map(|e| self.resolve(e)))
    }

    /// Frees the objects `ptrs` of cache `id`, taking the cache lock once (a magazine's worth).
    /// Stops at the first pointer that is not a live object of the cache and returns how many
    /// were freed before it, with the error; those after it are untouched.
    ///
    /// # Safety
    /// As for [`kfree`](Self::kfree), for each pointer.
    pub unsafe fn kmem_cache_free_bulk(
        &self,
        id: CacheId,
        ptrs: &[*mut u8],
    ) -> Result<(), (usize, FreeError)> {
        let x = id.index();
        let mut hint = SegmentHint::NONE;
        // SAFETY: forwarded. Only objects that are out get freed: the rest is refused below.
        let out = unsafe { self.take_live_prefix(x, ptrs) };
        // SAFETY: forwarded.
        if let Err((n, e)) = unsafe { self.cache_free_bulk(x, &ptrs[..out], &mut hint, usize::MAX) }
        {
            // SAFETY: taken above and not freed.
            unsafe { self.restore_live(x, &ptrs[n..out]) };
            return Err((n, e));
        }
        match ptrs.get(out) {
            Some(&p) => Err((out, FreeError::InvalidPointer(p as usize))),
            None => Ok(()),
        }
    }

    /// The per-CPU layer's freed-object tag secret ([`crate::freed_tag`]).
    #[inline]
    pub(crate) fn freed_tag_secret(&self) -> usize {
        freed_tag::tag_secret(self.config.secret)
    }

    /// The report of object `p` of cache index `x` whose first word `word` is its freed-object
    /// tag at a free (`DoubleFree`) or is not at a reuse (`UseAfterFree`), naming its cache.
    #[cold]
    pub(crate) fn freed_tag_error(
        &self,
        kind: FindingKind,
        x: usize,
        p: *mut u8,
        word: usize,
    ) -> FreeError {
        let name = self.caches[x & (MAX_CACHES - 1)].lock().name;
        let tag = tag_of(p, self.freed_tag_secret());
        FreeError::Found(freed_tag::finding(kind, name, p as usize, word, tag))
    }

    /// [`kmem_cache_free_bulk`](Self::kmem_cache_free_bulk) of cache index `x` with a CPU
    /// cache's segment hint (the segments its frees landed in), which spares most segment-map
    /// probes: the per-CPU layer's drain. `ptrs[tagged_from..]` come from the per-CPU layer
    /// with their freed-object tag: one whose first word is a link of its slab's free list was
    /// freed there as well (a double free), one whose word is anything else but its tag was
    /// written after free.
    ///
    /// # Safety
    /// As for [`kmem_cache_free_bulk`](Self::kmem_cache_free_bulk).
    pub(crate) unsafe fn cache_free_bulk(
        &self,
        x: usize,
        ptrs: &[*mut u8],
        hint: &mut SegmentHint,
        tagged_from: usize,
    ) -> Result<(), (usize, FreeError)> {
        let id = CacheId::from_index(x);
        let Some(slot) = self.caches.get(x) else {
            return Err((
                0,
                FreeError::WrongCache(ptrs.first().map_or(0, |p| *p as usize)),
            ));
        };
        let mut c = slot.lock();
        if !c.live {
            let first = ptrs.first().map_or(0, |p| *p as usize);
            return Err((0, FreeError::InvalidPointer(first)));
        }
        let debug = c.debug;
        let tag_secret = self.freed_tag_secret();
        let geom = c.geom();
        let mut done = 0;
        let mut res = Ok(());
        for (i, &p) in ptrs.iter().enumerate() {
            let addr = p as usize;
            let Some((head, base)) = self.slab_of_hinted(addr, id.0, hint) else {
                res = Err((done, self.bulk_free_error(addr, id.0)));
                break;
            };
            if i >= tagged_from && geom.is_object_start(addr - base as usize) {
                // SAFETY: `p` starts an object of a live slab of this cache (just checked under
                // its lock).
                let w = unsafe { first_word(p) };
                let tag = tag_of(p, tag_secret);
                if w != tag {
                    let kind = if geom.decode(p, w).is_ok() {
                        FindingKind::DoubleFree
                    } else {
                        FindingKind::UseAfterFree
                    };
                    let f = freed_tag::finding(kind, c.name, addr, w, tag);
                    res = Err((done, FreeError::Found(f)));
                    break;
                }
            }
            // SAFETY: `head` heads a slab of this live cache (checked under its lock) at
            // `base` holding `p`; the caller gives `p` up.
            let freed = unsafe {
                if debug {
                    c.free_in(head, base, p, &self.pages, &self.map, 0)
                } else {
                    c.push_free(head, base, p, &self.pages, &self.map)
                }
            };
            if let Err(e) = freed {
                res = Err((done, e));
                break;
            }
            done += 1;
        }
        if !debug {
            c.active_objs -= done;
        }
        c.count_free(done);
        drop(c);
        res
    }

    /// Frees an object of cache `id`.
    ///
    /// # Safety
    /// As for [`kfree`](Self::kfree).
    pub unsafe fn kmem_cache_free(&self, id: CacheId, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.free_checked(ptr, Some(id.0), 0) }
    }

    /// The object size of cache `id`.
    pub fn cache_object_size(&self, id: CacheId) -> Option<usize> {
        let c = self.caches.get(id.index())?.lock();
        c.live.then_some(c.size)
    }

    /// Gives the empty slabs of cache `id` back; returns the pages released.
    pub fn kmem_cache_shrink(&self, id: CacheId) -> usize {
        match self.caches.get(id.index()) {
            Some(slot) => slot.lock().shrink(&self.pages, &self.map),
            None => 0,
        }
    }

    /// Destroys user cache `id`. With live objects it is an error and the cache stays usable.
    pub fn kmem_cache_destroy(&self, id: CacheId) -> Result<(), CacheError> {
        if self.is_kmalloc_cache(id.0) {
            return Err(CacheError::NotACache);
        }
        let _g = self.create_lock.lock();
        let mut c = self
            .caches
            .get(id.index())
            .ok_or(CacheError::NotACache)?
            .lock();
        if !c.live {
            return Err(CacheError::NotACache);
        }
        if c.active_objs > 0 {
            return Err(CacheError::Busy {
                live: c.active_objs,
            });
        }
        // No live object: every slab is empty, and shrinking gives them all back, so no slab
        // descriptor names the cache any more.
        c.shrink(&self.pages, &self.map);
        // The cache's cumulative counts outlive it (nothing of it is in use any more).
        self.pages.lock().usage.add(&c.usage);
        *c = KmemCache::UNUSED;
        Ok(())
    }

    /// Shrinks every cache and gives the spare segment back; returns slab pages released.
    pub fn shrink_all(&self) -> usize {
        // Debug mode: quarantined objects go back first (a write after free found here is
        // left for `validate` to report).
        let _ = self.quarantine_flush();
        let n = self
            .caches
            .iter()
            .map(|c| c.lock().shrink(&self.pages, &self.map))
            .sum();
        self.pages.lock().release_spare(&self.map);
        n
    }

    pub(super) fn is_kmalloc_cache(&self, id: u16) -> bool {
        self.kmalloc_caches.contains(&id) || self.dma_caches.contains(&id)
    }
}
