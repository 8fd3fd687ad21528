//! The bounce pool (Linux's swiotlb role): a fixed, DMA-safe region cut into line-sized slots.
//! A bounced mapping takes a contiguous run of slots, so bounce buffers never share a line with
//! each other or with anything else.

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
/// The pool covers `base .. base + slot * run.len()`. `run[i]` is the number of slots of the
/// buffer starting at slot `i`, `0` when no buffer starts there; buffers do not overlap, and
/// `used[i]` is true exactly for the slots inside a buffer. `free_slots` counts the false ones.
pub struct SwiotlbPool {
    base: usize,
    slot: usize,
    run: Vec<u32>,
    used: Vec<bool>,
    free_slots: usize,
    high_water: usize,
}

impl SwiotlbPool {
    /// A pool over `base .. base + slot * slots` (the caller owns that memory for the pool's
    /// life; `base` aligned to `slot`).
    pub fn new(base: usize, slot: usize, slots: usize) -> Self {
        SwiotlbPool {
            base,
            slot,
            run: vec![0; slots],
            used: vec![false; slots],
            free_slots: slots,
            high_water: 0,
        }
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
