//! The Cortex-M7 backend (feature `cortex-m7`): the `cortex-m` crate's SCB by-address D-cache
//! operations, on the CPU's real 32-byte lines.
//!
//! Linux arch rule: **clean** at map / sync_for_device for `FromDevice`, as arm64 does since
//! 2022. A dirty neighbour in a shared line reaches memory before the transfer instead of being
//! dropped, and the invalidate at unmap / sync_for_cpu discards whatever the CPU pulled in
//! meanwhile.

use crate::direction::FromDeviceMap;
use crate::maintenance::{whole_lines, CacheMaintenance};
use cortex_m::peripheral::SCB;

/// The Cortex-M7 data cache line (fixed for every M7 core).
pub const CORTEX_M7_LINE: usize = 32;

/// Cache maintenance on a Cortex-M7 through its System Control Block.
///
/// Owns the `SCB` (take it from `cortex_m::Peripherals`; [`CortexM7::release`] gives it back,
/// e.g. to disable the cache). The D-cache must have been enabled with
/// `SCB::enable_dcache` for maintenance to matter; with the cache off the operations are
/// harmless no-ops.
pub struct CortexM7 {
    scb: SCB,
}

impl CortexM7 {
    /// The backend over `scb`.
    pub fn new(scb: SCB) -> Self {
        CortexM7 { scb }
    }

    /// Gives the `SCB` back.
    pub fn release(self) -> SCB {
        self.scb
    }
}

impl CacheMaintenance for CortexM7 {
    fn line_size(&self) -> usize {
        CORTEX_M7_LINE
    }

    fn arch_rule(&self) -> FromDeviceMap {
        FromDeviceMap::Clean
    }

    fn clean(&mut self, addr: usize, len: usize) {
        // Whole lines: the `cortex-m` operations count lines from the length alone, so an
        // unaligned range would miss its last line.
        let (a, n) = whole_lines(addr, len, CORTEX_M7_LINE);
        self.scb.clean_dcache_by_address(a, n);
    }

    unsafe fn invalidate(&mut self, addr: usize, len: usize) {
        let (a, n) = whole_lines(addr, len, CORTEX_M7_LINE);
        // SAFETY: `a .. a + n` are exactly the lines holding the range (aligned, whole lines, as
        // `invalidate_dcache_by_address` requires), and the caller guarantees that memory's
        // bytes may replace every cached byte of those lines.
        unsafe { self.scb.invalidate_dcache_by_address(a, n) }
    }

    fn clean_invalidate(&mut self, addr: usize, len: usize) {
        let (a, n) = whole_lines(addr, len, CORTEX_M7_LINE);
        self.scb.clean_invalidate_dcache_by_address(a, n);
    }
}
