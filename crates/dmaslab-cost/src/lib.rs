//! dmaslab-cost: what would policy A (every kmalloc buffer DMA-safe) cost on a real machine?
//!
//! Reads `/proc/slabinfo` version 2.1 ([`slabinfo`]), recognises the kmalloc caches of every
//! family ([`family`]), computes for each kmalloc minimum alignment and counting basis how many
//! more pages the kmalloc caches would take ([`cost`]), and renders the result as text, JSON or an
//! SVG chart ([`render`]).
//!
//! ```
//! let info = dmaslab_cost::slabinfo::parse(dmaslab_cost::SEED_SLABINFO).unwrap();
//! let a = dmaslab_cost::cost::analyse(&info, "seed", 4096, &[64]);
//! assert_eq!(a.scenarios[0].extra_pages, 1423); // M = 64, basis total
//! ```
#![forbid(unsafe_code)]

pub mod cost;
pub mod family;
pub mod render;
pub mod slabinfo;

/// The five `/proc/slabinfo` lines of Matthew Wilcox's laptop quoted in the seed message
/// (`seed/lkml-2018-09-24-dma-alignment-of-kmalloc.txt`), verbatim: no header, no tunables.
pub const SEED_SLABINFO: &str = "\
kmalloc-96 11527 15792 96 42 1 : slabdata 376 376 0
kmalloc-64 54406 62912 64 64 1 : slabdata 983 983 0
kmalloc-32 80325 84096 32 128 1 : slabdata 657 657 0
kmalloc-16 26844 30208 16 256 1 : slabdata 118 118 0
kmalloc-8 17141 21504 8 512 1 : slabdata 42 42 0
";

/// The page size of the seed's laptop (x86-64).
pub const SEED_PAGE_SIZE: u64 = 4096;
