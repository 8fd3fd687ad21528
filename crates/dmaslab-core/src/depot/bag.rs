//! A lock-free bounded bag of owned pointers: the depot's lists of magazines.
//!
//! `N` atomic slots, each null or holding one pointer the bag owns. [`Bag::put`] claims a null
//! slot with a compare-and-swap, [`Bag::take`] empties a full one with a swap: the pointer the
//! swap returns is the taker's alone. Neither ever reads through a pointer it holds, so a
//! magazine taken out may be drained and freed (and its slab's pages go back to the OS) while
//! another thread is still scanning: a Treiber stack would read `next` of a node it has not won
//! yet, and need hazard pointers or a fixed node pool to survive that. No ABA either: a slot is
//! only ever compared with null.
//!
//! Under concurrency the bag is not linearisable as a set: a scan may pass a slot just before
//! it is filled (or emptied) and report "empty" (or "full") while another slot changes. The
//! depot only needs "usually finds a magazine when there is one"; a miss falls back to the
//! slabs, under a cache lock.
//!
//! This file uses the atomics of its parent's `atomic` module: core's in the crate, loom's in
//! `tests/loom_depot.rs`, which models it.

use super::atomic::{AtomicPtr, Ordering};
use core::ptr;

/// A bag of at most `N` pointers to `T`.
///
/// # Invariants
/// Each non-null slot holds a pointer that the bag owns: stored by one successful [`Bag::put`]
/// and handed out by exactly one [`Bag::take`], whose swap returns it. The bag never
/// dereferences what it holds.
pub struct Bag<T, const N: usize> {
    slots: [AtomicPtr<T>; N],
}

impl<T, const N: usize> Default for Bag<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Bag<T, N> {
    /// An empty bag.
    pub fn new() -> Self {
        Bag {
            slots: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// Puts `p` (not null) into a free slot; `Err(p)` when every slot was seen taken. The
    /// release store publishes what the caller wrote through `p` to its next taker.
    pub fn put(&self, p: *mut T) -> Result<(), *mut T> {
        debug_assert!(!p.is_null());
        for s in &self.slots {
            // The load skips taken slots without a locked instruction.
            if s.load(Ordering::Relaxed).is_null()
                && s.compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(());
            }
        }
        Err(p)
    }

    /// Takes a pointer out, now the caller's; `None` when every slot was seen empty. The
    /// acquire swap makes what its putter wrote through it visible.
    pub fn take(&self) -> Option<*mut T> {
        for s in &self.slots {
            if !s.load(Ordering::Relaxed).is_null() {
                let p = s.swap(ptr::null_mut(), Ordering::Acquire);
                if !p.is_null() {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Pointers held (a snapshot, exact when no other thread uses the bag).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !s.load(Ordering::Relaxed).is_null())
            .count()
    }

    /// Is the bag empty (a snapshot, as [`len`](Self::len))?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
