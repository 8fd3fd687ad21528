//! A slab: a run of pages cut into equal objects at `base + i * size`, with an in-object free list.
//!
//! The free list is built lazily: a new slab's objects are all *fresh* (index `fresh` and up,
//! never handed out, never written), and objects come from the free list first, then from
//! `fresh`. A new slab thus costs no pass over its memory, and its pages are first touched by
//! whoever uses the objects. (Debug slabs are built whole: their objects carry poison.)
//!
//! Free objects hold the link to the next free object in their first word, stored *encoded*:
//! `(next_offset + 1) ^ secret ^ own_address`. A use-after-free write therefore cannot steer the
//! allocator to an address of the attacker's choice: a decoded link that is not the offset of an
//! object of this slab is detected as corruption.

use crate::divisor::Divisor;
use crate::segment::PageDesc;
use core::sync::atomic::Ordering::Relaxed;

/// What the free list of one slab looks like to the code walking it.
#[derive(Clone, Copy)]
pub(crate) struct SlabGeom {
    pub(crate) size: usize,
    pub(crate) objects: usize,
    pub(crate) secret: usize,
    /// `x % size == 0` without a division.
    pub(crate) div: Divisor,
}

/// A free-list link that does not decode to an object of its slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    pub(crate) at: usize,
}

impl SlabGeom {
    #[inline]
    fn encode(&self, slot: *mut u8, next_plus1: u32) -> usize {
        next_plus1 as usize ^ self.secret ^ slot as usize
    }

    #[inline]
    pub(crate) fn decode(&self, slot: *mut u8, word: usize) -> Result<u32, Corrupt> {
        let v = word ^ self.secret ^ slot as usize;
        if v == 0 || (v - 1 < self.objects * self.size && self.div.divides(v - 1)) {
            Ok(v as u32)
        } else {
            Err(Corrupt { at: slot as usize })
        }
    }

    /// Sets up a new slab at `base` with every object fresh; writes nothing in the slab.
    ///
    /// # Safety
    /// `desc` is the slab's head descriptor, owned by the caller's cache lock.
    pub(crate) unsafe fn init_lazy(&self, desc: *mut PageDesc) {
        // SAFETY: the descriptor is ours under the cache lock (caller); fields only.
        unsafe {
            (*desc).freelist.store(0, Relaxed);
            (*desc).inuse = 0;
            (*desc).fresh = 0;
        }
    }

    /// Builds the whole free list of a new slab at `base`, lowest address first (debug slabs).
    ///
    /// # Safety
    /// `desc` is the slab's head descriptor, owned by the caller's cache lock; `base` points to
    /// `objects * size` writable bytes, aligned for `usize` at every object start.
    pub(crate) unsafe fn init(&self, desc: *mut PageDesc, base: *mut u8) {
        for i in 0..self.objects {
            let next = if i + 1 < self.objects {
                (i + 1) * self.size + 1
            } else {
                0
            };
            // SAFETY: object `i` lies in the slab (caller).
            unsafe {
                let slot = base.add(i * self.size);
                slot.cast::<usize>().write(self.encode(slot, next as u32));
            }
        }
        // SAFETY: the descriptor is ours under the cache lock (caller); fields only.
        unsafe {
            (*desc).freelist.store(1, Relaxed);
            (*desc).inuse = 0;
            (*desc).fresh = self.objects as u16;
        }
    }

    /// Does the slab have a free object (on its list or fresh)?
    ///
    /// # Safety
    /// `desc` is a slab head descriptor owned by the caller's cache lock.
    #[inline]
    pub(crate) unsafe fn has_free(&self, desc: *const PageDesc) -> bool {
        // SAFETY: fields owned by the caller's lock.
        unsafe { (*desc).freelist.load(Relaxed) != 0 || ((*desc).fresh as usize) < self.objects }
    }

    /// Has the object at `off` ever been handed out (is it below `fresh`)?
    ///
    /// # Safety
    /// As for [`has_free`](Self::has_free).
    #[inline]
    pub(crate) unsafe fn was_used(&self, desc: *const PageDesc, off: usize) -> bool {
        // SAFETY: fields owned by the caller's lock.
        off < unsafe { (*desc).fresh as usize } * self.size
    }

    /// Pops the first free object: the free list's head, else the first fresh one.
    ///
    /// # Safety
    /// `desc` describes the slab at `base` with this geometry, is owned by the caller's cache
    /// lock, and the slab has a free object.
    #[inline]
    pub(crate) unsafe fn pop(
        &self,
        desc: *mut PageDesc,
        base: *mut u8,
    ) -> Result<*mut u8, Corrupt> {
        // SAFETY: the free list holds offsets of objects of this slab (decode checks each link);
        // a fresh index is below `objects`; the descriptor's plain fields belong to the cache
        // lock (caller).
        unsafe {
            if (*desc).freelist.load(Relaxed) == 0 {
                let i = (*desc).fresh as usize;
                debug_assert!(i < self.objects);
                (*desc).fresh += 1;
                (*desc).inuse += 1;
                return Ok(base.add(i * self.size));
            }
            let slot = base.add((*desc).freelist.load(Relaxed) as usize - 1);
            let next = self.decode(slot, slot.cast::<usize>().read())?;
            (*desc).freelist.store(next, Relaxed);
            (*desc).inuse += 1;
            Ok(slot)
        }
    }

    /// Pushes the object at offset `off`.
    ///
    /// # Safety
    /// `off` is the offset of an allocated object of the slab at `base` described by `desc`,
    /// which the caller's cache lock owns.
    #[inline]
    pub(crate) unsafe fn push(&self, desc: *mut PageDesc, base: *mut u8, off: usize) {
        // SAFETY: the object is in the slab and no longer used; the descriptor is ours (caller).
        unsafe {
            let slot = base.add(off);
            slot.cast::<usize>()
                .write(self.encode(slot, (*desc).freelist.load(Relaxed)));
            (*desc).freelist.store(off as u32 + 1, Relaxed);
            (*desc).inuse -= 1;
        }
    }

    /// Is the object at `off` free (on the free list, or fresh)? Walks the list: O(objects).
    /// `off = usize::MAX` only checks that the list decodes.
    ///
    /// # Safety
    /// As for [`pop`](Self::pop), without needing a free object.
    pub(crate) unsafe fn is_free(
        &self,
        desc: *const PageDesc,
        base: *mut u8,
        off: usize,
    ) -> Result<bool, Corrupt> {
        // SAFETY: the descriptor is owned by the caller's cache lock.
        let mut cur = unsafe { (*desc).freelist.load(Relaxed) };
        let mut steps = 0;
        while cur != 0 {
            if cur as usize - 1 == off {
                return Ok(true);
            }
            steps += 1;
            if steps > self.objects {
                return Err(Corrupt { at: base as usize });
            }
            // SAFETY: `cur` decoded as an object offset of this slab, and a free object holds
            // its link in its first word.
            let slot = unsafe { base.add(cur as usize - 1) };
            cur = self.decode(slot, unsafe { slot.cast::<usize>().read() })?;
        }
        // SAFETY: as above.
        Ok(off != usize::MAX && !unsafe { self.was_used(desc, off) })
    }

    /// Is `off` the start of an object of this slab?
    #[inline]
    pub(crate) fn is_object_start(&self, off: usize) -> bool {
        off < self.objects * self.size && self.div.divides(off)
    }
}
