//! `StaticHeap`: a `const`-constructible kmalloc heap over a static region, for firmware, and
//! its `GlobalAlloc`.
//!
//! ```
//! use dmaslab_core::{Config, HeapRegion, Policy, StaticHeap};
//! static REGION: HeapRegion<{ 1 << 20 }> = HeapRegion::new();
//! // #[global_allocator] in a firmware
//! static HEAP: StaticHeap = StaticHeap::new();
//!
//! HEAP.init(REGION.take().unwrap(), Config::new(Policy::C)).unwrap();
//! # use core::alloc::{GlobalAlloc, Layout};
//! let l = Layout::from_size_align(100, 8).unwrap();
//! // SAFETY: a non-zero-size layout; the block is freed once with the same layout.
//! unsafe {
//!     let p = HEAP.alloc(l);
//!     assert!(!p.is_null());
//!     HEAP.dealloc(p, l);
//! }
//! ```
//!
//! Every [`GlobalAlloc`] call runs with the heap's lock `R` held, then takes the core's own
//! per-cache locks. The outer lock is what makes the heap interrupt-safe with
//! [`CriticalSectionRawMutex`](crate::CriticalSectionRawMutex), and it is where a per-CPU
//! object cache (magazines) fits: a single-core firmware has one such cache, owned by the heap
//! beside its `Kmalloc` and reached as `&mut` only under this lock.

use crate::arena::{ArenaError, ArenaPageSource};
use crate::kmalloc::Kmalloc;
use crate::page_source::DEFAULT_PAGE_SIZE;
use crate::policy::{Config, ConfigError, Gfp};
use crate::raw_lock::RawSpinLock;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use lock_api::RawMutex;

/// The allocator a [`StaticHeap`] holds.
pub type StaticKmalloc = Kmalloc<ArenaPageSource<'static>>;

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

/// A kmalloc heap in a `static`, built in place by [`init`](Self::init), usable as
/// `#[global_allocator]`. `R` is the lock every allocation takes: [`RawSpinLock`] by default,
/// [`CriticalSectionRawMutex`](crate::CriticalSectionRawMutex) when interrupt handlers allocate.
///
/// Before `init` succeeds every allocation returns null (Rust then calls its allocation error
/// handler), so call it first thing in `main`.
///
/// # Invariants
/// `kmalloc` is initialised once `state` is `READY`, by the one caller of `init` that moved
/// `state` from `UNINIT` to `BUSY`; it is never moved, dropped or mutated through a `&mut`
/// afterwards (the `Kmalloc` synchronises itself).
pub struct StaticHeap<R: RawMutex = RawSpinLock> {
    lock: R,
    state: AtomicU8,
    kmalloc: UnsafeCell<MaybeUninit<StaticKmalloc>>,
}

// SAFETY: the slot is written only by the `init` that won the `UNINIT -> BUSY` race and read only
// after `READY` is published (release/acquire); the `Kmalloc` in it is `Sync` (its page source
// is `Send`), and `R: Sync` makes the lock shareable.
unsafe impl<R: RawMutex + Sync> Sync for StaticHeap<R> {}

// What the `Sync` above relies on: the allocator itself is `Sync`.
const _: fn() = || {
    fn sync<T: Sync>() {}
    sync::<StaticKmalloc>();
};

/// Why [`StaticHeap::init`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticHeapError {
    /// `init` already succeeded (or is running) for this heap.
    AlreadyInitialised,
    /// The region cannot become an arena.
    Arena(ArenaError),
    /// The configuration does not work with the region.
    Config(ConfigError),
}

impl fmt::Display for StaticHeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaticHeapError::AlreadyInitialised => f.write_str("the heap is already initialised"),
            StaticHeapError::Arena(ArenaError::TooSmall) => {
                f.write_str("the region holds no page after the arena's descriptors")
            }
            StaticHeapError::Arena(ArenaError::BadPageSize) => {
                f.write_str("the page size is not a power of two of at least 64")
            }
            StaticHeapError::Config(e) => e.fmt(f),
        }
    }
}

// No `Default`: a heap or a region by value is a stack temporary of its size; both belong in a
// `static`, built by the `const fn new`.
#[allow(clippy::new_without_default)]
impl<R: RawMutex> StaticHeap<R> {
    /// An empty heap, for a `static`.
    pub const fn new() -> Self {
        StaticHeap {
            lock: R::INIT,
            state: AtomicU8::new(UNINIT),
            kmalloc: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Builds the heap over `region` (4 KiB pages) with `config`, in place: nothing
    /// allocator-sized passes through the stack. Without [`Config::seg_order`] the segment
    /// size is chosen from the region's size (docs/firmware.md has the table).
    ///
    /// On failure the heap stays uninitialised and `init` may be called again.
    pub fn init(
        &self,
        region: &'static mut [MaybeUninit<u8>],
        config: Config,
    ) -> Result<(), StaticHeapError> {
        self.init_with_page_size(region, DEFAULT_PAGE_SIZE, config)
    }

    /// [`init`](Self::init) with pages of `page_size` bytes (a power of two, at least 1 KiB):
    /// smaller pages make smaller segments, for regions under the 256 KiB that 4 KiB pages
    /// need (1 KiB pages: 32 KiB segments, regions from about 64 KiB).
    pub fn init_with_page_size(
        &self,
        region: &'static mut [MaybeUninit<u8>],
        page_size: usize,
        config: Config,
    ) -> Result<(), StaticHeapError> {
        if self
            .state
            .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            return Err(StaticHeapError::AlreadyInitialised);
        }
        let built = ArenaPageSource::with_page_size(region, page_size)
            .map_err(StaticHeapError::Arena)
            .and_then(|arena| {
                // SAFETY: `state` is `BUSY` and we set it: nobody else touches the slot.
                let slot = unsafe { &mut *self.kmalloc.get() };
                Kmalloc::init(slot, arena, config)
                    .map(|_| ())
                    .map_err(StaticHeapError::Config)
            });
        let next = if built.is_ok() { READY } else { UNINIT };
        self.state.store(next, Ordering::Release);
        built
    }

    /// Has [`init`](Self::init) succeeded?
    pub fn is_initialised(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Runs `f` on the heap's allocator with the heap's lock held (`None` before `init`), e.g.
    /// to print `/proc/slabinfo` or read [`Kmalloc::totals`]. `f` must not allocate from this
    /// heap: the lock is taken again by the allocation.
    pub fn with_kmalloc<T>(&self, f: impl FnOnce(&StaticKmalloc) -> T) -> Option<T> {
        if !self.is_initialised() {
            return None;
        }
        self.lock.lock();
        // SAFETY: `READY` was observed (acquire): the slot is initialised and never mutated
        // through `&mut` again (invariant).
        let k = unsafe { (*self.kmalloc.get()).assume_init_ref() };
        let unlock = Unlock(&self.lock);
        let r = f(k);
        drop(unlock);
        Some(r)
    }
}

/// Releases a held `R` when dropped, so a panic in a `with_kmalloc` closure unlocks too.
struct Unlock<'a, R: RawMutex>(&'a R);

impl<R: RawMutex> Drop for Unlock<'_, R> {
    fn drop(&mut self) {
        // SAFETY: an `Unlock` is made only right after its creator took the lock.
        unsafe { self.0.unlock() }
    }
}

fn ptr_or_null(p: Option<Option<NonNull<u8>>>) -> *mut u8 {
    p.flatten().map_or(ptr::null_mut(), NonNull::as_ptr)
}

// SAFETY: `kmalloc_aligned(size, align)` returns `None` (null here) or a block of at least `size`
// bytes aligned to `align` that nobody else uses until it is freed; `dealloc` hands exactly such
// blocks back to `kfree`, and `realloc` keeps a block only when its slot (`ksize`) holds the new
// size.
unsafe impl<R: RawMutex> GlobalAlloc for StaticHeap<R> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ptr_or_null(
            self.with_kmalloc(|k| k.kmalloc_aligned(layout.size(), layout.align(), Gfp::KERNEL)),
        )
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ptr_or_null(
            self.with_kmalloc(|k| k.kmalloc_aligned(layout.size(), layout.align(), Gfp::ZERO)),
        )
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator and is freed once (GlobalAlloc contract).
        let freed = self.with_kmalloc(|k| unsafe { k.kfree(ptr) });
        if let Some(Err(e)) = freed {
            // The caller broke the contract or memory was corrupted: stop (lock released).
            panic!("dmaslab: dealloc of {ptr:p}: {e}");
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let fits = self.with_kmalloc(|k| k.ksize(ptr).is_some_and(|slot| new_size <= slot));
        if fits == Some(true) {
            // The slot holds the new size and is already aligned: kmalloc's krealloc rule.
            return ptr;
        }
        // SAFETY: `layout.align()` is a valid alignment and `new_size`, rounded up to it, does
        // not overflow `isize` (GlobalAlloc::realloc contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_size > 0` (contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct; the old one holds `layout.size()` bytes
            // and the new one at least `new_size`.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// A static region for a [`StaticHeap`], handed out once by [`take`](Self::take): the safe way
/// to get the `&'static mut` that `init` wants.
///
/// Not page-aligned on purpose: an alignment of 4 KiB would pad the static by 4 KiB (the flag
/// after the bytes), as much as the arena loses to rounding an unaligned start up to a page.
///
/// # Invariants
/// `mem` is reachable only through the one `&'static mut` that the `take` call which set
/// `taken` returned.
pub struct HeapRegion<const N: usize> {
    taken: AtomicBool,
    mem: UnsafeCell<[MaybeUninit<u8>; N]>,
}

// SAFETY: `mem` is handed out once, to one caller (invariant); `taken` is atomic.
unsafe impl<const N: usize> Sync for HeapRegion<N> {}

#[allow(clippy::new_without_default)] // see `StaticHeap`
impl<const N: usize> HeapRegion<N> {
    /// A region of `N` uninitialised bytes (in `.bss`).
    pub const fn new() -> Self {
        HeapRegion {
            taken: AtomicBool::new(false),
            mem: UnsafeCell::new([MaybeUninit::uninit(); N]),
        }
    }

    /// The region's memory, the first time; `None` afterwards.
    #[allow(clippy::mut_from_ref)] // handed out once, guarded by `taken` (invariant)
    pub fn take(&'static self) -> Option<&'static mut [MaybeUninit<u8>]> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: we set `taken`: this is the only reference ever made to `mem` (invariant).
        Some(unsafe { &mut *self.mem.get() })
    }
}
