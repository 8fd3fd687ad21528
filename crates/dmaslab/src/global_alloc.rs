//! `DmaSlab`: the heap as Rust's `#[global_allocator]`.

use crate::config::{offer, CodeSettings};
use crate::fast_path::{fast_free, fast_malloc};
use crate::heap::{heap, try_heap};
use core::alloc::{GlobalAlloc, Layout};
use dmaslab_core::Policy;

/// The process-wide dmaslab heap as a [`GlobalAlloc`].
///
/// Settings come from the environment (`DMASLAB_POLICY`, `DMASLAB_DMA_MINALIGN`,
/// `DMASLAB_DEBUG`, `DMASLAB_STATS`), as for the preload library, except those chosen in code
/// with [`with_policy`](Self::with_policy), [`dma_minalign`](Self::dma_minalign) or
/// [`debug`](Self::debug), which take precedence. The heap is built once, by the first
/// allocation of the process: the `#[global_allocator]`'s choices are the ones that count.
///
/// ```
/// use dmaslab::{DmaSlab, Policy};
///
/// #[global_allocator]
/// static GLOBAL: DmaSlab = DmaSlab::with_policy(Policy::A).dma_minalign(128);
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
///     let s = dmaslab::heap().settings();
///     assert_eq!((s.policy, s.dma_minalign), (Policy::A, 128)); // whatever the environment says
///     let b = Box::new([0u8; 24]);
///     assert_eq!(&*b as *const _ as usize % 128, 0, "policy A: every object on a DMA line");
/// }
/// ```
///
/// `DmaSlab` alone (the constant of that name) leaves everything to the environment:
/// `static GLOBAL: DmaSlab = DmaSlab;`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaSlab {
    settings: CodeSettings,
}

/// The `DmaSlab` that takes every setting from the environment, so that
/// `static GLOBAL: DmaSlab = DmaSlab;` reads as for a unit struct.
#[allow(non_upper_case_globals)]
pub const DmaSlab: DmaSlab = DmaSlab::new();

impl DmaSlab {
    /// Settings from the environment.
    pub const fn new() -> Self {
        DmaSlab {
            settings: CodeSettings::NONE,
        }
    }

    /// Policy `p`, whatever `DMASLAB_POLICY` says.
    pub const fn with_policy(p: Policy) -> Self {
        Self::new().policy(p)
    }

    /// Chooses the policy (over `DMASLAB_POLICY`).
    pub const fn policy(mut self, p: Policy) -> Self {
        self.settings = self.settings.policy(p);
        self
    }

    /// Chooses the DMA cache line: 32, 64, 128 or 256 (over `DMASLAB_DMA_MINALIGN`).
    pub const fn dma_minalign(mut self, line: usize) -> Self {
        self.settings = self.settings.dma_minalign(line);
        self
    }

    /// Chooses debug mode (over `DMASLAB_DEBUG`).
    pub const fn debug(mut self, on: bool) -> Self {
        self.settings = self.settings.debug(on);
        self
    }

    /// The settings chosen in code.
    pub const fn settings(&self) -> CodeSettings {
        self.settings
    }
}

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
        alloc_slow(self, layout.size(), layout.align())
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
fn alloc_slow(a: &DmaSlab, size: usize, align: usize) -> *mut u8 {
    if try_heap().is_none() {
        // Most likely the process's first allocation: the heap is built just below.
        offer(a.settings);
    }
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
