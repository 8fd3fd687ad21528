//! dmaslab: the userspace heap on `dmaslab-core`.
//!
//! - [`heap()`]: the process-wide [`Heap`] — the core kmalloc over mmap with one of the core's
//!   per-CPU caches per thread (see [`heap`](mod@heap) and [`fast_path`]).
//! - [`DmaSlab`]: the heap as `#[global_allocator]`.
//! - [`DmaAlloc`]: an `allocator-api2` allocator of DMA-safe buffers, so `Vec<u8, DmaAlloc>`
//!   works on stable Rust.
//! - The C `malloc` family for `LD_PRELOAD` is the `dmaslab-preload` crate (`libdmaslab.so`).
//!
//! Settings come from the environment: `DMASLAB_POLICY=A|B|C` (default C),
//! `DMASLAB_DMA_MINALIGN=32|64|128|256` (default 64), `DMASLAB_STATS=stderr|PATH`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod config;
mod dma_alloc;
pub mod fast_path;
mod global_alloc;
pub mod heap;
pub mod platform;

pub use config::{Settings, StatsTarget};
pub use dma_alloc::DmaAlloc;
pub use dmaslab_core::{Policy, Totals};
pub use fast_path::{fast_free, fast_malloc};
pub use global_alloc::DmaSlab;
pub use heap::{heap, try_heap, Heap};
