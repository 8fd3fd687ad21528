//! kmalloc: size-class caches, large page runs and the policies, on top of `kmem_cache`.
//!
//! # Lock order
//! The locks of a [`Kmalloc`], in the order they may nest (each is held only for list
//! operations; none is held while calling out of the allocator):
//!
//! 1. `create_lock` (cache creation and destruction),
//! 2. `quarantine` (debug mode's; never taken while a cache's lock is held),
//! 3. a cache's lock (`caches[i]`; one at a time),
//! 4. `sites` (debug mode's call-site table),
//! 5. the page layer (`pages`).
//!
//! The per-CPU layer's depots (`depots[i]`) take no lock: magazines go in and out by atomic
//! swaps ([`crate::depot`]).

mod alloc;
mod caches;
mod live;
pub(crate) use live::{tail_flag, FLAGS_PER_DESC};
mod lookup;
mod quarantine;
mod stats;

use crate::debug::{Finding, SiteTable};
use crate::depot::Depot;
use crate::divisor::Divisor;
use crate::kmem_cache::{CacheEnv, Ctor, FreeError, KmemCache, META_CACHE};
use crate::large::{huge_below, huge_object, is_large_object, run_pages};
use crate::page_layer::PageLayer;
use crate::page_source::PageSource;
use crate::policy::{Config, ConfigError, Gfp, Policy, DMA_MINALIGNS};
use crate::segment::{PageDesc, PageKind, SegmentHeader, SEG_HUGE, SEG_NORMAL};
use crate::segment_map::SegmentMap;
use crate::size_class::{class_exists, natural_align, ClassSet, SizeClasses, MAX_CLASSES};
use crate::spin::{SpinGuard, SpinLock};
use crate::stats::{write_slabinfo_header, CacheName, SlabInfo, Totals, Usage};
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::ptr::{addr_of_mut, NonNull};
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use quarantine::{Entry, Quarantine};
use stats::class_label;

/// How many caches one allocator can hold: the kmalloc and dma-kmalloc caches (at most 26 with
/// Linux's classes, 53 with the fine ones, whose dma-kmalloc caches keep Linux's) and the
/// user's.
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
pub(crate) struct SegmentHint {
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

/// An object start found in a slab without a lock (`Kmalloc::slab_object_if_hinted`): its
/// cache, its index in its slab, and the descriptor of its slab's head page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlabObject {
    pub(crate) cache: CacheId,
    pub(crate) index: usize,
    pub(crate) head: *const PageDesc,
}

impl CacheId {
    /// The index of the cache in the allocator's table.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of cache index `x` (a valid index of the allocator at hand).
    pub(crate) fn from_index(x: usize) -> CacheId {
        CacheId(x as u16)
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
/// `kmalloc_caches[i]` (and `dma_caches[i]`) name the live cache serving class `i` of the
/// table's set (`classes.class(i)`, `dma_classes.class(i)`: the configured set, Linux's for
/// DMA) or are [`NO_CACHE`] when the class does not exist under the policy (or the set has
/// fewer classes).
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
    /// Per cache, its object size (the stride), published with the stride test: the per-CPU
    /// layer's `ksize` reads it without the cache's lock.
    cache_size: [AtomicUsize; MAX_CACHES],
    /// Per cache, the per-CPU layer's depot of magazines (see [`crate::cpu_cache`]).
    depots: [Depot; MAX_CACHES],
    /// Bit `x`: cache `x` keeps live flags (`live.rs`). Set once, when the kmalloc caches are.
    live_mask: u64,
    /// Per cache keeping live flags, its slab order (`live.rs`; a byte, so the allocator's
    /// own footprint in a small static heap stays as it was); set with `live_mask`.
    live_order: [u8; MAX_CACHES],
    kmalloc_caches: [u16; MAX_CLASSES],
    dma_caches: [u16; MAX_CLASSES],
    create_lock: SpinLock<()>,
    /// Debug mode's call sites (lock order: after a cache's, before the page layer's).
    sites: SpinLock<SiteTable>,
    /// Debug mode's quarantine of freed objects (`quarantine.rs`).
    quarantine: SpinLock<Quarantine>,
}

impl<P: PageSource> Kmalloc<P> {
    /// Publishes cache `i`'s division-free remainder test by its stride.
    fn set_stride(&self, i: usize, stride: usize) {
        let d = Divisor::new(stride);
        self.stride_shift[i].store(d.shift, Ordering::Relaxed);
        self.stride_inv[i].store(d.inv, Ordering::Relaxed);
        self.stride_lim[i].store(d.lim, Ordering::Relaxed);
        self.cache_size[i].store(stride, Ordering::Relaxed);
    }

    /// The object size of cache index `x`, without a lock (0 for an unused slot).
    #[inline]
    pub(crate) fn cache_size(&self, x: usize) -> usize {
        self.cache_size[x & (MAX_CACHES - 1)].load(Ordering::Relaxed)
    }

    /// The per-CPU layer's depots, by cache index.
    pub(crate) fn depots(&self) -> &[Depot; MAX_CACHES] {
        &self.depots
    }

    /// An allocator over `source` with `config`.
    ///
    /// The value is large (about 20 KB); [`init`](Self::init) builds it in place instead.
    pub fn new(source: P, config: Config) -> Result<Self, ConfigError> {
        let mut slot = MaybeUninit::uninit();
        Self::init(&mut slot, source, config)?;
        // SAFETY: `init` returned `Ok`, so it initialised the slot.
        Ok(unsafe { slot.assume_init() })
    }

    /// Builds an allocator over `source` with `config` in `slot`, field by field, so that no
    /// allocator-sized value passes through the stack (firmware stacks are a few KiB).
    ///
    /// Fails, leaving the slot uninitialised, on a bad configuration, or when `source` is a
    /// region ([`PageSource::capacity`]) that cannot hand out one segment and the segment
    /// map's first page: the error names the smallest workable region. Without
    /// [`Config::seg_order`], the segment size is chosen from the region's size
    /// ([`Config::default_seg_order`]).
    pub fn init(
        slot: &mut MaybeUninit<Self>,
        mut source: P,
        mut config: Config,
    ) -> Result<&mut Self, ConfigError> {
        if !DMA_MINALIGNS.contains(&config.dma_minalign) {
            return Err(ConfigError::DmaMinalign(config.dma_minalign));
        }
        let page_size = source.page_size();
        if !page_size.is_power_of_two() || page_size < 1024 {
            return Err(ConfigError::PageSize(page_size));
        }
        let capacity = source.capacity();
        let seg_order = config
            .seg_order
            .unwrap_or(Config::default_seg_order(capacity, page_size));
        if !(Config::MIN_SEG_ORDER..=Config::MAX_SEG_ORDER).contains(&seg_order)
            || seg_order + page_size.trailing_zeros() >= usize::BITS - 1
        {
            return Err(ConfigError::SegOrder(seg_order));
        }
        config.seg_order = Some(seg_order);
        if let Some(capacity) = capacity {
            if !holds_segment(&mut source, seg_order) {
                return Err(ConfigError::RegionTooSmall {
                    capacity,
                    segment: page_size << seg_order,
                    min_region: source.min_region(seg_order),
                    min_region_any: source.min_region(Config::MIN_SEG_ORDER),
                });
            }
        }
        let page_shift = page_size.trailing_zeros();
        let seg_shift = page_shift + seg_order;
        let pages = PageLayer::new(source, seg_order, config.discard_threshold);
        let max_run_order = pages.max_run_order();
        if max_run_order < crate::geometry::SLAB_MAX_ORDER {
            return Err(ConfigError::SegOrder(seg_order));
        }
        let set = config.classes;
        let classes = SizeClasses::new(set, config.kmalloc_minalign()).expect("minalign checked");
        // DMA buffers keep Linux's classes in every set: fewer caches, and a driver's sizes.
        let dma_set = ClassSet::Kmalloc;
        let dma_classes = SizeClasses::new(dma_set, config.dma_minalign).expect("checked above");
        let k = slot.as_mut_ptr();
        // SAFETY: `k` points to the slot, valid for writes and aligned for `Self`; each field is
        // written once through a raw place, never read before all are written.
        unsafe {
            addr_of_mut!((*k).config).write(config);
            addr_of_mut!((*k).classes).write(classes);
            addr_of_mut!((*k).dma_classes).write(dma_classes);
            addr_of_mut!((*k).page_shift).write(page_shift);
            addr_of_mut!((*k).seg_shift).write(seg_shift);
            addr_of_mut!((*k).max_run_order).write(max_run_order);
            addr_of_mut!((*k).pages).write(SpinLock::new(pages));
            addr_of_mut!((*k).map).write(SegmentMap::new(seg_shift));
            let caches = addr_of_mut!((*k).caches).cast::<SpinLock<KmemCache>>();
            for i in 0..MAX_CACHES {
                caches.add(i).write(SpinLock::new(KmemCache::UNUSED));
            }
            addr_of_mut!((*k).stride_shift).write([const { AtomicU32::new(0) }; MAX_CACHES]);
            addr_of_mut!((*k).stride_inv).write([const { AtomicUsize::new(0) }; MAX_CACHES]);
            addr_of_mut!((*k).stride_lim).write([const { AtomicUsize::new(0) }; MAX_CACHES]);
            addr_of_mut!((*k).cache_size).write([const { AtomicUsize::new(0) }; MAX_CACHES]);
            let depots = addr_of_mut!((*k).depots).cast::<Depot>();
            for i in 0..MAX_CACHES {
                depots.add(i).write(Depot::new());
            }
            addr_of_mut!((*k).live_mask).write(0);
            addr_of_mut!((*k).live_order).write([0; MAX_CACHES]);
            addr_of_mut!((*k).kmalloc_caches).write([NO_CACHE; MAX_CLASSES]);
            addr_of_mut!((*k).dma_caches).write([NO_CACHE; MAX_CLASSES]);
            addr_of_mut!((*k).create_lock).write(SpinLock::new(()));
            addr_of_mut!((*k).sites).write(SpinLock::new(SiteTable::EMPTY));
            addr_of_mut!((*k).quarantine).write(SpinLock::new(Quarantine::new(config.quarantine)));
        }
        // SAFETY: every field was written just above.
        let k = unsafe { slot.assume_init_mut() };
        // Names every field without `..`: a field added to `Kmalloc` fails to compile here
        // until it is written above.
        let Kmalloc {
            config: _,
            classes: _,
            dma_classes: _,
            page_shift: _,
            seg_shift: _,
            max_run_order: _,
            pages: _,
            map: _,
            caches: _,
            stride_shift: _,
            stride_inv: _,
            stride_lim: _,
            cache_size: _,
            depots: _,
            live_mask: _,
            live_order: _,
            kmalloc_caches: _,
            dma_caches: _,
            create_lock: _,
            sites: _,
            quarantine: _,
        } = k;
        let mut next = 0u16;
        let m = config.kmalloc_minalign();
        let with_dma = m < config.dma_minalign;
        for (i, &class) in set.classes().iter().enumerate() {
            if class_exists(class, m) {
                let mut name = CacheName::EMPTY;
                class_label(class, &mut name, "kmalloc-");
                k.setup_cache(next, name, class, natural_align(class), None);
                k.kmalloc_caches[i] = next;
                next += 1;
            }
        }
        for (i, &class) in dma_set.classes().iter().enumerate() {
            if with_dma && class_exists(class, config.dma_minalign) {
                let mut name = CacheName::EMPTY;
                class_label(class, &mut name, "dma-kmalloc-");
                k.setup_cache(next, name, class, natural_align(class), None);
                k.dma_caches[i] = next;
                next += 1;
            }
        }
        const { assert!(MAX_CACHES <= u64::BITS as usize) };
        k.live_mask = k.live_mask_of();
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

    /// Debug mode: the handle of call site `site` (0 outside debug mode or when unknown).
    /// Taken before any cache lock; the site table's run comes from the page layer on first use.
    /// A page-aligned metadata run of up to 32 pages (debug mode's site table and quarantine
    /// ring): its start and bytes, or `None` when the page layer has none.
    pub(crate) fn meta_run(&self) -> Option<(*mut u8, usize)> {
        let order = self.max_run_order.min(5);
        let (seg, i) =
            self.pages
                .lock()
                .alloc_run(&self.map, order, PageKind::Large, META_CACHE)?;
        // SAFETY: the run was just taken and lies in `seg`: its page `i` is in the segment.
        let p = unsafe { SegmentHeader::page_ptr(seg, i, self.page_shift) };
        Some((p, self.page_size() << order))
    }

    fn site_handle(&self, site: usize) -> u16 {
        if !self.config.debug || site == 0 {
            return 0;
        }
        let mut t = self.sites.lock();
        if t.is_empty() {
            if let Some((p, bytes)) = self.meta_run() {
                // SAFETY: a fresh, page-aligned metadata run of `bytes`, the allocator's for
                // its whole life (it is never freed while the table is used).
                unsafe { t.adopt(p.cast(), bytes) };
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
            self.quarantine.force_unlock();
            self.create_lock.force_unlock();
        }
    }

    /// Takes every lock of the allocator and keeps them (for a `pthread_atfork` prepare handler;
    /// undo with [`force_unlock_all`](Self::force_unlock_all) in both parent and child).
    pub fn lock_all(&self) {
        let g = self.create_lock.lock();
        core::mem::forget(g);
        core::mem::forget(self.quarantine.lock());
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

/// Can a fresh `source` hand out a segment of `seg_order` and then the segment map's first
/// page (what the first allocation takes)? Both runs go straight back.
fn holds_segment<P: PageSource>(source: &mut P, seg_order: u32) -> bool {
    let Some(seg) = source.alloc_pages(seg_order) else {
        return false;
    };
    let page = source.alloc_pages(0);
    // SAFETY: both runs were just handed out with these orders and are unused.
    unsafe {
        if let Some(p) = page {
            source.free_pages(p, 0);
        }
        source.free_pages(seg, seg_order);
    }
    page.is_some()
}

/// A free-list link that does not decode: memory was written after being freed. Continuing
/// would hand out an attacker-chosen address, so stop.
#[cold]
fn corrupted(e: FreeError) -> ! {
    panic!("dmaslab: {e}")
}
