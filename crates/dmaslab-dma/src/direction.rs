//! DMA directions and the choice of maintenance at map time for `FromDevice`.

use core::fmt;

/// Which way data moves, as Linux's `enum dma_data_direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The device reads the buffer (`DMA_TO_DEVICE`).
    ToDevice,
    /// The device writes the buffer (`DMA_FROM_DEVICE`).
    FromDevice,
    /// Both (`DMA_BIDIRECTIONAL`).
    Bidirectional,
}

impl Direction {
    /// All directions.
    pub const ALL: [Direction; 3] = [
        Direction::ToDevice,
        Direction::FromDevice,
        Direction::Bidirectional,
    ];

    /// Does the device write the buffer (so the CPU must not touch it while mapped)?
    pub fn device_writes(self) -> bool {
        self != Direction::ToDevice
    }

    /// Does the device read the buffer (so its contents are copied into a bounce buffer)?
    pub fn device_reads(self) -> bool {
        self != Direction::FromDevice
    }

    /// Linux's name.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToDevice => "DMA_TO_DEVICE",
            Direction::FromDevice => "DMA_FROM_DEVICE",
            Direction::Bidirectional => "DMA_BIDIRECTIONAL",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What map / sync_for_device does to a `FromDevice` buffer on a non-coherent device
/// (DESIGN.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FromDeviceMap {
    /// Write dirty lines back (arm64 since 2022): the neighbour's dirty data reaches memory
    /// before the transfer.
    #[default]
    Clean,
    /// Invalidate (older 32-bit Arm): a dirty neighbour in a shared line is lost at map time.
    Invalidate,
}
