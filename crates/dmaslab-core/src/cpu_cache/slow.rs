//! The per-CPU layer's slow paths: swaps of `loaded` and `prev`, magazine exchanges with the
//! lock-free [`depot`](crate::depot), refills from and drains into the slabs (one cache lock for up
//! to [`BULK_MAGS`] magazines), flushing a [`CpuCache`], and the depot's part of `validate`.

use super::{CpuCache, NO_CLASS};
use crate::debug::{Finding, FindingKind};
use crate::depot::{DEPOT_EMPTY_MAX, DEPOT_FULL_MAX};
use crate::freed_tag::{first_word, tag_of};
use crate::kmalloc::{CacheId, Kmalloc, SegmentHint, MAX_CACHES};
use crate::kmem_cache::FreeError;
use crate::magazine::{capacity_for, Magazine, Take, MAG_BYTES_SELF, MAG_MAX};
use crate::page_source::PageSource;
use crate::policy::Gfp;
use crate::stats::CacheName;
use core::ptr::{self, NonNull};

/// Magazines one refill or drain moves under one cache lock at most (a stack buffer of that
/// many magazines' pointers: 2 KiB on 64-bit targets).
const BULK_MAGS: usize = 4;

impl<P: PageSource> Kmalloc<P> {
    /// Gives everything `cc` holds back: the recent object to its slab, every magazine to its
    /// class's depot (or, beyond the depot's bound, its objects to the slabs). `cc` is then
    /// empty and may be discarded or reused.
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract with this allocator.
    pub unsafe fn cpu_cache_flush(&self, cc: &mut CpuCache) -> Result<(), FreeError> {
        let mut res = Ok(());
        if cc.recent_x != NO_CLASS {
            let p = cc.recent;
            let x = cc.recent_x as usize;
            cc.recent_x = NO_CLASS;
            // SAFETY: the recent object is ours, a free object of cache `x` holding its tag
            // (invariant).
            res = unsafe { self.cache_free_bulk(x, &[p], &mut cc.seg_hint, 0) }.map_err(|e| e.1);
        }
        for x in 0..MAX_CACHES {
            let size = self.cache_size(x);
            while let Some(m) = cc.stash.pop(x, size) {
                // SAFETY: our magazine of cache `x`, handed over.
                let r = unsafe { self.to_depot(&mut cc.seg_hint, x, m) };
                res = res.and(r);
            }
            for m in [cc.loaded[x], cc.prev[x]] {
                if !m.is_null() {
                    // SAFETY: our magazine of cache `x`, handed over.
                    let r = unsafe { self.to_depot(&mut cc.seg_hint, x, m) };
                    res = res.and(r);
                }
            }
            cc.loaded[x] = ptr::null_mut();
            cc.prev[x] = ptr::null_mut();
        }
        res
    }

    /// Magazines and objects held by the depots: (loaded magazines, empty magazines, objects).
    pub fn depot_counts(&self) -> (usize, usize, usize) {
        let mut r = (0, 0, 0);
        for d in self.depots() {
            let (f, e) = d.counts();
            r.0 += f;
            r.1 += e;
            r.2 += d.objects();
        }
        r
    }

    /// `loaded[x]` is empty or absent.
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract; `x` is a kmalloc cache index.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn cpu_alloc_slow(
        &self,
        cc: &mut CpuCache,
        x: usize,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        // SAFETY: `cc`'s magazines are its own (invariant); those from the depot become ours.
        unsafe {
            // 0. The fast path left an object whose tag is broken in place: report it (it stays
            // out of circulation).
            match cc.take(x as u8, false) {
                Take::Empty => {}
                Take::Object(p) => return Ok(Some(p)),
                Take::Broken { p, word } => {
                    return Err(self.freed_tag_error(FindingKind::UseAfterFree, x, p, word));
                }
            }
            cc.stash.allocating(x);
            let loaded = cc.loaded[x];
            let prev = cc.prev[x];
            // 1. The previous magazine has objects: swap. (Not while `loaded` is absent: then
            // `prev` holds only objects freed into a cache that never allocated from `x`, see
            // `cpu_free_slow`'s step 0, and a refill comes first.)
            if !prev.is_null() && !loaded.is_null() && !(*prev).is_empty() {
                cc.prev[x] = loaded;
                cc.loaded[x] = prev;
                return self.take_checked(prev, x);
            }
            // From here `prev` is empty, absent, or (with `loaded` absent) waiting: holding
            // objects this cache was given before it allocated from `x`; `loaded` is then absent
            // (step 1). A waiting `prev` stays.
            let waiting = !prev.is_null() && !(*prev).is_empty();
            let spare_prev = if waiting { ptr::null_mut() } else { prev };
            // 2. A magazine of our own from the stash; our empty `prev` goes to the depot.
            if let Some(f) = cc.stash.pop(x, self.cache_size(x)) {
                if !spare_prev.is_null() {
                    if let Some(s) = self.depots()[x].push(spare_prev) {
                        self.free_magazine(&mut cc.seg_hint, x, s)?;
                    }
                }
                if !waiting {
                    cc.prev[x] = loaded;
                }
                cc.loaded[x] = f;
                return self.take_checked(f, x);
            }
            // 3. A loaded magazine from the depot; our empty `prev` goes there in exchange.
            let (full, spare) = {
                let d = &self.depots()[x];
                let f = d.pop_full();
                let spare = if f.is_some() && !spare_prev.is_null() {
                    d.push(spare_prev)
                } else {
                    None
                };
                (f, spare)
            };
            if let Some(s) = spare {
                self.free_magazine(&mut cc.seg_hint, x, s)?;
            }
            if let Some(f) = full {
                // The empty `prev` went to the depot; the empty (or absent) `loaded` takes its
                // place.
                if !waiting {
                    cc.prev[x] = loaded;
                }
                cc.loaded[x] = f;
                return self.take_checked(f, x);
            }
            // 4. Refill from the slabs under one cache lock: `loaded`, and when the class has
            // cycled magazines before (an empty `prev`) that one too, with up to `BULK_MAGS` in
            // all from the depot's empties, which go back to the depot loaded.
            let m = if loaded.is_null() {
                let m = self.new_magazine(x)?;
                if m.is_null() {
                    return self.kmalloc_checked(self.cache_size(x), 1, Gfp::KERNEL, 0);
                }
                cc.loaded[x] = m;
                m
            } else {
                loaded
            };
            let mut ms = [m; BULK_MAGS];
            let mut k = 1;
            if !spare_prev.is_null() {
                ms[1] = prev;
                k = 2;
                while k < BULK_MAGS {
                    let Some(e) = self.depots()[x].pop_empty() else {
                        break;
                    };
                    ms[k] = e;
                    k += 1;
                }
            }
            let res = self.refill(x, &ms[..k]);
            for &e in &ms[2.min(k)..k] {
                self.to_depot(&mut cc.seg_hint, x, e)?;
            }
            res?;
            self.take_checked(m, x)
        }
    }

    /// [`Magazine::take`] for a slow path: an object whose tag is broken is taken out of
    /// circulation and reported.
    ///
    /// # Safety
    /// `m` is a magazine of cache `x` owned by the caller.
    unsafe fn take_checked(
        &self,
        m: *mut Magazine,
        x: usize,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        // SAFETY: forwarded from the caller.
        match unsafe { Magazine::take(m, self.freed_tag_secret(), false) } {
            Take::Empty => Ok(None),
            Take::Object(p) => Ok(Some(p)),
            Take::Broken { p, word } => {
                Err(self.freed_tag_error(FindingKind::UseAfterFree, x, p, word))
            }
        }
    }

    /// `loaded[x]` is full or absent; `p` a live object of cache `x` the caller gives up.
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract; `x` is a kmalloc cache index.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn cpu_free_slow(
        &self,
        cc: &mut CpuCache,
        x: usize,
        p: *mut u8,
    ) -> Result<(), FreeError> {
        // SAFETY: `cc`'s magazines are its own (invariant); those from the depot become ours.
        unsafe {
            let loaded = cc.loaded[x];
            let prev = cc.prev[x];
            // 0. This cache never allocated from class `x` (no magazine at all): `p` was
            // allocated elsewhere, on a line the CPU that allocated its neighbours likely
            // writes. It goes into `prev`, not `loaded`: this cache's first allocation of `x`
            // refills `loaded` from the slabs instead of taking `p` (no passive false sharing,
            // the cache-scratch shape), and `p` keeps its tag while it waits. The next free
            // takes `prev` as `loaded` (step 1), so a cache that only frees (a consumer) pays
            // this once.
            if loaded.is_null() && prev.is_null() {
                let m = match self.depots()[x].pop_empty() {
                    Some(m) => m,
                    None => self.new_magazine(x)?,
                };
                if !m.is_null() {
                    cc.prev[x] = m;
                    Magazine::push(m, p);
                    return Ok(());
                }
            }
            // 1. The previous magazine has room: swap.
            if !prev.is_null() && !(*prev).is_full() {
                cc.prev[x] = loaded;
                cc.loaded[x] = prev;
                Magazine::push(prev, p);
                return Ok(());
            }
            // 2. Our full `prev` goes to the stash if it has room, `loaded` (full) becomes `prev`,
            // and an empty magazine from the depot (or a new one) becomes `loaded`.
            if !loaded.is_null() && !prev.is_null() {
                let bytes = (*prev).count as usize * self.cache_size(x);
                if cc.stash.takes(x, bytes) {
                    let e = match self.depots()[x].pop_empty() {
                        Some(e) => e,
                        None => self.new_magazine(x)?,
                    };
                    if !e.is_null() {
                        cc.stash.push(x, prev, bytes);
                        cc.prev[x] = loaded;
                        cc.loaded[x] = e;
                        Magazine::push(e, p);
                        return Ok(());
                    }
                }
            }
            // 3. Our full `prev` goes to the depot, `loaded` (full) becomes `prev`, and an empty
            // magazine from the depot (or a new one) becomes `loaded`.
            let (empty, excess) = {
                let d = &self.depots()[x];
                let e = d.pop_empty();
                let excess = if !loaded.is_null() && !prev.is_null() {
                    d.push(prev)
                } else {
                    None
                };
                (e, excess)
            };
            // A full `prev` the depot had no room for goes back to the slabs in bulk; drained, it
            // serves as the new empty magazine when the depot had none (no kfree + kmalloc).
            let reuse = match excess {
                Some(s) => {
                    self.drain_with_depot(&mut cc.seg_hint, x, s)?;
                    if empty.is_some() {
                        self.to_depot(&mut cc.seg_hint, x, s)?;
                        None
                    } else {
                        Some(s)
                    }
                }
                None => None,
            };
            if !loaded.is_null() {
                cc.prev[x] = loaded;
            }
            let m = match empty.or(reuse) {
                Some(m) => m,
                None => self.new_magazine(x)?,
            };
            cc.loaded[x] = m;
            if m.is_null() {
                // No memory for a magazine: straight to the slab, which takes the live flag
                // the caller took already (so it is given back first).
                self.give_back_live(x, p);
                return self.kmem_cache_free(CacheId::from_index(x), p);
            }
            Magazine::push(m, p);
            Ok(())
        }
    }

    /// A fresh empty magazine for cache `x` from kmalloc-512 (null when out of memory).
    fn new_magazine(&self, x: usize) -> Result<*mut Magazine, FreeError> {
        Ok(
            match self.kmalloc_checked(MAG_BYTES_SELF, 1, Gfp::KERNEL, 0)? {
                Some(p) => {
                    let m = p.as_ptr().cast::<Magazine>();
                    // SAFETY: a fresh 512-byte, 512-aligned block of ours.
                    unsafe { Magazine::init(m, capacity_for(self.cache_size(x))) };
                    m
                }
                None => ptr::null_mut(),
            },
        )
    }

    /// Fills the empty magazines `ms` of cache `x` from the slabs under one cache lock, in order
    /// (fewer objects when out of memory). A corrupted free list is the error; the objects taken
    /// before it are in the magazines.
    ///
    /// # Safety
    /// `ms` are at most [`BULK_MAGS`] distinct empty magazines of cache `x` owned by the caller.
    unsafe fn refill(&self, x: usize, ms: &[*mut Magazine]) -> Result<(), FreeError> {
        let mut buf = [ptr::null_mut(); BULK_MAGS * MAG_MAX];
        // SAFETY: we own the magazines; `cap <= MAG_MAX` each (magazine invariant), so their
        // capacities fit `buf`.
        unsafe {
            let want: usize = ms.iter().map(|&m| (*m).cap as usize).sum();
            let (n, bad) = self.cache_alloc_bulk(x, &mut buf[..want]);
            let mut i = 0;
            for &m in ms {
                let k = ((*m).cap as usize).min(n - i);
                (&mut (*m).objs)[..k].copy_from_slice(&buf[i..i + k]);
                (*m).count = k as u32;
                // A refill's objects carry no tag (fresh ones must stay untouched).
                (*m).untagged = k as u16;
                i += k;
            }
            bad.map_or(Ok(()), Err)
        }
    }

    /// Returns the objects of `m` to their slabs under one cache lock, checking the tags of the
    /// tagged ones; `m` is then empty. On an error the objects not yet returned are dropped from
    /// the magazine (they leak).
    ///
    /// # Safety
    /// `m` is a magazine of cache `x` owned by the caller; `hint` the caller's segment hint.
    unsafe fn drain(
        &self,
        hint: &mut SegmentHint,
        x: usize,
        m: *mut Magazine,
    ) -> Result<(), FreeError> {
        // SAFETY: forwarded.
        unsafe { self.drain_all(hint, x, &[m]) }
    }

    /// [`drain`](Self::drain) of `m`, which cache `x`'s depot had no room for, together with up
    /// to `BULK_MAGS - 1` loaded magazines of that depot, under one cache lock; the depot's
    /// go back to it empty.
    ///
    /// # Safety
    /// As for [`drain`](Self::drain).
    unsafe fn drain_with_depot(
        &self,
        hint: &mut SegmentHint,
        x: usize,
        m: *mut Magazine,
    ) -> Result<(), FreeError> {
        let mut ms = [m; BULK_MAGS];
        let mut k = 1;
        while k < BULK_MAGS {
            let Some(f) = self.depots()[x].pop_full() else {
                break;
            };
            ms[k] = f;
            k += 1;
        }
        // SAFETY: `m` is ours (caller), the others were taken out of the depot.
        unsafe {
            let res = self.drain_all(hint, x, &ms[..k]);
            for &e in &ms[1..k] {
                self.to_depot(hint, x, e)?;
            }
            res
        }
    }

    /// Drains the magazines `ms` of cache `x` with one [`cache_free_bulk`](Self::cache_free_bulk)
    /// (the untagged objects first, then the tagged ones); each is then empty. On an error the
    /// objects not yet returned are dropped (they leak).
    ///
    /// # Safety
    /// `ms` are at most [`BULK_MAGS`] distinct magazines of cache `x` owned by the caller;
    /// `hint` the caller's segment hint.
    unsafe fn drain_all(
        &self,
        hint: &mut SegmentHint,
        x: usize,
        ms: &[*mut Magazine],
    ) -> Result<(), FreeError> {
        let mut buf = [ptr::null_mut(); BULK_MAGS * MAG_MAX];
        let mut n = 0;
        // SAFETY: we own the magazines and their objects; `count <= MAG_MAX` each (magazine
        // invariant), so all of them fit `buf`.
        unsafe {
            for &m in ms {
                let u = (*m).untagged as usize;
                buf[n..n + u].copy_from_slice(&(&(*m).objs)[..u]);
                n += u;
            }
            let tagged_from = n;
            for &m in ms {
                let (u, c) = ((*m).untagged as usize, (*m).count as usize);
                buf[n..n + c - u].copy_from_slice(&(&(*m).objs)[u..c]);
                n += c - u;
                (*m).count = 0;
                (*m).untagged = 0;
            }
            self.cache_free_bulk(x, &buf[..n], hint, tagged_from)
                .map_err(|(_, e)| e)
        }
    }

    /// Drains `m` and frees the magazine itself.
    ///
    /// # Safety
    /// As for [`drain`](Self::drain).
    unsafe fn free_magazine(
        &self,
        hint: &mut SegmentHint,
        x: usize,
        m: *mut Magazine,
    ) -> Result<(), FreeError> {
        // SAFETY: we own `m`; drained, it is an empty kmalloc-512 object of ours.
        unsafe {
            self.drain(hint, x, m)?;
            self.kfree(m.cast())
        }
    }

    /// Gives `m` to cache `x`'s depot, or drains and frees it if the depot is at its bound.
    ///
    /// # Safety
    /// As for [`drain`](Self::drain).
    unsafe fn to_depot(
        &self,
        hint: &mut SegmentHint,
        x: usize,
        m: *mut Magazine,
    ) -> Result<(), FreeError> {
        // SAFETY: ownership passes to the depot or back to us.
        match unsafe { self.depots()[x].push(m) } {
            // SAFETY: handed back to us.
            Some(m) => unsafe { self.free_magazine(hint, x, m) },
            None => Ok(()),
        }
    }

    /// The depots' part of [`validate`](Self::validate): each magazine of every depot is taken
    /// out (so that it is ours while it is looked at), checked and given back. A loaded one holds
    /// 1..=cap objects, an empty one none; its capacity is its class's ([`capacity_for`]),
    /// `untagged <= count`, `floor` is null; every object is an object start of a slab of the
    /// depot's cache, those above `untagged` hold their freed-object tag, and none has its live
    /// bit (`kmalloc/live.rs`). Calls `found` for
    /// each broken magazine and returns how many there were.
    pub(crate) fn validate_depots(&self, found: &mut dyn FnMut(&Finding)) -> usize {
        let mut n = 0;
        let mut hint = SegmentHint::NONE;
        for (x, d) in self.depots().iter().enumerate() {
            let mut held = [ptr::null_mut(); DEPOT_FULL_MAX + DEPOT_EMPTY_MAX];
            let mut k = 0;
            // Bounded: magazines pushed meanwhile by other threads are left for the next call.
            while k < DEPOT_FULL_MAX {
                let Some(m) = d.pop_full() else { break };
                held[k] = m;
                k += 1;
            }
            let loaded = k;
            while k < held.len() {
                let Some(m) = d.pop_empty() else { break };
                held[k] = m;
                k += 1;
            }
            for (i, &m) in held[..k].iter().enumerate() {
                // SAFETY: taken out of the depot, `m` is ours until given back below.
                let ok = unsafe { self.magazine_ok(x, m, i < loaded) };
                // SAFETY: ours, handed back (or drained into the slabs beyond the bound).
                let back = unsafe { self.to_depot(&mut hint, x, m) };
                if !ok || back.is_err() {
                    n += 1;
                    let cache = self
                        .slabinfo(CacheId::from_index(x))
                        .map_or(CacheName::EMPTY, |s| s.name);
                    found(&Finding {
                        kind: FindingKind::BrokenInvariant,
                        addr: m as usize,
                        cache,
                        object: 0,
                        offset: 0,
                        alloc_site: 0,
                        free_site: 0,
                    });
                }
            }
        }
        n
    }

    /// Does magazine `m`, taken from cache `x`'s depot off its loaded (`loaded`) or empty list,
    /// keep the depot's invariants (see [`validate_depots`](Self::validate_depots))?
    ///
    /// # Safety
    /// `m` is a valid magazine owned by the caller.
    unsafe fn magazine_ok(&self, x: usize, m: *mut Magazine, loaded: bool) -> bool {
        // SAFETY: ours (caller); `objs[..count]` are free objects of ours, readable.
        unsafe {
            let (count, untagged) = ((*m).count as usize, (*m).untagged as usize);
            let shape = usize::from((*m).cap) == capacity_for(self.cache_size(x))
                && untagged <= count
                && count <= usize::from((*m).cap)
                && (*m).floor.is_null()
                && (count > 0) == loaded;
            if !shape {
                return false;
            }
            let secret = self.freed_tag_secret();
            (&(*m).objs)[..count].iter().enumerate().all(|(i, &p)| {
                self.cache_of(p).map(|id| id.index()) == Some(x)
                    && (i < untagged || first_word(p) == tag_of(p, secret))
                    && !self.is_live(x, p)
            })
        }
    }
}
