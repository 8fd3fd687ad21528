//! What the DMA layer asks the heap: who owns a byte (for the checker and the exact bounce
//! rule) and `kmalloc_size_roundup` (for Linux's size rule).

use dmaslab_core::{Kmalloc, Owner, PageSource};

/// The heap whose objects are mapped for DMA.
///
/// [`Kmalloc`] implements it, and so does a reference to any implementor, so a
/// [`crate::DmaMap`] can own its heap (the model [`crate::Machine`]) or borrow a static one (a
/// firmware's global heap).
pub trait HeapLayout {
    /// Who owns the byte at `addr` ([`Owner::Foreign`] for memory that is not the heap's).
    fn owner_of(&self, addr: usize) -> Owner;
    /// The size class a `size`-byte request lands in (`kmalloc_size_roundup`).
    fn kmalloc_size_roundup(&self, size: usize) -> usize;
}

impl<P: PageSource> HeapLayout for Kmalloc<P> {
    fn owner_of(&self, addr: usize) -> Owner {
        Kmalloc::owner_of(self, addr)
    }
    fn kmalloc_size_roundup(&self, size: usize) -> usize {
        Kmalloc::kmalloc_size_roundup(self, size)
    }
}

impl<T: HeapLayout + ?Sized> HeapLayout for &T {
    fn owner_of(&self, addr: usize) -> Owner {
        (**self).owner_of(addr)
    }
    fn kmalloc_size_roundup(&self, size: usize) -> usize {
        (**self).kmalloc_size_roundup(size)
    }
}
