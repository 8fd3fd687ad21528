//! A binary buddy allocator over out-of-line page descriptors.
//!
//! Used twice: by [`crate::ArenaPageSource`] over a whole arena, and by the page layer over the
//! usable pages of every segment. Descriptors live outside the pages they describe, so free pages
//! are never written (an mmap'ed page that was discarded stays discarded).
//!
//! A *zone* is a run of pages numbered from an index 0 whose address is aligned to the largest
//! block, so a block of order `k` starting at index `i` has `i % 2^k == 0` and its buddy is at
//! `i ^ 2^k`. Only indices in `first..end` have descriptors; pages outside never count as free,
//! so blocks never merge across the zone's edges.

use core::ptr;

/// The buddy part of a page descriptor. Page descriptors that embed it put it first (`repr(C)`).
///
/// # Invariants
/// `free` is true exactly when this page heads a block on a [`FreeArea`] list, and then `order`
/// is the block's order and `next`/`prev` link the list of that order (null-terminated).
#[repr(C)]
pub struct BuddyLink {
    pub(crate) next: *mut BuddyLink,
    pub(crate) prev: *mut BuddyLink,
    pub(crate) order: u8,
    pub(crate) free: bool,
}

impl BuddyLink {
    /// A link that is on no list.
    pub const UNLINKED: BuddyLink = BuddyLink {
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        order: 0,
        free: false,
    };
}

/// The largest order a free area can hold.
pub const MAX_ORDER: u32 = 40;

/// Where the descriptors of one zone are.
///
/// # Invariants
/// For `first <= i < end`, `nodes + (i - first) * stride` points to a live descriptor whose first
/// field is a [`BuddyLink`], valid for as long as the zone is used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Zone {
    pub(crate) nodes: *mut u8,
    pub(crate) stride: usize,
    pub(crate) first: usize,
    pub(crate) end: usize,
}

impl Zone {
    /// The descriptor of page `i`, or `None` outside the zone.
    #[inline]
    pub(crate) fn node(&self, i: usize) -> Option<*mut BuddyLink> {
        if i < self.first || i >= self.end {
            return None;
        }
        // SAFETY: in bounds of the descriptor array by the zone invariant.
        Some(unsafe { self.nodes.add((i - self.first) * self.stride) }.cast())
    }

    /// The page index a descriptor of this zone describes.
    #[inline]
    pub(crate) fn index_of(&self, n: *mut BuddyLink) -> usize {
        self.first + (n as usize - self.nodes as usize) / self.stride
    }
}

/// Calls `f(j, k)` for the aligned blocks (`j % 2^k == 0`, each as large as alignment and
/// room allow) that tile the pages `start..end`, in address order.
pub(crate) fn for_each_block(start: usize, end: usize, mut f: impl FnMut(usize, u32)) {
    let mut j = start;
    while j < end {
        let k = j
            .trailing_zeros()
            .min(usize::BITS - 1 - (end - j).leading_zeros());
        f(j, k);
        j += 1 << k;
    }
}

/// Free lists per order.
///
/// # Invariants
/// `heads[k]` starts a null-terminated doubly linked list of free blocks of order `k`;
/// `free_pages` is the number of pages in all of them.
pub(crate) struct FreeArea {
    heads: [*mut BuddyLink; MAX_ORDER as usize + 1],
    pub(crate) free_pages: usize,
    max_order: u32,
}

// SAFETY: the free area only holds pointers to descriptors owned by whoever owns the area; it is
// moved between threads together with them (behind the page-layer lock).
unsafe impl Send for FreeArea {}

impl FreeArea {
    /// An empty free area whose blocks grow up to `max_order`.
    pub(crate) const fn new(max_order: u32) -> Self {
        FreeArea {
            heads: [ptr::null_mut(); MAX_ORDER as usize + 1],
            free_pages: 0,
            max_order,
        }
    }

    /// Is there a free block of at least `order`?
    pub(crate) fn has_block(&self, order: u32) -> bool {
        (order..=self.max_order).any(|k| !self.heads[k as usize].is_null())
    }

    /// # Safety
    /// `n` is a valid descriptor that is on no list.
    unsafe fn push(&mut self, n: *mut BuddyLink, order: u32) {
        let head = self.heads[order as usize];
        // SAFETY: `n` and `head` (if any) are valid descriptors (caller, list invariant).
        unsafe {
            (*n).free = true;
            (*n).order = order as u8;
            (*n).prev = ptr::null_mut();
            (*n).next = head;
            if !head.is_null() {
                (*head).prev = n;
            }
        }
        self.heads[order as usize] = n;
        self.free_pages += 1 << order;
    }

    /// Takes a free block off its list.
    ///
    /// # Safety
    /// `n` heads a block on one of this area's lists.
    pub(crate) unsafe fn remove(&mut self, n: *mut BuddyLink) {
        // SAFETY: `n` and its neighbours are on this area's lists (caller, list invariant).
        unsafe {
            let order = (*n).order as u32;
            let (next, prev) = ((*n).next, (*n).prev);
            if prev.is_null() {
                self.heads[order as usize] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*n).free = false;
            (*n).next = ptr::null_mut();
            (*n).prev = ptr::null_mut();
            self.free_pages -= 1 << order;
        }
    }

    /// Takes a block of `order` pages, splitting a larger one if needed. Returns its first
    /// descriptor and page index; `zone_of` names the zone a free block's descriptor belongs to.
    ///
    /// # Safety
    /// Every block on the lists belongs to the zone `zone_of` returns for it, and that zone is valid.
    pub(crate) unsafe fn alloc(
        &mut self,
        order: u32,
        zone_of: impl Fn(*mut BuddyLink) -> Zone,
    ) -> Option<(*mut BuddyLink, Zone, usize)> {
        let mut k = (order..=self.max_order).find(|&k| !self.heads[k as usize].is_null())?;
        let n = self.heads[k as usize];
        let zone = zone_of(n);
        let i = zone.index_of(n);
        // SAFETY: `n` heads a free block of order `k` (list invariant).
        unsafe { self.remove(n) };
        while k > order {
            k -= 1;
            let upper = zone
                .node(i + (1 << k))
                .expect("a free block lies inside its zone");
            // SAFETY: the upper half of a free block is a valid descriptor on no list.
            unsafe { self.push(upper, k) };
        }
        // SAFETY: `n` is valid and now on no list.
        unsafe { (*n).order = order as u8 };
        Some((n, zone, i))
    }

    /// Returns the block of `order` at page `i` of `zone`, merging it with free buddies.
    /// Returns the order of the free block it ended up in.
    ///
    /// # Safety
    /// The block is allocated (on no list), lies in `zone`, and `zone` is valid.
    pub(crate) unsafe fn free(&mut self, zone: &Zone, mut i: usize, mut order: u32) -> u32 {
        while order < self.max_order {
            let Some(buddy) = zone.node(i ^ (1 << order)) else {
                break;
            };
            // SAFETY: `buddy` is a valid descriptor of the zone.
            let mergeable = unsafe { (*buddy).free && (*buddy).order as u32 == order };
            if !mergeable {
                break;
            }
            // SAFETY: `buddy` heads a free block (its `free` flag, link invariant).
            unsafe { self.remove(buddy) };
            i &= !(1 << order);
            order += 1;
        }
        let n = zone.node(i).expect("a block lies inside its zone");
        // SAFETY: `n` heads the merged block, which is on no list.
        unsafe { self.push(n, order) };
        order
    }
}
