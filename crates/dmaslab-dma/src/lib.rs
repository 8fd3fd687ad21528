//! dmaslab-dma: a streaming DMA mapping layer, modelled on the Linux DMA API, over a
//! [`dmaslab_core::Kmalloc`] heap that lives in a simulated RAM region.
//!
//! The pieces (DESIGN.md section 3):
//!
//! - [`Device`]: coherent or not, DMA cache line, address mask; [`Direction`].
//! - [`CacheModel`]: a write-back, write-allocate CPU data cache over the RAM. CPU loads and
//!   stores go through it; the device reads and writes RAM directly. Evictions are seeded and can
//!   be forced, so a test replays an exact interleaving.
//! - [`Machine`]: RAM + kmalloc + cache + the mapping API (`map_single`, `unmap_single`,
//!   `sync_single_for_cpu` / `_for_device`, `map_sg`, `alloc_coherent`, DMA pools), with the
//!   cache maintenance of DESIGN.md's table.
//! - [`SwiotlbPool`]: the bounce pool; [`BounceRule`]: exact bouncing (policy C) or Linux's
//!   size-only `dma_kmalloc_needs_bounce`.
//! - [`Checker`]: findings (a)..(f), collected as data or turned into panics.
//! - [`scenario::demo`]: the seed's `kmalloc(4)` example under every policy.
//!
//! ```
//! use dmaslab_core::{Gfp, Policy};
//! use dmaslab_dma::{Device, Direction, Machine, MachineConfig};
//! let mut m = Machine::new(MachineConfig::new(Policy::C)).unwrap();
//! let dev = Device::non_coherent(64);
//! let buf = m.kmalloc(4, Gfp::KERNEL).unwrap();
//! let dma = m.map_single(&dev, buf, 4, Direction::FromDevice).unwrap();
//! m.device_write(&dev, dma, &0x1234_5678u32.to_be_bytes()).unwrap();
//! m.unmap_single(&dev, dma, 4, Direction::FromDevice).unwrap();
//! let mut v = [0u8; 4];
//! m.cpu_read(buf, &mut v).unwrap();
//! assert_eq!(u32::from_be_bytes(v), 0x1234_5678);
//! assert_eq!(m.stats().bounces, 1); // a 4-byte object shares its line: bounced
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

mod bounce;
mod bounce_rule;
mod cache_model;
mod checker;
mod checks;
mod coherent;
#[cfg(feature = "cortex-m7")]
mod cortex_m7;
mod device;
mod direction;
mod dma_map;
mod dma_pool;
mod embedded;
mod error;
mod heap_layout;
mod machine;
mod machine_memory;
mod maintenance;
mod mapping;
mod model_backend;
mod ram;
mod scatterlist;
pub mod scenario;

pub use bounce::{BounceError, SwiotlbPool};
pub use bounce_rule::{
    exact_needs_bounce, line_neighbours, linux_needs_bounce, BounceRule, Neighbour, NeighbourKind,
};
pub use cache_model::{Backing, CacheConfig, CacheModel, CacheStats};
pub use checker::{Checker, Finding, FindingKind, Party, Role};
pub use coherent::{CoherentBuffer, UncachedRegion};
#[cfg(feature = "cortex-m7")]
pub use cortex_m7::{CortexM7, CORTEX_M7_LINE};
pub use device::Device;
pub use direction::{Direction, FromDeviceMap};
pub use dma_map::DmaMap;
pub use dma_pool::{DmaPool, PoolBlock};
pub use error::{DmaAddr, DmaError, DmaStats};
pub use heap_layout::HeapLayout;
pub use machine::{Machine, MachineConfig};
pub use maintenance::CacheMaintenance;
pub use model_backend::ModelBackend;
pub use ram::Ram;
pub use scatterlist::{ScatterList, SgEntry};
