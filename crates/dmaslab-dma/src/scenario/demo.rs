//! The seed's example, executable:
//!
//! ```c
//! blocks = kmalloc(4, GFP_KERNEL);
//! sg_init_one(&sg, blocks, 4);
//! /* device writes 4 bytes */
//! result = ntohl(*blocks);
//! ```
//!
//! on a device with 64-byte lines, while the CPU writes a neighbouring small object during the
//! transfer, under every [`Setup`] and both corruption [`Timing`]s.

use crate::checker::Finding;
use crate::device::Device;
use crate::direction::Direction;
use crate::{DmaError, Machine, MachineConfig, ScatterList};
use alloc::vec::Vec;
use dmaslab_core::{Gfp, Policy};

/// What the device writes (big-endian on the wire, read back with `ntohl`).
pub const DEVICE_VALUE: u32 = 0x1234_5678;
/// What `*blocks` held before the transfer.
pub const STALE_VALUE: u32 = 0xdead_beef;
/// The neighbour before the transfer.
pub const NEIGHBOUR_OLD: u32 = 0x1111_1111;
/// What the CPU writes into the neighbour during the transfer.
pub const NEIGHBOUR_NEW: u32 = 0x2222_2222;
/// The DMA line of the demo.
pub const LINE: usize = 64;

/// Who allocates the buffer, under which policy, for which device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Policy B, the driver maps its `kmalloc(4)` buffer directly: the bug.
    BKmallocDirect,
    /// Policy B, the driver uses the DMA interface (`kmalloc(4, GFP_DMA)`: a dma-kmalloc object).
    BDmaInterface,
    /// Policy A: every kmalloc buffer is DMA-safe.
    A,
    /// Policy C: the mapping layer bounces the shared buffer.
    C,
    /// A coherent device (compact kmalloc, direct mapping).
    Coherent,
}

impl Setup {
    /// All setups, in table order.
    pub const ALL: [Setup; 5] = [
        Setup::BKmallocDirect,
        Setup::BDmaInterface,
        Setup::A,
        Setup::C,
        Setup::Coherent,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Setup::BKmallocDirect => "B-kmalloc-direct",
            Setup::BDmaInterface => "B-dma-interface",
            Setup::A => "A",
            Setup::C => "C",
            Setup::Coherent => "coherent-device",
        }
    }

    /// The kmalloc policy.
    pub fn policy(self) -> Policy {
        match self {
            Setup::A => Policy::A,
            Setup::C => Policy::C,
            _ => Policy::B,
        }
    }

    fn coherent(self) -> bool {
        self == Setup::Coherent
    }

    fn gfp(self) -> Gfp {
        match self {
            Setup::BDmaInterface => Gfp::DMA,
            _ => Gfp::KERNEL,
        }
    }
}

/// When the CPU's neighbour write meets the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// The CPU dirties the shared line, the device writes, the line is evicted: the stale copy of
    /// `*blocks` riding in the line overwrites the device's data.
    StaleWriteback,
    /// The device writes, then the CPU dirties the shared line; the invalidate at unmap throws
    /// the neighbour's write away.
    LostNeighbourWrite,
}

impl Timing {
    /// Both timings.
    pub const ALL: [Timing; 2] = [Timing::StaleWriteback, Timing::LostNeighbourWrite];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Timing::StaleWriteback => "stale-writeback",
            Timing::LostNeighbourWrite => "lost-neighbour-write",
        }
    }
}

/// What one run showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `setup/timing`.
    pub setup: Setup,
    /// The timing.
    pub timing: Timing,
    /// The policy.
    pub policy: Policy,
    /// Coherent device?
    pub coherent: bool,
    /// The value read or the neighbour was wrong.
    pub corrupted: bool,
    /// What the device wrote.
    pub value_expected: u32,
    /// `ntohl(*blocks)` after the transfer.
    pub value_read: u32,
    /// The neighbour holds the CPU's write.
    pub neighbour_intact: bool,
    /// The mapping went through the bounce pool.
    pub bounced: bool,
    /// The checker's findings, addresses relative to the RAM's first byte.
    pub findings: Vec<Finding>,
}

impl Outcome {
    /// `setup/timing`, the scenario's name.
    pub fn name(&self) -> alloc::string::String {
        alloc::format!("{}/{}", self.setup.name(), self.timing.name())
    }
}

fn read_u32(m: &mut Machine, addr: usize) -> Result<u32, DmaError> {
    let mut b = [0u8; 4];
    m.cpu_read(addr, &mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// Runs one scenario on a fresh machine.
pub fn run(setup: Setup, timing: Timing) -> Result<Outcome, DmaError> {
    let mut m = Machine::new(MachineConfig::new(setup.policy()).line(LINE))?;
    let dev = if setup.coherent() {
        Device::coherent(LINE)
    } else {
        Device::non_coherent(LINE)
    };
    let blocks = m.kmalloc(4, setup.gfp()).ok_or(DmaError::NoMemory)?;
    let neighbour = m.kmalloc(4, Gfp::KERNEL).ok_or(DmaError::NoMemory)?;
    m.cpu_write(blocks, &STALE_VALUE.to_be_bytes())?;
    m.cpu_write(neighbour, &NEIGHBOUR_OLD.to_be_bytes())?;

    let mut sg = ScatterList::sg_init_one(blocks, 4);
    m.map_sg(&dev, &mut sg, Direction::FromDevice)?;
    let dma = sg.dma_address(0).expect("mapped above");
    match timing {
        Timing::StaleWriteback => {
            m.cpu_write(neighbour, &NEIGHBOUR_NEW.to_be_bytes())?;
            m.device_write(&dev, dma, &DEVICE_VALUE.to_be_bytes())?;
            m.evict(neighbour);
        }
        Timing::LostNeighbourWrite => {
            m.device_write(&dev, dma, &DEVICE_VALUE.to_be_bytes())?;
            m.cpu_write(neighbour, &NEIGHBOUR_NEW.to_be_bytes())?;
        }
    }
    m.unmap_sg(&dev, &mut sg, Direction::FromDevice)?;

    let value_read = read_u32(&mut m, blocks)?;
    let neighbour_intact = read_u32(&mut m, neighbour)? == NEIGHBOUR_NEW;
    let base = m.ram_base();
    let findings = m
        .take_findings()
        .into_iter()
        .map(|f| f.rebased(base))
        .collect();
    Ok(Outcome {
        setup,
        timing,
        policy: setup.policy(),
        coherent: setup.coherent(),
        corrupted: value_read != DEVICE_VALUE || !neighbour_intact,
        value_expected: DEVICE_VALUE,
        value_read,
        neighbour_intact,
        bounced: m.stats().bounces > 0,
        findings,
    })
}

/// Every setup under both timings, in table order.
pub fn run_all() -> Result<Vec<Outcome>, DmaError> {
    let mut out = Vec::new();
    for s in Setup::ALL {
        for t in Timing::ALL {
            out.push(run(s, t)?);
        }
    }
    Ok(out)
}
