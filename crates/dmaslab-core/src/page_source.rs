//! Where pages come from: the embedder decides (as in slabmalloc).

use core::ptr::NonNull;

/// The default page size: 4 KiB.
pub const DEFAULT_PAGE_SIZE: usize = 4096;

/// A supplier of page runs: `2^order` contiguous pages, aligned to their own size.
///
/// The allocator calls it with its page-layer lock held, so implementations need no locking.
/// Implementations: [`crate::ArenaPageSource`] (a buddy allocator over a caller-given region) and,
/// with the `std` feature, [`crate::MmapPageSource`].
pub trait PageSource {
    /// The page size in bytes: a power of two, at least 4096 on hosted systems.
    fn page_size(&self) -> usize;

    /// Hands out `2^order` pages aligned to `page_size() << order`, or `None` when exhausted.
    /// Exhaustion must leave the source usable.
    fn alloc_pages(&mut self, order: u32) -> Option<NonNull<u8>>;

    /// Takes back a run.
    ///
    /// # Safety
    /// `ptr` was returned by `alloc_pages(order)` of this source with the same `order`, and has
    /// not been freed since; nothing accesses the run afterwards.
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32);

    /// Tells the source that the contents of `len` bytes at `ptr` (whole pages inside a run it
    /// handed out) are no longer needed; the run stays allocated. Hosted sources return the
    /// memory to the OS (`madvise(MADV_DONTNEED)`); the default does nothing.
    fn discard(&mut self, ptr: NonNull<u8>, len: usize) {
        let _ = (ptr, len);
    }

    /// Tells the source that `len` bytes at `ptr` (whole pages inside a run it handed out) are
    /// about to be written: a hosted source maps them in now, in one call, rather than one page
    /// fault at a time (`madvise(MADV_POPULATE_WRITE)`); the default does nothing. A hint only:
    /// failure changes nothing.
    fn populate(&mut self, ptr: NonNull<u8>, len: usize) {
        let _ = (ptr, len);
    }

    /// For a source over a fixed region: the bytes of pages it holds, allocated or not. `None`
    /// (the default) for a source without a fixed bound, such as mmap. [`crate::Kmalloc::new`]
    /// sizes its default segments from it and checks that one segment fits.
    fn capacity(&self) -> Option<usize> {
        None
    }

    /// For a source over a fixed region: the smallest region, in bytes, over which a source
    /// of this kind and page size can hand out a run of `2^order` pages and then one page
    /// more, wherever the region starts. `None` (the default) if the source cannot tell.
    fn min_region(&self, order: u32) -> Option<usize> {
        let _ = order;
        None
    }
}

impl<P: PageSource + ?Sized> PageSource for &mut P {
    fn page_size(&self) -> usize {
        (**self).page_size()
    }
    fn alloc_pages(&mut self, order: u32) -> Option<NonNull<u8>> {
        (**self).alloc_pages(order)
    }
    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: the caller upholds `free_pages`'s contract for the inner source.
        unsafe { (**self).free_pages(ptr, order) }
    }
    fn discard(&mut self, ptr: NonNull<u8>, len: usize) {
        (**self).discard(ptr, len)
    }
    fn populate(&mut self, ptr: NonNull<u8>, len: usize) {
        (**self).populate(ptr, len)
    }
    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }
    fn min_region(&self, order: u32) -> Option<usize> {
        (**self).min_region(order)
    }
}
