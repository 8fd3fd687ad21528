//! A device description: what the DMA layer needs to know about a bus master.

/// A DMA-capable device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// A name for messages.
    pub name: &'static str,
    /// Does the device snoop the CPU caches (no cache maintenance needed)?
    pub coherent: bool,
    /// The DMA cache line the bounce rules use (Linux's `dma_get_cache_alignment()`): 32, 64,
    /// 128 or 256. Maintenance itself works on the machine's cache line; when they differ the
    /// rules use the larger of the two.
    pub dma_line: usize,
    /// The highest bus address the device can reach (`dma_mask`); mappings above it are bounced.
    pub dma_mask: u64,
}

impl Device {
    /// A non-coherent device with `dma_line`-byte lines that reaches every address.
    pub const fn non_coherent(dma_line: usize) -> Self {
        Device {
            name: "dev",
            coherent: false,
            dma_line,
            dma_mask: u64::MAX,
        }
    }

    /// A cache-coherent device (snoops the CPU caches).
    pub const fn coherent(dma_line: usize) -> Self {
        Device {
            name: "dev",
            coherent: true,
            dma_line,
            dma_mask: u64::MAX,
        }
    }

    /// Sets the address mask to `bits` bits (`DMA_BIT_MASK(bits)`).
    pub const fn mask_bits(mut self, bits: u32) -> Self {
        self.dma_mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        self
    }

    /// Sets the name.
    pub const fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Can the device reach bus addresses `bus .. bus + len`?
    pub fn reaches(&self, bus: u64, len: usize) -> bool {
        len == 0
            || bus
                .checked_add(len as u64 - 1)
                .is_some_and(|last| last <= self.dma_mask)
    }
}
