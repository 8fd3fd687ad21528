//! The process-wide heap's fast paths: `malloc` and `free` that hit the thread's loaded
//! magazine, written to be inlined into the C entry points and `DmaSlab`.
//!
//! They read only this thread's cache and data that is immutable once published, so they need
//! neither the heap's "ready" check nor a lock: [`FAST_TABLE`] maps a size to a cache index and
//! holds "no class" everywhere until the process-wide heap publishes its table (and stays so
//! in debug mode, under tracing, and for sizes served elsewhere); a thread's segment hint is
//! set only by the process-wide heap's free path. Anything else (an empty or full magazine, a
//! hint miss, a pointer that is not an object start, a double free on the magazine's top)
//! returns "not done" and the caller takes the full path, which repeats the checks and reports.
//!
//! A freed object first becomes the thread's `recent` object, and the one it replaces goes into
//! its magazine; `malloc` of the same cache takes `recent` back. A `malloc`/`free` pair thus
//! carries no dependency through the freed object's page descriptor and cache from one pair to
//! the next (only a store and a load of `recent`), where a push and pop through the magazine
//! would chain five loads (count, slot, descriptor, magazine, count).

use crate::heap::{heap_unchecked, tcache_fast, NO_CLASS, SMALL_MAX, TABLE_LEN};
use crate::magazine::Magazine;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, Ordering};

/// `FAST_TABLE[(size + 7) >> 3]`: the cache index for `malloc(size)`, `size <= SMALL_MAX`, or
/// `NO_CLASS`.
///
/// # Invariants
/// An entry other than `NO_CLASS` is a valid cache index of the process-wide heap with
/// magazines, and stays so for the life of the process.
static FAST_TABLE: [AtomicU8; TABLE_LEN] = [const { AtomicU8::new(NO_CLASS) }; TABLE_LEN];

/// Publishes the process-wide heap's size table (called once, when it is built with
/// magazines; a table without magazines is all `NO_CLASS` and changes nothing).
pub(crate) fn publish(table: &[u8; TABLE_LEN]) {
    for (slot, &x) in FAST_TABLE.iter().zip(table) {
        slot.store(x, Ordering::Relaxed);
    }
}

/// `malloc(size)` from this thread's loaded magazine; `None` when that is not possible (the
/// caller then calls [`Heap::malloc_at`](crate::Heap::malloc_at), which also builds the heap).
#[inline(always)]
pub fn fast_malloc(size: usize) -> Option<NonNull<u8>> {
    if size > SMALL_MAX {
        return None;
    }
    // Relaxed: what follows reads only this thread's cache.
    let x = FAST_TABLE[(size + 7) >> 3].load(Ordering::Relaxed);
    if x == NO_CLASS {
        return None;
    }
    let tc = tcache_fast()?;
    // SAFETY: the thread cache is this thread's only; `x` is a cache index (table invariant);
    // `recent` is a free object of cache `recent_x` owned by the thread; a non-null loaded
    // magazine is owned by the thread and `objs[..count]` are free objects of cache `x`.
    unsafe {
        if (*tc).recent_x == x {
            let p = (*tc).recent;
            // Cleared, so that freeing `p` again is not taken for a double free.
            (*tc).recent = ptr::null_mut();
            (*tc).recent_x = NO_CLASS;
            return Some(NonNull::new_unchecked(p));
        }
        let m = *(*tc).loaded.get_unchecked(x as usize);
        if m.is_null() {
            return None;
        }
        Magazine::pop(m)
    }
}

/// `free(p)` into this thread's loaded magazine; false when that is not possible (null `p`
/// included: the caller then calls [`Heap::free_at`](crate::Heap::free_at)).
///
/// # Safety
/// `p` is null or a live allocation of the process-wide heap that the caller gives up.
#[inline(always)]
pub unsafe fn fast_free(p: *mut u8) -> bool {
    let Some(tc) = tcache_fast() else {
        return false;
    };
    // SAFETY: this thread's cache.
    let hint = unsafe { &(*tc).seg_hint };
    if !hint.is_set() {
        return false;
    }
    // SAFETY: a set hint was recorded by the process-wide heap's free path, so that heap is
    // built.
    let h = unsafe { heap_unchecked() };
    let Some(id) = h.core().cache_of_if_hinted(p, hint) else {
        return false;
    };
    let x = id.index();
    prefetch_for_write(p);
    // SAFETY: as in `fast_malloc`; `p` is an object start of a slab of cache `x` and the
    // caller gives it up. `top` reads inside the magazine (`count <= cap`).
    unsafe {
        let m = *(*tc).loaded.get_unchecked(x);
        if m.is_null() || (*tc).freed_last(m, p) {
            // No magazine (the thread has none yet, or has exited), or `free(p); free(p)`:
            // the full path handles and reports it.
            return false;
        }
        // `p` becomes the recent object; the previous one goes on top of its magazine. The
        // next `malloc` then depends on no load made through `p` (its cache, its magazine).
        let rx = (*tc).recent_x;
        if rx != NO_CLASS {
            // Out of line: in a malloc/free pair, `malloc` took the recent object back, and
            // the fall-through to the two stores and the return, with no taken branch, is
            // the pair's whole path (measured in BENCHMARKS.md, fourth round).
            core::hint::cold_path();
            let rm = *(*tc).loaded.get_unchecked(rx as usize);
            // (Null only after a failed magazine allocation.)
            if rm.is_null() || !Magazine::push(rm, (*tc).recent) {
                // No room for the recent object: `p` goes into its own magazine instead
                // (else the recent one would send every free down the slow path until a
                // `malloc` of its cache).
                return Magazine::push(m, p);
            }
        }
        (*tc).recent = p;
        (*tc).recent_x = x as u8;
    }
    true
}

/// Starts bringing the line at `p` in for writing: the drain that later links a freed object
/// into its slab finds it there, where after a run of frees in random order it found it cold
/// (random-1M: the drain went from 15 % to 7 % of the profile).
#[inline(always)]
fn prefetch_for_write(p: *mut u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetchw` never faults and changes no memory, whatever the address (CPUs
    // without it execute it as a no-op).
    unsafe {
        core::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
