//! The machine and its streaming DMA API: map / unmap / sync of single buffers and scatter
//! lists, with the cache maintenance of DESIGN.md section 3, bouncing, and the checker.
//!
//! Memory model: the RAM is one region the allocator's arena manages. The device reads and
//! writes RAM directly (a coherent device also snoops the cache); the CPU's loads and stores
//! ([`Machine::cpu_read`], [`Machine::cpu_write`], bounce copies) go through the
//! [`CacheModel`]. The allocator's own bookkeeping (free-list links) is kept consistent with the
//! cache by [`Machine::kmalloc`] and [`Machine::kfree`]: `kfree` cleans and invalidates the
//! lines of the slot before the allocator writes its link (an eviction at that moment, which a
//! real CPU may do too), and `kmalloc` refreshes cached copies of the new object from RAM.

use crate::bounce::{BounceError, SwiotlbPool};
use crate::bounce_rule::{
    exact_needs_bounce, line_neighbours, linux_needs_bounce, BounceRule, NeighbourKind,
};
use crate::cache_model::{CacheConfig, CacheModel, CacheStats};
use crate::checker::{Checker, Finding, FindingKind, Party, Role};
use crate::device::Device;
use crate::direction::{Direction, FromDeviceMap};
use crate::ram::Ram;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::panic::Location;
use dmaslab_core::{ArenaPageSource, Config, FreeError, Gfp, Kmalloc, Owner, Policy};

/// A bus address as the device sees it (`dma_addr_t`): the byte's offset in the RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DmaAddr(pub u64);

impl DmaAddr {
    /// The address `n` bytes further.
    pub fn offset(self, n: usize) -> DmaAddr {
        DmaAddr(self.0 + n as u64)
    }
}

impl fmt::Display for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A misuse or a failure of the DMA API, as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A zero-length mapping or allocation.
    ZeroLength,
    /// The memory is not the allocator's (stack, wild address): checker kind (f).
    NotDmaAble {
        /// The address.
        addr: usize,
    },
    /// Allocator memory that is not a live allocation (a free slot, an unused page, metadata).
    NotLive {
        /// The address.
        addr: usize,
    },
    /// The range runs past the end of its allocation.
    OutOfBounds {
        /// First byte.
        addr: usize,
        /// Length asked for.
        len: usize,
    },
    /// The bounce pool could not take the mapping.
    Bounce(BounceError),
    /// The device cannot reach the buffer, and bouncing could not help.
    Unaddressable {
        /// The bus address.
        bus: u64,
        /// Length.
        len: usize,
    },
    /// Unmap or sync of an address that was never mapped: checker kind (e).
    NotMapped(DmaAddr),
    /// Unmap or sync of an address already unmapped: checker kind (e).
    DoubleUnmap(DmaAddr),
    /// Unmap or sync with another size or direction than the mapping's: checker kind (d). The
    /// mapping stays as it was.
    Mismatch {
        /// The mapping.
        dma: DmaAddr,
        /// Its length.
        mapped_len: usize,
        /// Its direction.
        mapped_dir: Direction,
    },
    /// A device access outside every active mapping and coherent allocation.
    DeviceFault {
        /// Bus address.
        dma: DmaAddr,
        /// Length.
        len: usize,
    },
    /// A CPU access outside the RAM.
    OutOfRam {
        /// Address.
        addr: usize,
        /// Length.
        len: usize,
    },
    /// The allocator is out of memory.
    NoMemory,
    /// The allocator refused a free.
    Free(FreeError),
    /// A free of memory that an active mapping still covers.
    StillMapped {
        /// The allocation.
        addr: usize,
    },
    /// A CPU store outside every live allocation (it would overwrite allocator memory).
    NotAllocated {
        /// Address.
        addr: usize,
        /// Length.
        len: usize,
    },
    /// A block freed to a DMA pool it does not belong to, or a pool destroyed while in use.
    Pool,
    /// The machine cannot be built with this configuration.
    Config(&'static str),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::ZeroLength => f.write_str("zero-length DMA buffer"),
            DmaError::NotDmaAble { addr } => {
                write!(
                    f,
                    "{addr:#x} is not allocator memory (stack or wild address)"
                )
            }
            DmaError::NotLive { addr } => write!(f, "{addr:#x} is not a live allocation"),
            DmaError::OutOfBounds { addr, len } => {
                write!(f, "{addr:#x}+{len} runs past its allocation")
            }
            DmaError::Bounce(e) => write!(f, "{e}"),
            DmaError::Unaddressable { bus, len } => {
                write!(
                    f,
                    "bus range {bus:#x}+{len} is beyond the device's DMA mask"
                )
            }
            DmaError::NotMapped(d) => write!(f, "{d} was never mapped"),
            DmaError::DoubleUnmap(d) => write!(f, "{d} is already unmapped"),
            DmaError::Mismatch {
                dma,
                mapped_len,
                mapped_dir,
            } => write!(f, "{dma} was mapped with {mapped_len} bytes {mapped_dir}"),
            DmaError::DeviceFault { dma, len } => {
                write!(f, "device access {dma}+{len} outside any mapping")
            }
            DmaError::OutOfRam { addr, len } => write!(f, "CPU access {addr:#x}+{len} outside RAM"),
            DmaError::NoMemory => f.write_str("out of memory"),
            DmaError::Free(e) => write!(f, "{e}"),
            DmaError::StillMapped { addr } => write!(f, "{addr:#x} is still mapped for DMA"),
            DmaError::NotAllocated { addr, len } => {
                write!(f, "CPU store {addr:#x}+{len} outside any live allocation")
            }
            DmaError::Pool => f.write_str("block does not belong to this DMA pool, or pool busy"),
            DmaError::Config(m) => f.write_str(m),
        }
    }
}

impl From<BounceError> for DmaError {
    fn from(e: BounceError) -> Self {
        DmaError::Bounce(e)
    }
}

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

/// Counters of the DMA layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Successful streaming mappings.
    pub maps: u64,
    /// Of which bounced.
    pub bounces: u64,
    /// Bytes of bounced mappings.
    pub bounced_bytes: u64,
    /// Unmaps.
    pub unmaps: u64,
    /// Syncs (either way).
    pub syncs: u64,
    /// Coherent allocations made.
    pub coherent_allocs: u64,
}

/// An active streaming mapping.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mapping {
    pub(crate) addr: usize,
    pub(crate) len: usize,
    pub(crate) dir: Direction,
    pub(crate) bus: u64,
    pub(crate) bounce: Option<usize>,
    pub(crate) coherent: bool,
    pub(crate) device_owns: bool,
}

impl Mapping {
    fn target(&self) -> usize {
        self.bounce.unwrap_or(self.addr)
    }
}

/// One entry of a [`ScatterList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgEntry {
    /// CPU address of the buffer.
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

/// RAM, a kmalloc heap on it, one CPU data cache, and the DMA mapping layer.
///
/// # Invariants
/// `kmalloc` manages a slice of `ram`'s region and is declared (so dropped) before `ram`; the
/// `'static` of its arena is never exposed. Every entry of `mappings` holds a distinct bus
/// address; a bounced entry owns its buffer in `pool`. `coherent` lists the coherent
/// allocations (uncached for the CPU), which never share a line.
pub struct Machine {
    kmalloc: Kmalloc<ArenaPageSource<'static>>,
    ram: Ram,
    cache: CacheModel,
    line: usize,
    rule: BounceRule,
    from_device_map: FromDeviceMap,
    pool: SwiotlbPool,
    mappings: Vec<Mapping>,
    retired: Vec<Mapping>,
    pub(crate) coherent: Vec<(usize, usize)>,
    checker: Checker,
    stats: DmaStats,
}

const RETIRED_KEPT: usize = 256;

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
        let pool = SwiotlbPool::new(pool_base.as_ptr() as usize, cfg.line, pool_bytes / cfg.line);
        Ok(Machine {
            kmalloc,
            ram,
            cache,
            line: cfg.line,
            rule: cfg.rule,
            from_device_map: cfg.from_device_map,
            pool,
            mappings: Vec::new(),
            retired: Vec::new(),
            coherent: Vec::new(),
            checker: Checker::new(),
            stats: DmaStats::default(),
        })
    }

    // ---- accessors ----

    /// The cache / DMA line.
    pub fn line(&self) -> usize {
        self.line
    }
    /// The allocator's policy.
    pub fn policy(&self) -> Policy {
        self.kmalloc.policy()
    }
    /// The bounce rule.
    pub fn rule(&self) -> BounceRule {
        self.rule
    }
    /// Changes the bounce rule (for comparing rules on one trace).
    pub fn set_rule(&mut self, rule: BounceRule) {
        self.rule = rule;
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
        (addr - self.ram.base()) as u64
    }
    /// Counters.
    pub fn stats(&self) -> DmaStats {
        self.stats
    }
    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }
    /// The bounce pool.
    pub fn pool(&self) -> &SwiotlbPool {
        &self.pool
    }
    /// The checker (e.g. to make it panic).
    pub fn checker_mut(&mut self) -> &mut Checker {
        &mut self.checker
    }
    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        self.checker.findings()
    }
    /// Takes the findings so far.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        self.checker.take()
    }
    /// Active streaming mappings.
    pub fn active_mappings(&self) -> usize {
        self.mappings.len()
    }
    /// Who owns `addr` (the allocator's answer; `Foreign` outside the RAM).
    pub fn owner_of(&self, addr: usize) -> Owner {
        if self.ram.contains(addr, 1) {
            self.kmalloc.owner_of(addr)
        } else {
            Owner::Foreign
        }
    }
    /// `kmalloc_size_roundup`.
    pub fn kmalloc_size_roundup(&self, size: usize) -> usize {
        self.kmalloc.kmalloc_size_roundup(size)
    }
    /// Is the line holding `addr` in the cache? Dirty?
    pub fn cache_state(&self, addr: usize) -> (bool, bool) {
        (self.cache.is_cached(addr), self.cache.is_dirty(addr))
    }

    /// The line the bounce rules use for `dev`.
    fn rule_line(&self, dev: &Device) -> usize {
        dev.dma_line.max(self.line)
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
        let line = self.rule_line(dev);
        match rule {
            BounceRule::Exact => {
                exact_needs_bounce(dev.coherent, dir, addr, len, line, |a| self.owner_of(a))
            }
            BounceRule::LinuxSize => linux_needs_bounce(
                dev.coherent,
                dir,
                self.kmalloc.kmalloc_size_roundup(len),
                line,
            ),
            BounceRule::Never => false,
        }
    }

    // ---- the allocator, kept consistent with the cache ----

    /// `kmalloc`, returning the CPU address.
    #[track_caller]
    pub fn kmalloc(&mut self, size: usize, gfp: Gfp) -> Option<usize> {
        self.kmalloc_aligned(size, 1, gfp)
    }

    /// `kmalloc` with an alignment.
    #[track_caller]
    pub fn kmalloc_aligned(&mut self, size: usize, align: usize, gfp: Gfp) -> Option<usize> {
        let site = Location::caller();
        let p = self.kmalloc.kmalloc_aligned(size, align, gfp)?.as_ptr() as usize;
        let (start, len) = self.span_of(p).unwrap_or((p, size.max(1)));
        self.cache.refresh_from(&self.ram, start, len);
        // A new object landing in a line a device is writing: kind (a), named at allocation.
        let obj = Party {
            role: Role::Object { live: true },
            addr: start,
            size: len,
            line: start & !(self.line - 1),
        };
        let line = self.line;
        let hits: Vec<Mapping> = self
            .mappings
            .iter()
            .filter(|m| {
                !m.coherent
                    && m.bounce.is_none()
                    && m.dir.device_writes()
                    && lines_overlap(m.addr, m.len, start, len, line)
            })
            .copied()
            .collect();
        for m in hits {
            let shared = shared_line(m.addr, m.len, start, len, line);
            self.checker.report(Finding {
                kind: FindingKind::SharedCacheLine,
                subject: self.mapping_party(&m),
                other: Some(obj),
                line: shared,
                site,
            });
        }
        Some(p)
    }

    /// `kfree` of a CPU address from [`kmalloc`](Self::kmalloc).
    pub fn kfree(&mut self, p: usize) -> Result<(), DmaError> {
        let Some((start, len)) = self.span_of(p) else {
            return Err(DmaError::Free(FreeError::InvalidPointer(p)));
        };
        if self
            .mappings
            .iter()
            .any(|m| m.addr < start + len && start < m.addr + m.len)
        {
            return Err(DmaError::StillMapped { addr: p });
        }
        // The allocator writes its free-list link into the slot: the slot's lines leave the
        // cache first so that cache and RAM agree on allocator bytes.
        self.cache.flush_range(&self.ram, start, len);
        let ptr = self.ram.ptr(p);
        // SAFETY: `ptr` is inside this allocator's RAM with its provenance; `kfree` checks that it
        // is a live allocation and rejects anything else with an error. The machine holds no
        // reference into the object; the caller gives the address up.
        unsafe { self.kmalloc.kfree(ptr) }.map_err(DmaError::Free)
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

    #[track_caller]
    fn check_cpu_access(&mut self, addr: usize, len: usize, write: bool) {
        let site = Location::caller();
        let line = self.line;
        let hits: Vec<Mapping> = self
            .mappings
            .iter()
            .filter(|m| {
                m.device_owns
                    && m.dir.device_writes()
                    && addr < m.addr + m.len
                    && m.addr < addr + len
            })
            .copied()
            .collect();
        for m in hits {
            self.checker.report(Finding {
                kind: FindingKind::CpuAccessWhileMapped,
                subject: Party {
                    role: Role::CpuAccess { write },
                    addr,
                    size: len,
                    line: addr & !(line - 1),
                },
                other: Some(self.mapping_party(&m)),
                line: addr.max(m.addr) & !(line - 1),
                site,
            });
        }
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
        self.check_cpu_access(addr, buf.len(), false);
        if self.is_uncached(addr) {
            self.ram.read(addr, buf);
        } else {
            self.cache.read(&self.ram, addr, buf);
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
        self.check_cpu_access(addr, data.len(), true);
        if self.is_uncached(addr) {
            self.ram.write(addr, data);
        } else {
            self.cache.write(&self.ram, addr, data);
        }
        Ok(())
    }

    /// Forces the eviction of the line holding `addr` now; whether it was cached.
    pub fn evict(&mut self, addr: usize) -> bool {
        self.cache.evict(&self.ram, addr)
    }

    /// Evicts a line chosen by the seeded generator.
    pub fn evict_random(&mut self) -> Option<usize> {
        self.cache.evict_random(&self.ram)
    }

    /// Writes back and empties the whole cache.
    pub fn flush_cache(&mut self) {
        self.cache.flush_all(&self.ram);
    }

    /// The CPU address behind bus range `dma .. dma + len`, if an active mapping or a coherent
    /// allocation covers it.
    fn device_target(&self, dma: DmaAddr, len: usize) -> Option<usize> {
        let base = self.ram.base() as u64;
        for m in &self.mappings {
            if dma.0 >= m.bus && dma.0 + len as u64 <= m.bus + m.len as u64 {
                return Some(m.target() + (dma.0 - m.bus) as usize);
            }
        }
        let cpu = (dma.0 + base) as usize;
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
            self.cache.refresh_from(&self.ram, t, data.len());
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
            self.cache.snoop_read(&self.ram, t, buf);
        } else {
            self.ram.read(t, buf);
        }
        Ok(())
    }

    // ---- maintenance (DESIGN.md section 3) ----

    /// map / sync_for_device: clean, or invalidate for `FromDevice` when so configured.
    fn for_device(&mut self, coherent: bool, addr: usize, len: usize, dir: Direction) {
        if coherent {
            return;
        }
        match (dir, self.from_device_map) {
            (Direction::FromDevice, FromDeviceMap::Invalidate) => {
                self.cache.invalidate_range(addr, len)
            }
            _ => self.cache.clean_range(&self.ram, addr, len),
        }
    }

    /// unmap / sync_for_cpu: nothing for `ToDevice`, invalidate otherwise.
    fn for_cpu(&mut self, coherent: bool, addr: usize, len: usize, dir: Direction) {
        if !coherent && dir.device_writes() {
            self.cache.invalidate_range(addr, len);
        }
    }

    /// Copies `len` bytes from `src` to `dst` with CPU loads and stores (through the cache).
    fn cpu_copy(&mut self, src: usize, dst: usize, len: usize) {
        let mut tmp = vec![0u8; len];
        self.cache.read(&self.ram, src, &mut tmp);
        self.cache.write(&self.ram, dst, &tmp);
    }

    fn mapping_party(&self, m: &Mapping) -> Party {
        Party {
            role: Role::Mapping(m.dir),
            addr: m.addr,
            size: m.len,
            line: m.addr & !(self.line - 1),
        }
    }

    // ---- streaming mappings ----

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
        let site = Location::caller();
        if len == 0 {
            return Err(DmaError::ZeroLength);
        }
        let line = self.rule_line(dev);
        let owner = if self.ram.contains(addr, len) {
            self.kmalloc.owner_of(addr)
        } else {
            Owner::Foreign
        };
        let subject = Party {
            role: Role::Mapping(dir),
            addr,
            size: len,
            line: addr & !(self.line - 1),
        };
        let (start, size) = match owner {
            Owner::Object {
                start,
                size,
                live: true,
                ..
            }
            | Owner::Large { start, size } => (start, size),
            Owner::Foreign => {
                self.checker.report(Finding {
                    kind: FindingKind::NotDmaAble,
                    subject,
                    other: Some(Party {
                        role: Role::Foreign,
                        addr,
                        size: len,
                        line: subject.line,
                    }),
                    line: subject.line,
                    site,
                });
                return Err(DmaError::NotDmaAble { addr });
            }
            other => {
                let (role, a, s) = match other {
                    Owner::Object { start, size, .. } => {
                        (Role::Object { live: false }, start, size)
                    }
                    Owner::Metadata { start, size } => (Role::Metadata, start, size),
                    _ => (Role::NotLive, addr, len),
                };
                self.checker.report(Finding {
                    kind: FindingKind::NotDmaAble,
                    subject,
                    other: Some(Party {
                        role,
                        addr: a,
                        size: s,
                        line: a & !(self.line - 1),
                    }),
                    line: subject.line,
                    site,
                });
                return Err(DmaError::NotLive { addr });
            }
        };
        if addr + len > start + size {
            return Err(DmaError::OutOfBounds { addr, len });
        }
        let bus = self.phys(addr);
        let mut bounce = !dev.coherent && self.would_bounce(self.rule, dev, addr, len, dir);
        if !dev.reaches(bus, len) {
            bounce = true;
        }
        if bounce {
            // Reserve before reporting anything: exhaustion leaves no trace but the error.
            let b = self.pool.alloc(len)?;
            let bbus = self.phys(b);
            if !dev.reaches(bbus, len) {
                self.pool.free(b).expect("just allocated");
                return Err(DmaError::Unaddressable { bus, len });
            }
            self.check_overlaps(addr, len, dir, subject, site);
            if dir.device_reads() {
                self.cpu_copy(addr, b, len);
            }
            self.for_device(dev.coherent, b, len, dir);
            self.stats.bounces += 1;
            self.stats.bounced_bytes += len as u64;
            self.insert(Mapping {
                addr,
                len,
                dir,
                bus: bbus,
                bounce: Some(b),
                coherent: dev.coherent,
                device_owns: true,
            });
            return Ok(DmaAddr(bbus));
        }
        if !dev.coherent && dir.device_writes() {
            for n in line_neighbours(addr, len, line, |a| self.owner_of(a)) {
                let role = match n.kind {
                    NeighbourKind::Object { live: true } => Role::Object { live: true },
                    NeighbourKind::Large => Role::Object { live: true },
                    NeighbourKind::Metadata => Role::Metadata,
                    NeighbourKind::Object { live: false } => continue,
                };
                self.checker.report(Finding {
                    kind: FindingKind::SharedCacheLine,
                    subject,
                    other: Some(Party {
                        role,
                        addr: n.start,
                        size: n.size,
                        line: n.line,
                    }),
                    line: n.line,
                    site,
                });
            }
        }
        self.check_overlaps(addr, len, dir, subject, site);
        self.for_device(dev.coherent, addr, len, dir);
        self.insert(Mapping {
            addr,
            len,
            dir,
            bus,
            bounce: None,
            coherent: dev.coherent,
            device_owns: true,
        });
        Ok(DmaAddr(bus))
    }

    fn insert(&mut self, m: Mapping) {
        self.retired.retain(|r| r.bus != m.bus);
        self.mappings.push(m);
        self.stats.maps += 1;
    }

    /// Kind (b): the new mapping against every active one.
    fn check_overlaps(
        &mut self,
        addr: usize,
        len: usize,
        dir: Direction,
        subject: Party,
        site: &'static Location<'static>,
    ) {
        let line = self.line;
        let hits: Vec<Mapping> = self
            .mappings
            .iter()
            .filter(|m| {
                !(m.dir == Direction::ToDevice && dir == Direction::ToDevice)
                    && lines_overlap(m.addr, m.len, addr, len, line)
            })
            .copied()
            .collect();
        for m in hits {
            self.checker.report(Finding {
                kind: FindingKind::OverlappingMappings,
                subject,
                other: Some(self.mapping_party(&m)),
                line: shared_line(m.addr, m.len, addr, len, line),
                site,
            });
        }
    }

    /// Finds the active mapping at `dma`, checking size and direction; reports (d) and (e).
    fn lookup(
        &mut self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        site: &'static Location<'static>,
    ) -> Result<usize, DmaError> {
        let line = self.line;
        let base = self.ram.base();
        let call = Party {
            role: Role::Call(dir),
            addr: base.wrapping_add(dma.0 as usize),
            size: len,
            line: base.wrapping_add(dma.0 as usize) & !(line - 1),
        };
        let Some(i) = self.mappings.iter().position(|m| m.bus == dma.0) else {
            let old = self.retired.iter().rev().find(|m| m.bus == dma.0).copied();
            let (kind, err) = match old {
                Some(_) => (FindingKind::DoubleUnmap, DmaError::DoubleUnmap(dma)),
                None => (FindingKind::NeverMapped, DmaError::NotMapped(dma)),
            };
            let other = old.map(|m| self.mapping_party(&m));
            self.checker.report(Finding {
                kind,
                subject: call,
                other,
                line: call.line,
                site,
            });
            return Err(err);
        };
        let m = self.mappings[i];
        if m.len != len || m.dir != dir {
            let mut subject = call;
            subject.addr = m.addr;
            subject.line = m.addr & !(line - 1);
            self.checker.report(Finding {
                kind: FindingKind::WrongSizeOrDirection,
                subject,
                other: Some(self.mapping_party(&m)),
                line: subject.line,
                site,
            });
            return Err(DmaError::Mismatch {
                dma,
                mapped_len: m.len,
                mapped_dir: m.dir,
            });
        }
        Ok(i)
    }

    /// Gives mapping `i` to the CPU: invalidate, then copy a bounce buffer out.
    fn give_to_cpu(&mut self, i: usize) {
        let m = self.mappings[i];
        self.for_cpu(m.coherent, m.target(), m.len, m.dir);
        if let Some(b) = m.bounce {
            if m.dir.device_writes() {
                self.cpu_copy(b, m.addr, m.len);
            }
        }
        self.mappings[i].device_owns = false;
    }

    /// `dma_unmap_single`.
    #[track_caller]
    pub fn unmap_single(
        &mut self,
        _dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        let i = self.lookup(dma, len, dir, Location::caller())?;
        self.give_to_cpu(i);
        let m = self.mappings.swap_remove(i);
        if let Some(b) = m.bounce {
            self.pool
                .free(b)
                .expect("a bounced mapping owns its buffer");
        }
        if self.retired.len() >= RETIRED_KEPT {
            self.retired.remove(0);
        }
        self.retired.push(m);
        self.stats.unmaps += 1;
        Ok(())
    }

    /// `dma_sync_single_for_cpu`: the CPU may look at the buffer.
    #[track_caller]
    pub fn sync_single_for_cpu(
        &mut self,
        _dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        let i = self.lookup(dma, len, dir, Location::caller())?;
        self.give_to_cpu(i);
        self.stats.syncs += 1;
        Ok(())
    }

    /// `dma_sync_single_for_device`: the device owns the buffer again.
    #[track_caller]
    pub fn sync_single_for_device(
        &mut self,
        _dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        let i = self.lookup(dma, len, dir, Location::caller())?;
        let m = self.mappings[i];
        if let Some(b) = m.bounce {
            if m.dir.device_reads() {
                self.cpu_copy(m.addr, b, m.len);
            }
        }
        self.for_device(m.coherent, m.target(), m.len, m.dir);
        self.mappings[i].device_owns = true;
        self.stats.syncs += 1;
        Ok(())
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
        for k in 0..sg.entries.len() {
            let e = sg.entries[k];
            match self.map_single(dev, e.addr, e.len, dir) {
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

    pub(crate) fn note_coherent_alloc(&mut self) {
        self.stats.coherent_allocs += 1;
    }

    pub(crate) fn flush_range(&mut self, addr: usize, len: usize) {
        self.cache.flush_range(&self.ram, addr, len);
    }
}

/// Do `a .. a + al` and `b .. b + bl` touch a common `line`?
fn lines_overlap(a: usize, al: usize, b: usize, bl: usize, line: usize) -> bool {
    let (a0, a1) = (a & !(line - 1), (a + al - 1) & !(line - 1));
    let (b0, b1) = (b & !(line - 1), (b + bl - 1) & !(line - 1));
    a0 <= b1 && b0 <= a1
}

/// The first line two overlapping ranges share.
fn shared_line(a: usize, al: usize, b: usize, bl: usize, line: usize) -> usize {
    let _ = (al, bl);
    (a & !(line - 1)).max(b & !(line - 1))
}
