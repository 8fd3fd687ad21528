//! Cache maintenance behind a trait, and DESIGN.md section 3's table of which operation each
//! call does in each direction.
//!
//! | call | ToDevice | FromDevice | Bidirectional |
//! |---|---|---|---|
//! | map / sync_for_device | clean | clean or invalidate ([`CacheMaintenance::arch_rule`]) | clean |
//! | unmap / sync_for_cpu | nothing | invalidate | invalidate |
//!
//! Coherent devices get nothing. The map path ([`crate::DmaMap`]) calls only [`for_device`] and
//! [`for_cpu`]; the backends ([`crate::ModelBackend`], and `CortexM7` with the `cortex-m7`
//! feature) only say how each operation is done.

use crate::direction::{Direction, FromDeviceMap};

/// By-address maintenance of the CPU's data cache, the one thing the map path needs from the
/// hardware (or from a model of it).
///
/// Ranges are byte ranges; an operation acts on every line that holds a byte of the range, so
/// bytes outside the range that share its first or last line are cleaned or invalidated too.
pub trait CacheMaintenance {
    /// The data cache line in bytes (a power of two).
    fn line_size(&self) -> usize;

    /// Which Linux arch rule map / sync_for_device follows for `FromDevice` on a non-coherent
    /// device: [`FromDeviceMap::Clean`] (arm64 since 2022) or [`FromDeviceMap::Invalidate`]
    /// (older 32-bit Arm).
    fn arch_rule(&self) -> FromDeviceMap;

    /// Writes the dirty lines holding `addr .. addr + len` back to memory; they stay valid.
    fn clean(&mut self, addr: usize, len: usize);

    /// Drops the lines holding `addr .. addr + len`, dirty or not.
    ///
    /// # Safety
    /// Dirty data in those lines is lost and the CPU sees memory's bytes next: every byte of
    /// every line touched (not only of the range) must be one whose memory value may replace
    /// the cached one — the device's data, or bytes nobody wrote since the last clean.
    unsafe fn invalidate(&mut self, addr: usize, len: usize);

    /// Cleans, then invalidates, the lines holding `addr .. addr + len`.
    fn clean_invalidate(&mut self, addr: usize, len: usize);

    /// A CPU copy of `len` bytes from `src` to `dst` (the bounce copies). The default is a
    /// plain copy: on real hardware the CPU's loads and stores go through its cache by
    /// themselves. A model of the cache overrides it to route them through the model.
    ///
    /// # Safety
    /// `src` must be valid for reads and `dst` for writes of `len` bytes, the two must not
    /// overlap, and nothing else may access either range during the call.
    unsafe fn cpu_copy(&mut self, src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: the caller's contract, word for word `copy_nonoverlapping`'s.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) }
    }
}

/// map / sync_for_device: clean, or invalidate for `FromDevice` when the backend follows the
/// older 32-bit Arm rule. Nothing for a coherent device.
///
/// # Safety
/// With [`FromDeviceMap::Invalidate`] and `FromDevice`, as [`CacheMaintenance::invalidate`]:
/// the lines of the range hold nothing the CPU still needs (the bounce rule and the checker
/// exist to make that so).
pub(crate) unsafe fn for_device<B: CacheMaintenance + ?Sized>(
    backend: &mut B,
    coherent: bool,
    addr: usize,
    len: usize,
    dir: Direction,
) {
    if coherent {
        return;
    }
    match (dir, backend.arch_rule()) {
        // SAFETY: the caller's contract.
        (Direction::FromDevice, FromDeviceMap::Invalidate) => unsafe {
            backend.invalidate(addr, len)
        },
        _ => backend.clean(addr, len),
    }
}

/// unmap / sync_for_cpu: invalidate unless the device only read the buffer. Nothing for a
/// coherent device.
///
/// # Safety
/// As [`CacheMaintenance::invalidate`]: the device has finished with the range, and the
/// lines of the range hold nothing the CPU wrote since the mapping gave them to the device.
pub(crate) unsafe fn for_cpu<B: CacheMaintenance + ?Sized>(
    backend: &mut B,
    coherent: bool,
    addr: usize,
    len: usize,
    dir: Direction,
) {
    if !coherent && dir.device_writes() {
        // SAFETY: the caller's contract.
        unsafe { backend.invalidate(addr, len) }
    }
}

/// `addr .. addr + len` widened to whole `line`-byte lines: `(first line, bytes)`; no bytes
/// for an empty range.
pub(crate) fn whole_lines(addr: usize, len: usize, line: usize) -> (usize, usize) {
    let first = addr & !(line - 1);
    if len == 0 {
        return (first, 0);
    }
    let end = (addr + len).next_multiple_of(line);
    (first, end - first)
}

#[cfg(test)]
mod tests {
    use super::whole_lines;

    #[test]
    fn whole_lines_covers_every_touched_line() {
        assert_eq!(whole_lines(0x1000, 32, 32), (0x1000, 32));
        // 8 bytes straddling a boundary touch two lines, though 8 < 32.
        assert_eq!(whole_lines(0x101c, 8, 32), (0x1000, 64));
        assert_eq!(whole_lines(0x1001, 1, 32), (0x1000, 32));
        assert_eq!(whole_lines(0x1020, 33, 32), (0x1020, 64));
        assert_eq!(whole_lines(0x1010, 0, 32), (0x1000, 0));
    }
}
