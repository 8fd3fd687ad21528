//! The bounce pool (Linux's swiotlb role): a fixed, DMA-safe region cut into line-sized slots.
//! A bounced mapping takes a contiguous run of slots, so bounce buffers never share a line with
//! each other or with anything else. The region is real memory: on a target the one the
//! firmware gives ([`SwiotlbPool::from_region`]), in the model a page run of its RAM.

use crate::error::DmaError;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Why the pool could not give out a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceError {
    /// No run of free slots is long enough.
    Exhausted {
        /// Bytes asked for.
        requested: usize,
        /// Bytes free in the pool (perhaps fragmented).
        free: usize,
    },
    /// Not the start of a buffer of this pool.
    NotABounceBuffer(usize),
}

impl fmt::Display for BounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BounceError::Exhausted { requested, free } => write!(
                f,
                "bounce pool exhausted: {requested} bytes requested, {free} bytes free"
            ),
            BounceError::NotABounceBuffer(a) => write!(f, "{a:#x} is not a bounce buffer"),
        }
    }
}

/// A fixed-size bounce pool.
///
/// # Invariants
/// The pool covers `base .. base + slot * run.len()`; `base_ptr` is `base` with the
/// provenance of that memory, which is the pool's alone (valid for reads and writes, initialised)
/// for the pool's life; `base` is aligned to `slot`, a power of two. `run[i]` is the number of slots of the
/// buffer starting at slot `i`, `0` when no buffer starts there; buffers do not overlap, and
/// `used[i]` is true exactly for the slots inside a buffer. `free_slots` counts the false ones.
pub struct SwiotlbPool {
    base: usize,
    base_ptr: *mut u8,
    slot: usize,
    run: Vec<u32>,
    used: Vec<bool>,
    free_slots: usize,
    high_water: usize,
}

// SAFETY: the pool's memory is its own (type invariant), not tied to a thread; `base_ptr` is
// only turned into buffer pointers for the DMA map that owns the pool, under `&mut`.
unsafe impl Send for SwiotlbPool {}

impl SwiotlbPool {
    /// A pool over the DMA-safe `region`, cut into `slot`-byte slots (`slot` the cache line,
    /// a power of two; `region` must start on a line, and a partial last line is left unused).
    pub fn from_region(region: &'static mut [u8], slot: usize) -> Result<Self, DmaError> {
        if !slot.is_power_of_two() {
            return Err(DmaError::Config("bounce slot must be a power of two"));
        }
        if !(region.as_ptr() as usize).is_multiple_of(slot) {
            return Err(DmaError::Config("bounce region must start on a cache line"));
        }
        let slots = region.len() / slot;
        if slots == 0 {
            return Err(DmaError::Config("bounce region is smaller than a line"));
        }
        // SAFETY: the region is initialised, aligned to `slot` (checked), and ours for ever: the
        // `&'static mut` is consumed here.
        Ok(unsafe { SwiotlbPool::from_raw(region.as_mut_ptr(), slot, slots) })
    }

    /// A pool over `base .. base + slot * slots`.
    ///
    /// # Safety
    /// That memory must be initialised, valid for reads and writes and used by nobody but the
    /// pool (and the devices it lends buffers to) for the pool's life; `base` must be aligned to
    /// `slot`, a power of two.
    pub unsafe fn from_raw(base: *mut u8, slot: usize, slots: usize) -> Self {
        SwiotlbPool {
            base: base as usize,
            base_ptr: base,
            slot,
            run: vec![0; slots],
            used: vec![false; slots],
            free_slots: slots,
            high_water: 0,
        }
    }

    /// The buffer at pool address `addr`, as a pointer into the pool's memory.
    pub(crate) fn ptr(&self, addr: usize) -> *mut u8 {
        debug_assert!(self.contains(addr));
        self.base_ptr.wrapping_add(addr - self.base)
    }

    /// First byte of the pool.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Total bytes.
    pub fn size(&self) -> usize {
        self.slot * self.run.len()
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> usize {
        self.free_slots * self.slot
    }

    /// The most bytes ever in use at once.
    pub fn high_water(&self) -> usize {
        self.high_water * self.slot
    }

    /// Does `addr` lie in the pool?
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base && addr < self.base + self.size()
    }

    /// Takes a buffer of at least `len` bytes (first fit); its address.
    pub fn alloc(&mut self, len: usize) -> Result<usize, BounceError> {
        let n = len.max(1).div_ceil(self.slot);
        let err = BounceError::Exhausted {
            requested: len,
            free: self.free_bytes(),
        };
        if n > self.free_slots {
            return Err(err);
        }
        let mut i = 0;
        while i + n <= self.used.len() {
            match self.used[i..i + n].iter().rposition(|&u| u) {
                Some(k) => i += k + 1,
                None => {
                    self.used[i..i + n].iter_mut().for_each(|u| *u = true);
                    self.run[i] = n as u32;
                    self.free_slots -= n;
                    self.high_water = self.high_water.max(self.used.len() - self.free_slots);
                    return Ok(self.base + i * self.slot);
                }
            }
        }
        Err(err)
    }

    /// Gives the buffer at `addr` back.
    pub fn free(&mut self, addr: usize) -> Result<(), BounceError> {
        let bad = BounceError::NotABounceBuffer(addr);
        if !self.contains(addr) || !(addr - self.base).is_multiple_of(self.slot) {
            return Err(bad);
        }
        let i = (addr - self.base) / self.slot;
        let n = self.run[i] as usize;
        if n == 0 {
            return Err(bad);
        }
        self.run[i] = 0;
        self.used[i..i + n].iter_mut().for_each(|u| *u = false);
        self.free_slots += n;
        Ok(())
    }

    /// Checks the invariants; for tests.
    pub fn is_consistent(&self) -> bool {
        let mut covered = vec![false; self.used.len()];
        for (i, &n) in self.run.iter().enumerate() {
            for c in covered.iter_mut().skip(i).take(n as usize) {
                if *c {
                    return false;
                }
                *c = true;
            }
            if i + n as usize > self.used.len() {
                return false;
            }
        }
        covered == self.used && self.used.iter().filter(|&&u| !u).count() == self.free_slots
    }
}
