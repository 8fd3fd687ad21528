//! The process-wide heap's fast paths: `malloc` and `free` through the thread's [`CpuCache`]
//! without a lock, written to be inlined into the C entry points and `DmaSlab`.
//!
//! They read only this thread's cache and data that is immutable once published, so they need
//! neither the heap's "ready" check nor a lock: [`FAST_TABLE`] maps a size to a cache index and
//! holds "no class" everywhere until the process-wide heap publishes the core's classes (and
//! stays so in debug mode, under tracing, and for sizes served elsewhere); a thread's segment
//! hint is set only by the process-wide heap's full path. Anything else (an empty or full
//! magazine, a hint miss, a pointer that is not an object start, a double free) returns "not
//! done" and the caller takes the full path, which repeats the checks and reports.
//!
//! [`CpuCache`]: dmaslab_core::CpuCache

use crate::heap::{heap_unchecked, SMALL_MAX, TABLE_LEN};
use crate::platform::tcache_fast;
use crate::sized_free::rounded_request;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};
use dmaslab_core::{CpuCache, Gfp, Kmalloc, MmapPageSource, NO_CLASS};

/// `FAST_TABLE[(size + 7) >> 3]`: the cache index for `malloc(size)`, `size <= SMALL_MAX`, or
/// `NO_CLASS`: a mirror of [`Kmalloc::cpu_class`] for one load on the fast path.
///
/// # Invariants
/// An entry other than `NO_CLASS` is the process-wide heap's core's `cpu_class` for the sizes
/// of that slot, and stays so for the life of the process.
static FAST_TABLE: [AtomicU8; TABLE_LEN] = [const { AtomicU8::new(NO_CLASS) }; TABLE_LEN];

/// Publishes the process-wide heap's classes (called once, when it is built with fast paths).
pub(crate) fn publish(core: &Kmalloc<MmapPageSource>) {
    for (i, slot) in FAST_TABLE.iter().enumerate() {
        // Release: the heap (`core` in it) is written before, and a fast path that loads an
        // entry with Acquire may use it (`fast_malloc`).
        slot.store(
            core.cpu_class((i * 8).max(1), Gfp::KERNEL),
            Ordering::Release,
        );
    }
}

/// `malloc(size)` from this thread's cache; `None` when that is not possible (the caller then
/// calls [`Heap::malloc_at`](crate::Heap::malloc_at), which also builds the heap).
#[inline(always)]
pub fn fast_malloc(size: usize) -> Option<NonNull<u8>> {
    if size > SMALL_MAX {
        return None;
    }
    // Acquire (a plain load on x86-64): an entry other than NO_CLASS was published after the
    // heap was built, so the heap may be read below.
    let x = FAST_TABLE[(size + 7) >> 3].load(Ordering::Acquire);
    if x == NO_CLASS {
        return None;
    }
    let tc = tcache_fast()?;
    // SAFETY: the heap is built and visible (the Acquire load above saw its table entry); the
    // thread cache is this thread's only, bound to that heap's core; `x` is the core's
    // `cpu_class` (table invariant).
    unsafe { heap_unchecked().core().kmalloc_fast(&mut (*tc).cpu, x) }
}

/// `free(p)` into this thread's cache; false when that is not possible (null `p` included: the
/// caller then calls [`Heap::free_at`](crate::Heap::free_at)).
///
/// # Safety
/// `p` is null or a live allocation of the process-wide heap that the caller gives up.
#[inline(always)]
pub unsafe fn fast_free(p: *mut u8) -> bool {
    let Some(cc) = hinted_cache() else {
        return false;
    };
    // SAFETY: a set hint was recorded by the process-wide heap's full path, so that heap is
    // built, and `cc` (this thread's only) is bound to its core; `p` is given up (caller).
    unsafe { heap_unchecked().core().kfree_fast(&mut *cc, p) }
}

/// This thread's cache if its segment hint is set (so the process-wide heap is built), the
/// test both fast frees start with.
#[inline(always)]
fn hinted_cache() -> Option<*mut CpuCache> {
    let tc = tcache_fast()?;
    // SAFETY: this thread's cache, used only by this thread.
    let cc = unsafe { &mut (*tc).cpu };
    cc.is_hinted().then_some(cc as *mut CpuCache)
}

/// A sized free of `p` (`size` bytes aligned to `align`) into this thread's cache when `p` is
/// an object of the class such a request takes from (so the size matches, by the rule of
/// [`Heap::free_sized_at`](crate::Heap::free_sized_at)); false otherwise, a mismatch included:
/// the caller then takes the checked full path, which reports a mismatch.
///
/// # Safety
/// As for [`fast_free`].
#[inline(always)]
pub unsafe fn fast_free_sized(p: *mut u8, size: usize, align: usize) -> bool {
    // (A size of 0 reads entry 0, which holds the class of 1 byte, as `rounded_request` says.)
    let size = if align <= 1 {
        size
    } else {
        rounded_request(size, align)
    };
    if size > SMALL_MAX {
        return false;
    }
    // Relaxed: an entry is `NO_CLASS` or its final value (table invariant), and it is only
    // compared with the object's cache; `NO_CLASS` matches none (the checked path decides).
    let x = FAST_TABLE[(size + 7) >> 3].load(Ordering::Relaxed);
    let Some(cc) = hinted_cache() else {
        return false;
    };
    // SAFETY: as in `fast_free`.
    unsafe { heap_unchecked().core().kfree_fast_of(&mut *cc, p, x) }
}
