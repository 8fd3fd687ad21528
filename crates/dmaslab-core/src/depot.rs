//! The depot: per cache, the shared lists of loaded and empty magazines that threads swap whole
//! magazines with, under one spin lock per cache.
//!
//! Bounds keep memory from growing without limit in producer/consumer patterns (one thread
//! allocates, another frees): at most [`DEPOT_FULL_MAX`] loaded magazines and
//! [`DEPOT_EMPTY_MAX`] empty ones per cache; the caller returns the excess to the core.

use crate::magazine::Magazine;
use crate::spin::SpinLock;
use core::ptr;

/// Loaded (non-empty) magazines a cache's depot keeps at most.
pub const DEPOT_FULL_MAX: usize = 8;
/// Empty magazines a cache's depot keeps at most.
pub const DEPOT_EMPTY_MAX: usize = 8;

/// The lists of one cache.
///
/// # Invariants
/// `full` is a `next`-linked list of `nfull` non-empty magazines and `empty` one of `nempty`
/// empty magazines; the depot owns every magazine on them.
pub struct DepotLists {
    full: *mut Magazine,
    nfull: usize,
    empty: *mut Magazine,
    nempty: usize,
}

// SAFETY: the lists own their magazines (and the objects in them); nothing ties them to a thread.
unsafe impl Send for DepotLists {}

/// One cache's depot.
pub type Depot = SpinLock<DepotLists>;

impl DepotLists {
    /// Empty lists.
    pub const NEW: DepotLists = DepotLists {
        full: ptr::null_mut(),
        nfull: 0,
        empty: ptr::null_mut(),
        nempty: 0,
    };

    /// Takes a loaded magazine.
    pub fn pop_full(&mut self) -> Option<*mut Magazine> {
        let m = self.full;
        if m.is_null() {
            return None;
        }
        // SAFETY: `m` is on our list (invariant); off it, `next` is null (magazine invariant).
        unsafe {
            self.full = (*m).next;
            (*m).next = ptr::null_mut();
        }
        self.nfull -= 1;
        Some(m)
    }

    /// Takes an empty magazine.
    pub fn pop_empty(&mut self) -> Option<*mut Magazine> {
        let m = self.empty;
        if m.is_null() {
            return None;
        }
        // SAFETY: `m` is on our list (invariant); off it, `next` is null (magazine invariant).
        unsafe {
            self.empty = (*m).next;
            (*m).next = ptr::null_mut();
        }
        self.nempty -= 1;
        Some(m)
    }

    /// Gives a magazine to the depot: a loaded one goes to the loaded list, an empty one to the
    /// empty list. When that list is at its bound the magazine is handed back (`Some`) for the
    /// caller to drain and free outside the lock.
    ///
    /// # Safety
    /// `m` is a valid magazine owned by the caller, which gives up ownership unless returned.
    pub unsafe fn push(&mut self, m: *mut Magazine) -> Option<*mut Magazine> {
        // SAFETY: the caller owns `m`.
        unsafe {
            if (*m).is_empty() {
                if self.nempty >= DEPOT_EMPTY_MAX {
                    return Some(m);
                }
                (*m).next = self.empty;
                self.empty = m;
                self.nempty += 1;
            } else {
                if self.nfull >= DEPOT_FULL_MAX {
                    return Some(m);
                }
                (*m).next = self.full;
                self.full = m;
                self.nfull += 1;
            }
        }
        None
    }

    /// Magazines held: (loaded, empty).
    pub fn counts(&self) -> (usize, usize) {
        (self.nfull, self.nempty)
    }

    /// Objects held in loaded magazines.
    pub fn objects(&self) -> usize {
        let mut n = 0;
        let mut m = self.full;
        while !m.is_null() {
            // SAFETY: list members are valid magazines (invariant).
            unsafe {
                n += (*m).count as usize;
                m = (*m).next;
            }
        }
        n
    }
}
