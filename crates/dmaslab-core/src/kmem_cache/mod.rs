//! `kmem_cache`: a cache of equal-sized objects over slabs (Linux `mm/slub.c`, minus the per-CPU
//! part, which the hosted heap adds as magazines).

mod check;
mod debug;
mod slab_list;

use crate::debug::{Finding, FindingKind, ObjectRef, RECORD_BYTES};
use crate::divisor::Divisor;
use crate::geometry::slab_order;
use crate::page_layer::PageLayer;
use crate::page_source::PageSource;
use crate::segment::{PageDesc, PageKind, SegmentHeader};
use crate::segment_map::SegmentMap;
use crate::slab::{Corrupt, SlabGeom};
use crate::spin::SpinLock;
use crate::stats::{CacheName, SlabInfo, Usage};
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;
use slab_list::{SlabList, LIST_EMPTY, LIST_FULL, LIST_PARTIAL};

/// The cache id marking a page run as debug metadata (the call-site table).
pub(crate) const META_CACHE: u16 = u16::MAX - 1;

/// A constructor run on every object the cache hands out.
pub type Ctor = fn(NonNull<u8>);

/// What a cache takes from the allocator it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheEnv {
    pub(crate) page_shift: u32,
    pub(crate) seg_shift: u32,
    pub(crate) secret: usize,
    pub(crate) keep_empty: usize,
    /// Debug mode: the red-zone bytes that follow each object inside its slot (user caches get
    /// a word; kmalloc caches none, since debug kmalloc never fills a slot exactly).
    pub(crate) debug: Option<usize>,
}

/// Why an object could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The address was never handed out by this allocator (not in any segment, inside a
    /// header, inside a free page, not at an object's start, or in a free slab).
    InvalidPointer(usize),
    /// The object is already free.
    DoubleFree(usize),
    /// The object belongs to another cache than the one named.
    WrongCache(usize),
    /// A free-list link did not decode: memory was written after it was freed.
    Corrupted(usize),
    /// Debug mode found misuse; the finding names the cache, object and call sites.
    Found(Finding),
}

impl core::fmt::Display for FreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FreeError::InvalidPointer(a) => write!(f, "invalid free of {a:#x}"),
            FreeError::DoubleFree(a) => write!(f, "double free of {a:#x}"),
            FreeError::WrongCache(a) => write!(f, "free of {a:#x} to the wrong cache"),
            FreeError::Corrupted(a) => write!(f, "corrupted free list at {a:#x}"),
            FreeError::Found(found) => write!(f, "{found}"),
        }
    }
}

impl From<Corrupt> for FreeError {
    fn from(c: Corrupt) -> Self {
        FreeError::Corrupted(c.at)
    }
}

/// A cache of objects of one size.
///
/// # Invariants
/// Every slab of the cache is on exactly one of `partial` (some objects free, some used), `full`
/// (none free) or `empty` (none used), as its head descriptor's `list` says; `active_objs` is
/// the sum of `inuse` over them. All of it is protected by the cache's lock.
pub struct KmemCache {
    pub(crate) name: CacheName,
    pub(crate) live: bool,
    pub(crate) id: u16,
    /// Size asked for at creation (the red zone starts here for user caches in debug mode).
    pub(crate) object_size: usize,
    /// Stride between objects (object size rounded up to the alignment).
    pub(crate) size: usize,
    pub(crate) order: u32,
    pub(crate) objects: usize,
    pub(crate) page_shift: u32,
    pub(crate) seg_shift: u32,
    pub(crate) secret: usize,
    /// Division-free remainder by `size`.
    pub(crate) div: Divisor,
    pub(crate) ctor: Option<Ctor>,
    pub(crate) keep_empty: usize,
    /// Debug mode: red zones, poison, records (see `debug.rs`).
    pub(crate) debug: bool,
    /// A kmalloc cache whose slabs keep live flags in their second page (`kmalloc/live.rs`).
    pub(crate) live_flags: bool,
    /// Debug mode: offset of the record array from the slab base, after the objects.
    pub(crate) records_off: usize,
    partial: SlabList,
    full: SlabList,
    empty: SlabList,
    pub(crate) active_objs: usize,
    /// Debug mode: objects of `active_objs` in the quarantine (freed, not yet back in their
    /// slabs); slabinfo does not count them as active.
    pub(crate) quarantined: usize,
    /// Bytes and allocations of this cache's objects (see [`Usage`]).
    pub(crate) usage: Usage,
}

// SAFETY: the lists point to descriptors in segments that belong to the allocator owning this
// cache; the cache is only used under its lock.
unsafe impl Send for KmemCache {}

impl KmemCache {
    /// An unused cache slot.
    pub(crate) const UNUSED: KmemCache = KmemCache {
        name: CacheName::EMPTY,
        live: false,
        id: 0,
        object_size: 0,
        size: 0,
        order: 0,
        objects: 0,
        page_shift: 12,
        seg_shift: 21,
        secret: 0,
        div: Divisor::new(8),
        ctor: None,
        keep_empty: 1,
        debug: false,
        live_flags: false,
        records_off: 0,
        partial: SlabList::EMPTY,
        full: SlabList::EMPTY,
        empty: SlabList::EMPTY,
        active_objs: 0,
        quarantined: 0,
        usage: Usage::ZERO,
    };

    /// Sets up this slot as cache `id` of `size`-byte objects aligned to `align`, in
    /// allocator `env`.
    pub(crate) fn setup(
        &mut self,
        id: u16,
        name: CacheName,
        size: usize,
        align: usize,
        ctor: Option<Ctor>,
        env: &CacheEnv,
    ) {
        let CacheEnv {
            page_shift,
            seg_shift,
            secret,
            keep_empty,
            debug,
        } = *env;
        let align = align.max(core::mem::size_of::<usize>());
        let stride = (size + debug.unwrap_or(0)).max(1).next_multiple_of(align);
        let order = slab_order(stride, 1 << page_shift);
        let slab = 1usize << (order + page_shift);
        let (mut objects, mut records_off) = (slab / stride, 0);
        if debug.is_some() {
            // Fewer objects, each with an 8-byte record at the end of the slab.
            objects = slab / (stride + RECORD_BYTES);
            while objects > 1
                && (objects * stride).next_multiple_of(RECORD_BYTES) + objects * RECORD_BYTES > slab
            {
                objects -= 1;
            }
            records_off = (objects * stride).next_multiple_of(RECORD_BYTES);
        }
        *self = KmemCache {
            name,
            live: true,
            id,
            object_size: size,
            size: stride,
            order,
            objects: objects.min(u16::MAX as usize),
            page_shift,
            seg_shift,
            secret: secret ^ (id as usize).wrapping_mul(0x9E37_79B9),
            div: Divisor::new(stride),
            ctor,
            keep_empty,
            debug: debug.is_some(),
            records_off,
            ..KmemCache::UNUSED
        };
    }

    pub(crate) fn geom(&self) -> SlabGeom {
        SlabGeom {
            size: self.size,
            objects: self.objects,
            secret: self.secret,
            div: self.div,
        }
    }

    /// Allocates one object for a request of `requested` bytes (recorded in debug mode, with
    /// the call site), taking a new slab from the page layer if needed.
    pub(crate) fn alloc<P: PageSource>(
        &mut self,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
        requested: usize,
        site: u16,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        let Some(slab) = self.slab_to_fill(pages, map) else {
            return Ok(None);
        };
        let geom = self.geom();
        // SAFETY: `slab` is a partial slab of this cache: it has a free object.
        let obj = unsafe {
            let base = self.slab_base(slab);
            let obj = geom.pop(slab, base)?;
            if !geom.has_free(slab) {
                self.partial.remove(slab);
                self.full.push(slab);
                (*slab).list = LIST_FULL;
            }
            if self.debug {
                if let Err(f) = self
                    .object_ref(base, obj)
                    .on_alloc(requested.min(self.size), site)
                {
                    // The object stays out of circulation (counted as in use): handing it out
                    // again would hide the bug.
                    self.active_objs += 1;
                    return Err(FreeError::Found(f));
                }
            }
            obj
        };
        self.active_objs += 1;
        let obj = NonNull::new(obj).expect("objects are inside slabs");
        if let Some(ctor) = self.ctor {
            ctor(obj);
        }
        Ok(Some(obj))
    }

    /// The slab to allocate from: the first partial one, else an empty one (moved to the
    /// partial list), else a new one from the page layer; `None` when out of memory.
    fn slab_to_fill<P: PageSource>(
        &mut self,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
    ) -> Option<*mut PageDesc> {
        if !self.partial.head.is_null() {
            return Some(self.partial.head);
        }
        if self.empty.head.is_null() {
            return self.new_slab(pages, map);
        }
        let d = self.empty.head;
        // SAFETY: `d` is on the empty list.
        unsafe {
            self.empty.remove(d);
            self.partial.push(d);
            (*d).list = LIST_PARTIAL;
        }
        Some(d)
    }

    /// Fills `out` with objects (a magazine refill): each slab's free list is walked in one
    /// tight loop and the slab moved between lists once, not once per object as
    /// [`alloc`](Self::alloc) would. Returns how many were taken (fewer when out of memory).
    /// Debug caches take [`alloc`](Self::alloc) per object (records and poison checks);
    /// constructors run on every object handed out. A link that does not decode is an error;
    /// the objects already in `out[..n]` are then the caller's.
    pub(crate) fn alloc_bulk<P: PageSource>(
        &mut self,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
        out: &mut [*mut u8],
    ) -> (usize, Option<FreeError>) {
        let mut n = 0;
        if self.debug {
            while n < out.len() {
                match self.alloc(pages, map, self.object_size, 0) {
                    Ok(Some(p)) => out[n] = p.as_ptr(),
                    Ok(None) => break,
                    Err(e) => return (n, Some(e)),
                }
                n += 1;
            }
            return (n, None);
        }
        let geom = self.geom();
        let mut bad = None;
        while n < out.len() {
            let Some(slab) = self.slab_to_fill(pages, map) else {
                break;
            };
            // SAFETY: `slab` is a partial slab of this cache, whose descriptor fields belong to
            // our lock; every link is decoded (checked) before it is followed.
            unsafe {
                let base = self.slab_base(slab);
                let start = n;
                let mut next = (*slab).freelist.load(Relaxed);
                while next != 0 && n < out.len() {
                    let slot = base.add(next as usize - 1);
                    match geom.decode(slot, slot.cast::<usize>().read()) {
                        Ok(v) => next = v,
                        Err(c) => {
                            bad = Some(FreeError::from(c));
                            break;
                        }
                    }
                    *out.get_unchecked_mut(n) = slot;
                    n += 1;
                }
                (*slab).freelist.store(next, Relaxed);
                if bad.is_none() {
                    // Then the fresh objects, untouched until their new owner writes them.
                    let mut fresh = (*slab).fresh as usize;
                    while fresh < geom.objects && n < out.len() {
                        *out.get_unchecked_mut(n) = base.add(fresh * geom.size);
                        fresh += 1;
                        n += 1;
                    }
                    (*slab).fresh = fresh as u16;
                }
                (*slab).inuse += (n - start) as u16;
                if !geom.has_free(slab) {
                    self.partial.remove(slab);
                    self.full.push(slab);
                    (*slab).list = LIST_FULL;
                }
            }
            if bad.is_some() {
                break;
            }
        }
        self.active_objs += n;
        if let Some(ctor) = self.ctor {
            for &p in &out[..n] {
                ctor(NonNull::new(p).expect("objects are inside slabs"));
            }
        }
        (n, bad)
    }

    /// Counts `n` objects handed out for requests of `requested` bytes each.
    pub(crate) fn count_alloc(&mut self, requested: usize, n: usize) {
        self.usage.alloc(requested, self.size, n);
    }

    /// Counts `n` objects given back.
    pub(crate) fn count_free(&mut self, n: usize) {
        self.usage.free(self.size, n);
    }

    /// The first byte of the slab headed by `d`.
    ///
    /// # Safety
    /// `d` is a slab head descriptor of a live segment.
    pub(crate) unsafe fn slab_base(&self, d: *mut PageDesc) -> *mut u8 {
        let seg = segment_of_desc(d, self.seg_shift);
        // SAFETY: `d` lies in the header of its segment (caller).
        unsafe {
            let i = (d as usize - seg as usize) / core::mem::size_of::<PageDesc>();
            SegmentHeader::page_ptr(seg, i, self.page_shift)
        }
    }

    fn new_slab<P: PageSource>(
        &mut self,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
    ) -> Option<*mut PageDesc> {
        let (seg, i) = pages
            .lock()
            .alloc_run(map, self.order, PageKind::Slab, self.id)?;
        let geom = self.geom();
        // SAFETY: the runs were just handed to this cache; descriptor, pages and table are ours.
        unsafe {
            let d = SegmentHeader::desc_ptr(seg, i);
            let base = SegmentHeader::page_ptr(seg, i, self.page_shift);
            if self.debug {
                self.init_debug_slab(d, base);
            } else {
                geom.init_lazy(d);
            }
            (*d).list = LIST_PARTIAL;
            self.partial.push(d);
            Some(d)
        }
    }

    /// Frees the object at `obj` of the slab headed by `d` (kind and cache already checked under
    /// this cache's lock).
    ///
    /// # Safety
    /// `d` is the head descriptor of a slab of this cache and `obj` lies inside that slab.
    pub(crate) unsafe fn free<P: PageSource>(
        &mut self,
        d: *mut PageDesc,
        obj: *mut u8,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
        site: u16,
    ) -> Result<(), FreeError> {
        // SAFETY: `d` heads a slab of this cache (caller).
        unsafe { self.free_in(d, self.slab_base(d), obj, pages, map, site) }
    }

    /// [`free`](Self::free) with the slab's base already known (the bulk free computes it from
    /// the page index).
    ///
    /// # Safety
    /// As for [`free`](Self::free); `base` is the first byte of the slab `d` heads.
    #[inline]
    pub(crate) unsafe fn free_in<P: PageSource>(
        &mut self,
        d: *mut PageDesc,
        base: *mut u8,
        obj: *mut u8,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
        site: u16,
    ) -> Result<(), FreeError> {
        if self.debug {
            // SAFETY: forwarded from the caller.
            unsafe { self.debug_free(base, obj, site, false) }?;
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.push_free(d, base, obj, pages, map) }?;
        self.active_objs -= 1;
        Ok(())
    }

    /// The free itself, for a cache outside debug mode or after its debug checks: the
    /// object-start, never-handed-out and free-list-head checks, the push and the slab's move
    /// between lists. Leaves `active_objs` to the caller (a bulk free counts once).
    ///
    /// # Safety
    /// As for [`free_in`](Self::free_in).
    #[inline(always)]
    pub(crate) unsafe fn push_free<P: PageSource>(
        &mut self,
        d: *mut PageDesc,
        base: *mut u8,
        obj: *mut u8,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
    ) -> Result<(), FreeError> {
        let geom = self.geom();
        // SAFETY: `d` heads a slab of this cache at `base` (caller); we hold the cache lock.
        unsafe {
            let off = obj as usize - base as usize;
            if !geom.is_object_start(off) || !geom.was_used(d, off) {
                // Not an object start, or a slot never handed out: not an allocation.
                return Err(FreeError::InvalidPointer(obj as usize));
            }
            if (*d).freelist.load(Relaxed) as usize == off + 1 || (*d).inuse == 0 {
                return Err(FreeError::DoubleFree(obj as usize));
            }
            let was_full = (*d).list == LIST_FULL;
            geom.push(d, base, off);
            if (*d).inuse == 0 {
                if was_full {
                    self.full.remove(d);
                } else {
                    self.partial.remove(d);
                }
                if self.empty.len >= self.keep_empty {
                    self.release_slab(d, pages, map);
                } else {
                    self.empty.push(d);
                    (*d).list = LIST_EMPTY;
                }
            } else if was_full {
                self.full.remove(d);
                self.partial.push(d);
                (*d).list = LIST_PARTIAL;
            }
        }
        Ok(())
    }

    /// Full check: is the object at `obj` of slab `d` free? O(objects).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    pub(crate) unsafe fn is_free(&self, d: *mut PageDesc, obj: *mut u8) -> Result<bool, Corrupt> {
        // SAFETY: as the caller promises.
        unsafe {
            let base = self.slab_base(d);
            self.geom().is_free(d, base, obj as usize - base as usize)
        }
    }

    /// # Safety
    /// `d` heads an empty slab of this cache that is on no list.
    unsafe fn release_slab<P: PageSource>(
        &mut self,
        d: *mut PageDesc,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
    ) {
        let seg = segment_of_desc(d, self.seg_shift);
        let i = (d as usize - seg as usize) / core::mem::size_of::<PageDesc>();
        // SAFETY: the slab is empty and unlisted; its pages go back to the page layer.
        unsafe { pages.lock().free_run(map, seg, i) };
    }

    /// Gives every empty slab back. Returns the pages released.
    pub(crate) fn shrink<P: PageSource>(
        &mut self,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
    ) -> usize {
        let mut n = 0;
        while !self.empty.head.is_null() {
            let d = self.empty.head;
            // SAFETY: `d` is on the empty list; removed before release.
            unsafe {
                self.empty.remove(d);
                self.release_slab(d, pages, map);
            }
            n += 1 << self.order;
        }
        n
    }

    /// This cache's slabinfo row.
    pub fn slabinfo(&self) -> SlabInfo {
        let num_slabs = self.partial.len + self.full.len + self.empty.len;
        SlabInfo {
            name: self.name,
            active_objs: self.active_objs - self.quarantined,
            num_objs: num_slabs * self.objects,
            objsize: self.size,
            objperslab: self.objects,
            pagesperslab: 1 << self.order,
            active_slabs: self.partial.len + self.full.len,
            num_slabs,
        }
    }
}

/// The segment whose header holds descriptor `d`: descriptors lie in the first pages of their
/// segment, which is aligned to `1 << seg_shift` bytes.
pub(crate) fn segment_of_desc(d: *mut PageDesc, seg_shift: u32) -> *mut SegmentHeader {
    let mask = (1usize << seg_shift) - 1;
    d.cast::<u8>().wrapping_sub(d as usize & mask).cast()
}
