//! The set of live segments, so that a pointer can be checked before its segment header is read.
//!
//! An open-addressing hash table keyed by segment address. Writers hold the page-layer lock;
//! readers (every free) take no lock. The table grows by doubling into pages from the page
//! source; an outgrown table is kept (never freed) because a reader may still be probing it, so
//! the map costs at most twice the pages of its current table.

use crate::page_source::PageSource;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// A table: a header followed by `cap` slots, all in one page run.
#[repr(C)]
struct Table {
    cap: usize,
    len: usize,
    tombstones: usize,
    /// Older, outgrown table (kept for readers), forming a chain.
    older: *mut Table,
    order: u32,
}

fn tombstone() -> *mut u8 {
    ptr::without_provenance_mut(1)
}

/// The map.
///
/// # Invariants
/// `current` is null or points to a [`Table`] in pages from the page source, followed by `cap`
/// `AtomicPtr<u8>` slots each null (never used), [`tombstone`] (removed) or a live segment's
/// address. Only the page-layer lock holder writes.
pub(crate) struct SegmentMap {
    current: AtomicPtr<Table>,
    seg_shift: u32,
    /// Bumped by every removal, before the segment's memory goes back: a cached
    /// "segment S was live at generation G" stays true while the generation is G. Starts at 1,
    /// so that 0 can mean "never looked up".
    generation: AtomicUsize,
}

impl SegmentMap {
    pub(crate) const fn new(seg_shift: u32) -> Self {
        SegmentMap {
            current: AtomicPtr::new(ptr::null_mut()),
            generation: AtomicUsize::new(1),
            seg_shift,
        }
    }

    fn slots(t: *mut Table) -> *mut AtomicPtr<u8> {
        // SAFETY: the slots follow the header in the same run.
        unsafe { t.add(1).cast() }
    }

    fn hash(&self, addr: usize, cap: usize) -> usize {
        let key = (addr >> self.seg_shift) as u64;
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (cap - 1)
    }

    /// The current removal generation (see the field).
    #[inline]
    pub(crate) fn generation(&self) -> usize {
        self.generation.load(Ordering::Acquire)
    }

    /// The segment starting at `addr`, if it is live.
    #[inline]
    pub(crate) fn lookup(&self, addr: usize) -> Option<NonNull<u8>> {
        let t = self.current.load(Ordering::Acquire);
        if t.is_null() {
            return None;
        }
        // SAFETY: a published table is never freed (type invariant).
        let cap = unsafe { (*t).cap };
        let slots = Self::slots(t);
        let mut i = self.hash(addr, cap);
        for _ in 0..cap {
            // SAFETY: `i < cap`: in the table's slots.
            let p = unsafe { (*slots.add(i)).load(Ordering::Acquire) };
            if p.is_null() {
                return None;
            }
            if p as usize == addr {
                return NonNull::new(p);
            }
            i = (i + 1) & (cap - 1);
        }
        None
    }

    /// Adds a segment. Returns false when the table could not grow (out of pages).
    ///
    /// # Safety
    /// The caller holds the page-layer lock (the only writer) and `src` is that layer's source.
    pub(crate) unsafe fn insert<P: PageSource>(&self, src: &mut P, seg: NonNull<u8>) -> bool {
        let t = self.current.load(Ordering::Relaxed);
        // SAFETY: tables are live; we are the only writer.
        let need_grow = t.is_null() || unsafe { ((*t).len + (*t).tombstones + 1) * 2 > (*t).cap };
        if need_grow && !self.grow(src) {
            return false;
        }
        let t = self.current.load(Ordering::Relaxed);
        // SAFETY: as above.
        unsafe {
            let cap = (*t).cap;
            let slots = Self::slots(t);
            let mut i = self.hash(seg.as_ptr() as usize, cap);
            loop {
                let s = &*slots.add(i);
                let p = s.load(Ordering::Relaxed);
                if p.is_null() || p == tombstone() {
                    if p == tombstone() {
                        (*t).tombstones -= 1;
                    }
                    s.store(seg.as_ptr(), Ordering::Release);
                    (*t).len += 1;
                    return true;
                }
                i = (i + 1) & (cap - 1);
            }
        }
    }

    /// Removes a segment.
    ///
    /// # Safety
    /// As for [`insert`](Self::insert).
    pub(crate) unsafe fn remove(&self, addr: usize) {
        self.generation.fetch_add(1, Ordering::Release);
        let t = self.current.load(Ordering::Relaxed);
        if t.is_null() {
            return;
        }
        // SAFETY: the table is live and we are the only writer.
        unsafe {
            let cap = (*t).cap;
            let slots = Self::slots(t);
            let mut i = self.hash(addr, cap);
            for _ in 0..cap {
                let s = &*slots.add(i);
                let p = s.load(Ordering::Relaxed);
                if p.is_null() {
                    return;
                }
                if p as usize == addr {
                    s.store(tombstone(), Ordering::Release);
                    (*t).len -= 1;
                    (*t).tombstones += 1;
                    return;
                }
                i = (i + 1) & (cap - 1);
            }
        }
    }

    /// Replaces the table by one of twice the capacity (or a first one-page table).
    fn grow<P: PageSource>(&self, src: &mut P) -> bool {
        let old = self.current.load(Ordering::Relaxed);
        let page = src.page_size();
        let slot = core::mem::size_of::<AtomicPtr<u8>>();
        let header = core::mem::size_of::<Table>();
        let want_cap = if old.is_null() {
            64
        } else {
            // SAFETY: a live table (we are the only writer).
            unsafe { (*old).len.max(32) * 4 }
        };
        let bytes = header + want_cap * slot;
        let order = bytes.div_ceil(page).next_power_of_two().trailing_zeros();
        let Some(run) = src.alloc_pages(order) else {
            return false;
        };
        let cap = (((page << order) - header) / slot + 1).next_power_of_two() / 2;
        let t = run.as_ptr().cast::<Table>();
        // SAFETY: the run is fresh, page-aligned and big enough for the header and `cap` slots.
        unsafe {
            t.write(Table {
                cap,
                len: 0,
                tombstones: 0,
                older: old,
                order,
            });
            let slots = Self::slots(t);
            for i in 0..cap {
                slots.add(i).write(AtomicPtr::new(ptr::null_mut()));
            }
            if !old.is_null() {
                let oslots = Self::slots(old);
                for i in 0..(*old).cap {
                    let p = (*oslots.add(i)).load(Ordering::Relaxed);
                    if !p.is_null() && p != tombstone() {
                        let mut j = self.hash(p as usize, cap);
                        while !(*slots.add(j)).load(Ordering::Relaxed).is_null() {
                            j = (j + 1) & (cap - 1);
                        }
                        (*slots.add(j)).store(p, Ordering::Relaxed);
                        (*t).len += 1;
                    }
                }
            }
        }
        self.current.store(t, Ordering::Release);
        true
    }

    /// Calls `f` with every live segment and forgets them all.
    ///
    /// # Safety
    /// As for [`release`](Self::release).
    pub(crate) unsafe fn drain(&self, mut f: impl FnMut(NonNull<u8>)) {
        let t = self.current.load(Ordering::Acquire);
        if t.is_null() {
            return;
        }
        // SAFETY: the table is live; no reader remains (caller).
        unsafe {
            let slots = Self::slots(t);
            for i in 0..(*t).cap {
                let s = &*slots.add(i);
                let p = s.load(Ordering::Relaxed);
                if !p.is_null() && p != tombstone() {
                    s.store(tombstone(), Ordering::Relaxed);
                    f(NonNull::new_unchecked(p));
                }
            }
        }
    }

    /// Gives every table back to the page source (when the whole allocator is dropped).
    ///
    /// # Safety
    /// No reader may use the map again; `src` is the source the tables came from.
    pub(crate) unsafe fn release<P: PageSource>(&self, src: &mut P) {
        let mut t = self.current.swap(ptr::null_mut(), Ordering::AcqRel);
        while !t.is_null() {
            // SAFETY: each table in the chain is live and came from `src` with its order.
            unsafe {
                let older = (*t).older;
                let order = (*t).order;
                src.free_pages(NonNull::new_unchecked(t.cast()), order);
                t = older;
            }
        }
    }

    /// Pages the tables occupy.
    pub(crate) fn pages(&self) -> usize {
        let mut n = 0;
        let mut t = self.current.load(Ordering::Acquire);
        while !t.is_null() {
            // SAFETY: tables in the chain are never freed while the map is in use.
            unsafe {
                n += 1 << (*t).order;
                t = (*t).older;
            }
        }
        n
    }
}
