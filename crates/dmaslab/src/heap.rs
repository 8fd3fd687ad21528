//! The process-wide heap: the core allocator over mmap, per-thread magazines and the depot.
//!
//! # Fast path
//! `malloc(size)` for `size <= 8192`: one table load turns the size into a cache index
//! (`KMALLOC_TABLE[(size + 7) >> 3]`), one thread-local load finds the thread's loaded magazine
//! for that cache, and if it holds an object, the count is decremented and the object returned.
//! `free(ptr)`: the core's lock-free segment-map lookup ([`Kmalloc::cache_of`]) names the cache,
//! and if the loaded magazine has room the pointer is pushed. Neither takes a lock nor touches an
//! atomic (the heap's "ready" flag is a plain acquire load).
//!
//! # Slow path (Bonwick & Adams 2001)
//! Each thread has two magazines per cache, `loaded` and `prev`. When `loaded` is empty (alloc)
//! or full (free), the thread swaps it with `prev` if that helps; otherwise it exchanges whole
//! magazines with the cache's [`depot`](crate::depot) under the depot's lock; if the depot has no
//! loaded magazine, it refills one straight from the slabs with one core lock
//! ([`Kmalloc::kmem_cache_alloc_bulk`]). Depot lists are bounded; the excess goes back to the
//! slabs, so frees from another thread (producer/consumer) never grow memory without bound.
//!
//! # Thread exit
//! The first slow path of a thread sets a pthread key whose destructor gives the thread's
//! magazines back to the depot and marks the thread dead: allocations after that (later
//! thread-local destructors) go straight to the core.
//!
//! # Hardening and debug mode
//! Always on: the core's encoded free lists and its checks on every free that reaches it
//! (invalid pointers, the object at its free list's head); on the free fast path, one compare
//! with the top of the loaded magazine catches `free(p); free(p)`. Findings print one line
//! (`dmaslab: double free of 0x...`) and abort. Debug mode (`Settings::debug`,
//! `DMASLAB_DEBUG=1`) turns on the core's red zones, poison, full double-free check and call
//! sites, and bypasses magazines (the size tables stay empty, so `malloc` takes its cold path
//! into the core), so that every operation is checked.
//!
//! # Accounting
//! Objects in magazines (thread or depot) look allocated to the core: slabinfo `active_objs`
//! counts them. Magazines themselves are 512-byte kmalloc objects.

use crate::config::{Settings, StatsTarget};
use crate::depot::{Depot, DepotLists};
use crate::fast_path;
use crate::magazine::{capacity_for, Magazine, MAG_BYTES_SELF};
use crate::sys::{self, FdWriter, FixedBuf};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::mem::MaybeUninit;
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};
use dmaslab_core::{
    CacheId, Config, FreeError, Gfp, Kmalloc, MmapPageSource, SegmentHint, Totals, MAX_CACHES,
};

/// Requests up to this size are served from slab caches through magazines.
pub const SMALL_MAX: usize = 8192;
pub(crate) const TABLE_LEN: usize = SMALL_MAX / 8 + 1;
pub(crate) const NO_CLASS: u8 = u8::MAX;

/// Alignment `malloc` guarantees for requests of 16 bytes and more (glibc's on x86-64); an
/// 8-byte request gets 8.
pub const MALLOC_ALIGN: usize = 16;

/// Free pages (16 MiB) the heap keeps inside its segments before it discards free blocks
/// (the core's default is 1 MiB, sized for small heaps). With 1 MiB the python trace replay
/// discarded 181 blocks and faulted them back in: 3.9 k more page faults (5 % of its time)
/// for 1 MB less peak RSS.
const DISCARD_THRESHOLD: usize = 4096;

const FRESH: u8 = 0;
const ACTIVE: u8 = 1;
const DEAD: u8 = 2;

/// One thread's magazines, by cache index.
///
/// # Invariants
/// Each non-null pointer is a magazine owned by this thread, of the cache with that index.
/// Only the owning thread reads or writes the structure.
pub(crate) struct ThreadCache {
    pub(crate) loaded: [*mut Magazine; MAX_CACHES],
    prev: [*mut Magazine; MAX_CACHES],
    /// The segment this thread last freed into: spares the free path the segment-map probe.
    /// Set only by the process-wide heap (see [`crate::fast_path`]).
    pub(crate) seg_hint: SegmentHint,
    /// The object this thread freed last through the fast path, of cache `recent_x`
    /// (`NO_CLASS`: none): the next `malloc` of that cache takes it back without touching a
    /// magazine (see [`crate::fast_path`]). Owned by the thread like a magazine's objects.
    pub(crate) recent: *mut u8,
    pub(crate) recent_x: u8,
    state: u8,
}

impl ThreadCache {
    /// Is `p` the object this thread freed last into magazine `m`'s cache (the recent object,
    /// or the top of `m`)? Freeing it again is a double free.
    ///
    /// # Safety
    /// `m` is a valid magazine of this thread cache.
    #[inline(always)]
    pub(crate) unsafe fn freed_last(&self, m: *const Magazine, p: *mut u8) -> bool {
        // SAFETY: forwarded from the caller.
        self.recent == p || unsafe { Magazine::top(m) } == p
    }

    const NEW: ThreadCache = ThreadCache {
        loaded: [ptr::null_mut(); MAX_CACHES],
        prev: [ptr::null_mut(); MAX_CACHES],
        seg_hint: SegmentHint::NONE,
        recent: ptr::null_mut(),
        recent_x: NO_CLASS,
        state: FRESH,
    };
}

thread_local! {
    // Const-initialised and without `Drop`: access is a plain TLS address computation, with no
    // lazy initialisation or destructor registration (thread exit goes through a pthread key).
    static TCACHE: UnsafeCell<ThreadCache> = const { UnsafeCell::new(ThreadCache::NEW) };
}

/// `TCACHE`'s offset from the thread pointer when this module's thread-locals sit in glibc's
/// static TLS block (a preloaded or linked library, or the executable): the same for every
/// thread, so the fast path adds it to `fs:0` instead of calling `__tls_get_addr` (stable Rust
/// has no initial-exec TLS model for a cdylib). 0: unknown, use `TCACHE.with`. Measured once
/// by the thread that builds the heap ([`learn_tls_offset`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
static TLS_OFFSET: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux `fs:0` holds the thread control block's own address (the TLS ABI).
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
            options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// Records `TLS_OFFSET` if `TCACHE` lies in the static TLS block: variant II puts that block
/// just below the thread pointer, so the offset is negative and small. A dynamically
/// allocated block (a `dlopen` without static TLS room) is anywhere else and is left to
/// `__tls_get_addr`.
fn learn_tls_offset() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let off = (TCACHE.with(|c| c.get()) as usize).wrapping_sub(thread_pointer()) as isize;
        if off < 0 && off > -(1 << 16) {
            TLS_OFFSET.store(off, Ordering::Relaxed);
        }
    }
}

#[inline(always)]
pub(crate) fn tcache() -> *mut ThreadCache {
    match tcache_fast() {
        Some(tc) => tc,
        None => TCACHE.with(|c| c.get()),
    }
}

/// This thread's cache when finding it takes no call: on x86-64 Linux once `TLS_OFFSET` is
/// known (`None` before, and when the library's TLS is not static); elsewhere always. The fast
/// paths ([`crate::fast_path`]) give up on `None`, so they never call `__tls_get_addr` and
/// need no stack frame.
#[inline(always)]
pub(crate) fn tcache_fast() -> Option<*mut ThreadCache> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let off = TLS_OFFSET.load(Ordering::Relaxed);
        if off == 0 {
            return None;
        }
        Some(core::ptr::with_exposed_provenance_mut(
            thread_pointer().wrapping_add_signed(off),
        ))
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        Some(TCACHE.with(|c| c.get()))
    }
}

/// The heap.
///
/// # Invariants
/// `kmalloc_table[(s + 7) >> 3]` (and `dma_table`) is the index of the cache the core uses for
/// a request of `s <= SMALL_MAX` bytes (with `Gfp::DMA` for `dma_table`), or `NO_CLASS`;
/// `ids[i]` is that cache's id, `obj_size[i]` its object size and `mag_cap[i]` its magazine
/// capacity. `depots[i]` holds only magazines of cache `i`.
pub struct Heap {
    core: Kmalloc<MmapPageSource>,
    settings: Settings,
    kmalloc_table: [u8; TABLE_LEN],
    dma_table: [u8; TABLE_LEN],
    ids: [Option<CacheId>; MAX_CACHES],
    obj_size: [u32; MAX_CACHES],
    mag_cap: [u8; MAX_CACHES],
    depots: [Depot; MAX_CACHES],
    exit_key: Option<libc::pthread_key_t>,
    /// Debug mode (the core checks every operation).
    debug: bool,
    /// Threads cache objects of this heap in magazines: only the process-wide heap outside
    /// debug mode and tracing (the thread caches are per thread, not per heap). Otherwise the
    /// size tables are empty and every call goes to the core.
    magazines: bool,
}

// SAFETY: every shared part is behind a lock (depots, core caches) or read-only after
// construction (tables); the raw pointers inside depots are owned by the depot lists.
unsafe impl Sync for Heap {}
// SAFETY: as above; nothing is tied to the constructing thread.
unsafe impl Send for Heap {}

/// Prints `dmaslab: <what> of 0x...` on stderr and aborts: the heap's answer to an invalid or
/// double free, and to a debug-mode finding (continuing would corrupt memory). Formats into a
/// stack buffer: never allocates.
#[cold]
pub fn bad_free(e: FreeError) -> ! {
    let mut b = FixedBuf::<256>::new();
    let _ = write!(b, "dmaslab: {e}");
    sys::stderr_line(b.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[cold]
fn fatal(msg: &str) -> ! {
    let mut b = FixedBuf::<160>::new();
    b.push(b"dmaslab: ");
    b.push(msg.as_bytes());
    sys::stderr_line(b.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

impl Heap {
    /// Builds a standalone heap with `settings` (does not allocate through `malloc`). Thread
    /// magazines belong to the process-wide heap ([`heap`]), so a standalone heap sends every
    /// call to its core allocator: correct, and as slow as the core's locks.
    pub fn new(settings: Settings) -> Heap {
        Heap::build(settings, false)
    }

    /// Builds a heap; `magazines`: it is the process-wide heap and may use thread magazines.
    fn build(settings: Settings, magazines: bool) -> Heap {
        let magazines = magazines && !settings.debug && !settings.trace;
        dmaslab_core::set_relax_hook(sys::yield_cpu);
        let config = Config::new(settings.policy)
            .dma_minalign(settings.dma_minalign)
            .secret(sys::random_u64() as usize | 1)
            .discard_threshold(DISCARD_THRESHOLD)
            .debug(settings.debug);
        let core = match Kmalloc::new(MmapPageSource::new(), config) {
            Ok(k) => k,
            Err(_) => fatal("cannot build the allocator (bad configuration)"),
        };
        let mut h = Heap {
            core,
            settings,
            kmalloc_table: [NO_CLASS; TABLE_LEN],
            dma_table: [NO_CLASS; TABLE_LEN],
            ids: [None; MAX_CACHES],
            obj_size: [0; MAX_CACHES],
            mag_cap: [0; MAX_CACHES],
            depots: [const { Depot::new(DepotLists::NEW) }; MAX_CACHES],
            exit_key: None,
            debug: settings.debug,
            magazines,
        };
        for i in 0..TABLE_LEN {
            let size = (i * 8).max(1);
            for (gfp, dma) in [(Gfp::KERNEL, false), (Gfp::DMA, true)] {
                if let Some(id) = h.core.kmalloc_cache(size, gfp) {
                    let x = id.index();
                    let osz = h.core.cache_object_size(id).unwrap_or(0);
                    h.ids[x] = Some(id);
                    h.obj_size[x] = osz as u32;
                    h.mag_cap[x] = capacity_for(osz) as u8;
                    if !magazines {
                        // Every request takes the cold path into the core.
                    } else if dma {
                        h.dma_table[i] = x as u8;
                    } else {
                        h.kmalloc_table[i] = x as u8;
                    }
                }
            }
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-parameter; the destructor is an `extern "C"` fn that
        // never unwinds.
        if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } == 0 {
            h.exit_key = Some(key);
        }
        h
    }

    /// The core allocator.
    pub fn core(&self) -> &Kmalloc<MmapPageSource> {
        &self.core
    }

    /// The settings the heap was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Allocates `size` bytes (at least 8-aligned; 16-aligned from 16 bytes; power-of-two sizes
    /// naturally aligned). Null when out of memory.
    #[inline]
    pub fn malloc(&self, size: usize) -> *mut u8 {
        self.malloc_at(size, 0)
    }

    /// [`malloc`](Self::malloc) with the caller's address (`site`, 0: unknown), recorded in
    /// debug mode and named in its reports.
    #[inline]
    pub fn malloc_at(&self, size: usize, site: usize) -> *mut u8 {
        if size <= SMALL_MAX {
            let x = self.kmalloc_table[(size + 7) >> 3];
            if x != NO_CLASS {
                return self.alloc_class(x as usize);
            }
        }
        self.alloc_large(size, 1, Gfp::KERNEL, site)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two; anything else gives null).
    pub fn malloc_aligned(&self, size: usize, align: usize) -> *mut u8 {
        self.aligned_in(size, align, false, 0)
    }

    /// [`malloc_aligned`](Self::malloc_aligned) with the caller's address.
    pub fn malloc_aligned_at(&self, size: usize, align: usize, site: usize) -> *mut u8 {
        self.aligned_in(size, align, false, site)
    }

    /// Is debug mode on?
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Do threads cache this heap's objects in magazines (see [`Heap::new`])?
    pub fn magazines(&self) -> bool {
        self.magazines
    }

    /// Allocates a DMA-safe buffer: it shares no cache line (`dma_minalign`) with anything
    /// else. Served by the `dma-kmalloc-*` caches under B and C, by kmalloc under A.
    pub fn dma_alloc(&self, size: usize, align: usize) -> *mut u8 {
        self.aligned_in(size, align, true, 0)
    }

    fn aligned_in(&self, size: usize, align: usize, dma: bool, site: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return ptr::null_mut();
        }
        let table = if dma {
            &self.dma_table
        } else {
            &self.kmalloc_table
        };
        let mut s = size.max(align);
        if s <= SMALL_MAX {
            let mut x = table[(s + 7) >> 3];
            if x != NO_CLASS && natural_align(self.obj_size[x as usize] as usize) < align {
                s = s.next_power_of_two();
                x = table[(s + 7) >> 3];
            }
            if x != NO_CLASS && natural_align(self.obj_size[x as usize] as usize) >= align {
                return self.alloc_class(x as usize);
            }
        }
        let gfp = if dma { Gfp::DMA } else { Gfp::KERNEL };
        self.alloc_large(size, align, gfp, site)
    }

    /// Straight to the core: sizes above [`SMALL_MAX`], and every request in debug mode. A
    /// corrupted free list, or a debug finding, is reported and aborts.
    #[cold]
    fn alloc_large(&self, size: usize, align: usize, gfp: Gfp, site: usize) -> *mut u8 {
        match self.core.kmalloc_checked(size.max(1), align, gfp, site) {
            Ok(p) => p.map_or(ptr::null_mut(), |p| p.as_ptr()),
            Err(e) => bad_free(e),
        }
    }

    #[inline(always)]
    fn alloc_class(&self, x: usize) -> *mut u8 {
        let tc = tcache();
        // SAFETY: the thread cache is this thread's only (invariant); `x < MAX_CACHES` (it
        // came from a size table, whose entries are cache indices); a non-null loaded magazine
        // is owned by it and `objs[..count]`, `count <= MAG_MAX`, are free objects of cache `x`.
        unsafe {
            let m = *(*tc).loaded.get_unchecked(x);
            if !m.is_null() {
                if let Some(p) = Magazine::pop(m) {
                    return p.as_ptr();
                }
            }
        }
        self.alloc_slow(x)
    }

    /// Frees `ptr` (null is ignored). An invalid or double free detected by the core, or a
    /// free of the object on top of the thread's loaded magazine (`free(p); free(p)`), prints
    /// one line and aborts.
    ///
    /// # Safety
    /// `ptr` is null or a live allocation of this heap; nothing uses it afterwards.
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: forwarded from the caller.
        unsafe { self.free_at(ptr, 0) }
    }

    /// [`free`](Self::free) with the caller's address (`site`, 0: unknown), recorded in debug
    /// mode and named in its reports.
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[inline]
    pub unsafe fn free_at(&self, ptr: *mut u8, site: usize) {
        if ptr.is_null() {
            return;
        }
        if !self.magazines {
            // SAFETY: forwarded from the caller.
            return unsafe { self.free_direct(ptr, site) };
        }
        let tc = tcache();
        // SAFETY: the thread cache is this thread's own (type invariant).
        let hint = unsafe { &mut (*tc).seg_hint };
        match self.core.cache_of_hinted(ptr, hint) {
            Some(id) => {
                let x = id.index();
                // SAFETY: as in `alloc_class`; the pointer lies in a slab of cache `x` and the
                // caller gives it up. `top` reads inside the magazine (`count <= cap`).
                unsafe {
                    let m = (*tc).loaded[x];
                    if !m.is_null() {
                        // The object on top is free (the last one freed, if this thread freed
                        // one since it last allocated): freeing it again is a double free. So
                        // is the fast path's `recent` object.
                        if (*tc).freed_last(m, ptr) {
                            bad_free(FreeError::DoubleFree(ptr as usize));
                        }
                        if Magazine::push(m, ptr) {
                            return;
                        }
                    }
                    self.free_slow(x, ptr, site)
                }
            }
            // SAFETY: forwarded from the caller.
            None => unsafe { self.free_direct(ptr, site) },
        }
    }

    /// Frees through the core, with its checks (every free in debug mode).
    ///
    /// # Safety
    /// As for [`free`](Self::free).
    #[cold]
    unsafe fn free_direct(&self, ptr: *mut u8, site: usize) {
        // SAFETY: forwarded from the caller.
        if let Err(e) = unsafe { self.core.kfree_at(ptr, site) } {
            bad_free(e)
        }
    }

    /// The usable size of the allocation at `ptr` (0 for null or a pointer the heap does not
    /// know).
    pub fn usable_size(&self, ptr: *const u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        if self.debug {
            // The size asked for: the rest of the slot is red zone.
            return self.core.usable_size(ptr).unwrap_or(0);
        }
        if self.magazines {
            // The process-wide heap: the thread's segment hint spares the map probe (realloc
            // asks this on every call).
            // SAFETY: this thread's cache.
            let hint = unsafe { &mut (*tcache()).seg_hint };
            return match self.core.cache_of_hinted(ptr, hint) {
                Some(id) => self.obj_size[id.index()] as usize,
                None => self.core.ksize_hinted(ptr, hint).unwrap_or(0),
            };
        }
        match self.core.cache_of(ptr) {
            Some(id) => self.obj_size[id.index()] as usize,
            None => self.core.ksize(ptr).unwrap_or(0),
        }
    }

    /// Resizes: in place when `size` fits and wastes less than half, else allocate, copy, free.
    /// Null `ptr` allocates. `size` must not be 0 (the C front handles that case). Null on
    /// failure, `ptr` left untouched.
    ///
    /// # Safety
    /// `ptr` is null or a live allocation of this heap; on success only the result is used.
    pub unsafe fn realloc(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.realloc_aligned(ptr, size, 1) }
    }

    /// As [`realloc`](Self::realloc), keeping alignment `align`.
    ///
    /// # Safety
    /// As for [`realloc`](Self::realloc); `ptr` was allocated with alignment `align`.
    pub unsafe fn realloc_aligned(&self, ptr: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.realloc_aligned_at(ptr, size, align, 0) }
    }

    /// [`realloc_aligned`](Self::realloc_aligned) with the caller's address. Debug mode always
    /// moves the block, so the new size gets its own red zone.
    ///
    /// # Safety
    /// As for [`realloc_aligned`](Self::realloc_aligned).
    pub unsafe fn realloc_aligned_at(
        &self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        site: usize,
    ) -> *mut u8 {
        if ptr.is_null() {
            return self.malloc_aligned_at(size, align, site);
        }
        let old = self.usable_size(ptr);
        if old == 0 {
            bad_free(FreeError::InvalidPointer(ptr as usize));
        }
        if size <= old && size > old / 2 && !self.debug {
            return ptr;
        }
        let new = if align <= 8 {
            self.malloc_at(size, site)
        } else {
            self.malloc_aligned_at(size, align, site)
        };
        if new.is_null() {
            return new;
        }
        // SAFETY: both blocks are live, distinct and at least `min(old, size)` bytes.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, old.min(size));
            self.free_at(ptr, site);
        }
        new
    }

    fn id(&self, x: usize) -> CacheId {
        match self.ids[x] {
            Some(id) => id,
            None => fatal("magazine for a cache the heap does not use"),
        }
    }

    /// A fresh empty magazine for cache `x`, from the core's kmalloc-512 (null when out of
    /// memory).
    fn new_magazine(&self, x: usize) -> *mut Magazine {
        match self.core.kmalloc(MAG_BYTES_SELF, Gfp::KERNEL) {
            Some(p) => {
                let m = p.as_ptr().cast::<Magazine>();
                // SAFETY: a fresh 512-byte, 512-aligned block.
                unsafe { Magazine::init(m, self.mag_cap[x] as usize) };
                m
            }
            None => ptr::null_mut(),
        }
    }

    /// Returns the objects of `m` to the slabs; `m` is then an empty magazine.
    ///
    /// # Safety
    /// `m` is a magazine of cache `x` owned by the caller.
    unsafe fn drain(&self, x: usize, m: *mut Magazine) {
        let id = self.id(x);
        // SAFETY: we own `m` and its objects; one cache lock for the whole magazine. The
        // thread's segment hint is its own (only the process-wide heap has magazines).
        unsafe {
            let objs = &(&(*m).objs)[..(*m).count as usize];
            let hint = &mut (*tcache()).seg_hint;
            if let Err((_, e)) = self.core.kmem_cache_free_bulk_hinted(id, objs, hint) {
                bad_free(e);
            }
            (*m).count = 0;
        }
    }

    /// Returns the objects of `m` to the slabs and frees the magazine.
    ///
    /// # Safety
    /// `m` is a magazine of cache `x` owned by the caller.
    unsafe fn drain_and_free(&self, x: usize, m: *mut Magazine) {
        // SAFETY: we own `m` (caller); drained, it is an empty kmalloc-512 object of ours.
        unsafe {
            self.drain(x, m);
            if let Err(e) = self.core.kfree(m.cast()) {
                bad_free(e);
            }
        }
    }

    /// Gives `m` to cache `x`'s depot; frees it (and its objects) if the depot is at its bound.
    ///
    /// # Safety
    /// `m` is a magazine of cache `x` owned by the caller.
    unsafe fn to_depot(&self, x: usize, m: *mut Magazine) {
        // SAFETY: ownership passes to the depot or back to us.
        let excess = unsafe { self.depots[x].lock().push(m) };
        if let Some(m) = excess {
            // SAFETY: handed back to us.
            unsafe { self.drain_and_free(x, m) };
        }
    }

    /// First slow path of a thread: arm the exit hook. Returns false if the thread is dead.
    #[inline]
    fn thread_ready(&self, tc: *mut ThreadCache) -> bool {
        // SAFETY: this thread's cache.
        match unsafe { (*tc).state } {
            ACTIVE => true,
            DEAD => false,
            _ => {
                // Mark active first: pthread_setspecific may allocate (keys past the first
                // block), and that nested malloc must find a consistent thread cache.
                // SAFETY: this thread's cache.
                unsafe { (*tc).state = ACTIVE };
                if let Some(key) = self.exit_key {
                    // SAFETY: a key we created; any non-null value makes the destructor run.
                    unsafe { libc::pthread_setspecific(key, ptr::dangling::<u8>().cast()) };
                }
                true
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, x: usize) -> *mut u8 {
        let tc = tcache();
        if !self.thread_ready(tc) {
            return self
                .core
                .kmem_cache_alloc(self.id(x))
                .map_or(ptr::null_mut(), |p| p.as_ptr());
        }
        // SAFETY: this thread's cache (invariant); magazines it names are its own.
        unsafe {
            let loaded = (*tc).loaded[x];
            let prev = (*tc).prev[x];
            // 1. The previous magazine has objects: swap.
            if !prev.is_null() && !(*prev).is_empty() {
                (*tc).prev[x] = loaded;
                (*tc).loaded[x] = prev;
                return take(prev);
            }
            // 2. A loaded magazine from the depot; our empty `prev` goes there in exchange.
            let full = {
                let mut d = self.depots[x].lock();
                let f = d.pop_full();
                let spare = if f.is_some() && !prev.is_null() {
                    d.push(prev)
                } else {
                    None
                };
                drop(d);
                if let Some(s) = spare {
                    self.drain_and_free(x, s);
                }
                f
            };
            if let Some(f) = full {
                // The empty `prev` went to the depot; the empty (or absent) `loaded` takes its
                // place.
                (*tc).prev[x] = loaded;
                (*tc).loaded[x] = f;
                return take(f);
            }
            // 3. Refill from the slabs under one cache lock.
            let m = if loaded.is_null() {
                let m = self.new_magazine(x);
                if m.is_null() {
                    return self
                        .core
                        .kmem_cache_alloc(self.id(x))
                        .map_or(ptr::null_mut(), |p| p.as_ptr());
                }
                (*tc).loaded[x] = m;
                m
            } else {
                loaded
            };
            let cap = (*m).cap as usize;
            let n = match self
                .core
                .kmem_cache_alloc_bulk_checked(self.id(x), &mut (&mut (*m).objs)[..cap])
            {
                Ok(n) => n,
                // A link written after its object was freed: one line, then abort.
                Err((_, e)) => bad_free(e),
            };
            (*m).count = n as u32;
            if n == 0 {
                return ptr::null_mut();
            }
            take(m)
        }
    }

    /// # Safety
    /// `ptr` is a live object of cache `x` that the caller gives up.
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(&self, x: usize, ptr: *mut u8, site: usize) {
        if !self.magazines {
            // SAFETY: forwarded from the caller.
            return unsafe { self.free_direct(ptr, site) };
        }
        let tc = tcache();
        if !self.thread_ready(tc) {
            // SAFETY: forwarded from the caller.
            if let Err(e) = unsafe { self.core.kmem_cache_free(self.id(x), ptr) } {
                bad_free(e);
            }
            return;
        }
        // SAFETY: this thread's cache (invariant); magazines it names are its own.
        unsafe {
            let loaded = (*tc).loaded[x];
            let prev = (*tc).prev[x];
            // 1. The previous magazine has room: swap.
            if !prev.is_null() && !(*prev).is_full() {
                (*tc).prev[x] = loaded;
                (*tc).loaded[x] = prev;
                give(prev, ptr);
                return;
            }
            // 2. Our full `prev` goes to the depot, `loaded` (full) becomes `prev`, and an
            // empty magazine from the depot (or a new one) becomes `loaded`.
            let (empty, excess) = {
                let mut d = self.depots[x].lock();
                let e = d.pop_empty();
                let excess = if !loaded.is_null() && !prev.is_null() {
                    d.push(prev)
                } else {
                    None
                };
                (e, excess)
            };
            // A full `prev` the depot had no room for goes back to the slabs; drained, it
            // serves as the new empty magazine when the depot had none (no kfree + kmalloc).
            let reuse = match excess {
                Some(s) => {
                    self.drain(x, s);
                    if empty.is_some() {
                        self.to_depot(x, s);
                        None
                    } else {
                        Some(s)
                    }
                }
                None => None,
            };
            if !loaded.is_null() {
                // The full `prev` (if any) went to the depot; the full `loaded` replaces it.
                (*tc).prev[x] = loaded;
            }
            let m = match empty.or(reuse) {
                Some(m) => m,
                None => self.new_magazine(x),
            };
            (*tc).loaded[x] = m;
            if m.is_null() {
                if let Err(e) = self.core.kmem_cache_free(self.id(x), ptr) {
                    bad_free(e);
                }
                return;
            }
            give(m, ptr);
        }
    }

    /// Gives all of this thread's magazines back to the depot and routes its later allocations
    /// to the core. Called by the thread-exit hook; harmless to call more than once.
    pub fn flush_thread(&self) {
        let tc = tcache();
        // SAFETY: this thread's cache; the recent object is ours, of cache `recent_x`.
        unsafe {
            let rx = (*tc).recent_x;
            if rx != NO_CLASS {
                let p = (*tc).recent;
                (*tc).recent_x = NO_CLASS;
                (*tc).recent = ptr::null_mut();
                if let Err(e) = self.core.kmem_cache_free(self.id(rx as usize), p) {
                    bad_free(e);
                }
            }
        }
        for x in 0..MAX_CACHES {
            // SAFETY: this thread's cache; each magazine is ours to hand over.
            unsafe {
                for m in [(*tc).loaded[x], (*tc).prev[x]] {
                    if !m.is_null() {
                        self.to_depot(x, m);
                    }
                }
                (*tc).loaded[x] = ptr::null_mut();
                (*tc).prev[x] = ptr::null_mut();
            }
        }
    }

    /// Takes every lock of the heap (depots, then the core's), for `pthread_atfork`'s prepare.
    pub fn prefork(&self) {
        for d in &self.depots {
            core::mem::forget(d.lock());
        }
        self.core.lock_all();
    }

    /// Releases what [`prefork`](Self::prefork) took, in the parent or the child.
    ///
    /// # Safety
    /// Called once after `prefork` by the forking thread (the child's only thread).
    pub unsafe fn postfork(&self) {
        // SAFETY: this thread took every lock in `prefork`; nothing is mid-update.
        unsafe {
            self.core.force_unlock_all();
            for d in &self.depots {
                d.force_unlock();
            }
        }
    }

    /// Walks every slab ([`Kmalloc::validate`]): free lists must decode, and in debug mode
    /// free objects keep their poison and live ones their red zones. Prints one line
    /// `dmaslab: <finding>` on stderr per problem (without allocating) and returns how many
    /// there were. Objects held in magazines look allocated to the core and are not checked.
    pub fn validate(&self) -> usize {
        self.core.validate(|f| {
            let mut b = FixedBuf::<256>::new();
            let _ = write!(b, "dmaslab: {f}");
            sys::stderr_line(b.as_bytes());
        })
    }

    /// Totals of the core.
    pub fn totals(&self) -> Totals {
        self.core.totals()
    }

    /// Magazines and objects held by the depots: (loaded magazines, empty magazines, objects).
    pub fn depot_counts(&self) -> (usize, usize, usize) {
        let mut r = (0, 0, 0);
        for d in &self.depots {
            let d = d.lock();
            let (f, e) = d.counts();
            r.0 += f;
            r.1 += e;
            r.2 += d.objects();
        }
        r
    }

    /// Writes the slabinfo 2.1 table and a `# dmaslab-totals` comment line:
    /// `pid policy dma_minalign pages_held slab_pages large_pages huge_pages free_pages
    /// bytes_in_use live_allocations depot_mags`.
    pub fn write_stats<W: Write>(&self, w: &mut W) -> core::fmt::Result {
        self.core.write_slabinfo(w)?;
        let t = self.totals();
        let (f, e, _) = self.depot_counts();
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        writeln!(
            w,
            "# dmaslab-totals pid={} policy={} dma_minalign={} pages_held={} slab_pages={} large_pages={} huge_pages={} free_pages={} bytes_in_use={} live_allocations={} depot_mags={}",
            pid,
            self.settings.policy,
            self.settings.dma_minalign,
            t.pages_held,
            t.pages.slab_pages,
            t.pages.large_pages,
            t.pages.huge_pages,
            t.pages.free_pages,
            t.bytes_in_use,
            t.live_allocations,
            f + e,
        )
    }

    /// Writes the statistics where `DMASLAB_STATS` asked (nothing if unset). Runs at exit.
    pub fn dump_stats(&self) {
        match self.settings.stats {
            StatsTarget::None => {}
            StatsTarget::Stderr => {
                let mut w = FdWriter::new(2);
                let _ = self.write_stats(&mut w);
            }
            StatsTarget::Path { bytes, len } => {
                let mut path = FixedBuf::<1024>::new();
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                let mut rest = &bytes[..len];
                while let Some(i) = rest.windows(2).position(|w| w == b"%p") {
                    path.push(&rest[..i]);
                    let _ = write!(path, "{pid}");
                    rest = &rest[i + 2..];
                }
                path.push(rest);
                path.push(b"\0");
                // SAFETY: `path` is NUL-terminated.
                let fd = unsafe {
                    libc::open(
                        path.as_bytes().as_ptr().cast(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd < 0 {
                    let mut b = FixedBuf::<700>::new();
                    b.push(b"dmaslab: cannot write statistics to ");
                    b.push(&path.as_bytes()[..path.as_bytes().len() - 1]);
                    sys::stderr_line(b.as_bytes());
                    return;
                }
                {
                    let mut w = FdWriter::new(fd);
                    let _ = self.write_stats(&mut w);
                }
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
            }
        }
    }
}

fn natural_align(size: usize) -> usize {
    1 << size.trailing_zeros()
}

/// [`Magazine::pop`] of a magazine the slow path knows to be non-empty.
///
/// # Safety
/// `m` is a non-empty magazine owned by the caller.
unsafe fn take(m: *mut Magazine) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    let p = unsafe { Magazine::pop(m) };
    debug_assert!(p.is_some(), "took from an empty magazine");
    p.map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// [`Magazine::push`] into a magazine the slow path knows to have room.
///
/// # Safety
/// `m` is a magazine with room, owned by the caller; `p` a free object of its cache.
unsafe fn give(m: *mut Magazine, p: *mut u8) {
    // SAFETY: forwarded from the caller.
    let pushed = unsafe { Magazine::push(m, p) };
    debug_assert!(pushed, "gave to a full magazine");
}

extern "C" fn thread_exit(_: *mut libc::c_void) {
    if let Some(h) = try_heap() {
        h.flush_thread();
    }
    let tc = tcache();
    // SAFETY: this thread's cache; from now on it bypasses magazines.
    unsafe { (*tc).state = DEAD };
}

// ---------------------------------------------------------------------------------------------
// The process-wide instance.

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// Storage of the process-wide heap.
///
/// # Invariants
/// Initialised exactly once, by the thread that moved `STATE` from `UNINIT` to `BUSY`, before
/// it stores `READY`; never mutated or dropped afterwards.
struct HeapSlot(UnsafeCell<MaybeUninit<Heap>>);

// SAFETY: written once before `READY` is published (release), read only after (acquire).
unsafe impl Sync for HeapSlot {}

static HEAP: HeapSlot = HeapSlot(UnsafeCell::new(MaybeUninit::uninit()));

/// The process-wide heap, built on first use from the environment ([`Settings::from_env`]).
///
/// Building it never calls `malloc`, so it is safe inside the first `malloc` of a process.
#[inline(always)]
pub fn heap() -> &'static Heap {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: `READY` means initialised and never mutated again (invariant).
        return unsafe { (*HEAP.0.get()).assume_init_ref() };
    }
    init_heap()
}

/// The process-wide heap, known to be built.
///
/// # Safety
/// [`heap`] has returned (in any thread) before this call.
#[inline(always)]
pub(crate) unsafe fn heap_unchecked() -> &'static Heap {
    // SAFETY: built (caller), and never mutated again (invariant of `HEAP`).
    unsafe { (*HEAP.0.get()).assume_init_ref() }
}

/// The heap if it has been built.
pub fn try_heap() -> Option<&'static Heap> {
    // SAFETY: as in `heap`.
    (STATE.load(Ordering::Acquire) == READY).then(|| unsafe { (*HEAP.0.get()).assume_init_ref() })
}

#[cold]
#[inline(never)]
fn init_heap() -> &'static Heap {
    loop {
        match STATE.compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                let h = Heap::build(Settings::from_env(), true);
                learn_tls_offset();
                // SAFETY: we won the race; nobody reads the slot before `READY`.
                let h = unsafe { (*HEAP.0.get()).write(h) };
                fast_path::publish(&h.kmalloc_table);
                STATE.store(READY, Ordering::Release);
                break;
            }
            Err(READY) => break,
            Err(_) => core::hint::spin_loop(),
        }
    }
    // SAFETY: `READY` now.
    unsafe { (*HEAP.0.get()).assume_init_ref() }
}
