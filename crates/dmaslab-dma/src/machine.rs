//! The model machine: simulated RAM, a kmalloc heap on it, one CPU data cache (the
//! [`ModelBackend`]) and the generic map path over them — what `dmaslab demo` and the tests run.
//!
//! Memory model: the device reads and writes RAM directly (a coherent device also snoops the
//! cache); the CPU's loads and stores ([`Machine::cpu_read`], [`Machine::cpu_write`], bounce
//! copies) go through the cache model. The allocator's own bookkeeping (free-list links) is
//! kept consistent with the cache by [`Machine::kmalloc`] and [`Machine::kfree`] (see
//! `machine_memory.rs`).

use crate::bounce::SwiotlbPool;
use crate::bounce_rule::BounceRule;
use crate::cache_model::{CacheConfig, CacheModel, CacheStats};
use crate::checker::{Checker, Finding};
use crate::device::Device;
use crate::direction::{Direction, FromDeviceMap};
use crate::dma_map::DmaMap;
use crate::error::{DmaAddr, DmaError, DmaStats};
use crate::maintenance::CacheMaintenance;
use crate::model_backend::ModelBackend;
use crate::ram::Ram;
use crate::scatterlist::ScatterList;
use alloc::vec::Vec;
use core::panic::Location;
use dmaslab_core::{ArenaPageSource, Config, Gfp, Kmalloc, Owner, Policy};

/// How to build a [`Machine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// The kmalloc policy.
    pub policy: Policy,
    /// The cache line, which is also the allocator's DMA line: 32, 64, 128 or 256.
    pub line: usize,
    /// Bytes of RAM (a power of two; the region is aligned to its size so layouts replay).
    pub ram_bytes: usize,
    /// Allocator segment order (pages per segment, log2).
    pub seg_order: u32,
    /// Cache capacity in bytes.
    pub cache_bytes: usize,
    /// Cache associativity.
    pub cache_ways: usize,
    /// Seed of the cache's victim choice.
    pub seed: u64,
    /// Bytes of the bounce pool.
    pub bounce_bytes: usize,
    /// The bounce rule; by default [`BounceRule::Exact`] under policy C, else
    /// [`BounceRule::Never`].
    pub rule: BounceRule,
    /// Map-time maintenance of `FromDevice` buffers.
    pub from_device_map: FromDeviceMap,
}

impl MachineConfig {
    /// `policy` with 64-byte lines, 4 MiB of RAM, a 32 KiB 4-way cache and a 64 KiB bounce pool.
    pub const fn new(policy: Policy) -> Self {
        MachineConfig {
            policy,
            line: 64,
            ram_bytes: 4 << 20,
            seg_order: 6,
            cache_bytes: 32 * 1024,
            cache_ways: 4,
            seed: 0x5eed,
            bounce_bytes: 64 * 1024,
            rule: match policy {
                Policy::C => BounceRule::Exact,
                _ => BounceRule::Never,
            },
            from_device_map: FromDeviceMap::Clean,
        }
    }
    /// Sets the line.
    pub const fn line(mut self, line: usize) -> Self {
        self.line = line;
        self
    }
    /// Sets the RAM size.
    pub const fn ram_bytes(mut self, n: usize) -> Self {
        self.ram_bytes = n;
        self
    }
    /// Sets cache capacity and associativity.
    pub const fn cache(mut self, bytes: usize, ways: usize) -> Self {
        self.cache_bytes = bytes;
        self.cache_ways = ways;
        self
    }
    /// Sets the seed.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the bounce pool size.
    pub const fn bounce_bytes(mut self, n: usize) -> Self {
        self.bounce_bytes = n;
        self
    }
    /// Sets the bounce rule.
    pub const fn rule(mut self, rule: BounceRule) -> Self {
        self.rule = rule;
        self
    }
    /// Sets map-time maintenance for `FromDevice`.
    pub const fn from_device_map(mut self, m: FromDeviceMap) -> Self {
        self.from_device_map = m;
        self
    }
}

/// The model's heap.
pub(crate) type ModelHeap = Kmalloc<ArenaPageSource<'static>>;

/// RAM, a kmalloc heap on it, one CPU data cache, and the DMA mapping layer.
///
/// # Invariants
/// The heap (inside `map`) manages a slice of `ram`'s region and is dropped before `ram` (field
/// order); the `'static` of its arena is never exposed. `coherent` lists the coherent
/// allocations (uncached for the CPU), which never share a line.
pub struct Machine {
    pub(crate) map: DmaMap<ModelBackend, ModelHeap>,
    pub(crate) ram: Ram,
    pub(crate) coherent: Vec<(usize, usize)>,
}

impl Machine {
    /// Builds the machine.
    pub fn new(cfg: MachineConfig) -> Result<Machine, DmaError> {
        if ![32, 64, 128, 256].contains(&cfg.line) {
            return Err(DmaError::Config("line must be 32, 64, 128 or 256"));
        }
        if !cfg.ram_bytes.is_power_of_two() || cfg.ram_bytes < 1 << 20 {
            return Err(DmaError::Config(
                "RAM must be a power of two of at least 1 MiB",
            ));
        }
        let cache = CacheModel::new(
            CacheConfig::new(cfg.line)
                .geometry(cfg.cache_bytes, cfg.cache_ways)
                .seed(cfg.seed),
        )
        .ok_or(DmaError::Config("bad cache geometry"))?;
        let (region, slice) = Ram::allocate(cfg.ram_bytes, cfg.ram_bytes)
            .ok_or(DmaError::Config("cannot allocate RAM"))?;
        let arena = ArenaPageSource::new(slice).map_err(|_| DmaError::Config("RAM too small"))?;
        let kmalloc = Kmalloc::new(
            arena,
            Config::new(cfg.policy)
                .dma_minalign(cfg.line)
                .seg_order(cfg.seg_order),
        )
        .map_err(|_| DmaError::Config("allocator configuration rejected"))?;
        let pool_bytes = cfg.bounce_bytes.next_multiple_of(cfg.line).max(cfg.line);
        let pool_base = kmalloc
            .kmalloc_aligned(pool_bytes, kmalloc.page_size(), Gfp::KERNEL)
            .ok_or(DmaError::Config("bounce pool does not fit the RAM"))?;
        // The pool's pointer is the RAM's anchor: page-aligned, so it shares no line.
        let ram = Ram::new(region, pool_base);
        let (pool_ptr, slots) = (pool_base.as_ptr(), pool_bytes / cfg.line);
        // SAFETY: the pool's page run is a live allocation of the machine's heap, zeroed at
        // creation, aligned to a page (so to the line), never freed and used by nobody else;
        // its pointer carries the region's provenance.
        let pool = unsafe { SwiotlbPool::from_raw(pool_ptr, cfg.line, slots) };
        let backend = ModelBackend::new(cache, ram.clone(), cfg.from_device_map);
        let map = DmaMap::new(backend, kmalloc, pool, cfg.rule).with_bus_base(ram.base());
        Ok(Machine {
            map,
            ram,
            coherent: Vec::new(),
        })
    }

    // ---- accessors ----

    /// The cache / DMA line.
    pub fn line(&self) -> usize {
        self.map.line()
    }
    /// The allocator's policy.
    pub fn policy(&self) -> Policy {
        self.map.heap().policy()
    }
    /// The bounce rule.
    pub fn rule(&self) -> BounceRule {
        self.map.rule()
    }
    /// Changes the bounce rule (for comparing rules on one trace).
    pub fn set_rule(&mut self, rule: BounceRule) {
        self.map.set_rule(rule);
    }
    /// First address of the RAM.
    pub fn ram_base(&self) -> usize {
        self.ram.base()
    }
    pub(crate) fn ram(&self) -> &Ram {
        &self.ram
    }
    /// The bus address of CPU address `addr`.
    pub fn phys(&self, addr: usize) -> u64 {
        self.map.bus_of(addr)
    }
    /// Counters.
    pub fn stats(&self) -> DmaStats {
        self.map.stats()
    }
    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.map.backend().stats()
    }
    /// The bounce pool.
    pub fn pool(&self) -> &SwiotlbPool {
        self.map.pool()
    }
    /// The checker (e.g. to make it panic).
    pub fn checker_mut(&mut self) -> &mut Checker {
        self.map.checker_mut()
    }
    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        self.map.findings()
    }
    /// Takes the findings so far.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        self.map.take_findings()
    }
    /// Active streaming mappings.
    pub fn active_mappings(&self) -> usize {
        self.map.active_mappings()
    }
    /// Who owns `addr` (the allocator's answer; `Foreign` outside the RAM).
    pub fn owner_of(&self, addr: usize) -> Owner {
        if self.ram.contains(addr, 1) {
            self.map.heap().owner_of(addr)
        } else {
            Owner::Foreign
        }
    }
    /// `kmalloc_size_roundup`.
    pub fn kmalloc_size_roundup(&self, size: usize) -> usize {
        self.map.heap().kmalloc_size_roundup(size)
    }
    /// Is the line holding `addr` in the cache? Dirty?
    pub fn cache_state(&self, addr: usize) -> (bool, bool) {
        let c = self.map.backend().cache();
        (c.is_cached(addr), c.is_dirty(addr))
    }

    /// Would `rule` bounce this mapping for sharing (ignoring the address mask)?
    pub fn would_bounce(
        &self,
        rule: BounceRule,
        dev: &Device,
        addr: usize,
        len: usize,
        dir: Direction,
    ) -> bool {
        self.map.would_bounce(rule, dev, addr, len, dir)
    }

    // ---- streaming mappings: the generic map path on the RAM's pointers ----

    /// `dma_map_single`: maps `addr .. addr + len` for `dev`; returns the bus address (of the
    /// bounce buffer when bounced).
    #[track_caller]
    pub fn map_single(
        &mut self,
        dev: &Device,
        addr: usize,
        len: usize,
        dir: Direction,
    ) -> Result<DmaAddr, DmaError> {
        let buf = self.ram.ptr_or_foreign(addr);
        // SAFETY: the model's memory is the simulated RAM: the backend reaches it only by
        // address through `Ram`, which bounds-checks, and no reference into it exists; `kfree`
        // refuses to free a mapped range; memory outside the RAM is refused by the check.
        unsafe { self.map.map_single(dev, buf, len, dir) }
    }

    /// `dma_unmap_single`.
    #[track_caller]
    pub fn unmap_single(
        &mut self,
        dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        self.map.unmap_single(dev, dma, len, dir)
    }

    /// `dma_sync_single_for_cpu`: the CPU may look at the buffer.
    #[track_caller]
    pub fn sync_single_for_cpu(
        &mut self,
        dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        self.map.sync_single_for_cpu(dev, dma, len, dir)
    }

    /// `dma_sync_single_for_device`: the device owns the buffer again.
    #[track_caller]
    pub fn sync_single_for_device(
        &mut self,
        dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        self.map.sync_single_for_device(dev, dma, len, dir)
    }

    /// `dma_map_sg`: maps every entry; on failure unmaps what this call mapped and returns the
    /// error. Returns the number of entries mapped.
    #[track_caller]
    pub fn map_sg(
        &mut self,
        dev: &Device,
        sg: &mut ScatterList,
        dir: Direction,
    ) -> Result<usize, DmaError> {
        let ram = &self.ram;
        // SAFETY: as in `map_single`, for each entry.
        unsafe {
            self.map
                .map_sg_by(dev, sg, dir, |a| ram.ptr_or_foreign(a), Location::caller())
        }
    }

    /// `dma_unmap_sg`: unmaps every mapped entry; the first error, after trying them all.
    #[track_caller]
    pub fn unmap_sg(
        &mut self,
        dev: &Device,
        sg: &mut ScatterList,
        dir: Direction,
    ) -> Result<(), DmaError> {
        self.map.unmap_sg(dev, sg, dir)
    }

    /// `dma_sync_sg_for_cpu`.
    #[track_caller]
    pub fn sync_sg_for_cpu(
        &mut self,
        dev: &Device,
        sg: &ScatterList,
        dir: Direction,
    ) -> Result<(), DmaError> {
        self.map.sync_sg_for_cpu(dev, sg, dir)
    }

    /// `dma_sync_sg_for_device`.
    #[track_caller]
    pub fn sync_sg_for_device(
        &mut self,
        dev: &Device,
        sg: &ScatterList,
        dir: Direction,
    ) -> Result<(), DmaError> {
        self.map.sync_sg_for_device(dev, sg, dir)
    }

    pub(crate) fn note_coherent_alloc(&mut self) {
        self.map.stats_mut().coherent_allocs += 1;
    }

    /// Cleans and invalidates the range (no cached copy outlives what comes next).
    pub(crate) fn flush_range(&mut self, addr: usize, len: usize) {
        self.map.backend_mut().clean_invalidate(addr, len);
    }
}
