//! `DmaAlloc`: an `allocator-api2` [`Allocator`] of DMA-safe buffers (policy B's
//! `dma-kmalloc-*` caches; under A every kmalloc buffer is DMA-safe and kmalloc serves).
//!
//! A DMA-safe buffer starts on a DMA cache line (`DMASLAB_DMA_MINALIGN`, default 64) and its
//! slot is a whole number of lines, so cache maintenance on it never touches another object.
//!
//! `allocator-api2` is re-exported as [`dmaslab::allocator_api2`](crate::allocator_api2): use
//! that path (a separately added `allocator-api2` of another major version is a different
//! trait, and `Vec<u8, DmaAlloc>` then fails with E0277).

use crate::heap::heap;
use allocator_api2::alloc::{AllocError, Allocator, Layout};
use core::ptr::NonNull;

/// DMA-safe buffers from the process-wide heap.
///
/// ```
/// use dmaslab::allocator_api2::{boxed::Box, vec::Vec};
/// use dmaslab::DmaAlloc;
///
/// let mut buf: Vec<u8, DmaAlloc> = Vec::with_capacity_in(100, DmaAlloc);
/// buf.extend_from_slice(&[7u8; 100]);
/// assert_eq!(buf.as_ptr() as usize % DmaAlloc.line(), 0);
///
/// // A descriptor ring entry of 16 bytes still gets a whole line to itself.
/// let desc = Box::new_in([0u32; 4], DmaAlloc);
/// assert_eq!(&*desc as *const _ as usize % DmaAlloc.line(), 0);
/// assert_eq!(dmaslab::heap().usable_size(&*desc as *const _ as *const u8), DmaAlloc.line());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaAlloc;

impl DmaAlloc {
    /// The DMA cache line the heap was built for.
    pub fn line(&self) -> usize {
        heap().settings().dma_minalign
    }
}

// SAFETY: blocks are valid until deallocated, of at least the layout's size and alignment
// (`dma_alloc` guarantees both; the class slot is reported as the usable length), and the
// allocator is a zero-sized handle to the global heap, so clones are interchangeable.
unsafe impl Allocator for DmaAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let h = heap();
        let align = layout.align().max(h.settings().dma_minalign);
        let p = NonNull::new(h.dma_alloc(layout.size().max(1), align)).ok_or(AllocError)?;
        let len = h.usable_size(p.as_ptr());
        Ok(NonNull::slice_from_raw_parts(p, len.max(layout.size())))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: `ptr` came from `allocate` (Allocator contract).
        unsafe { heap().free(ptr.as_ptr()) }
    }
}
