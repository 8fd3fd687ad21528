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
//! Where: one byte per object in the buddy-link pointers of the slab's first tail page
//! descriptor ([`tail_flag`]; 16 bytes, a slab of such a class has 4 to 16 objects), which a
//! slab tail does not otherwise use, so the flags cost no memory and the geometry does not
//! move. Only kmalloc caches of [`LIVE_MIN_SIZE`] (2 KiB) and more keep them, on 64-bit
//! targets: their sizes are powers of two, so a flag's place is a mask and a shift of the
//! object's address at allocation, and the free path takes it from the head descriptor and
//! index its lookup found ([`SlabObject`]). Smaller classes stay without. Debug mode keeps a
//! record per object instead and has no flags.
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

/// Flag `k` (< [`FLAGS_PER_DESC`]) of slab tail descriptor `d`: byte `k` of its buddy link's
/// `next` and `prev` pointers (`BuddyLink` is `repr(C)`, the two pointers first), which a slab
/// tail does not use. The page layer clears both pointers (non-atomic stores) when the page
/// becomes a slab tail; while the slab lives they are read and written only as these bytes (so
/// no atomic access of another size ever meets them), and the buddy writes them again only
/// once the slab is gone.
///
/// # Safety
/// `d` is a tail descriptor of a live slab whose cache keeps live flags.
#[inline(always)]
pub(crate) unsafe fn tail_flag<'a>(d: *const PageDesc, k: usize) -> &'a AtomicU8 {
    // SAFETY: as the caller promises; the two pointers are 16 bytes on 64-bit targets (the
    // flags' caches are set up only where they are, see `live_mask_of`), `k` below that.
    unsafe { &*(&raw const (*d).link).cast::<AtomicU8>().add(k) }
}
/// Was flag `f` set? Cleared either way (plain byte accesses, no locked read-modify-write).
#[inline(always)]
fn take_flag(f: &AtomicU8) -> bool {
    let out = f.load(Ordering::Relaxed) != 0;
    f.store(0, Ordering::Relaxed);
    out
}

/// The smallest object size whose cache keeps live flags. Below, a pair would pay the flag's
/// address computation (a 4 KiB pair takes about twice a small one's instructions), and
/// larson's 16..1024-byte churn and strings live there.
pub(crate) const LIVE_MIN_SIZE: usize = 2048;

impl<P: PageSource> Kmalloc<P> {
    /// The caches that keep live flags under `config`: kmalloc caches (never destroyed) of a
    /// power-of-two size of at least [`LIVE_MIN_SIZE`] whose slabs have a tail page and at most
    /// [`FLAGS_PER_DESC`] objects, on 64-bit targets; none in debug mode.
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
            let wide = core::mem::size_of::<*mut u8>() == 8;
            let slab = 1usize << (self.page_shift + c.order);
            if wide
                && c.size >= LIVE_MIN_SIZE
                && c.size.is_power_of_two()
                && c.order >= 1
                && c.objects == slab / c.size
                && c.objects <= FLAGS_PER_DESC
            {
                c.live_flags = true;
                self.live_order[id as usize] = c.order as u8;
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

    /// The live flag of the object at `p` of cache `x`, found from `p`'s bits alone: a flagged
    /// cache's stride is a power of two and its slabs are buddy blocks of its order, aligned to
    /// their size (`buddy.rs`), so the slab's head page and the object's index are masks and
    /// shifts of `p`, and every flag of a slab sits in its first tail descriptor. Without a
    /// load of the head from a descriptor, and in few instructions: a pair of 2 KiB and more
    /// pays this address twice.
    ///
    /// # Safety
    /// `x` keeps live flags and `p` is an object start of a live slab of cache `x`.
    #[inline(always)]
    unsafe fn live_flag(&self, x: usize, p: *const u8) -> &AtomicU8 {
        let addr = p as usize;
        let x = x & (MAX_CACHES - 1);
        let slab_mask = (1usize << (self.page_shift + self.live_order[x] as u32)) - 1;
        let h = addr & !((1usize << self.seg_shift) - 1);
        let head = ((addr & !slab_mask) - h) >> self.page_shift;
        let k = (addr & slab_mask) >> self.stride_shift[x].load(Ordering::Relaxed);
        // SAFETY: `p` lies in a live slab of a normal segment at `h` (caller), whose head page
        // is `head`; its cache keeps live flags, so the slab has a tail page, whose descriptor
        // holds the flags of its (at most `FLAGS_PER_DESC`) objects (`live_mask_of`).
        unsafe {
            let h = h as *mut SegmentHeader;
            debug_assert_eq!(
                (*SegmentHeader::desc_ptr(h, (addr - h as usize) >> self.page_shift))
                    .head
                    .load(Ordering::Relaxed) as usize,
                head,
                "{p:p}: a flagged slab not aligned to its size"
            );
            tail_flag(SegmentHeader::desc_ptr(h, head + 1), k)
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
            let f = unsafe { self.live_flag(x, p) };
            debug_assert_eq!(f.load(Ordering::Relaxed), 0, "{p:p} handed out twice");
            f.store(1, Ordering::Relaxed);
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
        take_flag(unsafe { self.live_flag(x, p) })
    }

    /// [`take_live`](Self::take_live) of the object `index` of the slab headed by `head`, as the
    /// free fast path found it (a [`SlabObject`]) in a cache that keeps live flags: the lookup's
    /// descriptor and index name the flag, without another address computation.
    ///
    /// # Safety
    /// `head` and `index` are a [`SlabObject`]'s, just found, and its cache keeps live flags.
    #[inline(always)]
    pub(crate) unsafe fn take_live_found(&self, head: *const PageDesc, index: usize) -> bool {
        debug_assert!(index < FLAGS_PER_DESC);
        // SAFETY: `head` heads a live slab of a flagged cache, so its next descriptor is the
        // slab's first tail, holding the flag of each of its objects; `index` is one of them
        // (its offset lies inside the slab, which holds `slab / size` objects).
        take_flag(unsafe { tail_flag(head.add(1), index) })
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
        self.keeps_live_flags(x) && unsafe { self.live_flag(x, p) }.load(Ordering::Relaxed) != 0
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
