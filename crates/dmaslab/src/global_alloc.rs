//! `DmaSlab`: the heap as Rust's `#[global_allocator]`.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: dmaslab::DmaSlab = dmaslab::DmaSlab;
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.iter().sum::<u64>(), 499_500);
//! }
//! ```

use crate::fast_path::{fast_free, fast_malloc};
use crate::heap::heap;
use core::alloc::{GlobalAlloc, Layout};

/// The process-wide dmaslab heap as a [`GlobalAlloc`]. Settings come from the environment
/// (`DMASLAB_POLICY`, `DMASLAB_DMA_MINALIGN`), as for the preload library.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaSlab;

// SAFETY: `malloc_aligned` returns null or a block of at least `size` bytes aligned to `align`,
// unused by anyone else until freed; `free` accepts exactly those blocks.
unsafe impl GlobalAlloc for DmaSlab {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= 8 {
            if let Some(p) = fast_malloc(layout.size()) {
                return p.as_ptr();
            }
        }
        alloc_slow(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` of this allocator (GlobalAlloc contract).
        unsafe {
            if !fast_free(ptr) {
                dealloc_slow(ptr)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is live with `layout` (GlobalAlloc contract); `new_size > 0`.
        unsafe { heap().realloc_aligned(ptr, new_size, layout.align()) }
    }
}

// The whole paths out of line: inlined, they gave the fast paths a frame (six saved registers
// and a stack adjustment on every call).

#[cold]
#[inline(never)]
fn alloc_slow(size: usize, align: usize) -> *mut u8 {
    if align <= 8 {
        heap().malloc(size)
    } else {
        heap().malloc_aligned(size, align)
    }
}

/// # Safety
/// As for [`GlobalAlloc::dealloc`].
#[cold]
#[inline(never)]
unsafe fn dealloc_slow(ptr: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { heap().free(ptr) }
}
