//! The process-wide heap: the core allocator over mmap, with one per-CPU cache
//! ([`CpuCache`], the core's magazines and depot) per thread.
//!
//! # Fast path
//! [`crate::fast_path`]: `malloc` takes the thread's recent object or the top of its loaded
//! magazine ([`Kmalloc::kmalloc_fast`]), `free` pushes through [`Kmalloc::kfree_fast`]; neither
//! takes a lock. Everything else is the full path here, which hands the thread's cache to the
//! core (`Kmalloc::kmalloc_cpu`, `kfree_cpu`, `ksize_cpu`): swaps with the previous magazine,
//! exchanges with the depot, bulk refills and drains are the core's.
//!
//! # Thread exit
//! The first full path of a thread sets a pthread key whose destructor flushes the thread's cache
//! ([`Kmalloc::cpu_cache_flush`]) and marks the thread dead: allocations after that (later
//! thread-local destructors) go straight to the core.
//!
//! # Standalone heaps
//! A heap built with [`Heap::new`] is not the one the thread caches belong to; it keeps one
//! [`CpuCache`] of its own, shared by its threads under a lock (magazines, but one lock per call).
//!
//! # Hardening and debug mode
//! Always on: the core's encoded free lists and its checks on every free that reaches it
//! (invalid pointers, the object at its free list's head); the per-CPU layer's freed-object tag
//! (double frees anywhere in the CPU caches, first-word writes after free). Findings print one line
//! (`dmaslab: double free of 0x...`) and abort. Debug mode (`Settings::debug`,
//! `DMASLAB_DEBUG=1`) turns on the core's red zones, poison, full double-free check and call
//! sites; the core's per-CPU layer then bypasses magazines, so that every operation is checked.

use crate::config::{Settings, StatsTarget};
use crate::fast_path;
use crate::platform::{self, learn_tls_offset, tcache, FdWriter, FixedBuf};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, Ordering};
use dmaslab_core::size_class::ClassSet;
use dmaslab_core::{Config, CpuCache, FreeError, Gfp, Kmalloc, MmapPageSource, SpinLock, Totals};

/// Requests up to this size are served from slab caches through magazines.
pub const SMALL_MAX: usize = 8192;
pub(crate) const TABLE_LEN: usize = SMALL_MAX / 8 + 1;

/// Alignment `malloc` guarantees for requests of 16 bytes and more (glibc's on x86-64); an
/// 8-byte request gets 8.
pub const MALLOC_ALIGN: usize = 16;

/// Free pages (16 MiB) the heap keeps inside its segments before it discards free blocks
/// (the core's default is 1 MiB, sized for small heaps). With 1 MiB the python trace replay
/// discarded 181 blocks and faulted them back in: 3.9 k more page faults (5 % of its time)
/// for 1 MB less peak RSS.
const DISCARD_THRESHOLD: usize = 4096;

/// Empty slabs each cache keeps (the core's default is 1). A magazine drain that empties a slab
/// beyond these gives its pages back to the page layer under its lock, and the next refill takes
/// them again: with one kept, sh8bench's churn of 512-byte objects (8 to a one-page slab) took
/// a page-layer lock every few magazines. The pages stay resident either way (the page layer
/// keeps up to [`DISCARD_THRESHOLD`] free pages before it discards any).
const EMPTY_SLABS_KEPT: usize = 8;

const FRESH: u8 = 0;
const ACTIVE: u8 = 1;
const DEAD: u8 = 2;

/// One thread's cache of the process-wide heap.
///
/// # Invariants
/// `cpu` is used with the process-wide heap's core only (the [`CpuCache`] contract), and only by
/// the owning thread.
pub(crate) struct ThreadCache {
    pub(crate) cpu: CpuCache,
    state: u8,
}

impl ThreadCache {
    pub(crate) const NEW: ThreadCache = ThreadCache {
        cpu: CpuCache::NEW,
        state: FRESH,
    };
}

/// The heap.
///
/// # Invariants
/// `shared` is used with `core` only (the [`CpuCache`] contract); when `per_thread`, this is the
/// process-wide heap and the threads' caches are `core`'s.
pub struct Heap {
    core: Kmalloc<MmapPageSource>,
    settings: Settings,
    exit_key: Option<libc::pthread_key_t>,
    /// Debug mode (the core checks every operation).
    debug: bool,
    /// The process-wide heap: each thread has a [`CpuCache`] in TLS.
    per_thread: bool,
    /// A standalone heap's cache, shared by its threads.
    shared: SpinLock<CpuCache>,
}

// SAFETY: every shared part is behind a lock (the shared cache, the core's caches) or atomics
// (the core's depots); thread caches are per thread.
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
    platform::stderr_line(b.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[cold]
fn fatal(msg: &str) -> ! {
    let mut b = FixedBuf::<160>::new();
    b.push(b"dmaslab: ");
    b.push(msg.as_bytes());
    platform::stderr_line(b.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

impl Heap {
    /// Builds a standalone heap with `settings` (does not allocate through `malloc`). Thread
    /// caches belong to the process-wide heap ([`heap`]), so a standalone heap keeps one
    /// [`CpuCache`] that its threads share under a lock.
    pub fn new(settings: Settings) -> Heap {
        let mut slot = MaybeUninit::uninit();
        Heap::build_in(&mut slot, settings, false);
        // SAFETY: `build_in` initialised the slot.
        unsafe { slot.assume_init() }
    }

    /// Builds a heap in `slot`, field by field: the process-wide heap is built in its static
    /// this way, so no heap-sized value (58 KiB) passes through the stack, whose touched pages
    /// would stay resident in every program; `per_thread`: it is the process-wide heap, whose
    /// threads keep caches.
    fn build_in(slot: &mut MaybeUninit<Heap>, settings: Settings, per_thread: bool) {
        dmaslab_core::set_relax_hook(platform::yield_cpu);
        let mut config = Config::new(settings.policy)
            .dma_minalign(settings.dma_minalign)
            .secret(platform::random_u64() as usize | 1)
            .discard_threshold(DISCARD_THRESHOLD)
            .debug(settings.debug)
            .quarantine(settings.quarantine)
            .classes(ClassSet::Fine);
        config.empty_slabs_kept = EMPTY_SLABS_KEPT;
        let h = slot.as_mut_ptr();
        // SAFETY: `h` points to the slot, valid for writes and aligned; each field is written
        // once through a raw place, and the core's slot has the core's layout.
        unsafe {
            let core = &mut *ptr::addr_of_mut!((*h).core).cast::<MaybeUninit<Kmalloc<_>>>();
            if Kmalloc::init(core, MmapPageSource::new(), config).is_err() {
                fatal("cannot build the allocator (bad configuration)");
            }
            ptr::addr_of_mut!((*h).settings).write(settings);
            ptr::addr_of_mut!((*h).debug).write(settings.debug);
            ptr::addr_of_mut!((*h).per_thread).write(per_thread);
            ptr::addr_of_mut!((*h).shared).write(SpinLock::new(CpuCache::NEW));
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: `key` is a valid out-parameter; the destructor is an `extern "C"` fn
            // that never unwinds.
            let made = libc::pthread_key_create(&mut key, Some(thread_exit)) == 0;
            ptr::addr_of_mut!((*h).exit_key).write(made.then_some(key));
        }
    }

    /// The core allocator.
    pub fn core(&self) -> &Kmalloc<MmapPageSource> {
        &self.core
    }

    /// The settings the heap was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Is debug mode on?
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Do objects of this heap go through magazines (everywhere but in debug mode)?
    pub fn magazines(&self) -> bool {
        !self.debug
    }

    /// Do the `malloc`/`free` fast paths serve this heap? Only the process-wide heap's, outside
    /// debug mode and tracing (the fast paths have no trace hook).
    pub(crate) fn fast_paths(&self) -> bool {
        self.per_thread && !self.debug && !self.settings.trace
    }

    /// Runs `f` with the calling thread's cache (a standalone heap: its shared one, locked);
    /// `None` for a thread of the process-wide heap that has exited.
    #[inline]
    fn with_cpu<R>(
        &self,
        f: impl FnOnce(&Kmalloc<MmapPageSource>, &mut CpuCache) -> R,
    ) -> Option<R> {
        if !self.per_thread {
            return Some(f(&self.core, &mut self.shared.lock()));
        }
        let tc = tcache();
        if !self.thread_ready(tc) {
            return None;
        }
        // SAFETY: this thread's cache, of this heap's core (type invariant); nothing else holds
        // a reference to it while `f` runs (the core never calls back into the heap).
        Some(f(&self.core, unsafe { &mut (*tc).cpu }))
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
        self.alloc(size, 1, Gfp::KERNEL, site)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two; anything else gives null).
    pub fn malloc_aligned(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc(size, align, Gfp::KERNEL, 0)
    }

    /// [`malloc_aligned`](Self::malloc_aligned) with the caller's address.
    pub fn malloc_aligned_at(&self, size: usize, align: usize, site: usize) -> *mut u8 {
        self.alloc(size, align, Gfp::KERNEL, site)
    }

    /// Allocates a DMA-safe buffer: it shares no cache line (`dma_minalign`) with anything
    /// else. Served by the `dma-kmalloc-*` caches under B and C, by kmalloc under A.
    pub fn dma_alloc(&self, size: usize, align: usize) -> *mut u8 {
        self.alloc(size, align, Gfp::DMA, 0)
    }

    /// The one allocation path: the core's per-CPU layer with this thread's cache. A corrupted
    /// free list, or a debug finding, is reported and aborts.
    fn alloc(&self, size: usize, align: usize, gfp: Gfp, site: usize) -> *mut u8 {
        // Debug mode keeps 0: a distinct object whose whole slot is red zone.
        let size = if self.debug { size } else { size.max(1) };
        let res = self
            // SAFETY: the cache `with_cpu` gives is bound to this core (invariant).
            .with_cpu(|k, cc| unsafe { k.kmalloc_cpu(cc, size, align, gfp, site) })
            .unwrap_or_else(|| self.core.kmalloc_checked(size, align, gfp, site));
        match res {
            Ok(p) => p.map_or(ptr::null_mut(), NonNull::as_ptr),
            Err(e) => bad_free(e),
        }
    }

    /// Frees `ptr` (null is ignored). An invalid or double free (an object carrying its freed
    /// tag, or the head of a slab's free list) prints one line and aborts.
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
    pub unsafe fn free_at(&self, ptr: *mut u8, site: usize) {
        if ptr.is_null() {
            return;
        }
        let res = self
            // SAFETY: as in `alloc`; the caller gives `ptr` up.
            .with_cpu(|k, cc| unsafe { k.kfree_cpu(cc, ptr, site) })
            // SAFETY: forwarded from the caller.
            .unwrap_or_else(|| unsafe { self.core.kfree_at(ptr, site) });
        if let Err(e) = res {
            bad_free(e)
        }
    }

    /// The usable size of the allocation at `ptr` (0 for null or a pointer the heap does not
    /// know). In debug mode the size asked for: the rest of the slot is red zone.
    // `ksize_cpu` is unsafe for its cache's contract; it only looks `ptr` up, never reads it.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn usable_size(&self, ptr: *const u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        self
            // SAFETY: as in `alloc`.
            .with_cpu(|k, cc| unsafe { k.ksize_cpu(cc, ptr) })
            .unwrap_or_else(|| self.core.usable_size(ptr))
            .unwrap_or(0)
    }

    /// First full path of a thread: arm the exit hook. Returns false if the thread is dead.
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

    /// Gives everything this thread's cache holds back (magazines to the depots) and routes its
    /// later allocations to the core. Called by the thread-exit hook; harmless to call more than
    /// once.
    pub fn flush_thread(&self) {
        if !self.per_thread {
            return;
        }
        let tc = tcache();
        // SAFETY: this thread's cache, of this core (invariant).
        if let Err(e) = unsafe { self.core.cpu_cache_flush(&mut (*tc).cpu) } {
            bad_free(e);
        }
    }

    /// Takes every lock of the heap (the core's), for `pthread_atfork`'s prepare.
    pub fn prefork(&self) {
        self.core.lock_all();
    }

    /// Releases what [`prefork`](Self::prefork) took, in the parent or the child.
    ///
    /// # Safety
    /// Called once after `prefork` by the forking thread (the child's only thread).
    pub unsafe fn postfork(&self) {
        // SAFETY: this thread took every lock in `prefork`; nothing is mid-update.
        unsafe { self.core.force_unlock_all() };
    }

    /// Walks every slab ([`Kmalloc::validate`]): free lists must decode, and in debug mode
    /// free objects keep their poison and live ones their red zones. Prints one line
    /// `dmaslab: <finding>` on stderr per problem (without allocating) and returns how many
    /// there were. Objects held in magazines look allocated to the core and are not checked.
    pub fn validate(&self) -> usize {
        self.core.validate(|f| {
            let mut b = FixedBuf::<256>::new();
            let _ = write!(b, "dmaslab: {f}");
            platform::stderr_line(b.as_bytes());
        })
    }

    /// Totals of the core.
    pub fn totals(&self) -> Totals {
        self.core.totals()
    }

    /// Magazines and objects held by the depots: (loaded magazines, empty magazines, objects).
    pub fn depot_counts(&self) -> (usize, usize, usize) {
        self.core.depot_counts()
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
                    platform::stderr_line(b.as_bytes());
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

/// The process-wide heap, built on first use from the environment and the settings chosen in
/// code ([`Settings::for_process`]).
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
/// [`heap`] has returned (in any thread) before this call, or this thread has loaded with
/// Acquire a fast-path table entry the heap's build published (`fast_path.rs`).
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
                learn_tls_offset();
                // SAFETY: we won the race; nobody reads the slot before `READY`.
                let h = unsafe {
                    let slot = &mut *HEAP.0.get();
                    Heap::build_in(slot, Settings::for_process(), true);
                    slot.assume_init_ref()
                };
                if h.fast_paths() {
                    fast_path::publish(&h.core);
                }
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
