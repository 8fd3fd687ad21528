//! `realloc`: in place while the new size fits the block and wastes less than half of it, else
//! a new block, a copy and a free. A block that must move to grow grows by a quarter at least
//! (tcmalloc's rule): with eight size classes per doubling, a buffer grown a little at a time
//! would otherwise move at every class (BENCHMARKS.md, round six).

use crate::heap::{bad_free, Heap};
use core::ptr;
use dmaslab_core::FreeError;

/// A `realloc` that must move a block to grow it asks for at least `old + old / REALLOC_GROWTH`
/// bytes.
const REALLOC_GROWTH: usize = 4;

impl Heap {
    /// Resizes: in place when `size` fits and wastes less than half, else allocate, copy, free.
    /// Null `ptr` allocates. `size` must not be 0 (the C front handles that case). Null on
    /// failure, `ptr` left untouched.
    ///
    /// # Safety
    /// `ptr` is null or a live allocation of this heap; on success only the result is used.
    pub unsafe fn realloc(&self, ptr: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.realloc_aligned(ptr, size, 1) }
    }

    /// As [`realloc`](Self::realloc), keeping alignment `align`.
    ///
    /// # Safety
    /// As for [`realloc`](Self::realloc); `ptr` was allocated with alignment `align`.
    pub unsafe fn realloc_aligned(&self, ptr: *mut u8, size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.realloc_aligned_at(ptr, size, align, 0) }
    }

    /// [`realloc_aligned`](Self::realloc_aligned) with the caller's address. Debug mode always
    /// moves the block, so the new size gets its own red zone.
    ///
    /// # Safety
    /// As for [`realloc_aligned`](Self::realloc_aligned).
    pub unsafe fn realloc_aligned_at(
        &self,
        ptr: *mut u8,
        size: usize,
        align: usize,
        site: usize,
    ) -> *mut u8 {
        if ptr.is_null() {
            return self.malloc_aligned_at(size, align, site);
        }
        let old = self.usable_size(ptr);
        if old == 0 && self.core().ksize(ptr).is_none() {
            bad_free(FreeError::InvalidPointer(ptr as usize));
        }
        if size <= old && size > old / 2 && !self.debug() {
            return ptr;
        }
        // A block that grows past its size grows by a quarter at least (tcmalloc's hysteresis):
        // a buffer grown a little at a time moves once per quarter, not once per size class.
        // Not in debug mode, where the usable size is the size asked for.
        let want = if size > old && !self.debug() {
            size.max(old.saturating_add(old / REALLOC_GROWTH))
        } else {
            size
        };
        let alloc = |n| {
            if align <= 8 {
                self.malloc_at(n, site)
            } else {
                self.malloc_aligned_at(n, align, site)
            }
        };
        let mut new = alloc(want);
        if new.is_null() && want > size {
            // No room for the headroom: the size asked for may still fit.
            new = alloc(size);
        }
        if new.is_null() {
            return new;
        }
        // SAFETY: both blocks are live, distinct and at least `min(old, size)` bytes.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, old.min(size));
            self.free_at(ptr, site);
        }
        new
    }
}
