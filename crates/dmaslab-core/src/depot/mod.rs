//! The depot: per cache, the shared loaded and empty magazines that CPU caches swap whole
//! magazines with, lock-free ([`Bag`]: a magazine exchange takes no lock).
//!
//! Bounds keep memory from growing without limit in producer/consumer patterns (one thread
//! allocates, another frees): at most [`DEPOT_FULL_MAX`] loaded magazines and
//! [`DEPOT_EMPTY_MAX`] empty ones per cache; the caller returns the excess to the core.

mod bag;

pub use bag::Bag;

/// The atomics [`Bag`] is written against (loom's in the loom models, which include `bag.rs`).
mod atomic {
    pub(super) use core::sync::atomic::{AtomicPtr, Ordering};
}

use crate::magazine::Magazine;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Loaded (non-empty) magazines a cache's depot keeps at most.
pub const DEPOT_FULL_MAX: usize = 32;
/// Empty magazines a cache's depot keeps at most.
pub const DEPOT_EMPTY_MAX: usize = 32;

/// One cache's depot.
///
/// # Invariants
/// `full` holds non-empty magazines and `empty` empty ones, all owned by the depot (nobody else
/// reads or writes them until taken out) and on no other list; `objects` is the sum of the
/// counts of the magazines in `full` whenever no push or pop is under way.
pub struct Depot {
    full: Bag<Magazine, DEPOT_FULL_MAX>,
    empty: Bag<Magazine, DEPOT_EMPTY_MAX>,
    objects: AtomicUsize,
}

// SAFETY: the depot owns its magazines (and the objects in them), handed from thread to thread
// with release/acquire (see `Bag`); nothing ties them to a thread.
unsafe impl Send for Depot {}
// SAFETY: as above: every shared access goes through the bags' atomics.
unsafe impl Sync for Depot {}

impl Default for Depot {
    fn default() -> Self {
        Self::new()
    }
}

impl Depot {
    /// An empty depot.
    pub fn new() -> Depot {
        Depot {
            full: Bag::new(),
            empty: Bag::new(),
            objects: AtomicUsize::new(0),
        }
    }

    /// Takes a loaded magazine, now the caller's.
    pub fn pop_full(&self) -> Option<*mut Magazine> {
        let m = self.full.take()?;
        // SAFETY: taken out, `m` is ours, a valid magazine (invariant).
        let n = unsafe { (*m).count } as usize;
        self.objects.fetch_sub(n, Ordering::Relaxed);
        Some(m)
    }

    /// Takes an empty magazine, now the caller's.
    pub fn pop_empty(&self) -> Option<*mut Magazine> {
        self.empty.take()
    }

    /// Gives a magazine to the depot: a loaded one goes to the loaded list, an empty one to the
    /// empty list. When that list is at its bound the magazine is handed back (`Some`) for the
    /// caller to drain and free.
    ///
    /// # Safety
    /// `m` is a valid magazine owned by the caller, which gives up ownership unless returned.
    pub unsafe fn push(&self, m: *mut Magazine) -> Option<*mut Magazine> {
        // SAFETY: the caller owns `m` until it is put.
        let n = unsafe { (*m).count } as usize;
        if n == 0 {
            return self.empty.put(m).err();
        }
        // Counted before the put: the pop that takes `m` out subtracts after it.
        self.objects.fetch_add(n, Ordering::Relaxed);
        let r = self.full.put(m).err();
        if r.is_some() {
            self.objects.fetch_sub(n, Ordering::Relaxed);
        }
        r
    }

    /// Magazines held: (loaded, empty); a snapshot.
    pub fn counts(&self) -> (usize, usize) {
        (self.full.len(), self.empty.len())
    }

    /// Objects held in loaded magazines; a snapshot.
    pub fn objects(&self) -> usize {
        self.objects.load(Ordering::Relaxed)
    }
}
