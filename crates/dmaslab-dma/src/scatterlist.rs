//! Scatter-gather lists (`struct scatterlist`) and their mapping: every entry through the one
//! map path, all or nothing.

use crate::device::Device;
use crate::direction::Direction;
use crate::dma_map::DmaMap;
use crate::error::{DmaAddr, DmaError};
use crate::heap_layout::HeapLayout;
use crate::maintenance::CacheMaintenance;
use alloc::vec::Vec;
use core::panic::Location;

/// One entry of a [`ScatterList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgEntry {
    /// CPU address of the buffer (on a target: `ptr as usize`, which exposes the pointer's
    /// provenance for [`DmaMap::map_sg`] to take back).
    pub addr: usize,
    /// Its length.
    pub len: usize,
    /// The bus address once mapped.
    pub dma: Option<DmaAddr>,
}

/// A scatter-gather list (`struct scatterlist`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScatterList {
    /// The entries.
    pub entries: Vec<SgEntry>,
}

impl ScatterList {
    /// `sg_init_one`: one buffer.
    pub fn sg_init_one(addr: usize, len: usize) -> Self {
        Self::sg_init_table(&[(addr, len)])
    }

    /// `sg_init_table` + `sg_set_buf` for each `(addr, len)`.
    pub fn sg_init_table(bufs: &[(usize, usize)]) -> Self {
        ScatterList {
            entries: bufs
                .iter()
                .map(|&(addr, len)| SgEntry {
                    addr,
                    len,
                    dma: None,
                })
                .collect(),
        }
    }

    /// `sg_dma_address` of entry `i`.
    pub fn dma_address(&self, i: usize) -> Option<DmaAddr> {
        self.entries.get(i)?.dma
    }
}

impl<B: CacheMaintenance, H: HeapLayout> DmaMap<B, H> {
    /// `dma_map_sg`: maps every entry; on failure unmaps what this call mapped and returns the
    /// error. Returns the number of entries mapped.
    ///
    /// # Safety
    /// Each entry as [`DmaMap::map_single`]'s buffer, and each entry's `addr` must come from
    /// a pointer cast with `as usize` (which exposes its provenance).
    #[track_caller]
    pub unsafe fn map_sg(
        &mut self,
        dev: &Device,
        sg: &mut ScatterList,
        dir: Direction,
    ) -> Result<usize, DmaError> {
        let site = Location::caller();
        // SAFETY: the caller's contract; the addresses carry exposed provenance.
        unsafe { self.map_sg_by(dev, sg, dir, core::ptr::with_exposed_provenance_mut, site) }
    }

    /// `map_sg` with the entries' pointers made by `buf_of` (the model makes them from its
    /// RAM) and the call site given.
    ///
    /// # Safety
    /// Each `buf_of(entry.addr)` as [`DmaMap::map_single`]'s buffer.
    pub(crate) unsafe fn map_sg_by(
        &mut self,
        dev: &Device,
        sg: &mut ScatterList,
        dir: Direction,
        buf_of: impl Fn(usize) -> *mut u8,
        site: &'static Location<'static>,
    ) -> Result<usize, DmaError> {
        for k in 0..sg.entries.len() {
            let e = sg.entries[k];
            // SAFETY: the caller's contract for this entry.
            match unsafe { self.map_at(dev, buf_of(e.addr), e.len, dir, site) } {
                Ok(d) => sg.entries[k].dma = Some(d),
                Err(err) => {
                    for e in sg.entries[..k].iter_mut() {
                        if let Some(d) = e.dma.take() {
                            let _ = self.unmap_single(dev, d, e.len, dir);
                        }
                    }
                    return Err(err);
                }
            }
        }
        Ok(sg.entries.len())
    }

    /// `dma_unmap_sg`: unmaps every mapped entry; the first error, after trying them all.
    #[track_caller]
    pub fn unmap_sg(
        &mut self,
        dev: &Device,
        sg: &mut ScatterList,
        dir: Direction,
    ) -> Result<(), DmaError> {
        let mut res = Ok(());
        for e in sg.entries.iter_mut() {
            let Some(d) = e.dma else {
                res = res.and(Err(DmaError::NotMapped(DmaAddr(u64::MAX))));
                continue;
            };
            match self.unmap_single(dev, d, e.len, dir) {
                Ok(()) => e.dma = None,
                Err(err) => res = res.and(Err(err)),
            }
        }
        res
    }

    /// `dma_sync_sg_for_cpu`.
    #[track_caller]
    pub fn sync_sg_for_cpu(
        &mut self,
        dev: &Device,
        sg: &ScatterList,
        dir: Direction,
    ) -> Result<(), DmaError> {
        for e in &sg.entries {
            let d = e.dma.ok_or(DmaError::NotMapped(DmaAddr(u64::MAX)))?;
            self.sync_single_for_cpu(dev, d, e.len, dir)?;
        }
        Ok(())
    }

    /// `dma_sync_sg_for_device`.
    #[track_caller]
    pub fn sync_sg_for_device(
        &mut self,
        dev: &Device,
        sg: &ScatterList,
        dir: Direction,
    ) -> Result<(), DmaError> {
        for e in &sg.entries {
            let d = e.dma.ok_or(DmaError::NotMapped(DmaAddr(u64::MAX)))?;
            self.sync_single_for_device(dev, d, e.len, dir)?;
        }
        Ok(())
    }
}
