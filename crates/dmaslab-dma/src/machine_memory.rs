//! The model machine's memory traffic: the allocator kept consistent with the cache, CPU
//! loads and stores through the cache (checked for finding (c)), and device reads and writes
//! of RAM.
//!
//! The allocator writes its free-list links to RAM directly: `kfree` cleans and invalidates
//! the slot's lines first (an eviction at that moment, which a real CPU may do too), and
//! `kmalloc` refreshes cached copies of the new object from RAM.

use crate::device::Device;
use crate::error::{DmaAddr, DmaError};
use crate::machine::Machine;
use core::panic::Location;
use dmaslab_core::{FreeError, Gfp, Owner};

impl Machine {
    /// `kmalloc`, returning the CPU address.
    #[track_caller]
    pub fn kmalloc(&mut self, size: usize, gfp: Gfp) -> Option<usize> {
        self.kmalloc_aligned(size, 1, gfp)
    }

    /// `kmalloc` with an alignment.
    #[track_caller]
    pub fn kmalloc_aligned(&mut self, size: usize, align: usize, gfp: Gfp) -> Option<usize> {
        let site = Location::caller();
        let p = self.map.heap().kmalloc_aligned(size, align, gfp)?.as_ptr() as usize;
        let (start, len) = self.span_of(p).unwrap_or((p, size.max(1)));
        let (cache, ram) = self.map.backend_mut().parts();
        cache.refresh_from(ram, start, len);
        // A new object landing in a line a device is writing: kind (a), named at allocation.
        let line = self.line();
        let (checker, table) = self.map.checker_and_table();
        checker.check_allocation(table, start, len, line, site);
        Some(p)
    }

    /// `kfree` of a CPU address from [`kmalloc`](Self::kmalloc).
    pub fn kfree(&mut self, p: usize) -> Result<(), DmaError> {
        let Some((start, len)) = self.span_of(p) else {
            return Err(DmaError::Free(FreeError::InvalidPointer(p)));
        };
        if self
            .map
            .table()
            .iter()
            .any(|m| m.addr < start + len && start < m.addr + m.len)
        {
            return Err(DmaError::StillMapped { addr: p });
        }
        // The allocator writes its free-list link into the slot: the slot's lines leave the
        // cache first so that cache and RAM agree on allocator bytes.
        self.flush_range(start, len);
        let ptr = self.ram.ptr(p);
        // SAFETY: `ptr` is inside this allocator's RAM with its provenance; `kfree` checks that it
        // is a live allocation and rejects anything else with an error. The machine holds no
        // reference into the object; the caller gives the address up.
        unsafe { self.map.heap().kfree(ptr) }.map_err(DmaError::Free)
    }

    /// The slot or run holding `p`: `(start, size)`.
    fn span_of(&self, p: usize) -> Option<(usize, usize)> {
        match self.owner_of(p) {
            Owner::Object { start, size, .. } | Owner::Large { start, size } => Some((start, size)),
            _ => None,
        }
    }

    // ---- CPU and device access ----

    fn is_uncached(&self, addr: usize) -> bool {
        self.coherent
            .iter()
            .any(|&(s, n)| addr >= s && addr < s + n)
    }

    /// Kind (c) for a CPU access made at `site`.
    fn check_cpu_access(
        &mut self,
        addr: usize,
        len: usize,
        write: bool,
        site: &'static Location<'static>,
    ) {
        let line = self.line();
        let (checker, table) = self.map.checker_and_table();
        checker.check_cpu_access(table, addr, len, write, line, site);
    }

    /// A CPU load through the cache (uncached for coherent allocations).
    #[track_caller]
    pub fn cpu_read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), DmaError> {
        if !self.ram.contains(addr, buf.len()) {
            return Err(DmaError::OutOfRam {
                addr,
                len: buf.len(),
            });
        }
        self.check_cpu_access(addr, buf.len(), false, Location::caller());
        if self.is_uncached(addr) {
            self.ram.read(addr, buf);
        } else {
            let (cache, ram) = self.map.backend_mut().parts();
            cache.read(ram, addr, buf);
        }
        Ok(())
    }

    /// A CPU store through the cache (write-allocate; uncached for coherent allocations).
    #[track_caller]
    pub fn cpu_write(&mut self, addr: usize, data: &[u8]) -> Result<(), DmaError> {
        if !self.ram.contains(addr, data.len()) {
            return Err(DmaError::OutOfRam {
                addr,
                len: data.len(),
            });
        }
        // Stores stay inside live allocations: the allocator's metadata and free slots are not
        // the CPU's to write (the core detects corrupted free lists, but not bad descriptors).
        let inside = match self.owner_of(addr) {
            Owner::Object {
                start,
                size,
                live: true,
                ..
            }
            | Owner::Large { start, size } => addr + data.len() <= start + size,
            _ => false,
        };
        if !inside {
            return Err(DmaError::NotAllocated {
                addr,
                len: data.len(),
            });
        }
        self.check_cpu_access(addr, data.len(), true, Location::caller());
        if self.is_uncached(addr) {
            self.ram.write(addr, data);
        } else {
            let (cache, ram) = self.map.backend_mut().parts();
            cache.write(ram, addr, data);
        }
        Ok(())
    }

    /// Forces the eviction of the line holding `addr` now; whether it was cached.
    pub fn evict(&mut self, addr: usize) -> bool {
        let (cache, ram) = self.map.backend_mut().parts();
        cache.evict(ram, addr)
    }

    /// Evicts a line chosen by the seeded generator.
    pub fn evict_random(&mut self) -> Option<usize> {
        let (cache, ram) = self.map.backend_mut().parts();
        cache.evict_random(ram)
    }

    /// Writes back and empties the whole cache.
    pub fn flush_cache(&mut self) {
        let (cache, ram) = self.map.backend_mut().parts();
        cache.flush_all(ram);
    }

    /// The CPU address behind bus range `dma .. dma + len`, if an active mapping or a coherent
    /// allocation covers it.
    fn device_target(&self, dma: DmaAddr, len: usize) -> Option<usize> {
        if let Some(t) = self.map.table().device_target(dma, len) {
            return Some(t);
        }
        let cpu = self.map.cpu_of(dma);
        self.coherent
            .iter()
            .any(|&(s, n)| cpu >= s && cpu + len <= s + n)
            .then_some(cpu)
    }

    /// The device writes `data` at bus address `dma` (memory directly; a coherent device's
    /// write also updates the cached copies, as a snooping interconnect would).
    pub fn device_write(
        &mut self,
        dev: &Device,
        dma: DmaAddr,
        data: &[u8],
    ) -> Result<(), DmaError> {
        let fault = DmaError::DeviceFault {
            dma,
            len: data.len(),
        };
        let t = self.device_target(dma, data.len()).ok_or(fault)?;
        self.ram.write(t, data);
        if dev.coherent {
            let (cache, ram) = self.map.backend_mut().parts();
            cache.refresh_from(ram, t, data.len());
        }
        Ok(())
    }

    /// The device reads `buf.len()` bytes at bus address `dma` (memory; a coherent device sees
    /// dirty cached data too).
    pub fn device_read(
        &mut self,
        dev: &Device,
        dma: DmaAddr,
        buf: &mut [u8],
    ) -> Result<(), DmaError> {
        let fault = DmaError::DeviceFault {
            dma,
            len: buf.len(),
        };
        let t = self.device_target(dma, buf.len()).ok_or(fault)?;
        if dev.coherent {
            let (cache, ram) = self.map.backend_mut().parts();
            cache.snoop_read(ram, t, buf);
        } else {
            self.ram.read(t, buf);
        }
        Ok(())
    }
}
