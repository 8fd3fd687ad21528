//! Coherent allocations (`dma_alloc_coherent`): whole lines, never shared, uncached for the CPU
//! (as Linux remaps them on non-coherent machines), so no maintenance is ever needed.

use crate::device::Device;
use crate::error::{DmaAddr, DmaError};
use crate::machine::Machine;
use crate::ram::Ram;
use core::ptr::NonNull;
use dmaslab_core::Gfp;

/// CPU-uncached, device-visible memory: what a coherent buffer and a pool block both are.
/// Reads and writes go straight to RAM (the mapping is uncached, as Linux remaps coherent memory
/// on non-coherent machines), so no maintenance is ever needed.
///
/// # Invariants
/// `cpu .. cpu + size` is allocated memory of `ram`, uncached for its machine, for as long as
/// the value lives (its owner type says why); `cpu` carries the region's provenance.
pub struct UncachedRegion {
    pub(crate) cpu: NonNull<u8>,
    pub(crate) dma: DmaAddr,
    pub(crate) size: usize,
    pub(crate) ram: Ram,
}

impl UncachedRegion {
    /// The region at RAM address `cpu`, bus address `dma`, `size` bytes.
    pub(crate) fn new(ram: &Ram, cpu: usize, dma: DmaAddr, size: usize) -> Self {
        UncachedRegion {
            cpu: NonNull::new(ram.ptr(cpu)).expect("RAM addresses are not null"),
            dma,
            size,
            ram: ram.clone(),
        }
    }
    /// CPU address.
    pub fn cpu_addr(&self) -> usize {
        self.cpu.as_ptr() as usize
    }
    /// Bus address.
    pub fn dma_addr(&self) -> DmaAddr {
        self.dma
    }
    /// Bytes.
    pub fn len(&self) -> usize {
        self.size
    }
    /// Never: a region has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// Uncached CPU read at `off`.
    ///
    /// # Panics
    /// If the range leaves the region.
    pub fn read(&self, off: usize, buf: &mut [u8]) {
        assert!(off + buf.len() <= self.size, "read outside the DMA buffer");
        self.ram.read(self.cpu_addr() + off, buf);
    }
    /// Uncached CPU write at `off`.
    ///
    /// # Panics
    /// If the range leaves the region.
    pub fn write(&mut self, off: usize, data: &[u8]) {
        assert!(
            off + data.len() <= self.size,
            "write outside the DMA buffer"
        );
        self.ram.write(self.cpu_addr() + off, data);
    }
}

/// A coherent DMA buffer: whole lines, line-aligned. Not `Copy`: [`Machine::free_coherent`]
/// consumes it, so while a value exists its memory is allocated (and the RAM stays alive even
/// if the machine is dropped).
pub struct CoherentBuffer(pub(crate) UncachedRegion);

impl core::ops::Deref for CoherentBuffer {
    type Target = UncachedRegion;
    fn deref(&self) -> &UncachedRegion {
        &self.0
    }
}

impl core::ops::DerefMut for CoherentBuffer {
    fn deref_mut(&mut self) -> &mut UncachedRegion {
        &mut self.0
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
        Ok(CoherentBuffer(UncachedRegion::new(
            self.ram(),
            p,
            DmaAddr(bus),
            n,
        )))
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
