//! A cache's debug-mode paths (`crate::debug` has the checks themselves): slab setup with its
//! guard slot, the checks of a free (the object's own and its neighbours'), and objects going
//! into and out of the quarantine.
//!
//! Red zones on both sides without moving objects: the right red zone of object `k` is its own
//! slot's tail (debug kmalloc never fills a slot exactly, a user cache's slot has a word more);
//! its left red zone is the tail of object `k - 1`, which is that object's red zone while it is
//! allocated, its poison while it is quarantined. Slot 0 has no left neighbour in its slab, so
//! it is never handed out: it is a guard slot, all red zone, the left red zone of slot 1. A free
//! checks both neighbours, so an underflow (or a write past the own slot) is reported at the
//! free of the object that did it.

use super::*;
use crate::debug::DebugRecord;

impl KmemCache {
    /// The debug view of object `obj` of the slab at `base`.
    ///
    /// # Safety
    /// Debug mode is on, `base` starts a slab of this cache, `obj` is one of its objects.
    pub(crate) unsafe fn object_ref(&self, base: *mut u8, obj: *mut u8) -> ObjectRef<'_> {
        let i = (obj as usize - base as usize) / self.size;
        // SAFETY: a debug slab holds one record per object at `records_off` (caller).
        let rec = unsafe { base.add(self.records_off).cast::<DebugRecord>().add(i) };
        ObjectRef {
            cache: &self.name,
            obj,
            stride: self.size,
            rec,
        }
    }

    /// Slots of a debug slab that are never handed out: slot 0, the guard (none in a slab of
    /// one object, nor outside debug mode).
    pub(crate) fn guard_slots(&self) -> usize {
        (self.debug && self.objects > 1) as usize
    }

    /// Builds a new debug slab: every object poisoned with a free record, the free list whole,
    /// and slot 0 taken off it as the guard.
    ///
    /// # Safety
    /// `d` heads the new slab at `base`, just handed to this cache (ours under its lock).
    pub(super) unsafe fn init_debug_slab(&self, d: *mut PageDesc, base: *mut u8) {
        let geom = self.geom();
        // SAFETY: as the caller promises; the list is built lowest address first, so the pop
        // takes slot 0, which then no longer counts as in use.
        unsafe {
            geom.init(d, base);
            for k in 0..self.objects {
                self.object_ref(base, base.add(k * self.size)).init();
            }
            if self.guard_slots() == 1 {
                let guard = geom.pop(d, base).expect("a fresh list decodes");
                debug_assert_eq!(guard, base);
                (*d).inuse = 0;
                self.object_ref(base, guard).init_guard();
            }
        }
    }

    /// The debug checks of a free of `obj` (slab at `base`) and its poisoning: a second free, the
    /// own red zone, then the neighbours' (the slack of the one before is this object's left
    /// red zone). `hold`: the object goes into the quarantine, not onto its free list.
    ///
    /// # Safety
    /// `base` starts a slab of this cache holding `obj`; the cache lock is held.
    pub(super) unsafe fn debug_free(
        &self,
        base: *mut u8,
        obj: *mut u8,
        site: u16,
        hold: bool,
    ) -> Result<(), FreeError> {
        let off = obj as usize - base as usize;
        if !self.geom().is_object_start(off) {
            return Err(FreeError::InvalidPointer(obj as usize));
        }
        // SAFETY: `obj` starts an object of the slab at `base` (checked above), a debug slab
        // with a record per object; its neighbours are objects of the same slab.
        unsafe {
            let o = self.object_ref(base, obj);
            if o.is_guard() {
                return Err(FreeError::InvalidPointer(obj as usize));
            }
            o.check_free(site).map_err(FreeError::Found)?;
            let k = off / self.size;
            let left = (k > 0).then(|| obj.sub(self.size));
            let right = (k + 1 < self.objects).then(|| obj.add(self.size));
            for n in [left, right].into_iter().flatten() {
                if let Some(bad) = self.object_ref(base, n).check_as_neighbour() {
                    o.mark_reported();
                    return Err(FreeError::Found(o.finding_at(
                        crate::debug::FindingKind::RedZone,
                        bad,
                        site,
                    )));
                }
            }
            o.poison_free(site, hold);
        }
        Ok(())
    }

    /// Frees `obj` of the slab `d` into the quarantine: the checks of a free, then poison; the
    /// object stays in use for its slab (and in `active_objs`) until
    /// [`release_quarantined`](Self::release_quarantined).
    ///
    /// # Safety
    /// As for [`free`](Self::free); debug mode is on.
    pub(crate) unsafe fn quarantine_free(
        &mut self,
        d: *mut PageDesc,
        obj: *mut u8,
        site: u16,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.debug_free(self.slab_base(d), obj, site, true) }?;
        self.quarantined += 1;
        Ok(())
    }

    /// Re-checks the poison of quarantined `obj` of slab `d` (`Ok` too when it is no longer
    /// quarantined).
    ///
    /// # Safety
    /// As for [`free`](Self::free); `obj` is an object start.
    pub(crate) unsafe fn check_quarantined(
        &self,
        d: *mut PageDesc,
        obj: *mut u8,
    ) -> Result<(), Finding> {
        // SAFETY: as the caller promises.
        unsafe {
            let o = self.object_ref(self.slab_base(d), obj);
            if o.is_quarantined() {
                o.check_quarantined()?;
            }
        }
        Ok(())
    }

    /// Takes quarantined `obj` of slab `d` out of the quarantine: its poison is checked, then it
    /// goes onto its free list. On a finding it stays out of circulation (still counted in use;
    /// `validate` reports it again).
    ///
    /// # Safety
    /// As for [`free`](Self::free); `obj` was put in the quarantine by
    /// [`quarantine_free`](Self::quarantine_free) and is in it no longer.
    pub(crate) unsafe fn release_quarantined<P: PageSource>(
        &mut self,
        d: *mut PageDesc,
        obj: *mut u8,
        pages: &SpinLock<PageLayer<P>>,
        map: &SegmentMap,
    ) -> Result<(), FreeError> {
        // SAFETY: as the caller promises.
        unsafe {
            let base = self.slab_base(d);
            self.object_ref(base, obj)
                .release()
                .map_err(FreeError::Found)?;
            self.quarantined -= 1;
            self.push_free(d, base, obj, pages, map)?;
        }
        self.active_objs -= 1;
        Ok(())
    }

    /// Debug mode: the size object `obj` of slab `d` was last requested with (0: never handed
    /// out). Without debug mode: the object size.
    ///
    /// # Safety
    /// As for [`free`](Self::free); `obj` is an object start.
    pub(crate) unsafe fn requested(&self, d: *mut PageDesc, obj: *mut u8) -> usize {
        if !self.debug {
            return self.size;
        }
        // SAFETY: as the caller promises; debug slabs end with their records.
        unsafe {
            let base = self.slab_base(d);
            (*self.object_ref(base, obj).rec).requested as usize
        }
    }
}
