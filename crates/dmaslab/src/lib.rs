//! dmaslab: the userspace heap on `dmaslab-core`.
//!
//! - [`heap()`]: the process-wide [`Heap`] — the core kmalloc over mmap with one of the core's
//!   per-CPU caches per thread (see [`heap`](mod@heap) and [`fast_path`]).
//! - [`DmaSlab`](struct@DmaSlab): the heap as `#[global_allocator]`.
//! - [`DmaAlloc`]: an `allocator-api2` allocator of DMA-safe buffers, so `Vec<u8, DmaAlloc>`
//!   works on stable Rust.
//! - [`Heap::free_sized_at`]: sized frees (C++ sized `operator delete`, C23 `free_sized`),
//!   which report a size that does not round to the object's class.
//! - The C `malloc` family for `LD_PRELOAD` is the `dmaslab-preload` crate (`libdmaslab.so`).
//!
//! - [`allocator_api2`]: the version of the `Allocator` trait `DmaAlloc` implements,
//!   re-exported so that `Vec<u8, DmaAlloc>` type-checks without picking a crate version.
//!
//! Settings come from the environment: `DMASLAB_POLICY=A|B|C` (default C),
//! `DMASLAB_DMA_MINALIGN=32|64|128|256` (default 64), `DMASLAB_STATS=stderr|PATH`,
//! `DMASLAB_DEBUG=0|1`; those chosen in code ([`DmaSlab::with_policy`]) take precedence.
//!
//! # The global allocator, policy chosen in code
//!
//! ```
//! use dmaslab::{DmaSlab, Policy};
//!
//! #[global_allocator]
//! static GLOBAL: DmaSlab = DmaSlab::with_policy(Policy::B);
//!
//! fn main() {
//!     let words: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
//!     assert_eq!(words[42], "w42");
//!     assert_eq!(dmaslab::heap().settings().policy, Policy::B);
//!     // Policy B is compact: a 16-byte object comes from kmalloc-16.
//!     let b = Box::new(0u128);
//!     assert_eq!(dmaslab::heap().usable_size(&*b as *const u128 as *const u8), 16);
//! }
//! ```
//!
//! # DMA buffers
//!
//! ```
//! use dmaslab::allocator_api2::vec::Vec;
//! use dmaslab::DmaAlloc;
//!
//! let mut rx: Vec<u8, DmaAlloc> = Vec::with_capacity_in(1500, DmaAlloc);
//! rx.resize(1500, 0);
//! // The buffer starts on a DMA cache line and owns whole lines: cache maintenance on it
//! // never touches a neighbour.
//! assert_eq!(rx.as_ptr() as usize % DmaAlloc.line(), 0);
//! assert_eq!(dmaslab::heap().usable_size(rx.as_ptr()) % DmaAlloc.line(), 0);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod config;
mod dma_alloc;
pub mod fast_path;
mod global_alloc;
pub mod heap;
pub mod platform;
mod realloc;
mod sized_free;

pub use allocator_api2;
pub use config::{CodeSettings, Settings, StatsTarget};
pub use dma_alloc::DmaAlloc;
pub use dmaslab_core::{Policy, Totals};
pub use fast_path::{fast_free, fast_free_sized, fast_malloc};
pub use global_alloc::DmaSlab;
pub use heap::{heap, try_heap, Heap};
