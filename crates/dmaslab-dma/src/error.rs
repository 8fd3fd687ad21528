//! The values the DMA API returns: bus addresses, errors, counters.

use crate::bounce::BounceError;
use crate::direction::Direction;
use core::fmt;
use dmaslab_core::FreeError;

/// A bus address as the device sees it (`dma_addr_t`): the byte's offset in the RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DmaAddr(pub u64);

impl DmaAddr {
    /// The address `n` bytes further.
    pub fn offset(self, n: usize) -> DmaAddr {
        DmaAddr(self.0 + n as u64)
    }
}

impl fmt::Display for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A misuse or a failure of the DMA API, as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A zero-length mapping or allocation.
    ZeroLength,
    /// The memory is not the allocator's (stack, wild address): checker kind (f).
    NotDmaAble {
        /// The address.
        addr: usize,
    },
    /// Allocator memory that is not a live allocation (a free slot, an unused page, metadata).
    NotLive {
        /// The address.
        addr: usize,
    },
    /// The range runs past the end of its allocation.
    OutOfBounds {
        /// First byte.
        addr: usize,
        /// Length asked for.
        len: usize,
    },
    /// The bounce pool could not take the mapping.
    Bounce(BounceError),
    /// The device cannot reach the buffer, and bouncing could not help.
    Unaddressable {
        /// The bus address.
        bus: u64,
        /// Length.
        len: usize,
    },
    /// Unmap or sync of an address that was never mapped: checker kind (e).
    NotMapped(DmaAddr),
    /// Unmap or sync of an address already unmapped: checker kind (e).
    DoubleUnmap(DmaAddr),
    /// Unmap or sync with another size or direction than the mapping's: checker kind (d). The
    /// mapping stays as it was.
    Mismatch {
        /// The mapping.
        dma: DmaAddr,
        /// Its length.
        mapped_len: usize,
        /// Its direction.
        mapped_dir: Direction,
    },
    /// A device access outside every active mapping and coherent allocation.
    DeviceFault {
        /// Bus address.
        dma: DmaAddr,
        /// Length.
        len: usize,
    },
    /// A CPU access outside the RAM.
    OutOfRam {
        /// Address.
        addr: usize,
        /// Length.
        len: usize,
    },
    /// The allocator is out of memory.
    NoMemory,
    /// The allocator refused a free.
    Free(FreeError),
    /// A free of memory that an active mapping still covers.
    StillMapped {
        /// The allocation.
        addr: usize,
    },
    /// A CPU store outside every live allocation (it would overwrite allocator memory).
    NotAllocated {
        /// Address.
        addr: usize,
        /// Length.
        len: usize,
    },
    /// A block freed to a DMA pool it does not belong to, or a pool destroyed while in use.
    Pool,
    /// The machine cannot be built with this configuration.
    Config(&'static str),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::ZeroLength => f.write_str("zero-length DMA buffer"),
            DmaError::NotDmaAble { addr } => {
                write!(
                    f,
                    "{addr:#x} is not allocator memory (stack or wild address)"
                )
            }
            DmaError::NotLive { addr } => write!(f, "{addr:#x} is not a live allocation"),
            DmaError::OutOfBounds { addr, len } => {
                write!(f, "{addr:#x}+{len} runs past its allocation")
            }
            DmaError::Bounce(e) => write!(f, "{e}"),
            DmaError::Unaddressable { bus, len } => {
                write!(
                    f,
                    "bus range {bus:#x}+{len} is beyond the device's DMA mask"
                )
            }
            DmaError::NotMapped(d) => write!(f, "{d} was never mapped"),
            DmaError::DoubleUnmap(d) => write!(f, "{d} is already unmapped"),
            DmaError::Mismatch {
                dma,
                mapped_len,
                mapped_dir,
            } => write!(f, "{dma} was mapped with {mapped_len} bytes {mapped_dir}"),
            DmaError::DeviceFault { dma, len } => {
                write!(f, "device access {dma}+{len} outside any mapping")
            }
            DmaError::OutOfRam { addr, len } => write!(f, "CPU access {addr:#x}+{len} outside RAM"),
            DmaError::NoMemory => f.write_str("out of memory"),
            DmaError::Free(e) => write!(f, "{e}"),
            DmaError::StillMapped { addr } => write!(f, "{addr:#x} is still mapped for DMA"),
            DmaError::NotAllocated { addr, len } => {
                write!(f, "CPU store {addr:#x}+{len} outside any live allocation")
            }
            DmaError::Pool => f.write_str("block does not belong to this DMA pool, or pool busy"),
            DmaError::Config(m) => f.write_str(m),
        }
    }
}

impl From<BounceError> for DmaError {
    fn from(e: BounceError) -> Self {
        DmaError::Bounce(e)
    }
}

/// Counters of the DMA layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Successful streaming mappings.
    pub maps: u64,
    /// Of which bounced.
    pub bounces: u64,
    /// Bytes of bounced mappings.
    pub bounced_bytes: u64,
    /// Unmaps.
    pub unmaps: u64,
    /// Syncs (either way).
    pub syncs: u64,
    /// Coherent allocations made.
    pub coherent_allocs: u64,
}
