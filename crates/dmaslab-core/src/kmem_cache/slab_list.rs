//! The intrusive lists of slabs a cache keeps (partial, full, empty), linked through their head
//! descriptors.

use crate::buddy::BuddyLink;
use crate::segment::PageDesc;
use core::ptr;

/// Which list a slab is on.
pub(super) const LIST_PARTIAL: u8 = 1;
pub(super) const LIST_FULL: u8 = 2;
pub(super) const LIST_EMPTY: u8 = 3;

/// An intrusive list of slabs through their head descriptors' `link`.
///
/// # Invariants
/// `head` starts a null-terminated doubly linked list of `len` slab head descriptors.
pub(super) struct SlabList {
    pub(super) head: *mut PageDesc,
    pub(super) len: usize,
}

impl SlabList {
    pub(super) const EMPTY: SlabList = SlabList {
        head: ptr::null_mut(),
        len: 0,
    };

    /// # Safety
    /// `d` is a slab head descriptor on no list.
    pub(super) unsafe fn push(&mut self, d: *mut PageDesc) {
        // SAFETY: `d` and the current head are valid descriptors (caller, list invariant).
        unsafe {
            (*d).link.prev = ptr::null_mut();
            (*d).link.next = self.head.cast::<BuddyLink>();
            if !self.head.is_null() {
                (*self.head).link.prev = d.cast();
            }
        }
        self.head = d;
        self.len += 1;
    }

    /// # Safety
    /// `d` is on this list.
    pub(super) unsafe fn remove(&mut self, d: *mut PageDesc) {
        // SAFETY: `d` and its neighbours are on this list (caller, list invariant).
        unsafe {
            let (next, prev) = (
                (*d).link.next.cast::<PageDesc>(),
                (*d).link.prev.cast::<PageDesc>(),
            );
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).link.next = next.cast();
            }
            if !next.is_null() {
                (*next).link.prev = prev.cast();
            }
            (*d).link.next = ptr::null_mut();
            (*d).link.prev = ptr::null_mut();
        }
        self.len -= 1;
    }
}
