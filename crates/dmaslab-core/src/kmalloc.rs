//! kmalloc: size-class caches, large page runs and the policies, on top of `kmem_cache`.

use crate::debug::{Finding, SiteTable};
use crate::divisor::Divisor;
use crate::kmem_cache::{CacheEnv, Ctor, FreeError, KmemCache, META_CACHE};
use crate::large::{huge_below, huge_object, is_large_object, run_pages};
use crate::page_layer::PageLayer;
use crate::page_source::PageSource;
use crate::policy::{Config, ConfigError, Gfp, Policy, DMA_MINALIGNS};
use crate::segment::{PageDesc, PageKind, SegmentHeader, SEG_HUGE, SEG_NORMAL};
use crate::segment_map::SegmentMap;
use crate::size_class::{natural_align, SizeClasses, KMALLOC_CLASSES, NR_KMALLOC_CLASSES};
use crate::spin::{SpinGuard, SpinLock};
use crate::stats::{write_slabinfo_header, CacheName, SlabInfo, Totals, Usage};
use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// How many caches one allocator can hold: the kmalloc and dma-kmalloc caches (at most 26) and
/// the user's.
pub const MAX_CACHES: usize = 64;
const _: () = assert!(MAX_CACHES.is_power_of_two());
const NO_CACHE: u16 = u16::MAX;

/// Entries of a [`SegmentHint`].
pub const HINT_SLOTS: usize = 256;

/// A per-thread memo for [`Kmalloc::cache_of_hinted`]: a direct-mapped table of normal
/// segments that frees landed in, all found live at the segment map's generation `gen`. The
/// slot is the segment number modulo [`HINT_SLOTS`]: adjacent segments, as
/// [`MmapPageSource`](crate::MmapPageSource) places them, never collide (up to 512 MiB of
/// them with 2 MiB segments).
///
/// # Invariants
/// `gen == 0` (the map's generations start at 1) or every `segs[i]` other than [`NO_SEG`] was a
/// registered normal segment at generation `gen`, in slot `i`. `NO_SEG` is no segment-aligned
/// address (not even 0, so a null pointer never matches an empty slot).
#[derive(Clone, Copy, Debug)]
pub struct SegmentHint {
    segs: [*mut u8; HINT_SLOTS],
    gen: usize,
}

/// An empty [`SegmentHint`] slot.
const NO_SEG: *mut u8 = core::ptr::without_provenance_mut(usize::MAX);

impl SegmentHint {
    /// No segment yet.
    pub const NONE: SegmentHint = SegmentHint {
        segs: [NO_SEG; HINT_SLOTS],
        gen: 0,
    };

    /// The slot of segment number `seg_no` (its address >> the segment shift).
    #[inline(always)]
    fn slot(seg_no: usize) -> usize {
        seg_no % HINT_SLOTS
    }

    /// The hint's segment for `seg_addr` (number `seg_no`) if it is that one, still registered
    /// at generation `gen` (which is never 0: an unset hint holds nothing).
    #[inline(always)]
    fn holds(&self, seg_no: usize, seg_addr: usize, gen: usize) -> Option<*mut u8> {
        let s = self.segs[Self::slot(seg_no)];
        (s as usize == seg_addr && self.gen == gen).then_some(s)
    }

    /// Has a segment been recorded?
    #[inline(always)]
    pub fn is_set(&self) -> bool {
        self.gen != 0
    }
}

/// A cache of a [`Kmalloc`]: its index in the allocator's cache table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheId(u16);

impl CacheId {
    /// The index of the cache in the allocator's table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why a cache could not be created or destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// All [`MAX_CACHES`] slots are taken.
    NoSlot,
    /// Objects this large do not fit a slab inside a segment.
    TooLarge(usize),
    /// The alignment is not a power of two, or exceeds the page size.
    BadAlign(usize),
    /// The cache still has live objects; it was left as it was.
    Busy {
        /// Objects still allocated.
        live: usize,
    },
    /// No such cache (never created, or destroyed), or a kmalloc cache (those are permanent).
    NotACache,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::NoSlot => write!(f, "no free cache slot (at most {MAX_CACHES} caches)"),
            CacheError::TooLarge(s) => write!(f, "object size {s} is too large for a slab"),
            CacheError::BadAlign(a) => {
                write!(f, "alignment {a} is not a power of two up to the page size")
            }
            CacheError::Busy { live } => write!(f, "cache still has {live} live objects"),
            CacheError::NotACache => write!(f, "no such cache"),
        }
    }
}

/// Who owns a byte of memory: what the DMA layer asks to decide whether a cache line is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A slab object slot. A free slot (`live == false`) still belongs to the allocator: its
    /// first word holds the free-list link and it may be handed out at any moment.
    Object {
        /// First byte of the object.
        start: usize,
        /// Its size (`ksize`).
        size: usize,
        /// Handed out and not freed.
        live: bool,
        /// Its cache.
        cache: CacheId,
    },
    /// A live large kmalloc run or huge allocation.
    Large {
        /// First byte.
        start: usize,
        /// Its size (`ksize`).
        size: usize,
    },
    /// Allocator metadata: a segment's header and page descriptors.
    Metadata {
        /// First byte of the metadata run.
        start: usize,
        /// Its length.
        size: usize,
    },
    /// Inside a segment but nobody's: a free page, or the unused tail of a slab.
    Unused,
    /// Not memory of this allocator.
    Foreign,
}

/// Where an address lies, before any lock is taken.
enum Loc {
    Slab {
        head: *mut PageDesc,
        cache: u16,
        base: usize,
    },
    Large {
        seg: *mut SegmentHeader,
        head: usize,
    },
    Huge {
        seg: *mut SegmentHeader,
        start: usize,
        end: usize,
    },
    Header {
        seg: *mut SegmentHeader,
        pages: usize,
    },
    FreePage,
    Foreign,
}

/// The allocator: kmalloc size classes, optional DMA caches, user caches, and large runs, over
/// one page source.
///
/// Safe to share between threads (`P: Send`): each cache has its own lock, the page layer one
/// more (taken after a cache's, never before).
///
/// # Invariants
/// `kmalloc_caches[i]` (and `dma_caches[i]`) name the live cache serving kmalloc class
/// `KMALLOC_CLASSES[i]` or are [`NO_CACHE`] when the class does not exist under the policy.
/// Every slab page's descriptor names a live cache in `caches`.
pub struct Kmalloc<P: PageSource> {
    config: Config,
    classes: SizeClasses,
    dma_classes: SizeClasses,
    page_shift: u32,
    seg_shift: u32,
    max_run_order: u32,
    pages: SpinLock<PageLayer<P>>,
    map: SegmentMap,
    caches: [SpinLock<KmemCache>; MAX_CACHES],
    /// Per cache, the trailing zeros of its stride, the inverse modulo 2^usize::BITS of the
    /// stride's odd part and `usize::MAX / stride`: `cache_of` tests `off % stride == 0`
    /// without a division (see [`Divisor`]). Written when the cache is set up, before any of
    /// its slabs exists; readable without the cache's lock.
    stride_shift: [AtomicU32; MAX_CACHES],
    stride_inv: [AtomicUsize; MAX_CACHES],
    stride_lim: [AtomicUsize; MAX_CACHES],
    kmalloc_caches: [u16; NR_KMALLOC_CLASSES],
    dma_caches: [u16; NR_KMALLOC_CLASSES],
    create_lock: SpinLock<()>,
    /// Debug mode's call sites (lock order: after a cache's, before the page layer's).
    sites: SpinLock<SiteTable>,
}

/// The kmalloc name of class `size`: `96`, `1k`, `8k`.
fn class_label(size: usize, out: &mut CacheName, prefix: &str) {
    let _ = out.write_str(prefix);
    let _ = if size >= 1024 {
        write!(out, "{}k", size / 1024)
    } else {
        write!(out, "{size}")
    };
}

impl<P: PageSource> Kmalloc<P> {
    /// Publishes cache `i`'s division-free remainder test by its stride.
    fn set_stride(&self, i: usize, stride: usize) {
        let d = Divisor::new(stride);
        self.stride_shift[i].store(d.shift, Ordering::Relaxed);
        self.stride_inv[i].store(d.inv, Ordering::Relaxed);
        self.stride_lim[i].store(d.lim, Ordering::Relaxed);
    }

    /// An allocator over `source` with `config`.
    pub fn new(source: P, config: Config) -> Result<Self, ConfigError> {
        if !DMA_MINALIGNS.contains(&config.dma_minalign) {
            return Err(ConfigError::DmaMinalign(config.dma_minalign));
        }
        let page_size = source.page_size();
        if !page_size.is_power_of_two() || page_size < 1024 {
            return Err(ConfigError::PageSize(page_size));
        }
        if !(5..=16).contains(&config.seg_order)
            || config.seg_order + page_size.trailing_zeros() >= usize::BITS - 1
        {
            return Err(ConfigError::SegOrder(config.seg_order));
        }
        let page_shift = page_size.trailing_zeros();
        let seg_shift = page_shift + config.seg_order;
        let pages = PageLayer::new(source, config.seg_order, config.discard_threshold);
        let max_run_order = pages.max_run_order();
        if max_run_order < crate::geometry::SLAB_MAX_ORDER {
            return Err(ConfigError::SegOrder(config.seg_order));
        }
        let classes = SizeClasses::new(config.kmalloc_minalign()).expect("minalign checked above");
        let dma_classes = SizeClasses::new(config.dma_minalign).expect("checked above");
        let mut k = Kmalloc {
            config,
            classes,
            dma_classes,
            page_shift,
            seg_shift,
            max_run_order,
            pages: SpinLock::new(pages),
            map: SegmentMap::new(seg_shift),
            caches: [const { SpinLock::new(KmemCache::UNUSED) }; MAX_CACHES],
            stride_shift: [const { AtomicU32::new(0) }; MAX_CACHES],
            stride_inv: [const { AtomicUsize::new(0) }; MAX_CACHES],
            stride_lim: [const { AtomicUsize::new(0) }; MAX_CACHES],
            kmalloc_caches: [NO_CACHE; NR_KMALLOC_CLASSES],
            dma_caches: [NO_CACHE; NR_KMALLOC_CLASSES],
            create_lock: SpinLock::new(()),
            sites: SpinLock::new(SiteTable::EMPTY),
        };
        let mut next = 0u16;
        let m = config.kmalloc_minalign();
        let with_dma = m < config.dma_minalign;
        for (i, &class) in KMALLOC_CLASSES.iter().enumerate() {
            if crate::size_class::class_exists(class, m) {
                let mut name = CacheName::EMPTY;
                class_label(class, &mut name, "kmalloc-");
                k.setup_cache(next, name, class, natural_align(class), None);
                k.kmalloc_caches[i] = next;
                next += 1;
            }
        }
        for (i, &class) in KMALLOC_CLASSES.iter().enumerate() {
            if with_dma && crate::size_class::class_exists(class, config.dma_minalign) {
                let mut name = CacheName::EMPTY;
                class_label(class, &mut name, "dma-kmalloc-");
                k.setup_cache(next, name, class, natural_align(class), None);
                k.dma_caches[i] = next;
                next += 1;
            }
        }
        Ok(k)
    }

    fn setup_cache(
        &mut self,
        id: u16,
        name: CacheName,
        size: usize,
        align: usize,
        ctor: Option<Ctor>,
    ) {
        let env = self.cache_env(0);
        self.caches[id as usize]
            .get_mut()
            .setup(id, name, size, align, ctor, &env);
        let stride = self.caches[id as usize].get_mut().size;
        self.set_stride(id as usize, stride);
    }

    /// What a cache of this allocator takes from it; `red_zone` bytes follow each object in
    /// debug mode.
    fn cache_env(&self, red_zone: usize) -> CacheEnv {
        CacheEnv {
            page_shift: self.page_shift,
            seg_shift: self.seg_shift,
            secret: self.config.secret,
            keep_empty: self.config.empty_slabs_kept,
            debug: self.config.debug.then_some(red_zone),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.config.policy
    }

    /// The kmalloc minimum alignment (the DMA line under A, 8 under B and C).
    pub fn kmalloc_minalign(&self) -> usize {
        self.config.kmalloc_minalign()
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    /// The largest size (and alignment) a large run is naturally aligned to: half a segment.
    /// Larger allocations get a huge segment of their own and are page-aligned only, unless
    /// [`kmalloc_aligned`](Self::kmalloc_aligned) asks for more.
    pub fn max_natural_align(&self) -> usize {
        self.page_size() << self.max_run_order
    }

    /// The cache serving kmalloc requests of `size` with `gfp`, if a slab cache serves them.
    pub fn kmalloc_cache(&self, size: usize, gfp: Gfp) -> Option<CacheId> {
        self.cache_for(size, 1, gfp).map(CacheId)
    }

    fn cache_for(&self, size: usize, align: usize, gfp: Gfp) -> Option<u16> {
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
        if self.config.debug && KMALLOC_CLASSES[i] == size {
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
                p
            }
            None => match self.alloc_large(size, align) {
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
    /// (`large.rs`).
    fn alloc_large(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.pages.lock().alloc_large(&self.map, size, align)
    }

    fn locate(&self, addr: usize) -> Loc {
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
    /// that cache. Skips the segment-map probe as [`locate_hinted`](Self::locate_hinted) does.
    #[inline]
    fn slab_of_hinted(
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

    /// Why [`slab_of_hinted`](Self::slab_of_hinted) refused `addr` for cache `cache`.
    #[cold]
    fn bulk_free_error(&self, addr: usize, cache: u16) -> FreeError {
        match self.locate(addr) {
            Loc::Slab { cache: c, .. } if c != cache => FreeError::WrongCache(addr),
            _ => FreeError::InvalidPointer(addr),
        }
    }

    /// [`locate`](Self::locate) in a segment known to be live.
    ///
    /// # Safety
    /// `seg` is a segment registered in the map (headers are never freed while registered), and
    /// `addr` lies in its first `1 << seg_shift` bytes (a huge segment's: its first two
    /// segments).
    #[inline]
    unsafe fn locate_in(&self, seg: *mut SegmentHeader, addr: usize) -> Loc {
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
    unsafe fn free_checked(
        &self,
        ptr: *mut u8,
        expect: Option<u16>,
        site: usize,
    ) -> Result<(), FreeError> {
        let addr = ptr as usize;
        match self.locate(addr) {
            Loc::Slab { head, cache, .. } => {
                if expect.is_some_and(|e| e != cache) {
                    return Err(FreeError::WrongCache(addr));
                }
                let handle = self.site_handle(site);
                let Some(mut c) = self.lock_slab(head, cache) else {
                    return Err(FreeError::InvalidPointer(addr));
                };
                // SAFETY: `head` is a slab of this cache (checked under its lock) holding `ptr`.
                let res = unsafe { c.free(head, ptr, &self.pages, &self.map, handle) };
                if res.is_ok() {
                    c.count_free(1);
                }
                drop(c);
                res.map_err(|e| self.resolve(e))
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
                // SAFETY: found as a huge segment; the caller gives its object up.
                unsafe { self.pages.lock().free_huge_object(&self.map, seg, addr) }
            }
            Loc::Header { .. } | Loc::FreePage | Loc::Foreign => {
                Err(FreeError::InvalidPointer(addr))
            }
        }
    }

    /// Locks cache `cache` if `head` still heads one of its slabs, else `None`. `kind` and
    /// `cache` of a slab head change only under its cache's lock, so the answer holds while the
    /// guard lives.
    fn lock_slab(&self, head: *mut PageDesc, cache: u16) -> Option<SpinGuard<'_, KmemCache>> {
        let c = self.caches.get(cache as usize)?.lock();
        // SAFETY: descriptors of registered segments stay readable; only atomics are read.
        let still = unsafe {
            PageDesc::kind_of(head) == PageKind::Slab
                && (*head).cache.load(Ordering::Acquire) == cache
        };
        (still && c.live).then_some(c)
    }

    /// The usable size of the allocation starting at `ptr`, or `None` if `ptr` is not the start
    /// of a live allocation's slot of this allocator (slab objects are not checked for being
    /// free: that costs a free-list walk; see [`owner_of`](Self::owner_of)).
    pub fn ksize(&self, ptr: *const u8) -> Option<usize> {
        self.ksize_at(ptr as usize, self.locate(ptr as usize))
    }

    /// [`ksize`](Self::ksize) with a caller-kept segment hint (see
    /// [`cache_of_hinted`](Self::cache_of_hinted)): no segment-map probe while the hint holds.
    pub fn ksize_hinted(&self, ptr: *const u8, hint: &mut SegmentHint) -> Option<usize> {
        let addr = ptr as usize;
        let loc = match self.normal_segment_hinted(addr, hint) {
            // SAFETY: a live normal segment holding `addr`.
            Some(seg) => unsafe { self.locate_in(seg, addr) },
            None => self.locate(addr),
        };
        self.ksize_at(addr, loc)
    }

    fn ksize_at(&self, addr: usize, loc: Loc) -> Option<usize> {
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
            Loc::Huge { start, end, .. } => (addr == start).then_some(end - start),
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
        let old = self.ksize(ptr)?;
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

    fn is_kmalloc_cache(&self, id: u16) -> bool {
        self.kmalloc_caches.contains(&id) || self.dma_caches.contains(&id)
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
        res.unwrap_or_else(|e| corrupted(e))
    }

    /// Fills `out` with objects from cache `id` under one lock; returns how many it got. A
    /// corrupted free list panics (see [`kmem_cache_alloc_bulk_checked`]).
    ///
    /// [`kmem_cache_alloc_bulk_checked`]: Self::kmem_cache_alloc_bulk_checked
    pub fn kmem_cache_alloc_bulk(&self, id: CacheId, out: &mut [*mut u8]) -> usize {
        self.kmem_cache_alloc_bulk_checked(id, out)
            .unwrap_or_else(|(_, e)| corrupted(e))
    }

    /// [`kmem_cache_alloc_bulk`](Self::kmem_cache_alloc_bulk) for hosts that report misuse
    /// themselves: a free-list link that does not decode (memory written after it was freed)
    /// is returned with the number of objects already in `out` (the caller's) instead of
    /// panicking.
    pub fn kmem_cache_alloc_bulk_checked(
        &self,
        id: CacheId,
        out: &mut [*mut u8],
    ) -> Result<usize, (usize, FreeError)> {
        let Some(slot) = self.caches.get(id.index()) else {
            return Ok(0);
        };
        let mut c = slot.lock();
        if !c.live {
            return Ok(0);
        }
        let (n, bad) = c.alloc_bulk(&self.pages, &self.map, out);
        let size = c.size;
        c.count_alloc(size, n);
        drop(c);
        match bad {
            Some(e) => Err((n, self.resolve(e))),
            None => Ok(n),
        }
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
        let mut hint = SegmentHint::NONE;
        // SAFETY: forwarded.
        unsafe { self.kmem_cache_free_bulk_hinted(id, ptrs, &mut hint) }
    }

    /// [`kmem_cache_free_bulk`](Self::kmem_cache_free_bulk) with a caller-kept segment hint (a
    /// thread's: the segments its frees landed in), which spares most segment-map probes.
    ///
    /// # Safety
    /// As for [`kmem_cache_free_bulk`](Self::kmem_cache_free_bulk).
    pub unsafe fn kmem_cache_free_bulk_hinted(
        &self,
        id: CacheId,
        ptrs: &[*mut u8],
        hint: &mut SegmentHint,
    ) -> Result<(), (usize, FreeError)> {
        let Some(slot) = self.caches.get(id.index()) else {
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
        let mut done = 0;
        let mut res = Ok(());
        for &p in ptrs {
            let addr = p as usize;
            let Some((head, base)) = self.slab_of_hinted(addr, id.0, hint) else {
                res = Err((done, self.bulk_free_error(addr, id.0)));
                break;
            };
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
    pub fn cache_of_hinted(&self, ptr: *const u8, hint: &mut SegmentHint) -> Option<CacheId> {
        // Huge segments hold no slabs; outside normal segments nothing is an object of ours.
        let seg = self.normal_segment_hinted(ptr as usize, hint)?;
        // SAFETY: a live normal segment holding `ptr`.
        unsafe { self.slab_cache_in(seg, ptr as usize) }
    }

    /// [`cache_of_hinted`](Self::cache_of_hinted) when `hint` holds for `ptr`, else `None`
    /// without a probe: the inline part of a free fast path, whose caller retries the whole
    /// lookup on its slow path (which also reports an invalid pointer).
    #[inline(always)]
    pub fn cache_of_if_hinted(&self, ptr: *const u8, hint: &SegmentHint) -> Option<CacheId> {
        let addr = ptr as usize;
        let seg_addr = addr & !((1usize << self.seg_shift) - 1);
        let seg = hint.holds(addr >> self.seg_shift, seg_addr, self.map.generation())?;
        // SAFETY: the hint's segment was a registered normal segment at this generation and
        // none has been removed since, so it still is; `addr` lies in it.
        unsafe { self.slab_cache_in(seg.cast(), addr) }
    }

    /// The live normal segment holding `addr`: the hint's while `addr` lies in it and no
    /// segment has been given back since the hint was taken (the map's generation), else the
    /// map's (and the hint is updated). `None` when `addr` is in no normal segment.
    #[inline]
    fn normal_segment_hinted(
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

    /// The cache whose slab object starts at `addr` in normal segment `h`: one descriptor (the
    /// page's own: every page of a slab names its cache and head page) and the stride test.
    ///
    /// # Safety
    /// `h` is a live, registered normal segment and `addr` lies in it.
    #[inline(always)]
    unsafe fn slab_cache_in(&self, h: *mut SegmentHeader, addr: usize) -> Option<CacheId> {
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
            self.object_start_of(cache, addr.wrapping_sub(base))
        }
    }

    /// Is `off` (from its slab's base) the start of an object of cache `cache`? Lock-free.
    #[inline(always)]
    fn object_start_of(&self, cache: u16, off: usize) -> Option<CacheId> {
        // A slab descriptor names a live cache, whose test is published (see `stride_shift`);
        // the mask only keeps the index in bounds without a branch.
        let i = cache as usize & (MAX_CACHES - 1);
        let d = Divisor {
            shift: self.stride_shift[i].load(Ordering::Relaxed),
            inv: self.stride_inv[i].load(Ordering::Relaxed),
            lim: self.stride_lim[i].load(Ordering::Relaxed),
        };
        d.divides(off).then_some(CacheId(cache))
    }

    #[inline]
    fn cache_of_loc(&self, ptr: *const u8, loc: Loc) -> Option<CacheId> {
        match loc {
            Loc::Slab { cache, base, .. } => {
                self.object_start_of(cache, (ptr as usize).wrapping_sub(base))
            }
            _ => None,
        }
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
        let n = self
            .caches
            .iter()
            .map(|c| c.lock().shrink(&self.pages, &self.map))
            .sum();
        self.pages.lock().release_spare(&self.map);
        n
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

    /// Walks every slab of every cache: free lists must decode, and in debug mode every free
    /// object must keep its poison and every allocated one its red zone. Calls `found` for each
    /// problem and returns how many there were.
    pub fn validate(&self, mut found: impl FnMut(&Finding)) -> usize {
        self.pages.lock().validate_huge_cache(&self.map);
        self.caches
            .iter()
            .map(|slot| {
                let c = slot.lock();
                if c.live {
                    // Lock order: cache, then sites.
                    c.validate(&mut |f| found(&f.resolved(&self.sites.lock())))
                } else {
                    0
                }
            })
            .sum()
    }

    /// Debug mode: the handle of call site `site` (0 outside debug mode or when unknown).
    /// Taken before any cache lock; the site table's run comes from the page layer on first use.
    fn site_handle(&self, site: usize) -> u16 {
        if !self.config.debug || site == 0 {
            return 0;
        }
        let mut t = self.sites.lock();
        if t.is_empty() {
            let order = self.max_run_order.min(5);
            let run = self
                .pages
                .lock()
                .alloc_run(&self.map, order, PageKind::Large, META_CACHE);
            if let Some((seg, i)) = run {
                // SAFETY: the run was just taken for the table and lies in `seg`.
                unsafe {
                    let p = SegmentHeader::page_ptr(seg, i, self.page_shift);
                    t.adopt(p.cast(), self.page_size() << order);
                }
            }
        }
        t.intern(site)
    }

    /// A debug finding with its site handles turned into addresses.
    fn resolve(&self, e: FreeError) -> FreeError {
        match e {
            FreeError::Found(f) => FreeError::Found(f.resolved(&self.sites.lock())),
            other => other,
        }
    }

    /// Calls `f` with the slabinfo row of every live cache, kmalloc caches first.
    pub fn for_each_cache(&self, mut f: impl FnMut(CacheId, &SlabInfo)) {
        for (i, slot) in self.caches.iter().enumerate() {
            let info = {
                let c = slot.lock();
                if !c.live {
                    continue;
                }
                c.slabinfo()
            };
            f(CacheId(i as u16), &info);
        }
    }

    /// The slabinfo row of cache `id`.
    pub fn slabinfo(&self, id: CacheId) -> Option<SlabInfo> {
        let c = self.caches.get(id.index())?.lock();
        c.live.then(|| c.slabinfo())
    }

    /// Is cache `id` one of the kmalloc (or dma-kmalloc) caches?
    pub fn is_kmalloc(&self, id: CacheId) -> bool {
        self.is_kmalloc_cache(id.0)
    }

    /// Writes `/proc/slabinfo` version 2.1 for all caches, both header lines included.
    pub fn write_slabinfo<W: Write>(&self, w: &mut W) -> fmt::Result {
        write_slabinfo_header(w)?;
        let mut res = Ok(());
        self.for_each_cache(|_, info| {
            if res.is_ok() {
                res = info.write_row(w);
            }
        });
        res
    }

    /// Totals over the allocator.
    pub fn totals(&self) -> Totals {
        // Each cache's counts, then the page layer's: one lock at a time (the lock order puts
        // a cache's before the page layer's), so the sum is not one instant's, as with any
        // counters a concurrent allocator reads.
        let mut usage = Usage::ZERO;
        for c in &self.caches {
            usage.add(&c.lock().usage);
        }
        let (pages, large) = {
            let pl = self.pages.lock();
            (pl.counts(&self.map), pl.usage)
        };
        usage.add(&large);
        Totals {
            pages,
            pages_held: pages.segment_pages + pages.huge_pages + pages.map_pages,
            bytes_requested: usage.requested as u64,
            bytes_handed_out: usage.handed_out as u64,
            bytes_in_use: usage.in_use as u64,
            live_allocations: usage.live as u64,
        }
    }

    /// Runs `f` with the page source (under the page-layer lock), e.g. to read its counters.
    pub fn with_page_source<R>(&self, f: impl FnOnce(&mut P) -> R) -> R {
        f(&mut self.pages.lock().source)
    }

    /// Marks every lock of the allocator free, for the only thread of a forked child.
    ///
    /// # Safety
    /// The caller is the only thread, and before `fork()` the parent held every lock of this
    /// allocator itself (so no structure was mid-update), e.g. via [`lock_all`](Self::lock_all).
    pub unsafe fn force_unlock_all(&self) {
        // SAFETY: forwarded from the caller.
        unsafe {
            for c in &self.caches {
                c.force_unlock();
            }
            self.pages.force_unlock();
            self.sites.force_unlock();
            self.create_lock.force_unlock();
        }
    }

    /// Takes every lock of the allocator and keeps them (for a `pthread_atfork` prepare handler;
    /// undo with [`force_unlock_all`](Self::force_unlock_all) in both parent and child).
    pub fn lock_all(&self) {
        let g = self.create_lock.lock();
        core::mem::forget(g);
        for c in &self.caches {
            core::mem::forget(c.lock());
        }
        core::mem::forget(self.sites.lock());
        core::mem::forget(self.pages.lock());
    }
}

impl<P: PageSource> Drop for Kmalloc<P> {
    fn drop(&mut self) {
        let pl = self.pages.get_mut();
        // SAFETY: `&mut self`: no other user; every registered segment came from the source.
        unsafe {
            self.map.drain(|seg| pl.drop_segment(seg));
            self.map.release(&mut pl.source);
        }
    }
}

/// A free-list link that does not decode: memory was written after being freed. Continuing
/// would hand out an attacker-chosen address, so stop.
#[cold]
fn corrupted(e: FreeError) -> ! {
    panic!("dmaslab: {e}")
}
