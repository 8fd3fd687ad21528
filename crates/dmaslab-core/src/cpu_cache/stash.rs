//! A CPU cache's stash: a few full magazines per class kept back from the depot.
//!
//! A burst of frees (sh6: 80 % of a 2000-object buffer at once) fills `loaded` and `prev` and
//! then hands full magazines to the depot, which every CPU shares: the next burst of
//! allocations on another CPU takes them, and each object it pops is a cache miss (its
//! freed-object tag was last written on the CPU that freed it), and objects of two CPUs come to
//! share cache lines, which both then write. The stash keeps up to [`STASH_MAGS`] full
//! magazines per class, and [`STASH_BYTES`] of objects in all, for this cache's own next
//! allocations, and only of classes this cache also allocates from; beyond that full magazines
//! go to the depot as before.
//! `Kmalloc::cpu_cache_flush` empties it with the rest.

use crate::kmalloc::MAX_CACHES;
use crate::magazine::Magazine;
use core::ptr;

/// Full magazines a stash keeps per class at most.
pub const STASH_MAGS: usize = 8;

/// Bytes of objects (magazine count × object size) a stash keeps in all at most: 512 KiB, 32
/// magazines of the 16 KiB classes (`MAG_BYTES`), twice a burst of sh6's (BENCHMARKS.md has
/// the other bounds tried).
pub const STASH_BYTES: usize = 512 * 1024;

/// Per class, a stack of full magazines owned by the CPU cache holding the stash.
///
/// # Invariants
/// `mags[x][..len[x]]` are non-null, full magazines of cache index `x`, owned by this stash and
/// on no other list, untouched while stashed; `bytes` is the sum over them of `count × size`,
/// `size` their class's object size as passed to [`push`](Self::push) and [`pop`](Self::pop),
/// and at most [`STASH_BYTES`].
pub(crate) struct Stash {
    mags: [[*mut Magazine; STASH_MAGS]; MAX_CACHES],
    len: [u8; MAX_CACHES],
    /// Per class, magazines the stash may still take before this cache allocates from the
    /// class again (see [`allocating`](Self::allocating)).
    credit: [u8; MAX_CACHES],
    bytes: usize,
}

impl Stash {
    /// An empty stash.
    pub(crate) const NEW: Stash = Stash {
        mags: [[ptr::null_mut(); STASH_MAGS]; MAX_CACHES],
        len: [0; MAX_CACHES],
        credit: [0; MAX_CACHES],
        bytes: 0,
    };

    /// This cache ran out of objects of class `x`: what it stashes of that class will be used.
    /// Only then does the stash take magazines of `x` (up to [`STASH_MAGS`] until the next
    /// time): a cache that only frees a class (the consumer of a producer/consumer pair) keeps
    /// none back, and its full magazines go to the depot, where the producer finds them.
    pub(crate) fn allocating(&mut self, x: usize) {
        self.credit[x] = STASH_MAGS as u8;
    }

    /// Would [`push`](Self::push) keep a full magazine of class `x < MAX_CACHES` holding
    /// `bytes` of objects?
    pub(crate) fn takes(&self, x: usize, bytes: usize) -> bool {
        (self.len[x] as usize) < STASH_MAGS
            && self.credit[x] > 0
            && self.bytes + bytes <= STASH_BYTES
    }

    /// Keeps `m`, a full magazine of class `x` holding `bytes` of objects, which
    /// [`takes`](Self::takes) just accepted.
    ///
    /// # Safety
    /// `m` is a full magazine of class `x < MAX_CACHES` owned by the caller, which gives it up;
    /// `bytes` is its count × its class's object size.
    pub(crate) unsafe fn push(&mut self, x: usize, m: *mut Magazine, bytes: usize) {
        debug_assert!(self.takes(x, bytes));
        self.mags[x][self.len[x] as usize] = m;
        self.len[x] += 1;
        self.credit[x] -= 1;
        self.bytes += bytes;
    }

    /// The magazine of class `x` (objects of `size` bytes) stashed last, now the caller's.
    pub(crate) fn pop(&mut self, x: usize, size: usize) -> Option<*mut Magazine> {
        let n = self.len[x].checked_sub(1)?;
        self.len[x] = n;
        let m = self.mags[x][n as usize];
        // SAFETY: a magazine of ours (invariant), full and untouched since its push.
        self.bytes -= unsafe { (*m).count } as usize * size;
        Some(m)
    }

    /// The stashed magazines of class `x`.
    pub(crate) fn of(&self, x: usize) -> &[*mut Magazine] {
        &self.mags[x][..self.len[x] as usize]
    }

    /// Bytes of objects held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
