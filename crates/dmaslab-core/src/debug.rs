//! Debug mode (`Config::debug`), after Linux's `slab_debug=FZPU`, without breaking alignment.
//!
//! Objects do not move: a debug slab ends with one 8-byte [`DebugRecord`] per object, after the
//! objects, so object starts stay at `base + i * size` and natural alignment holds exactly as in
//! normal mode (the slab holds fewer objects instead).
//! - **Red zone**: the bytes between the size asked for and the end of the slot are filled with
//!   [`RED_ZONE`] at allocation and checked at free and by `validate`. A request that would fill
//!   its slot exactly is served from the next class with the same natural alignment (kmalloc(512)
//!   from kmalloc-1k, kmalloc(96) from kmalloc-128), so every object has a red zone.
//! - **Poison**: a freed object is filled with [`POISON_FREE`] (but its first word, the free-list
//!   link) and checked when it is handed out again: a write after free is reported with the
//!   object and the offset of the first changed byte.
//! - **Full double-free check**: the record says whether the object is allocated.
//! - **Call sites**: the record keeps the allocation and free sites callers pass (a return
//!   address; 0 when unknown) as 16-bit handles into a [`SiteTable`] (the role of Linux's stack
//!   depot), so a record stays 8 bytes.

use crate::stats::CacheName;
use core::fmt;

/// Fill of the red zone.
pub const RED_ZONE: u8 = 0xbb;
/// Fill of a free object.
pub const POISON_FREE: u8 = 0x6b;

const STATE_FREE: u16 = 0x6b6b;
const STATE_ALLOCATED: u16 = 0xa11c;
/// Freed into the quarantine: poisoned whole (first word too), on no free list.
const STATE_QUARANTINED: u16 = 0x9a7e;
/// Slot 0 of a debug slab: never handed out, all [`RED_ZONE`]: the left red zone of slot 1.
const STATE_GUARD: u16 = 0x6a7d;
/// Allocated, and a free of it was refused for a finding: out of circulation, still checked by
/// `validate`, skipped by neighbours' checks (the finding was made once).
const STATE_REPORTED: u16 = 0xbad0;

/// Bytes of one record.
pub(crate) const RECORD_BYTES: usize = core::mem::size_of::<DebugRecord>();

/// What debug mode knows about one object. Sites are [`SiteTable`] handles.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct DebugRecord {
    /// The size asked for, saturated at `u16::MAX` (no red-zone check above that).
    pub(crate) requested: u16,
    pub(crate) state: u16,
    pub(crate) alloc_site: u16,
    pub(crate) free_site: u16,
}

impl DebugRecord {
    pub(crate) const FRESH: DebugRecord = DebugRecord {
        requested: 0,
        state: STATE_FREE,
        alloc_site: 0,
        free_site: 0,
    };
}

/// Distinct call sites, by 16-bit handle (0: unknown), in a page run of metadata.
///
/// # Invariants
/// `slots` is null (`cap == 0`) or points to `cap` words; slot 0 is unused; a non-zero slot holds
/// the site whose handle is its index. Only the holder of the allocator's site lock touches it.
pub(crate) struct SiteTable {
    slots: *mut usize,
    cap: usize,
}

// SAFETY: the table points into pages the allocator owns; it moves with the allocator.
unsafe impl Send for SiteTable {}

impl SiteTable {
    pub(crate) const EMPTY: SiteTable = SiteTable {
        slots: core::ptr::null_mut(),
        cap: 0,
    };

    /// Adopts `bytes` of zeroed-or-not memory at `slots` as the table.
    ///
    /// # Safety
    /// `slots` points to `bytes` writable bytes, aligned for `usize`, owned by the allocator for
    /// as long as the table is used.
    pub(crate) unsafe fn adopt(&mut self, slots: *mut usize, bytes: usize) {
        let cap = (bytes / core::mem::size_of::<usize>()).min(1 << 16);
        for i in 0..cap {
            // SAFETY: inside the run (caller).
            unsafe { slots.add(i).write(0) };
        }
        *self = SiteTable { slots, cap };
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cap == 0
    }

    /// The handle of `site`, adding it if new; 0 when `site` is 0 or the table is full.
    pub(crate) fn intern(&mut self, site: usize) -> u16 {
        if site == 0 || self.cap < 2 {
            return 0;
        }
        let mut i =
            (site.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 7) % (self.cap - 1) + 1;
        for _ in 1..self.cap {
            // SAFETY: `1 <= i < cap` (type invariant).
            let slot = unsafe { &mut *self.slots.add(i) };
            if *slot == site {
                return i as u16;
            }
            if *slot == 0 {
                *slot = site;
                return i as u16;
            }
            i = if i + 1 == self.cap { 1 } else { i + 1 };
        }
        0
    }

    /// The site of handle `h` (0 for 0 or unknown).
    pub(crate) fn resolve(&self, h: usize) -> usize {
        if h == 0 || h >= self.cap {
            return 0;
        }
        // SAFETY: `h < cap` (type invariant).
        unsafe { *self.slots.add(h) }
    }
}

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// An object freed twice.
    DoubleFree,
    /// A pointer the allocator did not hand out was freed.
    InvalidFree,
    /// A freed object was written before it was handed out again.
    UseAfterFree,
    /// The red zone after an object was written.
    RedZone,
    /// A free-list link did not decode.
    CorruptedFreeList,
    /// A documented invariant of the allocator's bookkeeping does not hold (found by
    /// `validate`): a slab on the wrong list, counts that do not add up.
    BrokenInvariant,
}

/// A debug-mode finding: the cache, the object, where in it, and both call sites when known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What kind of misuse.
    pub kind: FindingKind,
    /// The address at fault (the freed pointer, or the first bad byte).
    pub addr: usize,
    /// The object's cache.
    pub cache: CacheName,
    /// The object's first byte.
    pub object: usize,
    /// Offset of `addr` in the object (wrapping: below the object, an underflow, it reads as
    /// a negative `isize`; at or past its slot, a write into the right neighbour).
    pub offset: usize,
    /// Where the object was last allocated (0: unknown).
    pub alloc_site: usize,
    /// Where it was last freed (0: unknown).
    pub free_site: usize,
}

impl Finding {
    /// The same finding with site handles turned into addresses.
    pub(crate) fn resolved(mut self, sites: &SiteTable) -> Finding {
        self.alloc_site = sites.resolve(self.alloc_site);
        self.free_site = sites.resolve(self.free_site);
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FindingKind::DoubleFree => "double free",
            FindingKind::InvalidFree => "invalid free",
            FindingKind::UseAfterFree => "use after free",
            FindingKind::RedZone => "red zone overwritten",
            FindingKind::CorruptedFreeList => "corrupted free list",
            FindingKind::BrokenInvariant => "broken invariant",
        };
        write!(
            f,
            "{what} of {:#x} ({} object {:#x}, offset {}; allocated at {:#x}, freed at {:#x})",
            self.addr,
            self.cache,
            self.object,
            // Negative below the object: an underflow into its left neighbour's tail.
            self.offset as isize,
            self.alloc_site,
            self.free_site
        )
    }
}

/// The index of the first byte of `bytes` that is not `fill`.
///
/// Compared a block at a time: slice equality is one memcmp (and one step under Miri, where a
/// byte loop over every free object made `validate` take minutes); the byte loop only finds the
/// offset inside the block that differs.
pub(crate) fn first_differing(bytes: &[u8], fill: u8) -> Option<usize> {
    const BLOCK: usize = 256;
    let pattern = [fill; BLOCK];
    let mut at = 0;
    for block in bytes.chunks(BLOCK) {
        if block != &pattern[..block.len()] {
            return block.iter().position(|&b| b != fill).map(|i| at + i);
        }
        at += block.len();
    }
    None
}

/// The object a check looks at.
pub(crate) struct ObjectRef<'a> {
    pub(crate) cache: &'a CacheName,
    pub(crate) obj: *mut u8,
    pub(crate) stride: usize,
    pub(crate) rec: *mut DebugRecord,
}

impl ObjectRef<'_> {
    fn finding(&self, kind: FindingKind, addr: usize) -> Finding {
        // SAFETY: the record belongs to this object (constructor's contract).
        let r = unsafe { *self.rec };
        Finding {
            kind,
            addr,
            cache: *self.cache,
            object: self.obj as usize,
            offset: addr.wrapping_sub(self.obj as usize),
            alloc_site: r.alloc_site as usize,
            free_site: r.free_site as usize,
        }
    }

    /// First byte in `from..to` of the object that is not `fill`.
    ///
    /// # Safety
    /// The object's `stride` bytes are readable.
    unsafe fn first_not(&self, from: usize, to: usize, fill: u8) -> Option<usize> {
        // SAFETY: inside the object (caller).
        let bytes =
            unsafe { core::slice::from_raw_parts(self.obj.add(from), to.saturating_sub(from)) };
        first_differing(bytes, fill).map(|i| self.obj as usize + from + i)
    }

    /// Prepares a fresh slab's object: poison and a free record.
    ///
    /// # Safety
    /// The object and its record are writable and owned by the caller.
    pub(crate) unsafe fn init(&self) {
        let link = core::mem::size_of::<usize>();
        // SAFETY: as the caller promises.
        unsafe {
            self.obj
                .add(link)
                .write_bytes(POISON_FREE, self.stride - link);
            self.rec.write(DebugRecord::FRESH);
        }
    }

    /// Checks a free object about to be handed out for `requested` bytes, then paints its red
    /// zone and records the allocation.
    ///
    /// # Safety
    /// The object was just taken off its free list; object and record are the caller's.
    pub(crate) unsafe fn on_alloc(&self, requested: usize, site: u16) -> Result<(), Finding> {
        let link = core::mem::size_of::<usize>();
        // SAFETY: as the caller promises.
        unsafe {
            if let Some(bad) = self.first_not(link, self.stride, POISON_FREE) {
                return Err(self.finding(FindingKind::UseAfterFree, bad));
            }
            self.obj
                .add(requested)
                .write_bytes(RED_ZONE, self.stride - requested);
            (*self.rec).requested = requested.min(u16::MAX as usize) as u16;
            (*self.rec).state = STATE_ALLOCATED;
            (*self.rec).alloc_site = site;
        }
        Ok(())
    }

    /// The first checks of a free: a second free (the record is not allocated: free or
    /// quarantined) and the object's own red zone. On a red-zone finding the object
    /// is marked reported (it stays allocated, out of circulation).
    ///
    /// # Safety
    /// The object lies in a slab; object and record are the caller's (cache lock held).
    pub(crate) unsafe fn check_free(&self, site: u16) -> Result<(), Finding> {
        // SAFETY: as the caller promises.
        unsafe {
            if (*self.rec).state != STATE_ALLOCATED {
                let mut f = self.finding(FindingKind::DoubleFree, self.obj as usize);
                f.free_site = (*self.rec).free_site as usize;
                return Err(f);
            }
            // A red zone found at free: the free being made is the one to name.
            self.check_red_zone().map_err(|mut f| {
                f.free_site = site as usize;
                self.mark_reported();
                f
            })
        }
    }

    /// Marks an allocated object whose free was refused for a finding.
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free).
    pub(crate) unsafe fn mark_reported(&self) {
        // SAFETY: as the caller promises.
        unsafe { (*self.rec).state = STATE_REPORTED };
    }

    /// Poisons an object whose free passed its checks and records the free; `hold`: it goes
    /// into the quarantine (poisoned whole, on no free list), else onto its free list (the
    /// caller writes the link over the first word).
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free), after it passed.
    pub(crate) unsafe fn poison_free(&self, site: u16, hold: bool) {
        // SAFETY: as the caller promises.
        unsafe {
            self.obj.write_bytes(POISON_FREE, self.stride);
            (*self.rec).state = if hold { STATE_QUARANTINED } else { STATE_FREE };
            (*self.rec).free_site = site;
        }
    }

    /// Sets up slot 0 of a debug slab as the guard: all red zone, never handed out.
    ///
    /// # Safety
    /// As for [`init`](Self::init).
    pub(crate) unsafe fn init_guard(&self) {
        // SAFETY: as the caller promises.
        unsafe {
            self.obj.write_bytes(RED_ZONE, self.stride);
            self.rec.write(DebugRecord {
                state: STATE_GUARD,
                ..DebugRecord::FRESH
            });
        }
    }

    /// Is this the guard slot (never handed out)?
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free).
    pub(crate) unsafe fn is_guard(&self) -> bool {
        // SAFETY: as the caller promises.
        unsafe { (*self.rec).state == STATE_GUARD }
    }

    /// Is the object in the quarantine?
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free) (or the quarantine's lock, which owns the
    /// record of a quarantined object).
    pub(crate) unsafe fn is_quarantined(&self) -> bool {
        // SAFETY: as the caller promises.
        unsafe { (*self.rec).state == STATE_QUARANTINED }
    }

    /// A quarantined object's poison, all of it (its first word holds no link): a write after
    /// free is a [`FindingKind::UseAfterFree`].
    ///
    /// # Safety
    /// The object is quarantined; its bytes and record are readable.
    pub(crate) unsafe fn check_quarantined(&self) -> Result<(), Finding> {
        // SAFETY: as the caller promises.
        match unsafe { self.first_not(0, self.stride, POISON_FREE) } {
            Some(bad) => Err(self.finding(FindingKind::UseAfterFree, bad)),
            None => Ok(()),
        }
    }

    /// A quarantined object leaves the quarantine for its free list: its poison is checked and
    /// it becomes free (the caller pushes it, writing the link).
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free); the object is quarantined.
    pub(crate) unsafe fn release(&self) -> Result<(), Finding> {
        // SAFETY: as the caller promises.
        unsafe {
            self.check_quarantined()?;
            (*self.rec).state = STATE_FREE;
        }
        Ok(())
    }

    /// A neighbour's check at the free of the object next to it: the red zone of an allocated
    /// one, the poison of a quarantined one, the fill of the guard slot. Objects on the free
    /// list are checked when handed out again; reported ones were reported already. Returns
    /// the first bad byte.
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free).
    pub(crate) unsafe fn check_as_neighbour(&self) -> Option<usize> {
        // SAFETY: as the caller promises.
        unsafe {
            match (*self.rec).state {
                STATE_ALLOCATED => self.check_red_zone().err().map(|f| f.addr),
                STATE_QUARANTINED => self.first_not(0, self.stride, POISON_FREE),
                STATE_GUARD => self.first_not(0, self.stride, RED_ZONE),
                _ => None,
            }
        }
    }

    /// A finding of `kind` at `addr` (anywhere) about this object, freed at `site`.
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free).
    pub(crate) unsafe fn finding_at(&self, kind: FindingKind, addr: usize, site: u16) -> Finding {
        let mut f = self.finding(kind, addr);
        f.free_site = site as usize;
        f
    }

    /// Checks the red zone of an allocated object.
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free).
    pub(crate) unsafe fn check_red_zone(&self) -> Result<(), Finding> {
        // SAFETY: as the caller promises.
        unsafe {
            let req = (*self.rec).requested as usize;
            if req == u16::MAX as usize {
                return Ok(());
            }
            match self.first_not(req, self.stride, RED_ZONE) {
                Some(bad) => Err(self.finding(FindingKind::RedZone, bad)),
                None => Ok(()),
            }
        }
    }

    /// Checks an object in place (for `validate`): red zone if allocated, poison if free or
    /// quarantined, red-zone fill if the guard slot.
    ///
    /// # Safety
    /// As for [`check_free`](Self::check_free).
    pub(crate) unsafe fn check(&self) -> Result<(), Finding> {
        let link = core::mem::size_of::<usize>();
        // SAFETY: as the caller promises.
        unsafe {
            let (from, fill, kind) = match (*self.rec).state {
                STATE_ALLOCATED | STATE_REPORTED => return self.check_red_zone(),
                STATE_QUARANTINED => (0, POISON_FREE, FindingKind::UseAfterFree),
                STATE_GUARD => (0, RED_ZONE, FindingKind::RedZone),
                _ => (link, POISON_FREE, FindingKind::UseAfterFree),
            };
            match self.first_not(from, self.stride, fill) {
                Some(bad) => Err(self.finding(kind, bad)),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_differing;

    #[test]
    fn first_differing_finds_every_offset_across_blocks() {
        for len in [0usize, 1, 7, 255, 256, 257, 600] {
            let mut bytes = [0x6bu8; 600];
            let bytes = &mut bytes[..len];
            assert_eq!(first_differing(bytes, 0x6b), None, "len {len}");
            for at in (0..len).rev() {
                bytes[at] = 0x6a;
                assert_eq!(first_differing(bytes, 0x6b), Some(at), "len {len} at {at}");
            }
        }
    }
}
