//! Sized frees: C++'s sized `operator delete` and C23's `free_sized` / `free_aligned_sized`,
//! where the caller tells the size (and alignment) it allocated with. A size that does not
//! round to the object's class is misuse — the object is not the one the caller thinks, or the
//! caller has the wrong type — and is reported like an invalid free.
//!
//! # The rule
//! The request `(size, align)` is rounded as the allocation path rounds it: a slab request to
//! its class (the smallest class holding `size` that is a multiple of `align`, i.e. whose
//! natural alignment is at least `align`), a larger one to whole pages. It must give
//! - for a slab object in debug mode: the class of the size the object was last requested
//!   with (the core keeps it per object; debug `realloc` always moves);
//! - for a slab object in normal mode: the object's class, or a size in the window
//!   `(class / 2, class]` within which `realloc` shrinks in place (so `free_sized` after such
//!   a `realloc` is accepted). It costs one segment-map lookup for the object's cache and one
//!   class-table lookup for the size's; only when they differ does the window take the
//!   cache's lock. (`libdmaslab.so`'s sized frees take [`fast_free_sized`] first: on the
//!   hinted lookup of the fast path, the size's class is one table load and a compare; only a
//!   miss or a different class comes here. The unhinted lookup of this function on every
//!   sized free doubled the time of a `new`/sized-`delete` pair.)
//!
//! [`fast_free_sized`]: crate::fast_free_sized
//! - for a page run or huge segment, in both modes: its length in whole pages, or a size in
//!   the same window (a huge request may be served by a cached freed segment up to a quarter
//!   larger, and `realloc` keeps a block down to half).

use crate::heap::{Heap, SMALL_MAX};
use crate::platform::{self, FixedBuf};
use core::fmt::Write;
use dmaslab_core::Gfp;

/// What the object at a sized free's pointer is.
enum Object {
    /// A slab object of cache `name`, `slot` bytes, last requested with `requested` bytes
    /// (debug mode; the slot otherwise).
    Slab {
        name: dmaslab_core::CacheName,
        slot: usize,
        requested: usize,
    },
    /// A page run or huge segment of `bytes`.
    Pages { bytes: usize },
}

impl Heap {
    /// Frees `ptr`, allocated (the caller says) with `size` bytes aligned to `align` (1 for
    /// plain `malloc` and `operator new`). A size that does not round to the object's class
    /// prints `dmaslab: sized delete mismatch of 0x... (size N, object of kmalloc-XXX ...)`
    /// and aborts (see the module's rule); anything else wrong is [`free_at`](Heap::free_at)'s
    /// report. Null is ignored.
    ///
    /// # Safety
    /// As for [`free`](Heap::free).
    pub unsafe fn free_sized_at(&self, ptr: *mut u8, size: usize, align: usize, site: usize) {
        if ptr.is_null() {
            return;
        }
        if !self.sized_class_ok(ptr, size, align) {
            self.check_size_slow(ptr, size, align);
        }
        // SAFETY: the caller gives `ptr` up.
        unsafe { self.free_at(ptr, site) }
    }

    /// The lock-free test of normal mode: `ptr` is a slab object of the cache that serves
    /// `(size, align)`. False sends the free to [`check_size_slow`](Self::check_size_slow).
    fn sized_class_ok(&self, ptr: *mut u8, size: usize, align: usize) -> bool {
        if self.debug() {
            return false;
        }
        let k = self.core();
        let want = rounded_request(size, align);
        want <= SMALL_MAX
            && k.cache_of(ptr)
                .is_some_and(|id| k.kmalloc_cache(want, Gfp::KERNEL) == Some(id))
    }

    /// The whole rule; returns if the size fits (or `ptr` is no object: the free reports
    /// that), else reports the mismatch and aborts.
    #[cold]
    fn check_size_slow(&self, ptr: *mut u8, size: usize, align: usize) {
        let Some(object) = self.object_at(ptr) else {
            return;
        };
        let want = self.class_bytes(size, align);
        let fits = match object {
            Object::Slab {
                slot, requested, ..
            } => {
                if self.debug() {
                    want == self.class_bytes(requested, align)
                } else {
                    want == slot || in_realloc_window(size, slot)
                }
            }
            // Huge segments come from a cache of freed ones too, up to a quarter larger.
            Object::Pages { bytes } => want == bytes || in_realloc_window(size, bytes),
        };
        if !fits {
            sized_mismatch(ptr, size, align, &object);
        }
    }

    /// The object starting at `ptr`, if any.
    fn object_at(&self, ptr: *mut u8) -> Option<Object> {
        let k = self.core();
        let bytes = k.ksize(ptr)?;
        match k.cache_of(ptr) {
            Some(id) => Some(Object::Slab {
                name: k.slabinfo(id)?.name,
                slot: bytes,
                requested: k.usable_size(ptr)?,
            }),
            None => Some(Object::Pages { bytes }),
        }
    }

    /// The bytes the allocation path hands out for `(size, align)` outside debug mode: the
    /// slab class, or whole pages.
    fn class_bytes(&self, size: usize, align: usize) -> usize {
        let want = rounded_request(size, align);
        if want <= SMALL_MAX {
            self.core().kmalloc_size_roundup(want)
        } else {
            let page = self.core().page_size();
            size.max(1).div_ceil(page) * page
        }
    }
}

/// `size` rounded up to `align`: the smallest class holding it is then the smallest class
/// holding `size` with natural alignment `align` (in both class sets each class exceeds the one
/// below by a power of two that divides it). Saturates, so an absurd size is simply no slab
/// request.
#[inline(always)]
pub(crate) fn rounded_request(size: usize, align: usize) -> usize {
    let size = size.max(1);
    if align <= 1 {
        return size;
    }
    size.checked_next_multiple_of(align).unwrap_or(usize::MAX)
}

/// Normal-mode `realloc` keeps a block whose new size is more than half of it.
fn in_realloc_window(size: usize, bytes: usize) -> bool {
    size <= bytes && size > bytes / 2
}

/// Prints the one-line report and aborts. Formats into a stack buffer: never allocates.
#[cold]
fn sized_mismatch(ptr: *mut u8, size: usize, align: usize, object: &Object) -> ! {
    let mut b = FixedBuf::<256>::new();
    let _ = write!(
        b,
        "dmaslab: sized delete mismatch of {:#x} (size {size}",
        ptr as usize
    );
    if align > 1 {
        let _ = write!(b, ", align {align}");
    }
    let _ = match object {
        Object::Slab {
            name,
            slot,
            requested,
        } if requested != slot => {
            write!(
                b,
                ", object of {name}, {slot} bytes, requested {requested})"
            )
        }
        Object::Slab { name, slot, .. } => write!(b, ", object of {name}, {slot} bytes)"),
        Object::Pages { bytes } => write!(b, ", object of a page run, {bytes} bytes)"),
    };
    platform::stderr_line(b.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
