//! DMA pools (`dma_pool_create` / `dma_pool_alloc`): many small fixed-size DMA buffers carved
//! from coherent pages, so that small buffers need neither a line each from kmalloc nor
//! bouncing.

use crate::coherent::{CoherentBuffer, UncachedRegion};
use crate::device::Device;
use crate::error::{DmaAddr, DmaError};
use crate::machine::Machine;
use alloc::vec::Vec;

/// A block of a [`DmaPool`]: uncached memory inside one of its pool's coherent pages, which
/// stays allocated until [`DmaPool::free`] consumes the block (`destroy` refuses while blocks
/// are out).
pub struct PoolBlock(pub(crate) UncachedRegion);

impl core::ops::Deref for PoolBlock {
    type Target = UncachedRegion;
    fn deref(&self) -> &UncachedRegion {
        &self.0
    }
}

impl core::ops::DerefMut for PoolBlock {
    fn deref_mut(&mut self) -> &mut UncachedRegion {
        &mut self.0
    }
}

/// A pool of equal blocks.
///
/// # Invariants
/// Every address in `free` is a block start inside one of `pages` not handed out; `live`
/// counts the blocks handed out. Blocks never cross a page.
pub struct DmaPool {
    name: &'static str,
    dev: Device,
    block: usize,
    page_bytes: usize,
    pages: Vec<CoherentBuffer>,
    free: Vec<(usize, DmaAddr)>,
    live: usize,
}

impl DmaPool {
    /// `dma_pool_create`: blocks of `size` bytes aligned to `align` (a power of two).
    pub fn create(
        name: &'static str,
        dev: Device,
        size: usize,
        align: usize,
    ) -> Result<DmaPool, DmaError> {
        if size == 0 {
            return Err(DmaError::ZeroLength);
        }
        if !align.is_power_of_two() {
            return Err(DmaError::Config("pool alignment must be a power of two"));
        }
        let block = size.next_multiple_of(align);
        Ok(DmaPool {
            name,
            dev,
            block,
            page_bytes: block.max(4096).next_power_of_two(),
            pages: Vec::new(),
            free: Vec::new(),
            live: 0,
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Blocks handed out.
    pub fn live(&self) -> usize {
        self.live
    }

    /// `dma_pool_alloc`.
    pub fn alloc(&mut self, m: &mut Machine) -> Result<PoolBlock, DmaError> {
        if self.free.is_empty() {
            let page = m.alloc_coherent(&self.dev, self.page_bytes)?;
            let n = page.len() / self.block;
            for k in (0..n).rev() {
                self.free.push((
                    page.cpu_addr() + k * self.block,
                    page.dma_addr().offset(k * self.block),
                ));
            }
            self.pages.push(page);
        }
        let (cpu, dma) = self.free.pop().expect("refilled above");
        self.live += 1;
        Ok(PoolBlock(UncachedRegion::new(
            &self.pages[0].ram,
            cpu,
            dma,
            self.block,
        )))
    }

    /// `dma_pool_free`.
    pub fn free(&mut self, b: PoolBlock) -> Result<(), DmaError> {
        let a = b.cpu_addr();
        let ours = self.pages.iter().any(|p| {
            a >= p.cpu_addr()
                && a < p.cpu_addr() + p.len()
                && (a - p.cpu_addr()).is_multiple_of(self.block)
        });
        if !ours || self.free.iter().any(|&(f, _)| f == a) {
            return Err(DmaError::Pool);
        }
        self.free.push((a, b.dma));
        self.live -= 1;
        Ok(())
    }

    /// `dma_pool_destroy`: gives the pages back; an error (and nothing freed) while blocks are
    /// still out.
    pub fn destroy(&mut self, m: &mut Machine) -> Result<(), DmaError> {
        if self.live > 0 {
            return Err(DmaError::Pool);
        }
        self.free.clear();
        for p in self.pages.drain(..) {
            m.free_coherent(p)?;
        }
        Ok(())
    }
}
