//! Debug mode's quarantine: a bounded FIFO of freed objects, so that a freed object is not
//! handed out again at once. Each stays poisoned (a page run: inaccessible where the page
//! source can protect it) until it leaves, oldest first, when the quarantine holds more than
//! its byte budget ([`Config::quarantine`](crate::Config::quarantine)) or its ring is full; its
//! poison is checked then, and the newest few are re-checked at every debug `kmalloc`/`kfree`,
//! so a write after free is reported at the program's next call, not only at reuse.
//!
//! The ring lives in a metadata run from the page layer (no heap: works in `no_std`), taken on
//! the first quarantined free.

use super::*;

/// One quarantined allocation: its address and bytes (`addr == 0`: taken out early, after a
/// finding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) addr: usize,
    pub(crate) bytes: usize,
}

/// How many of the newest entries every debug call re-checks.
pub(crate) const RECHECK: usize = 4;

/// The ring.
///
/// # Invariants
/// `ring` is null (`cap == 0`) or points to `cap` entries owned by the allocator; entries
/// `head, head + 1, .. head + len - 1` (mod `cap`) are the quarantined ones, oldest first, and
/// `bytes` is the sum of their `bytes`. Only the holder of the quarantine lock touches it.
pub(crate) struct Quarantine {
    ring: *mut Entry,
    cap: usize,
    head: usize,
    len: usize,
    bytes: usize,
    limit: usize,
}

// SAFETY: the ring points into pages the allocator owns; it moves with the allocator.
unsafe impl Send for Quarantine {}

impl Quarantine {
    /// No ring yet; `limit` bytes at most once there is one.
    pub(crate) const fn new(limit: usize) -> Quarantine {
        Quarantine {
            ring: core::ptr::null_mut(),
            cap: 0,
            head: 0,
            len: 0,
            bytes: 0,
            limit,
        }
    }

    /// Is the quarantine on (a budget) but still without its ring?
    pub(crate) fn wants_ring(&self) -> bool {
        self.limit > 0 && self.cap == 0
    }

    /// Adopts `bytes` of memory at `ring` as the ring.
    ///
    /// # Safety
    /// `ring` points to `bytes` writable bytes aligned for [`Entry`], owned by the allocator for
    /// as long as the quarantine is used.
    pub(crate) unsafe fn adopt(&mut self, ring: *mut Entry, bytes: usize) {
        self.ring = ring;
        self.cap = bytes / core::mem::size_of::<Entry>();
    }

    fn at(&self, i: usize) -> *mut Entry {
        // SAFETY: `i % cap < cap` (type invariant; callers check `cap > 0`).
        unsafe { self.ring.add((self.head + i) % self.cap) }
    }

    /// Appends an entry; false when there is no ring or it is full (evict first).
    pub(crate) fn push(&mut self, e: Entry) -> bool {
        if self.cap == 0 || self.len == self.cap {
            return false;
        }
        // SAFETY: slot `len` is inside the ring and not in use.
        unsafe { self.at(self.len).write(e) };
        self.len += 1;
        self.bytes += e.bytes;
        true
    }

    /// Takes the oldest entry out if the ring is full, or over its budget while holding more
    /// than the newest entry (`force`: whenever one is there). Early-removed entries are
    /// skipped.
    pub(crate) fn evict(&mut self, force: bool) -> Option<Entry> {
        while self.len > 0
            && (force || self.len == self.cap || (self.bytes > self.limit && self.len > 1))
        {
            // SAFETY: the oldest entry is in use.
            let e = unsafe { self.at(0).read() };
            self.head = (self.head + 1) % self.cap;
            self.len -= 1;
            self.bytes -= e.bytes;
            if e.addr != 0 {
                return Some(e);
            }
        }
        None
    }

    /// The newest entries, up to [`RECHECK`] of them, newest first, with their positions.
    pub(crate) fn newest(&self) -> impl Iterator<Item = (usize, Entry)> + '_ {
        let n = self.len.min(RECHECK);
        // SAFETY: positions below `len` are in use.
        (0..n).map(move |j| {
            let i = self.len - 1 - j;
            (i, unsafe { self.at(i).read() })
        })
    }

    /// Takes the entry at position `i` (from [`newest`](Self::newest)) out early.
    pub(crate) fn remove_at(&mut self, i: usize) {
        debug_assert!(i < self.len);
        let p = self.at(i);
        // SAFETY: a position in use.
        unsafe {
            self.bytes -= (*p).bytes;
            *p = Entry { addr: 0, bytes: 0 };
        }
    }

    /// Gives up the ring if the quarantine is empty: its address and bytes.
    pub(crate) fn take_ring(&mut self) -> Option<(*mut Entry, usize)> {
        if self.cap == 0 || self.len > 0 {
            return None;
        }
        let ring = (self.ring, self.cap * core::mem::size_of::<Entry>());
        self.ring = core::ptr::null_mut();
        (self.cap, self.head) = (0, 0);
        Some(ring)
    }

    /// Entries held (early-removed ones included until they reach the front).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<P: PageSource> Kmalloc<P> {
    /// Does a debug free of an object of `cache` go through the quarantine? kmalloc caches
    /// only: a user cache's objects go back at once, so that `kmem_cache_destroy` finds it
    /// empty after the last free.
    pub(super) fn quarantines(&self, cache: u16) -> bool {
        self.config.debug && self.config.quarantine > 0 && self.is_kmalloc_cache(cache)
    }

    /// Puts a freed allocation into the quarantine, and lets the oldest out while it is full or
    /// over its budget; an object leaving with changed poison is the error.
    pub(super) fn quarantine_put(&self, e: Entry) -> Result<(), FreeError> {
        loop {
            let out = {
                let mut q = self.quarantine.lock();
                if q.wants_ring() {
                    self.quarantine_ring(&mut q);
                }
                if q.push(e) {
                    break;
                }
                if q.len() == 0 {
                    // No ring to be had: the allocation goes back at once.
                    drop(q);
                    return self.quarantine_release(e);
                }
                q.evict(true)
            };
            if let Some(old) = out {
                self.quarantine_release(old)?;
            }
        }
        loop {
            let out = self.quarantine.lock().evict(false);
            match out {
                Some(old) => self.quarantine_release(old)?,
                None => return Ok(()),
            }
        }
    }

    /// Takes the quarantine's ring from the page layer (a metadata run, as the site table's).
    fn quarantine_ring(&self, q: &mut Quarantine) {
        if let Some((p, bytes)) = self.meta_run() {
            // SAFETY: a fresh, page-aligned metadata run of `bytes`, owned by the allocator
            // until `shrink_all` takes the ring back.
            unsafe { q.adopt(p.cast(), bytes) };
        }
    }

    /// An allocation leaves the quarantine: its poison is checked, then it goes back.
    fn quarantine_release(&self, e: Entry) -> Result<(), FreeError> {
        let ptr = e.addr as *mut u8;
        match self.locate(e.addr) {
            Loc::Slab { head, cache, .. } => {
                let Some(mut c) = self.lock_slab(head, cache) else {
                    return Err(FreeError::InvalidPointer(e.addr));
                };
                // SAFETY: `head` heads a slab of this cache (checked under its lock) holding
                // the quarantined object, which just left the ring.
                let res = unsafe { c.release_quarantined(head, ptr, &self.pages, &self.map) };
                drop(c);
                res.map_err(|e| self.resolve(e))
            }
            Loc::Huge { seg, .. } => {
                // SAFETY: a registered huge segment whose object was quarantined by
                // `free_checked` and just left the ring.
                let res = unsafe { self.pages.lock().release_debug_run(&self.map, seg) };
                res.map_err(|f| self.resolve(FreeError::Found(f)))
            }
            _ => Err(FreeError::InvalidPointer(e.addr)),
        }
    }

    /// Debug mode: re-checks the poison of the newest quarantined objects, so that a write after
    /// free is reported at the next call. An object found written is taken out of the ring and
    /// stays out of circulation.
    pub(super) fn quarantine_recheck(&self) -> Result<(), FreeError> {
        if !self.config.debug {
            return Ok(());
        }
        let mut q = self.quarantine.lock();
        let mut bad = None;
        for (i, e) in q.newest() {
            let res = match self.locate(e.addr) {
                Loc::Slab { head, cache, .. } => match self.lock_slab(head, cache) {
                    // SAFETY: `head` heads a slab of this cache (checked under its lock) holding
                    // the object; the quarantine lock keeps it quarantined.
                    Some(c) => unsafe { c.check_quarantined(head, e.addr as *mut u8) },
                    None => Ok(()),
                },
                // SAFETY: a registered huge segment (the map's answer; the quarantine lock
                // keeps a quarantined one registered), checked under the page-layer lock.
                Loc::Huge { seg, .. } => unsafe { self.pages.lock().check_debug_run(seg) },
                _ => Ok(()),
            };
            if let Err(f) = res {
                bad = Some((i, f));
                break;
            }
        }
        let Some((i, f)) = bad else {
            return Ok(());
        };
        q.remove_at(i);
        drop(q);
        Err(self.resolve(FreeError::Found(f)))
    }

    /// Debug mode: lets every allocation out of the quarantine (their poison checked) and gives
    /// its ring back, e.g. when memory runs out or when shrinking. The first changed poison is
    /// the error (that object stays out of circulation; `validate` reports it again).
    pub fn quarantine_flush(&self) -> Result<(), FreeError> {
        let mut res = Ok(());
        loop {
            let out = self.quarantine.lock().evict(true);
            match out {
                Some(e) => {
                    let r = self.quarantine_release(e);
                    if res.is_ok() {
                        res = r;
                    }
                }
                None => break,
            }
        }
        let mut q = self.quarantine.lock();
        if let Some((ring, _)) = q.take_ring() {
            let seg = (ring as usize & !((1usize << self.seg_shift) - 1)) as *mut SegmentHeader;
            let i = SegmentHeader::page_index(seg, ring as usize, self.page_shift);
            // SAFETY: the ring was a metadata run of `seg` taken by `quarantine_ring`; the
            // quarantine is empty and no longer points to it.
            unsafe { self.pages.lock().free_run(&self.map, seg, i) };
        }
        res
    }
}
