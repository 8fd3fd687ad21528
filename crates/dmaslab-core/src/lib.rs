//! dmaslab-core: a kmalloc-style slab allocator for `no_std` (no `alloc`), with the three DMA
//! alignment policies of DESIGN.md.
//!
//! - [`PageSource`]: where pages come from ([`ArenaPageSource`] over a region; with the `std`
//!   feature, [`MmapPageSource`]).
//! - [`Kmalloc`]: kmalloc size classes 8 .. 8k (plus `dma-kmalloc-*` under B and C), user caches
//!   (`kmem_cache_create`), large page runs, statistics as `/proc/slabinfo`, and
//!   [`Kmalloc::owner_of`] for the DMA layer.
//! - [`CpuCache`]: the per-CPU layer (magazines and their [`depot`]), a caller-owned cache
//!   passed as `&mut` to [`Kmalloc::kmalloc_cpu`], [`Kmalloc::kfree_cpu`] and the lock-free
//!   [`Kmalloc::kmalloc_fast`] / [`Kmalloc::kfree_fast`]: one per CPU in a kernel (preemption
//!   off), one per thread in the hosted heap.
//! - [`StaticHeap`] (feature `static-heap`, on by default): a `const` firmware heap over a
//!   static [`HeapRegion`], usable as `#[global_allocator]`, locked by a `lock_api::RawMutex` of
//!   the user's choice ([`RawSpinLock`], or [`CriticalSectionRawMutex`] with the
//!   `critical-section` feature). docs/firmware.md sizes it.
//!
//! Guarantees, in every policy: `kmalloc(2^k)` is aligned to `2^k` up to
//! [`Kmalloc::max_natural_align`] (half a segment: 1 MiB by default), 96-byte objects to 32 and
//! 192-byte objects to 64; out of memory returns `None` and leaves the allocator usable; freeing a
//! pointer the allocator never handed out is an error value, not undefined behaviour.
//!
//! ```
//! use dmaslab_core::{ArenaPageSource, Config, Gfp, Kmalloc, Policy};
//! let mut mem = Box::<[u8]>::new_uninit_slice(2 << 20); // any memory will do
//! let arena = ArenaPageSource::new(&mut mem).unwrap();
//! let k = Kmalloc::new(arena, Config::new(Policy::B).seg_order(6)).unwrap();
//! let p = k.kmalloc(512, Gfp::KERNEL).unwrap();
//! assert_eq!(p.as_ptr() as usize % 512, 0);
//! let d = k.kmalloc(4, Gfp::DMA).unwrap(); // a dma-kmalloc-64 object
//! assert_eq!(k.ksize(d.as_ptr()), Some(64));
//! // SAFETY: both are live allocations of `k`, freed once and not used afterwards.
//! unsafe { k.kfree(p.as_ptr()).unwrap(); k.kfree(d.as_ptr()).unwrap(); }
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod arena;
mod buddy;
mod cpu_cache;
mod debug;
pub mod depot;
mod divisor;
mod freed_tag;
pub mod geometry;
mod kmalloc;
mod kmem_cache;
mod large;
pub use large::{HUGE_CACHE_BYTES, HUGE_CACHE_SLACK_BYTES, HUGE_CACHE_SLOTS};
pub mod magazine;
#[cfg(feature = "std")]
mod mmap;
mod page_layer;
mod page_source;
mod policy;
#[cfg(feature = "static-heap")]
mod raw_lock;
pub mod seed;
mod segment;
mod segment_map;
pub mod size_class;
mod slab;
mod spin;
#[cfg(feature = "static-heap")]
mod static_heap;
mod stats;

pub use arena::{ArenaError, ArenaPageSource};
pub use cpu_cache::{CpuCache, NO_CLASS, STASH_BYTES, STASH_MAGS};
pub use debug::{Finding, FindingKind, POISON_FREE, RED_ZONE};
pub use kmalloc::{CacheError, CacheId, Kmalloc, Owner, HINT_SLOTS, MAX_CACHES};
pub use kmem_cache::{Ctor, FreeError};
#[cfg(feature = "static-heap")]
pub use lock_api;
#[cfg(feature = "std")]
pub use mmap::MmapPageSource;
pub use page_layer::{PageCounts, PAGE_DESC_BYTES};
pub use page_source::{PageSource, DEFAULT_PAGE_SIZE};
pub use policy::{Config, ConfigError, Gfp, Policy, DMA_MINALIGNS};
#[cfg(feature = "critical-section")]
pub use raw_lock::CriticalSectionRawMutex;
#[cfg(feature = "static-heap")]
pub use raw_lock::RawSpinLock;
#[cfg(feature = "lock-stats")]
pub use spin::{lock_stats, LockStats};
pub use spin::{set_relax_hook, SpinGuard, SpinLock, SPIN_ROUNDS};
#[cfg(feature = "static-heap")]
pub use static_heap::{HeapRegion, StaticHeap, StaticHeapError, StaticKmalloc};
pub use stats::{write_slabinfo_header, CacheName, SlabInfo, Totals};
