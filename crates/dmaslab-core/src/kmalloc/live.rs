//! Live flags (issue 15): which objects of a slab are out with a caller, in normal mode.
//!
//! A free of an object start that was never handed out as that object passes every other
//! normal-mode check: it is an object start of a live slab and holds no freed-object tag. Such
//! a slot may sit in a magazine (a refill's object, never touched) or back in its slab (an
//! object freed twice, its tag replaced by a free-list link); taken in, it would be handed out
//! twice. A flag per object says whether it is out with a caller: set when an object is handed
//! out (`kmalloc_fast`, `kmalloc_cpu`, `kmalloc`, `kmem_cache_alloc` and its bulk form), tested
//! and cleared at every free; a free that finds it clear is an invalid free and changes
//! nothing. (A free of a *live* neighbour — `free(p + 4096)` where that is another caller's
//! object — frees an object that is out, by its own pointer: no per-object state tells it from
//! its owner's free.)
//!
//! Where: one byte per object in the buddy-link pointers of the slab's tail page descriptors
//! (16 per descriptor; [`tail_flag`]), which a slab tail does not otherwise use, so the flags
//! cost no memory and the geometry does not move. Only kmalloc caches of [`LIVE_MIN_SIZE`]
//! (2 KiB) and more keep them (order-3 slabs of 4 to 16 objects on 4 KiB pages), on 64-bit
//! targets. Smaller classes stay without. Debug mode keeps a record per object instead and
//! has no flags.
//!
//! A byte, not a bit: each flag is written with a plain byte store (no locked read-modify-write:
//! neighbours' flags are other bytes), so a pair pays a few loads and stores. Relaxed suffices:
//! the flag of an object handed from one thread to another is ordered by the program's own
//! hand-over. Two frees of one object racing each other may both pass (a misuse race the tag
//! does not catch either). `kfree_fast` takes the flag out of line, so that the smaller
//! classes' free keeps its registers (docs/hardening.md, "Normal-mode cost").

use super::*;

/// Flags kept in one tail page descriptor: the bytes of its buddy link's two pointers.
pub(crate) const FLAGS_PER_DESC: usize = 16;

/// Flag `j` (< [`FLAGS_PER_DESC`]) of slab tail descriptor `d`: a byte of its buddy link's
/// `next` (0..8) or `prev` (8..16) pointer, which a slab tail does not use. The page layer
/// clears both pointers (non-atomic stores) when the page becomes a slab tail; while the slab
/// lives they are read and written only as these bytes (so no atomic access of another size
/// ever meets them), and the buddy writes them again only once the slab is gone.
///
/// # Safety
/// `d` is a tail descriptor of a live slab whose cache keeps live flags.
#[inline(always)]
pub(crate) unsafe fn tail_flag<'a>(d: *const PageDesc, j: usize) -> &'a AtomicU8 {
    // SAFETY: as the caller promises; both pointers are 8 bytes on 64-bit targets (the flags'
    // caches are set up only where they are, see `live_mask_of`).
    unsafe {
        let word = if j < 8 {
            (&raw const (*d).link.next).cast::<AtomicU8>()
        } else {
            (&raw const (*d).link.prev).cast::<AtomicU8>()
        };
        &*word.add(j % 8)
    }
}
/// The smallest object size whose cache keeps live flags. Below, a pair would pay the flag's
/// address computation (a 4 KiB pair takes about twice a small one's instructions), and
/// larson's 16..1024-byte churn and strings live there.
pub(crate) const LIVE_MIN_SIZE: usize = 2048;

impl<P: PageSource> Kmalloc<P> {
    /// The caches that keep live flags under `config`: kmalloc caches (never destroyed) of at
    /// least [`LIVE_MIN_SIZE`] whose slabs have a tail descriptor per [`FLAGS_PER_DESC`]
    /// objects, on 64-bit targets; none in debug mode.
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
            let tails = (1usize << c.order) - 1;
            let wide = core::mem::size_of::<*mut u8>() == 8;
            if wide && c.size >= LIVE_MIN_SIZE && c.objects <= tails * FLAGS_PER_DESC {
                c.live_flags = true;
                self.live_objects[id as usize] = c.objects as u8;
                mask |= 1 << id;
            }
        }
        mask
    }

    /// Does cache index `x` keep live flags?
    #[inline(always)]
    pub(crate) fn keeps_live_flags(&self, x: usize) -> bool {
        (self.live_mask >> (x & (MAX_CACHES - 1))) & 1 != 0
    }

    /// The live flag of the object at `p` of cache `x`, `None` for no object (the start of
    /// the slack past a slab's last object passes the stride test; such a "free" finds
    /// nothing out and is refused).
    ///
    /// # Safety
    /// `x` keeps live flags and `p` is an object start of a live slab of cache `x`.
    #[inline(always)]
    unsafe fn live_flag(&self, x: usize, p: *const u8) -> Option<&AtomicU8> {
        let addr = p as usize;
        let h = (addr & !((1usize << self.seg_shift) - 1)) as *mut SegmentHeader;
        let i = SegmentHeader::page_index(h, addr, self.page_shift);
        // SAFETY: `p` lies in a live slab of a normal segment (caller): its page's descriptor
        // names the slab's head, and the slab has the tail descriptors the flags need (the
        // cache keeps live flags).
        unsafe {
            let hi = (*SegmentHeader::desc_ptr(h, i))
                .head
                .load(Ordering::Relaxed) as usize;
            let base = SegmentHeader::page_ptr(h, hi, self.page_shift) as usize;
            // The exact quotient of an object start by the stride (see `Divisor`).
            let shift = self.stride_shift[x].load(Ordering::Relaxed);
            let inv = self.stride_inv[x].load(Ordering::Relaxed);
            let k = (addr - base).wrapping_mul(inv).rotate_right(shift);
            if k >= self.live_objects[x] as usize {
                return None;
            }
            let d = SegmentHeader::desc_ptr(h, hi + 1 + k / FLAGS_PER_DESC);
            Some(tail_flag(d, k % FLAGS_PER_DESC))
        }
    }

    /// Marks the object at `p` of cache `x` as out with a caller (nothing for a cache without
    /// live flags).
    ///
    /// # Safety
    /// `p` is an object start of a live slab of cache `x`, just handed out.
    #[inline(always)]
    pub(crate) unsafe fn mark_live(&self, x: usize, p: *const u8) {
        if self.keeps_live_flags(x) {
            // SAFETY: as the caller promises.
            if let Some(f) = unsafe { self.live_flag(x, p) } {
                debug_assert_eq!(f.load(Ordering::Relaxed), 0, "{p:p} handed out twice");
                f.store(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes the object at `p` of cache `x` back from its caller: false when it was not out
    /// (never handed out as this object, or freed already), and then nothing changed. True for
    /// a cache without live flags.
    ///
    /// # Safety
    /// `p` is an object start of a live slab of cache `x`.
    #[inline(always)]
    pub(crate) unsafe fn take_live(&self, x: usize, p: *const u8) -> bool {
        // SAFETY: as the caller promises.
        !self.keeps_live_flags(x) || unsafe { self.take_live_flag(x, p) }
    }

    /// [`take_live`](Self::take_live) for a cache that keeps live flags. Out of line: the free
    /// fast path of the smaller classes keeps its registers.
    ///
    /// # Safety
    /// As for [`take_live`](Self::take_live).
    #[inline(never)]
    unsafe fn take_live_flag(&self, x: usize, p: *const u8) -> bool {
        // SAFETY: as the caller promises.
        match unsafe { self.live_flag(x, p) } {
            Some(f) if f.load(Ordering::Relaxed) != 0 => {
                f.store(0, Ordering::Relaxed);
                true
            }
            _ => false,
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
    /// without live flags.)
    ///
    /// # Safety
    /// As for [`take_live`](Self::take_live).
    pub(crate) unsafe fn is_live(&self, x: usize, p: *const u8) -> bool {
        // SAFETY: as the caller promises.
        self.keeps_live_flags(x)
            && unsafe { self.live_flag(x, p) }.is_some_and(|f| f.load(Ordering::Relaxed) != 0)
    }

    /// [`take_live`](Self::take_live) for `p`, located in a live slab of `cache` at `base`, if it
    /// is an object start there (false if not).
    ///
    /// # Safety
    /// As for [`take_live`](Self::take_live), but `p` need only be located.
    pub(super) unsafe fn take_live_located(&self, cache: u16, base: usize, p: *const u8) -> bool {
        self.object_start_of(cache, (p as usize).wrapping_sub(base))
            .is_some()
            // SAFETY: an object start of a live slab of `cache`.
            && unsafe { self.take_live(cache as usize, p) }
    }

    /// [`take_live`](Self::take_live) for `ptrs` of cache `x`, in order, up to the first that
    /// is not an object start of a live slab of `x` or not out: returns how many were taken.
    ///
    /// # Safety
    /// Each pointer the caller gives up (only located, never read, if it is not an object).
    pub(super) unsafe fn take_live_prefix(&self, x: usize, ptrs: &[*mut u8]) -> usize {
        if !self.keeps_live_flags(x) {
            return ptrs.len();
        }
        for (n, &p) in ptrs.iter().enumerate() {
            let ok = match self.locate(p as usize) {
                // SAFETY: just located in a live slab of cache `x` at `base`.
                Loc::Slab { cache, base, .. } if cache as usize == x => unsafe {
                    self.take_live_located(cache, base, p)
                },
                _ => false,
            };
            if !ok {
                return n;
            }
        }
        ptrs.len()
    }

    /// Gives `ptrs` of cache `x` their live flags back (after a bulk free that stopped short).
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
