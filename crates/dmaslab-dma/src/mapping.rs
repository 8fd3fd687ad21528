//! The record of active streaming mappings (what dma-debug keeps in its hash table), and the
//! recently retired ones so a double unmap can be told from an unmap of nothing.

use crate::direction::Direction;
use crate::error::DmaAddr;
use alloc::vec::Vec;

/// An active (or retired) streaming mapping.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mapping {
    /// The driver's buffer: CPU address and the pointer it was mapped with.
    pub(crate) addr: usize,
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) dir: Direction,
    /// What the device was given: the buffer's bus address, or its bounce buffer's.
    pub(crate) bus: u64,
    /// The bounce buffer (pool address and pointer), if bounced.
    pub(crate) bounce: Option<(usize, *mut u8)>,
    pub(crate) coherent: bool,
    /// Between map (or sync_for_device) and unmap (or sync_for_cpu).
    pub(crate) device_owns: bool,
}

impl Mapping {
    /// The CPU address of the memory the device accesses: the bounce buffer or the buffer.
    pub(crate) fn target(&self) -> usize {
        self.bounce.map_or(self.addr, |(b, _)| b)
    }
}

/// How many retired mappings are remembered for double-unmap reports.
const RETIRED_KEPT: usize = 256;

/// The active mappings and the last [`RETIRED_KEPT`] retired ones.
///
/// # Invariants
/// Every active mapping has a distinct bus address; `retired` holds no bus address of an active
/// one. The pointers are those the map path was given and lent the device (see
/// [`crate::DmaMap::map_single`]'s contract); the table never dereferences them.
#[derive(Default)]
pub(crate) struct MappingTable {
    active: Vec<Mapping>,
    retired: Vec<Mapping>,
}

// SAFETY: the table only stores the pointers (type invariant); the map path that owns it
// dereferences them under `&mut`, for memory its callers lent it whatever the thread.
unsafe impl Send for MappingTable {}

impl MappingTable {
    /// Records a new mapping.
    pub(crate) fn insert(&mut self, m: Mapping) {
        self.retired.retain(|r| r.bus != m.bus);
        self.active.push(m);
    }

    /// The index of the active mapping at bus address `bus`.
    pub(crate) fn position(&self, bus: u64) -> Option<usize> {
        self.active.iter().position(|m| m.bus == bus)
    }

    /// The most recently retired mapping at `bus`.
    pub(crate) fn retired_at(&self, bus: u64) -> Option<Mapping> {
        self.retired.iter().rev().find(|m| m.bus == bus).copied()
    }

    /// Active mapping `i`.
    pub(crate) fn get(&self, i: usize) -> Mapping {
        self.active[i]
    }

    /// Gives mapping `i` to the device (`true`) or the CPU.
    pub(crate) fn set_device_owns(&mut self, i: usize, owns: bool) {
        self.active[i].device_owns = owns;
    }

    /// Retires mapping `i`; returns it.
    pub(crate) fn retire(&mut self, i: usize) -> Mapping {
        let m = self.active.swap_remove(i);
        if self.retired.len() >= RETIRED_KEPT {
            self.retired.remove(0);
        }
        self.retired.push(m);
        m
    }

    /// The active mappings.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.active.iter()
    }

    /// How many are active.
    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }

    /// The CPU address behind bus range `dma .. dma + len`, if one active mapping covers it.
    pub(crate) fn device_target(&self, dma: DmaAddr, len: usize) -> Option<usize> {
        self.active
            .iter()
            .find(|m| dma.0 >= m.bus && dma.0 + len as u64 <= m.bus + m.len as u64)
            .map(|m| m.target() + (dma.0 - m.bus) as usize)
    }
}

/// Do `a .. a + al` and `b .. b + bl` touch a common `line`?
pub(crate) fn lines_overlap(a: usize, al: usize, b: usize, bl: usize, line: usize) -> bool {
    let (a0, a1) = (a & !(line - 1), (a + al - 1) & !(line - 1));
    let (b0, b1) = (b & !(line - 1), (b + bl - 1) & !(line - 1));
    a0 <= b1 && b0 <= a1
}

/// The first line two overlapping ranges starting at `a` and `b` share.
pub(crate) fn shared_line(a: usize, b: usize, line: usize) -> usize {
    (a & !(line - 1)).max(b & !(line - 1))
}
