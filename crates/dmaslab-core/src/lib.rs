//! dmaslab-core: a kmalloc-style slab allocator for `no_std` (no `alloc`), with the three DMA
//! alignment policies of DESIGN.md.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod geometry;
pub mod size_class;
