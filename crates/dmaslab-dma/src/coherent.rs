//! Coherent allocations (`dma_alloc_coherent`): whole lines, never shared, uncached for the CPU
//! (as Linux remaps them on non-coherent machines), so no maintenance is ever needed.

use crate::device::Device;
use crate::dma_map::{DmaAddr, DmaError, Machine};
use crate::ram::Ram;
use core::ptr::NonNull;
use dmaslab_core::Gfp;

/// A coherent DMA buffer. Not `Copy`: [`Machine::free_coherent`] consumes it, so while a value
/// exists its memory is allocated (and the RAM stays alive even if the machine is dropped).
///
/// # Invariants
/// `cpu .. cpu + size` is a live allocation of `ram`'s allocator, line-aligned and a whole
/// number of lines, listed as uncached by its machine; `cpu` carries the region's provenance.
pub struct CoherentBuffer {
    pub(crate) cpu: NonNull<u8>,
    pub(crate) dma: DmaAddr,
    pub(crate) size: usize,
    pub(crate) ram: Ram,
}

impl CoherentBuffer {
    /// CPU address.
    pub fn cpu_addr(&self) -> usize {
        self.cpu.as_ptr() as usize
    }
    /// Bus address.
    pub fn dma_addr(&self) -> DmaAddr {
        self.dma
    }
    /// Bytes (a whole number of lines).
    pub fn len(&self) -> usize {
        self.size
    }
    /// Never: a coherent buffer has at least one line.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Uncached CPU read at `off`.
    ///
    /// # Panics
    /// If the range leaves the buffer.
    pub fn read(&self, off: usize, buf: &mut [u8]) {
        assert!(
            off + buf.len() <= self.size,
            "read outside the coherent buffer"
        );
        self.ram.read(self.cpu_addr() + off, buf);
    }
    /// Uncached CPU write at `off`.
    ///
    /// # Panics
    /// If the range leaves the buffer.
    pub fn write(&mut self, off: usize, data: &[u8]) {
        assert!(
            off + data.len() <= self.size,
            "write outside the coherent buffer"
        );
        self.ram.write(self.cpu_addr() + off, data);
    }
}

impl Machine {
    /// `dma_alloc_coherent`: `size` bytes rounded up to whole lines, line-aligned, zeroed.
    pub fn alloc_coherent(
        &mut self,
        dev: &Device,
        size: usize,
    ) -> Result<CoherentBuffer, DmaError> {
        if size == 0 {
            return Err(DmaError::ZeroLength);
        }
        let line = dev.dma_line.max(self.line());
        let n = size.next_multiple_of(line);
        let p = self
            .kmalloc_aligned(n, line, Gfp::ZERO)
            .ok_or(DmaError::NoMemory)?;
        // No cached copy may outlive the switch to uncached access.
        self.flush_range(p, n);
        let bus = self.phys(p);
        if !dev.reaches(bus, n) {
            self.kfree(p)?;
            return Err(DmaError::Unaddressable { bus, len: n });
        }
        self.coherent.push((p, n));
        self.note_coherent_alloc();
        Ok(CoherentBuffer {
            cpu: NonNull::new(self.ram().ptr(p)).expect("RAM addresses are not null"),
            dma: DmaAddr(bus),
            size: n,
            ram: self.ram().clone(),
        })
    }

    /// `dma_free_coherent`.
    pub fn free_coherent(&mut self, buf: CoherentBuffer) -> Result<(), DmaError> {
        let a = buf.cpu_addr();
        let i = self
            .coherent
            .iter()
            .position(|&(s, _)| s == a)
            .ok_or(DmaError::NotMapped(buf.dma))?;
        self.coherent.swap_remove(i);
        self.kfree(a)
    }
}
