//! The three DMA alignment policies of DESIGN.md section 1, and the allocator's configuration.

use crate::size_class::ClassSet;
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
    /// log2 of the pages in a segment, 5..=16. `None` (the default): chosen from the page
    /// source's size by [`Config::default_seg_order`] — 9 (2 MiB segments of 4 KiB pages) for
    /// mmap and regions of 16 MiB or more, smaller for smaller regions. After
    /// [`crate::Kmalloc::new`], [`crate::Kmalloc::config`] holds the order chosen.
    pub seg_order: Option<u32>,
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
    /// Debug mode: bytes of freed allocations kept in the quarantine (not handed out again)
    /// before the oldest go back; 0 turns it off. Default [`Config::DEFAULT_QUARANTINE`].
    pub quarantine: usize,
    /// The size classes of the kmalloc caches: Linux's (the default) or the hosted heap's finer
    /// ones ([`crate::size_class`]). The dma-kmalloc caches keep Linux's classes.
    pub classes: ClassSet,
}

impl Config {
    /// The segment order of mmap-backed and large heaps: 2 MiB segments of 4 KiB pages.
    pub const LARGE_SEG_ORDER: u32 = 9;
    /// The smallest segment order (128 KiB segments of 4 KiB pages): the largest slab (8
    /// pages) must fit in the half of a segment that its header leaves free.
    pub const MIN_SEG_ORDER: u32 = 5;
    /// The largest segment order.
    pub const MAX_SEG_ORDER: u32 = 16;
    /// Debug mode's default quarantine: 4 MiB (at most 8192 allocations, the ring's size).
    pub const DEFAULT_QUARANTINE: usize = 4 << 20;
    /// A region holds at least this many segments under the default segment order, so that the
    /// pages lost to alignment at its ends stay a small part of it (see docs/firmware.md).
    pub const SEGMENTS_PER_REGION: usize = 8;

    /// `policy` with the defaults: DMA line 64, segments sized from the page source.
    pub const fn new(policy: Policy) -> Self {
        Config {
            policy,
            dma_minalign: 64,
            seg_order: None,
            empty_slabs_kept: 1,
            discard_threshold: 256,
            secret: 0x5eed_d3a5,
            debug: false,
            quarantine: Config::DEFAULT_QUARANTINE,
            classes: ClassSet::Kmalloc,
        }
    }

    /// Sets the size classes.
    pub const fn classes(mut self, set: ClassSet) -> Self {
        self.classes = set;
        self
    }

    /// Sets the DMA cache line.
    pub const fn dma_minalign(mut self, l: usize) -> Self {
        self.dma_minalign = l;
        self
    }

    /// Sets the segment order (rather than the default chosen from the page source's size).
    pub const fn seg_order(mut self, order: u32) -> Self {
        self.seg_order = Some(order);
        self
    }

    /// The segment order used when none is set, for a page source of `capacity` bytes of
    /// pages (`None`: unbounded, as mmap): the largest order from [`Self::MIN_SEG_ORDER`] up to
    /// [`Self::LARGE_SEG_ORDER`] whose segments fit [`Self::SEGMENTS_PER_REGION`] times in the
    /// capacity; [`Self::MIN_SEG_ORDER`] if none does.
    pub const fn default_seg_order(capacity: Option<usize>, page_size: usize) -> u32 {
        let Some(bytes) = capacity else {
            return Self::LARGE_SEG_ORDER;
        };
        let mut order = Self::LARGE_SEG_ORDER;
        while order > Self::MIN_SEG_ORDER
            && (page_size << order).saturating_mul(Self::SEGMENTS_PER_REGION) > bytes
        {
            order -= 1;
        }
        order
    }

    /// Sets the free pages kept inside segments before free blocks are discarded.
    pub const fn discard_threshold(mut self, pages: usize) -> Self {
        self.discard_threshold = pages;
        self
    }

    /// Sets debug mode's quarantine budget in bytes (0: off).
    pub const fn quarantine(mut self, bytes: usize) -> Self {
        self.quarantine = bytes;
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
    /// The page source (a region) cannot hand out one segment and the page of the segment map
    /// that the first allocation needs.
    RegionTooSmall {
        /// Bytes of pages the source holds.
        capacity: usize,
        /// The segment size asked for, in bytes.
        segment: usize,
        /// The smallest region that works with this segment size wherever it starts, in
        /// bytes, if the source can tell.
        min_region: Option<usize>,
        /// The smallest region that works with the smallest segments
        /// ([`Config::MIN_SEG_ORDER`]), if the source can tell.
        min_region_any: Option<usize>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::DmaMinalign(l) => {
                write!(f, "dma_minalign {l} is not one of 32, 64, 128, 256")
            }
            ConfigError::SegOrder(o) => write!(f, "segment order {o} is out of range 5..=16"),
            ConfigError::PageSize(p) => write!(f, "page size {p} is not a power of two >= 1024"),
            ConfigError::RegionTooSmall {
                capacity,
                segment,
                min_region,
                min_region_any,
            } => {
                write!(
                    f,
                    "a region of {capacity} bytes of pages cannot hold one {} KiB segment",
                    segment / 1024
                )?;
                if let Some(m) = min_region {
                    write!(f, ": the smallest workable region is {m} bytes")?;
                }
                if let Some(m) = min_region_any {
                    if Some(*m) != *min_region {
                        write!(f, " ({m} bytes with the smallest segments, seg_order 5)")?;
                    }
                }
                Ok(())
            }
        }
    }
}
