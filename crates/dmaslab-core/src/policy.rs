//! The three DMA alignment policies of DESIGN.md section 1, and the allocator's configuration.

use core::fmt;
use core::ops::BitOr;

/// How kmalloc memory relates to DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Every kmalloc buffer is DMA-safe: minimum alignment and smallest object = the DMA line.
    A,
    /// Compact kmalloc (8-byte minimum) plus `dma-kmalloc-*` caches reached with [`Gfp::DMA`].
    B,
    /// Compact kmalloc; the DMA layer bounces mappings that share a cache line. The
    /// `dma-kmalloc-*` caches exist too, for drivers that want to avoid bouncing.
    C,
}

impl Policy {
    /// All policies, in order.
    pub const ALL: [Policy; 3] = [Policy::A, Policy::B, Policy::C];

    /// The policy's letter.
    pub fn name(self) -> &'static str {
        match self {
            Policy::A => "A",
            Policy::B => "B",
            Policy::C => "C",
        }
    }

    /// Parses "A", "B" or "C" (either case).
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "A" | "a" => Some(Policy::A),
            "B" | "b" => Some(Policy::B),
            "C" | "c" => Some(Policy::C),
            _ => None,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Allocation flags, after Linux's GFP flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gfp(u32);

impl Gfp {
    /// An ordinary allocation.
    pub const KERNEL: Gfp = Gfp(0);
    /// A DMA-safe buffer: under B and C served by the `dma-kmalloc-*` caches (rounded up to and
    /// aligned to the DMA line); under A every buffer already is.
    pub const DMA: Gfp = Gfp(1);
    /// Zero the memory.
    pub const ZERO: Gfp = Gfp(2);

    /// Are all flags of `other` set?
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

/// The DMA cache line sizes an allocator can be built for.
pub const DMA_MINALIGNS: [usize; 4] = [32, 64, 128, 256];

/// How to build a [`crate::Kmalloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The policy.
    pub policy: Policy,
    /// The DMA cache line `ARCH_DMA_MINALIGN`: 32, 64, 128 or 256.
    pub dma_minalign: usize,
    /// log2 of the pages in a segment (default 9: 2 MiB segments of 4 KiB pages). Small embedded
    /// heaps use smaller segments, down to 5.
    pub seg_order: u32,
    /// Empty slabs each cache keeps before giving pages back (default 1).
    pub empty_slabs_kept: usize,
    /// Free pages inside segments beyond which free memory is discarded
    /// ([`crate::PageSource::discard`], `MADV_DONTNEED` on mmap), in aligned blocks of 64 pages
    /// as each becomes wholly free. Default 256 (1 MiB).
    pub discard_threshold: usize,
    /// Secret mixed into free-list links. Hosted users should randomise it.
    pub secret: usize,
    /// Debug mode: red zones, poison, full double-free check, call sites (see the README).
    pub debug: bool,
}

impl Config {
    /// `policy` with the defaults: DMA line 64, 2 MiB segments.
    pub const fn new(policy: Policy) -> Self {
        Config {
            policy,
            dma_minalign: 64,
            seg_order: 9,
            empty_slabs_kept: 1,
            discard_threshold: 256,
            secret: 0x5eed_d3a5,
            debug: false,
        }
    }

    /// Sets the DMA cache line.
    pub const fn dma_minalign(mut self, l: usize) -> Self {
        self.dma_minalign = l;
        self
    }

    /// Sets the segment order.
    pub const fn seg_order(mut self, order: u32) -> Self {
        self.seg_order = order;
        self
    }

    /// Sets the free pages kept inside segments before free blocks are discarded.
    pub const fn discard_threshold(mut self, pages: usize) -> Self {
        self.discard_threshold = pages;
        self
    }

    /// Turns debug mode on or off.
    pub const fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// Sets the free-list secret.
    pub const fn secret(mut self, secret: usize) -> Self {
        self.secret = secret;
        self
    }

    /// The kmalloc minimum alignment this configuration implies: the DMA line under A, else 8.
    pub const fn kmalloc_minalign(&self) -> usize {
        match self.policy {
            Policy::A => self.dma_minalign,
            Policy::B | Policy::C => 8,
        }
    }
}

/// A configuration the allocator cannot be built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `dma_minalign` is not 32, 64, 128 or 256.
    DmaMinalign(usize),
    /// The segment order is too small for the largest slab or too large for the address space.
    SegOrder(u32),
    /// The page source's page size is not a power of two of at least 1 KiB.
    PageSize(usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::DmaMinalign(l) => {
                write!(f, "dma_minalign {l} is not one of 32, 64, 128, 256")
            }
            ConfigError::SegOrder(o) => write!(f, "segment order {o} is out of range 5..=16"),
            ConfigError::PageSize(p) => write!(f, "page size {p} is not a power of two >= 1024"),
        }
    }
}
