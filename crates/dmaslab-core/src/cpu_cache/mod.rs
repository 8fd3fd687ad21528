//! Per-CPU object caches (Bonwick & Adams 2001's magazines; Linux 6.18 calls them sheaves): a
//! caller-owned [`CpuCache`] passed as `&mut` to the `*_cpu` methods of [`Kmalloc`], as mimalloc
//! passes its heap. A kernel keeps one per CPU and uses it with preemption off; the hosted heap
//! keeps one per thread.
//!
//! - **Fast path** ([`Kmalloc::kmalloc_fast`], [`Kmalloc::kfree_fast`]): no lock, no atomic
//!   read-modify-write (from 2 KiB, a plain store to the object's live flag,
//!   `kmalloc/live.rs`). A freed object first becomes the cache's *recent* object and the one it
//!   replaces goes onto its magazine; an allocation of the same class takes `recent` back.
//! - **Slow path** (`slow.rs`): each class has two magazines, `loaded` and `prev`. An empty
//!   (alloc) or full (free) `loaded` is swapped with `prev` if that helps; otherwise whole
//!   magazines are exchanged with the class's lock-free [`depot`](crate::depot); otherwise
//!   magazines are refilled from the slabs, or drained into them, up to four under one cache
//!   lock.
//! - **Remote frees** (of an object another CPU allocated) take the same way: into the freeing
//!   CPU's magazine, so they take no lock per object; full magazines reach the allocating side
//!   through the depot, and beyond the depot's bound go back to their slabs in bulk.
//!
//! Objects in magazines (of CPU caches or of the depot) look allocated to the slabs: slabinfo's
//! `active_objs` counts them. Magazines are themselves `kmalloc-512` objects.
//!
//! Every object freed into the recent slot or a magazine carries the freed-object tag
//! ([`crate::freed_tag`]): a free that finds it is a double free, an allocation that misses it a
//! use after free, both reported by the slow paths with the object.

use crate::debug::FindingKind;
use crate::freed_tag::{first_word, may_hold, set_first_word, tag_of};
use crate::kmalloc::{Kmalloc, SegmentHint, SlabObject, MAX_CACHES};
use crate::kmem_cache::FreeError;
use crate::magazine::{Magazine, Take};
use crate::page_source::PageSource;
use crate::policy::Gfp;
use crate::segment::PageDesc;
use core::ptr::{self, NonNull};

mod slow;
mod stash;

use stash::Stash;
pub use stash::{STASH_BYTES, STASH_MAGS};

/// "No class": the value of [`CpuCache`]'s recent class when it holds no object, and of a size
/// table entry for a size the per-CPU layer does not serve.
pub const NO_CLASS: u8 = u8::MAX;

/// One CPU's (or thread's) magazines, by cache index.
///
/// # Contract
/// A `CpuCache` is bound to the allocator it is first used with: every `*_cpu` call and
/// [`Kmalloc::kfree_fast`] must pass that allocator, from one thread at a time (a CPU with
/// preemption off), and [`Kmalloc::cpu_cache_flush`] gives everything back before the cache is
/// discarded (without it the objects stay allocated: a leak). The methods that take one are
/// `unsafe` for that reason.
///
/// # Invariants
/// Each non-null `loaded[i]`/`prev[i]`, and each of `stash`'s of class `i`, is a magazine owned
/// by this cache, of cache index `i`;
/// `recent` is a free object of cache `recent_x` owned by this cache, holding its freed-object
/// tag, or `recent_x` is [`NO_CLASS`] (and `recent` is stale); `recent_x` is never a cache that
/// keeps live flags (their frees go on top of the magazine, so a recent hit has no flag to set); `seg_hint` holds segments of the bound allocator (see
/// [`SegmentHint`]); `tag_secret` is the bound allocator's (0 before any `*_cpu` call, when the
/// cache holds nothing).
pub struct CpuCache {
    loaded: [*mut Magazine; MAX_CACHES],
    prev: [*mut Magazine; MAX_CACHES],
    /// The segments this cache's frees landed in: spares the free path the segment-map probe.
    seg_hint: SegmentHint,
    recent: *mut u8,
    recent_x: u8,
    tag_secret: usize,
    /// Full magazines kept back from the depot for this cache's own allocations (`stash.rs`;
    /// last: the fast paths' fields stay together).
    stash: Stash,
}

// SAFETY: a `CpuCache` owns its magazines and objects; nothing in it is tied to a thread (a
// kernel may hand a CPU's cache to the CPU that takes over, with preemption off).
unsafe impl Send for CpuCache {}

impl Default for CpuCache {
    fn default() -> Self {
        CpuCache::NEW
    }
}

impl CpuCache {
    /// An empty cache, bound to no allocator yet.
    pub const NEW: CpuCache = CpuCache {
        loaded: [ptr::null_mut(); MAX_CACHES],
        prev: [ptr::null_mut(); MAX_CACHES],
        seg_hint: SegmentHint::NONE,
        recent: ptr::null_mut(),
        recent_x: NO_CLASS,
        tag_secret: 0,
        stash: Stash::NEW,
    };

    /// Has a free through the slow path recorded a segment yet? Until then [`Kmalloc::kfree_fast`]
    /// cannot succeed, and a host whose allocator may not be built yet tests this first.
    #[inline(always)]
    pub fn is_hinted(&self) -> bool {
        self.seg_hint.is_set()
    }

    /// An object of cache index `x` from this cache (the recent object, else the loaded
    /// magazine's top), or `None`; its live flag, if its cache keeps them, is not set yet (see
    /// [`Kmalloc::kmalloc_fast`]).
    ///
    /// # Safety
    /// `x < MAX_CACHES`.
    #[inline(always)]
    pub(crate) unsafe fn alloc_fast(&mut self, x: u8) -> Option<NonNull<u8>> {
        // SAFETY: `x` is in bounds (caller).
        match unsafe { self.take(x, true) } {
            Take::Object(p) => Some(p),
            _ => None,
        }
    }

    /// The recent object if it is of cache `x`, else the top of `loaded[x]`, with its tag
    /// checked and cleared ([`Magazine::take`]; `keep_broken` as there).
    ///
    /// # Safety
    /// `x < MAX_CACHES`.
    #[inline(always)]
    unsafe fn take(&mut self, x: u8, keep_broken: bool) -> Take {
        // SAFETY: `recent` is a free object of class `recent_x` owned by us, holding its tag
        // (invariant); `x` is in bounds (caller); a non-null loaded magazine is ours.
        unsafe {
            if self.recent_x == x {
                let p = self.recent;
                let tag = tag_of(p, self.tag_secret);
                let w = first_word(p);
                if w != tag {
                    if !keep_broken {
                        self.recent_x = NO_CLASS;
                    }
                    return Take::Broken { p, word: w };
                }
                // Cleared, so that freeing `p` again is not taken for a double free. (`recent`
                // itself means nothing once `recent_x` says "none".)
                set_first_word(p, 0);
                self.recent_x = NO_CLASS;
                return Take::Object(NonNull::new_unchecked(p));
            }
            let m = *self.loaded.get_unchecked(x as usize);
            if m.is_null() {
                return Take::Empty;
            }
            Magazine::take(m, self.tag_secret, keep_broken)
        }
    }

    /// Bytes of objects in the stash: full magazines kept back from the depot, at most
    /// [`STASH_BYTES`].
    pub fn stashed_bytes(&self) -> usize {
        self.stash.bytes()
    }

    /// Objects held: (magazines, objects, the recent object included).
    pub fn counts(&self) -> (usize, usize) {
        let mut r = (0, usize::from(self.recent_x != NO_CLASS));
        let stashed = (0..MAX_CACHES).flat_map(|x| self.stash.of(x));
        for &m in self.loaded.iter().chain(&self.prev).chain(stashed) {
            if !m.is_null() {
                r.0 += 1;
                // SAFETY: our magazine (invariant).
                r.1 += unsafe { (*m).count } as usize;
            }
        }
        r
    }
}

impl<P: PageSource> Kmalloc<P> {
    /// The cache index [`kmalloc_cpu`](Self::kmalloc_cpu) serves `kmalloc(size, gfp)` from
    /// through magazines, or [`NO_CLASS`] (sizes above the slab classes, and every size in debug
    /// mode, which bypasses magazines so that every operation is checked). A host may mirror
    /// this into a table for its fast path.
    pub fn cpu_class(&self, size: usize, gfp: Gfp) -> u8 {
        if self.config().debug {
            return NO_CLASS;
        }
        self.kmalloc_cache(size, gfp)
            .map_or(NO_CLASS, |id| id.index() as u8)
    }

    /// An object of cache index `x` from `cc` without a lock (the recent object, else the
    /// loaded magazine's top), with its live flag set if its cache keeps them (`kmalloc/live.rs`),
    /// or `None`: the caller then takes [`kmalloc_cpu`](Self::kmalloc_cpu) (which also reports
    /// an object whose freed-object tag was overwritten: such an object is left in place here).
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract with this allocator; `x` is a class
    /// [`cpu_class`](Self::cpu_class) answered, not [`NO_CLASS`].
    #[inline(always)]
    pub unsafe fn kmalloc_fast(&self, cc: &mut CpuCache, x: u8) -> Option<NonNull<u8>> {
        // The recent object is never of a cache with live flags (invariant): a pair's
        // allocation skips the flag test.
        let recent = cc.recent_x == x;
        // SAFETY: `x < MAX_CACHES` (a class), `cc` is bound to us (caller).
        let p = unsafe { cc.alloc_fast(x) }?;
        if !recent {
            // SAFETY: an object of cache `x`, just handed out.
            unsafe { self.mark_live(x as usize, p.as_ptr()) };
        }
        Some(p)
    }

    /// `kfree(p)` into `cc` without a lock when that is quick: `p` lies in a segment `cc`'s hint
    /// holds, is an object start of a cached class, and does not hold its freed-object tag
    /// (else it is a double free). False otherwise (null `p` included): the caller then takes
    /// [`kfree_cpu`](Self::kfree_cpu), which repeats the checks and reports misuse.
    ///
    /// # Safety
    /// As for [`kfree_cpu`](Self::kfree_cpu).
    #[inline(always)]
    pub unsafe fn kfree_fast(&self, cc: &mut CpuCache, p: *mut u8) -> bool {
        let Some(o) = self.slab_object_if_hinted(p, &cc.seg_hint) else {
            return false;
        };
        // SAFETY: forwarded; `o` is `p`, just found.
        unsafe { self.kfree_fast_found(cc, p, o) }
    }

    /// [`kfree_fast`](Self::kfree_fast) of an object the caller says is of cache index `x`
    /// (a sized free: the class its size maps to): false, and nothing done, when it is not.
    ///
    /// # Safety
    /// As for [`kfree_fast`](Self::kfree_fast).
    #[inline(always)]
    pub unsafe fn kfree_fast_of(&self, cc: &mut CpuCache, p: *mut u8, x: u8) -> bool {
        let Some(o) = self.slab_object_if_hinted(p, &cc.seg_hint) else {
            return false;
        };
        if o.cache.index() != x as usize {
            return false;
        }
        // SAFETY: forwarded; `o` is `p`, just found.
        unsafe { self.kfree_fast_found(cc, p, o) }
    }

    /// The part of [`kfree_fast`](Self::kfree_fast) after the lookup found `o`, `p`'s object.
    ///
    /// # Safety
    /// As for [`kfree_fast`](Self::kfree_fast); `o` is what the hinted lookup found for `p`.
    #[inline(always)]
    unsafe fn kfree_fast_found(&self, cc: &mut CpuCache, p: *mut u8, o: SlabObject) -> bool {
        let x = o.cache.index();
        if self.keeps_live_flags(x) {
            // SAFETY: as the caller promises; `o` is `p`, just found.
            return unsafe { self.kfree_fast_live(cc, p, x, o.head, o.index) };
        }
        // SAFETY: as above.
        unsafe { self.kfree_fast_push(cc, p, x) }
    }

    /// [`kfree_fast`](Self::kfree_fast) of an object whose cache keeps live flags: the flag is
    /// taken first (an object that is not out goes to the full path, which reports it). Out of
    /// line, so that the smaller classes' path keeps its registers.
    ///
    /// # Safety
    /// As for [`kfree_fast_push`](Self::kfree_fast_push).
    #[inline(never)]
    unsafe fn kfree_fast_live(
        &self,
        cc: &mut CpuCache,
        p: *mut u8,
        x: usize,
        head: *const PageDesc,
        index: usize,
    ) -> bool {
        // SAFETY: as the caller promises.
        unsafe {
            if !self.take_live_found(head, index) {
                return false;
            }
            if self.kfree_fast_push_top(cc, p, x) {
                return true;
            }
            // Handed back to the full path, live flag and all.
            self.give_back_live(x, p);
        }
        false
    }

    /// The lock-free push of [`kfree_fast`](Self::kfree_fast): `p` becomes the recent object,
    /// the previous one goes on top of its magazine; false (and nothing changed) when there is
    /// no magazine or `p` may hold its freed-object tag.
    ///
    /// # Safety
    /// As for [`kfree_cpu`](Self::kfree_cpu); `p` is an object start of a live slab of cache
    /// `x`, found through `cc`'s hint.
    #[inline(always)]
    unsafe fn kfree_fast_push(&self, cc: &mut CpuCache, p: *mut u8, x: usize) -> bool {
        debug_assert!(
            !self.keeps_live_flags(x),
            "a flagged cache's object made recent"
        );
        // SAFETY: `x < MAX_CACHES` (a cache index); magazines and the recent object are `cc`'s
        // (invariant); `p` is an object start of a slab of cache `x` that the caller gives up
        // (readable: its slab is live).
        unsafe {
            let m = *cc.loaded.get_unchecked(x);
            let tag = tag_of(p, cc.tag_secret);
            if m.is_null() || may_hold(p, tag) {
                // No magazine (none yet, or a class without magazines), or perhaps a double
                // free (the full path compares the whole word, and reports it).
                return false;
            }
            // `p` becomes the recent object; the previous one goes on top of its magazine.
            let rx = cc.recent_x;
            if rx != NO_CLASS {
                // Out of line: in a malloc/free pair the allocation took the recent object back,
                // and the fall-through to the stores is the pair's whole path.
                cold_path();
                let rm = *cc.loaded.get_unchecked(rx as usize);
                // (Null only after a failed magazine allocation.)
                if rm.is_null() || !Magazine::push(rm, cc.recent) {
                    // No room for the recent object: `p` goes into its own magazine instead.
                    if !Magazine::push(m, p) {
                        return false;
                    }
                    set_first_word(p, tag);
                    return true;
                }
            }
            // The store also brings `p`'s line in for writing: the drain that later links it
            // into its slab finds it there.
            set_first_word(p, tag);
            cc.recent = p;
            cc.recent_x = x as u8;
        }
        true
    }

    /// [`kfree_fast_push`](Self::kfree_fast_push) for a cache that keeps live flags: `p` goes
    /// on top of its magazine, never into the recent slot (see [`CpuCache`]'s invariants).
    ///
    /// # Safety
    /// As for [`kfree_fast_push`](Self::kfree_fast_push).
    #[inline(always)]
    unsafe fn kfree_fast_push_top(&self, cc: &mut CpuCache, p: *mut u8, x: usize) -> bool {
        // SAFETY: as in `kfree_fast_push`.
        unsafe {
            let m = *cc.loaded.get_unchecked(x);
            let tag = tag_of(p, cc.tag_secret);
            if m.is_null() || may_hold(p, tag) || !Magazine::push(m, p) {
                return false;
            }
            set_first_word(p, tag);
        }
        true
    }

    /// Allocates `size` bytes aligned to `align` (a power of two, else `None`), from `cc`'s
    /// magazines when a slab class serves the request (the rule of
    /// [`kmalloc_aligned`](Self::kmalloc_aligned)), else from the slabs or page runs directly.
    /// `site` is the caller's address, recorded in debug mode (which bypasses magazines). A
    /// corrupted free list found on a refill, or a debug finding, is returned as the error.
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract with this allocator.
    pub unsafe fn kmalloc_cpu(
        &self,
        cc: &mut CpuCache,
        size: usize,
        align: usize,
        gfp: Gfp,
        site: usize,
    ) -> Result<Option<NonNull<u8>>, FreeError> {
        if self.config().debug || !align.is_power_of_two() {
            return self.kmalloc_checked(size, align, gfp, site);
        }
        let Some(x) = self.cache_for(size, align, gfp) else {
            return self.kmalloc_checked(size, align, gfp, site);
        };
        let x = x as usize;
        cc.tag_secret = self.freed_tag_secret();
        // SAFETY: `x` is a cache index; the cache is `cc`'s (caller).
        let p = match unsafe { cc.alloc_fast(x as u8) } {
            Some(p) => p,
            // SAFETY: as above.
            None => match unsafe { self.cpu_alloc_slow(cc, x) }? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        // SAFETY: an object of cache `x`, just handed out.
        unsafe { self.mark_live(x, p.as_ptr()) };
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a free object of at least `size` bytes, now the caller's.
            unsafe { p.as_ptr().write_bytes(0, size) };
        }
        Ok(Some(p))
    }

    /// Frees `p` (null is ignored): a slab object of a kmalloc class into `cc`'s magazines, with
    /// the double-free test by its freed-object tag (and against `cc`'s recent object and its
    /// magazine's top); anything else (page runs, user caches, debug mode) through
    /// [`kfree_at`](Self::kfree_at). Invalid and double frees are reported as errors and change
    /// nothing.
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract with this allocator; as for [`kfree`](Self::kfree)
    /// for `p`.
    pub unsafe fn kfree_cpu(
        &self,
        cc: &mut CpuCache,
        p: *mut u8,
        site: usize,
    ) -> Result<(), FreeError> {
        if p.is_null() {
            return Ok(());
        }
        if !self.config().debug {
            cc.tag_secret = self.freed_tag_secret();
            if let Some(id) = self.cache_of_hinted(p, &mut cc.seg_hint) {
                let x = id.index();
                // SAFETY: `x < MAX_CACHES`; a non-null loaded magazine is `cc`'s (invariant);
                // `p` is an object start of a live slab of cache `x` (readable) that the caller
                // gives up.
                unsafe {
                    let m = cc.loaded[x];
                    if !m.is_null() || self.is_kmalloc(id) {
                        let tag = tag_of(p, cc.tag_secret);
                        let w = first_word(p);
                        if w == tag {
                            // Freed into some CPU cache already (its tag is cleared whenever
                            // one is handed out).
                            return Err(self.freed_tag_error(FindingKind::DoubleFree, x, p, w));
                        }
                        if !m.is_null() && Magazine::top(m) == p {
                            // The top of a refill, never handed out since. (The recent object
                            // holds its tag.)
                            return Err(FreeError::DoubleFree(p as usize));
                        }
                        if !self.take_live(x, p) {
                            // An object start that is not out: a refill's object in a
                            // magazine, or one freed before and back in its slab.
                            return Err(FreeError::InvalidPointer(p as usize));
                        }
                        set_first_word(p, tag);
                        if !m.is_null() && Magazine::push(m, p) {
                            return Ok(());
                        }
                        return self.cpu_free_slow(cc, x, p);
                    }
                }
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.kfree_at(p, site) }
    }

    /// [`usable_size`](Self::usable_size) with `cc`'s segment hint: a slab object's or a page
    /// run's size is read without a lock (and, where the hint holds, without the map's probe).
    ///
    /// # Safety
    /// `cc` keeps the [`CpuCache`] contract with this allocator.
    pub unsafe fn ksize_cpu(&self, cc: &mut CpuCache, p: *const u8) -> Option<usize> {
        if self.config().debug {
            return self.usable_size(p);
        }
        cc.tag_secret = self.freed_tag_secret();
        self.ksize_hinted(p, &mut cc.seg_hint)
    }
}

/// Marks the branch that calls it as unlikely: a call to a `#[cold]` function (the core's MSRV,
/// 1.87, predates `core::hint::cold_path`). Only the cold branch pays the call.
#[cold]
#[inline(never)]
fn cold_path() {}
