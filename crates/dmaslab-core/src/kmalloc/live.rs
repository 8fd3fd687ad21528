//! Live bits (issue 15): which objects of a slab are out with a caller, in normal mode.
//!
//! A free of an object start that was never handed out as that object — a live neighbour's,
//! `free(p + 4096)` next to another 4 KiB object — passes every other normal-mode check: it is
//! an object start of a live slab and holds no freed-object tag. Taken in, the live object would
//! be handed out a second time while its owner still uses it. A bit per object says whether it
//! is out with a caller: set when an object is handed out (`kmalloc`, `kmalloc_cpu`,
//! `kmem_cache_alloc` and its bulk form), tested and cleared at every free; a free that finds it
//! clear is an invalid free and changes nothing. It also catches a double free whose object
//! has meanwhile gone back to its slab (where its freed-object tag is gone).
//!
//! Where: in the `freelist` word of a slab's *second* page descriptor, which a slab tail does
//! not otherwise use, so the bits cost no memory and the geometry does not move. Hence only
//! kmalloc caches whose slabs span two pages or more and hold at most 32 objects, and of those
//! only the classes of [`LIVE_MIN_SIZE`] (2 KiB) and more, where the cost is small next to the
//! object's use. Smaller classes stay without: there a free of a never-handed-out slot still
//! passes when it sits in a magazine, and a double free once the object is back in its slab.
//! Debug mode keeps a record per object instead and has no bits.
//!
//! Cost: one atomic OR at allocation (`kmalloc_fast`) and one atomic bit-test-and-reset at
//! free (`kfree_fast`, out of line so that the smaller classes' free keeps its registers);
//! the smaller classes pay the mask test (docs/hardening.md, "Normal-mode cost"). Relaxed
//! suffices: the bit of an object handed from one thread to another is ordered by the
//! program's own hand-over, and the read-modify-writes of one word are totally ordered.

use super::*;

/// Objects a slab may hold for its cache to keep live bits: the bits of one `u32`.
const LIVE_BITS: usize = 32;
/// The smallest object size whose cache keeps live bits. Two atomic read-modify-writes cost a
/// `malloc`/`free` pair about 1.5-2× its time (docs/hardening.md, "Normal-mode cost"); from
/// 2 KiB on that is small next to what a program does with the object, below it is not (every
/// class above 256 bytes would have them otherwise: larson's 16..1024-byte churn, strings).
pub(crate) const LIVE_MIN_SIZE: usize = 2048;

impl<P: PageSource> Kmalloc<P> {
    /// The caches that keep live bits under `config`: kmalloc caches (never destroyed) whose
    /// slabs have a second page and at most [`LIVE_BITS`] objects; none in debug mode.
    pub(super) fn live_mask_of(&mut self) -> u64 {
        if self.config.debug {
            return 0;
        }
        let mut mask = 0u64;
        for &id in self.kmalloc_caches.iter().chain(&self.dma_caches) {
            if id == NO_CACHE {
                continue;
            }
            let c = self.caches[id as usize].get_mut();
            if c.size >= LIVE_MIN_SIZE && c.order >= 1 && c.objects <= LIVE_BITS {
                c.live_bits = true;
                mask |= 1 << id;
            }
        }
        mask
    }

    /// Does cache index `x` keep live bits?
    #[inline(always)]
    pub(crate) fn keeps_live_bits(&self, x: usize) -> bool {
        (self.live_mask >> (x & (MAX_CACHES - 1))) & 1 != 0
    }

    /// The live word of the object at `p` of cache `x` and its bit's index, `None` for no
    /// object: `k` is an object's index, below 32, or the slab's object count for the start of
    /// the slack past its last object (which passes the stride test), and such a "free" finds
    /// nothing out and is refused.
    ///
    /// # Safety
    /// `x` keeps live bits and `p` is an object start of a live slab of cache `x`.
    #[inline(always)]
    unsafe fn live_bit(&self, x: usize, p: *const u8) -> Option<(&AtomicU32, u32)> {
        let addr = p as usize;
        let h = (addr & !((1usize << self.seg_shift) - 1)) as *mut SegmentHeader;
        let i = SegmentHeader::page_index(h, addr, self.page_shift);
        // SAFETY: `p` lies in a live slab of a normal segment (caller): its page's descriptor
        // names the slab's head, and the slab spans at least two pages (the cache keeps live
        // bits), so the head's successor is its tail, whose `freelist` word holds the bits.
        unsafe {
            let hi = (*SegmentHeader::desc_ptr(h, i))
                .head
                .load(Ordering::Relaxed) as usize;
            let base = SegmentHeader::page_ptr(h, hi, self.page_shift) as usize;
            // The exact quotient of an object start by the stride (see `Divisor`).
            let shift = self.stride_shift[x].load(Ordering::Relaxed);
            let inv = self.stride_inv[x].load(Ordering::Relaxed);
            let k = (addr - base).wrapping_mul(inv).rotate_right(shift);
            let tail = SegmentHeader::desc_ptr(h, hi + 1);
            (k < LIVE_BITS).then(|| (&(*tail).freelist, k as u32))
        }
    }

    /// Marks the object at `p` of cache `x` as out with a caller (nothing for a cache without
    /// live bits).
    ///
    /// # Safety
    /// `p` is an object start of a live slab of cache `x`, just handed out.
    #[inline(always)]
    pub(crate) unsafe fn mark_live(&self, x: usize, p: *const u8) {
        if self.keeps_live_bits(x) {
            // SAFETY: as the caller promises.
            if let Some((w, k)) = unsafe { self.live_bit(x, p) } {
                let was = w.fetch_or(1 << k, Ordering::Relaxed);
                debug_assert_eq!(was & (1 << k), 0, "object {p:p} handed out twice");
            }
        }
    }

    /// Takes the object at `p` of cache `x` back from its caller: false when it was not out
    /// (never handed out as this object, or freed already), and then nothing changed. True for
    /// a cache without live bits.
    ///
    /// # Safety
    /// `p` is an object start of a live slab of cache `x`.
    #[inline(always)]
    pub(crate) unsafe fn take_live(&self, x: usize, p: *const u8) -> bool {
        // SAFETY: as the caller promises.
        !self.keeps_live_bits(x) || unsafe { self.take_live_bit(x, p) }
    }

    /// [`take_live`](Self::take_live) for a cache that keeps live bits. Out of line: the free
    /// fast path of the smaller classes keeps its registers.
    ///
    /// # Safety
    /// As for [`take_live`](Self::take_live).
    #[inline(never)]
    unsafe fn take_live_bit(&self, x: usize, p: *const u8) -> bool {
        // SAFETY: as the caller promises.
        match unsafe { self.live_bit(x, p) } {
            // One `lock btr`.
            Some((w, k)) => w.fetch_and(!(1 << k), Ordering::Relaxed) & (1 << k) != 0,
            None => false,
        }
    }

    /// [`mark_live`](Self::mark_live) out of line, for a free path that took the bit and then
    /// hands the object to the full path after all (which takes it again).
    ///
    /// # Safety
    /// As for [`mark_live`](Self::mark_live); the bit was just taken.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn give_back_live(&self, x: usize, p: *const u8) {
        // SAFETY: as the caller promises.
        unsafe { self.mark_live(x, p) }
    }

    /// Is the object at `p` of cache `x` out with a caller? (For `validate`; false for a cache
    /// without live bits.)
    ///
    /// # Safety
    /// As for [`take_live`](Self::take_live).
    pub(crate) unsafe fn is_live(&self, x: usize, p: *const u8) -> bool {
        // SAFETY: as the caller promises.
        self.keeps_live_bits(x)
            && unsafe { self.live_bit(x, p) }
                .is_some_and(|(w, k)| w.load(Ordering::Relaxed) & (1 << k) != 0)
    }

    /// [`take_live`](Self::take_live) for `ptrs` of cache `x`, in order, up to the first that
    /// is not an object start of a live slab of `x` or not out: returns how many were taken.
    ///
    /// # Safety
    /// Each pointer the caller gives up (only located, never read, if it is not an object).
    pub(super) unsafe fn take_live_prefix(&self, x: usize, ptrs: &[*mut u8]) -> usize {
        if !self.keeps_live_bits(x) {
            return ptrs.len();
        }
        for (n, &p) in ptrs.iter().enumerate() {
            let ok = match self.locate(p as usize) {
                Loc::Slab { cache, base, .. } if cache as usize == x => {
                    self.object_start_of(cache, (p as usize).wrapping_sub(base)).is_some()
                        // SAFETY: an object start of a live slab of cache `x`, just located.
                        && unsafe { self.take_live(x, p) }
                }
                _ => false,
            };
            if !ok {
                return n;
            }
        }
        ptrs.len()
    }

    /// Gives `ptrs` of cache `x` their live bits back (after a bulk free that stopped short).
    ///
    /// # Safety
    /// Each pointer was taken by [`take_live_prefix`](Self::take_live_prefix) and not freed.
    pub(super) unsafe fn restore_live(&self, x: usize, ptrs: &[*mut u8]) {
        for &p in ptrs {
            // SAFETY: as the caller promises.
            unsafe { self.mark_live(x, p) };
        }
    }
}
