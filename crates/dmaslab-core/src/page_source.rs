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

    /// Hands out a span of `pages` contiguous pages (any count) such that the address `offset`
    /// bytes into it is aligned to `align` (a power of two of at least `page_size()`; `offset`
    /// a multiple of the page size below `align`), or `None`. The page layer takes its huge
    /// segments this way. The default takes the smallest run of
    /// [`alloc_pages`](Self::alloc_pages) that holds such a span, so a source that cannot give
    /// a run that large or that aligned answers `None`; a hosted source maps exactly `pages`.
    fn alloc_span(&mut self, pages: usize, align: usize, offset: usize) -> Option<NonNull<u8>> {
        let (order, lead) = span_run(self.page_size(), pages, align, offset)?;
        let run = self.alloc_pages(order)?;
        // SAFETY: `lead + pages` pages fit in the run (`span_run`).
        NonNull::new(unsafe { run.as_ptr().add(lead) })
    }

    /// Takes back a span.
    ///
    /// # Safety
    /// `ptr` was returned by `alloc_span(pages, align, offset)` of this source with the same
    /// arguments, and has not been freed since; nothing accesses the span afterwards.
    unsafe fn free_span(&mut self, ptr: NonNull<u8>, pages: usize, align: usize, offset: usize) {
        let (order, lead) = span_run(self.page_size(), pages, align, offset)
            .expect("free_span: the span was handed out with these arguments");
        // SAFETY: the span lies `lead` bytes into the run `alloc_span` took (caller).
        unsafe { self.free_pages(NonNull::new_unchecked(ptr.as_ptr().sub(lead)), order) }
    }

    /// A monotonic clock in milliseconds, if the source has one: the page layer returns cached
    /// huge segments idle for about a second. Without one (the default) it counts large
    /// allocations and frees instead.
    fn now_ms(&self) -> Option<u64> {
        None
    }

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

    /// Makes `len` bytes at `ptr` (whole pages inside a run or span it handed out) inaccessible
    /// (`access == false`: any load or store faults) or accessible again (`true`), for guard
    /// pages and quarantined page runs. True when done; the default cannot (a fixed region
    /// without an MMU) and answers false, and callers then go without the guard.
    fn protect(&mut self, ptr: NonNull<u8>, len: usize, access: bool) -> bool {
        let _ = (ptr, len, access);
        false
    }

    /// Moves the pages of `len` bytes at `from` (whole pages, inside one mapping of a span it
    /// handed out, all with the same protection) to `to` (whole pages inside another span),
    /// contents and all, without copying: a hosted source remaps them (`mremap`), so resident
    /// pages change place without page faults. The pages at `to` are replaced; `from` is left
    /// without pages (nothing may access it until its span is freed). The protection moves with
    /// the pages. True when done; the default cannot and answers false, and then both ranges are
    /// as they were, or `to` holds fresh zero pages, readable and writable.
    ///
    /// # Safety
    /// Both ranges lie in spans of this source that the caller owns and nothing accesses; they
    /// do not overlap.
    unsafe fn move_pages(&mut self, from: NonNull<u8>, to: NonNull<u8>, len: usize) -> bool {
        let _ = (from, to, len);
        false
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

/// The run of [`PageSource::alloc_pages`] the default [`PageSource::alloc_span`] takes: its
/// order, and the span's start in it (bytes). `None` if no order fits in a `usize`.
fn span_run(page_size: usize, pages: usize, align: usize, offset: usize) -> Option<(u32, usize)> {
    // A run of order k >= log2(align / page) is aligned to `align`; the span starts where
    // `offset` bytes in reaches the next multiple of it.
    let lead = (align - offset % align) % align;
    let need = pages.checked_add(lead / page_size)?;
    let order = need
        .checked_next_power_of_two()?
        .max(align / page_size)
        .trailing_zeros();
    (order + page_size.trailing_zeros() < usize::BITS).then_some((order, lead))
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
    fn alloc_span(&mut self, pages: usize, align: usize, offset: usize) -> Option<NonNull<u8>> {
        (**self).alloc_span(pages, align, offset)
    }
    unsafe fn free_span(&mut self, ptr: NonNull<u8>, pages: usize, align: usize, offset: usize) {
        // SAFETY: the caller upholds `free_span`'s contract for the inner source.
        unsafe { (**self).free_span(ptr, pages, align, offset) }
    }
    fn now_ms(&self) -> Option<u64> {
        (**self).now_ms()
    }
    fn discard(&mut self, ptr: NonNull<u8>, len: usize) {
        (**self).discard(ptr, len)
    }
    fn populate(&mut self, ptr: NonNull<u8>, len: usize) {
        (**self).populate(ptr, len)
    }
    fn protect(&mut self, ptr: NonNull<u8>, len: usize, access: bool) -> bool {
        (**self).protect(ptr, len, access)
    }
    unsafe fn move_pages(&mut self, from: NonNull<u8>, to: NonNull<u8>, len: usize) -> bool {
        // SAFETY: the caller upholds `move_pages`'s contract for the inner source.
        unsafe { (**self).move_pages(from, to, len) }
    }
    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }
    fn min_region(&self, order: u32) -> Option<usize> {
        (**self).min_region(order)
    }
}
