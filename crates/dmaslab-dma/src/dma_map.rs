//! The streaming DMA map path, generic over the cache maintenance backend and the heap: the
//! same code maps a buffer of the model's simulated RAM ([`crate::Machine`]) and a real
//! buffer on a Cortex-M7.
//!
//! `map_single` reads one way: **check** (the [`Checker`]: may this memory be mapped?) →
//! **decide** (the [`BounceRule`] and the device's mask: the buffer itself, or a bounce buffer
//! reserved now) → check what the device's memory shares (findings (a), (b)) → **maintain**
//! (copy into the bounce buffer, then the backend's clean or invalidate) → **record** the
//! mapping. Unmap and sync look the mapping up (findings (d), (e)) and maintain the other way.

use crate::bounce::SwiotlbPool;
use crate::bounce_rule::BounceRule;
use crate::checker::{Checker, Finding, Role};
use crate::checks::party;
use crate::device::Device;
use crate::direction::Direction;
use crate::error::{DmaAddr, DmaError, DmaStats};
use crate::heap_layout::HeapLayout;
use crate::maintenance::{for_cpu, for_device, CacheMaintenance};
use crate::mapping::{Mapping, MappingTable};
use alloc::vec::Vec;
use core::panic::Location;

/// The streaming DMA mapping layer over backend `B` and heap `H`.
///
/// Bus addresses are CPU addresses minus a base ([`DmaMap::with_bus_base`]; 0 by default, as on
/// a Cortex-M, where the DMA masters see the CPU's addresses).
///
/// # Invariants
/// `heap` is declared first so it is dropped before `backend` (the model's backend holds the
/// RAM the model's heap lives in). Every active mapping in `table` that is bounced owns its
/// buffer in `pool`; its pointers are those `map_single`'s caller lent, under its contract.
pub struct DmaMap<B, H> {
    heap: H,
    backend: B,
    rule: BounceRule,
    bus_base: usize,
    pool: SwiotlbPool,
    table: MappingTable,
    checker: Checker,
    stats: DmaStats,
}

impl<B: CacheMaintenance, H: HeapLayout> DmaMap<B, H> {
    /// The map path over `backend`, for buffers of `heap`, bouncing by `rule` into `pool`.
    pub fn new(backend: B, heap: H, pool: SwiotlbPool, rule: BounceRule) -> Self {
        DmaMap {
            heap,
            backend,
            rule,
            bus_base: 0,
            pool,
            table: MappingTable::default(),
            checker: Checker::new(),
            stats: DmaStats::default(),
        }
    }

    /// Bus address 0 is CPU address `base`.
    pub fn with_bus_base(mut self, base: usize) -> Self {
        self.bus_base = base;
        self
    }

    // ---- accessors ----

    /// The CPU's cache line (the backend's).
    pub fn line(&self) -> usize {
        self.backend.line_size()
    }
    /// The bounce rule.
    pub fn rule(&self) -> BounceRule {
        self.rule
    }
    /// Changes the bounce rule (for comparing rules on one trace).
    pub fn set_rule(&mut self, rule: BounceRule) {
        self.rule = rule;
    }
    /// The heap.
    pub fn heap(&self) -> &H {
        &self.heap
    }
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The backend, mutably (e.g. the model's cache for CPU accesses).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    /// The bounce pool.
    pub fn pool(&self) -> &SwiotlbPool {
        &self.pool
    }
    /// Counters.
    pub fn stats(&self) -> DmaStats {
        self.stats
    }
    pub(crate) fn stats_mut(&mut self) -> &mut DmaStats {
        &mut self.stats
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
        self.table.len()
    }
    pub(crate) fn table(&self) -> &MappingTable {
        &self.table
    }
    /// The checker and the mappings it checks against, for the model's CPU and allocator.
    pub(crate) fn checker_and_table(&mut self) -> (&mut Checker, &MappingTable) {
        (&mut self.checker, &self.table)
    }
    /// The bus address of CPU address `addr`.
    pub fn bus_of(&self, addr: usize) -> u64 {
        addr.wrapping_sub(self.bus_base) as u64
    }
    /// The CPU address of bus address `dma`.
    pub fn cpu_of(&self, dma: DmaAddr) -> usize {
        self.bus_base.wrapping_add(dma.0 as usize)
    }

    /// The line the bounce rules use for `dev`: the larger of its DMA line and the CPU's.
    pub fn rule_line(&self, dev: &Device) -> usize {
        dev.dma_line.max(self.line())
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
        rule.needs_bounce(&self.heap, dev, addr, len, dir, self.rule_line(dev))
    }

    // ---- streaming mappings ----

    /// `dma_map_single`: maps `buf .. buf + len` for `dev`; returns the bus address the device
    /// is to use (its bounce buffer's when bounced).
    ///
    /// # Safety
    /// - `buf .. buf + len` must be valid for reads and writes and stay allocated until
    ///   [`unmap_single`](Self::unmap_single) of the returned address returns.
    /// - While the device owns it (from this call or `sync_single_for_device` until
    ///   `sync_single_for_cpu` or unmap), nothing but the device may access it: no reference to
    ///   it may exist and the CPU must not load or store it.
    /// - The CPU must not write, while the device owns the buffer, other bytes of the buffer's
    ///   first and last cache lines, except bytes of other heap objects when the rule is
    ///   [`BounceRule::Exact`] (it bounces exactly the mappings where they would be hit). With
    ///   a backend that invalidates `FromDevice` buffers at map, those lines must hold no dirty
    ///   data the CPU still needs when this is called.
    ///
    /// Misuse the checker can see (memory not of the heap or not live, a range past its
    /// allocation) is refused with an error before anything is touched.
    #[track_caller]
    pub unsafe fn map_single(
        &mut self,
        dev: &Device,
        buf: *mut u8,
        len: usize,
        dir: Direction,
    ) -> Result<DmaAddr, DmaError> {
        // SAFETY: the caller's contract.
        unsafe { self.map_at(dev, buf, len, dir, Location::caller()) }
    }

    /// [`map_single`](Self::map_single) with the call site given.
    ///
    /// # Safety
    /// As `map_single`.
    pub(crate) unsafe fn map_at(
        &mut self,
        dev: &Device,
        buf: *mut u8,
        len: usize,
        dir: Direction,
        site: &'static Location<'static>,
    ) -> Result<DmaAddr, DmaError> {
        if len == 0 {
            return Err(DmaError::ZeroLength);
        }
        let (addr, line, rule_line) = (buf.addr(), self.line(), self.rule_line(dev));
        let subject = party(Role::Mapping(dir), addr, len, line);
        // Check: only a live allocation of the heap, in bounds, may be mapped.
        self.checker.check_target(&self.heap, subject, line, site)?;
        // Decide: bounce for sharing, or because the device cannot reach the buffer. The
        // bounce buffer is reserved before anything is reported: exhaustion leaves no trace
        // but the error.
        let bus = self.bus_of(addr);
        let share = !dev.coherent
            && self
                .rule
                .needs_bounce(&self.heap, dev, addr, len, dir, rule_line);
        let bounce = if share || !dev.reaches(bus, len) {
            let b = self.pool.alloc(len)?;
            if !dev.reaches(self.bus_of(b), len) {
                self.pool.free(b).expect("just allocated");
                return Err(DmaError::Unaddressable { bus, len });
            }
            Some((b, self.pool.ptr(b)))
        } else {
            None
        };
        let writes_buffer = bounce.is_none() && !dev.coherent && dir.device_writes();
        self.checker.check_sharing(
            &self.heap,
            &self.table,
            subject,
            dir,
            writes_buffer,
            rule_line,
            line,
            site,
        );
        let m = Mapping {
            addr,
            ptr: buf,
            len,
            dir,
            bus: bounce.map_or(bus, |(b, _)| self.bus_of(b)),
            bounce,
            coherent: dev.coherent,
            device_owns: true,
        };
        // Maintain.
        // SAFETY: `buf` is valid and the device's from now (caller's contract); the bounce
        // buffer was reserved for this mapping above.
        unsafe { self.give_to_device(&m) };
        // Record.
        if bounce.is_some() {
            self.stats.bounces += 1;
            self.stats.bounced_bytes += len as u64;
        }
        self.stats.maps += 1;
        self.table.insert(m);
        Ok(DmaAddr(m.bus))
    }

    /// Copy-in (a bounced mapping the device reads), then clean or invalidate.
    ///
    /// # Safety
    /// `m` is a mapping of this map whose buffer is valid (map's contract) and whose bounce
    /// buffer, if any, is reserved for it.
    unsafe fn give_to_device(&mut self, m: &Mapping) {
        if let Some((_, b)) = m.bounce {
            if m.dir.device_reads() {
                // SAFETY: both ranges are valid for `m.len` bytes (contract above) and apart:
                // the pool's memory is its own.
                unsafe { self.backend.cpu_copy(m.ptr, b, m.len) };
            }
        }
        // SAFETY: the memory the device gets holds nothing the CPU still needs (map's
        // contract for the buffer; a bounce buffer is the mapping's alone).
        unsafe { for_device(&mut self.backend, m.coherent, m.target(), m.len, m.dir) };
    }

    /// Invalidate, then copy-out (a bounced mapping the device writes).
    fn give_to_cpu(&mut self, m: &Mapping) {
        // SAFETY: the device has finished with the memory (the caller of unmap / sync_for_cpu
        // says so by calling), and the CPU wrote none of its lines meanwhile (map's contract).
        unsafe { for_cpu(&mut self.backend, m.coherent, m.target(), m.len, m.dir) };
        if let Some((_, b)) = m.bounce {
            if m.dir.device_writes() {
                // SAFETY: the buffer is valid and not otherwise accessed until unmap returns
                // (map's contract); the bounce buffer is reserved for this mapping.
                unsafe { self.backend.cpu_copy(b, m.ptr, m.len) };
            }
        }
    }

    /// Finds the active mapping at `dma` (findings (d), (e)).
    fn lookup(
        &mut self,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
        site: &'static Location<'static>,
    ) -> Result<usize, DmaError> {
        let line = self.line();
        let call = party(Role::Call(dir), self.cpu_of(dma), len, line);
        self.checker
            .check_lookup(&self.table, dma, call, dir, line, site)
    }

    /// `dma_unmap_single`: the CPU owns the buffer again (a bounced one is copied back), and
    /// the mapping is retired.
    #[track_caller]
    pub fn unmap_single(
        &mut self,
        _dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        let i = self.lookup(dma, len, dir, Location::caller())?;
        let m = self.table.get(i);
        self.give_to_cpu(&m);
        self.table.retire(i);
        if let Some((b, _)) = m.bounce {
            self.pool
                .free(b)
                .expect("a bounced mapping owns its buffer");
        }
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
        let m = self.table.get(i);
        self.give_to_cpu(&m);
        self.table.set_device_owns(i, false);
        self.stats.syncs += 1;
        Ok(())
    }

    /// `dma_sync_single_for_device`: the device owns the buffer again (a bounced one is copied
    /// in again).
    #[track_caller]
    pub fn sync_single_for_device(
        &mut self,
        _dev: &Device,
        dma: DmaAddr,
        len: usize,
        dir: Direction,
    ) -> Result<(), DmaError> {
        let i = self.lookup(dma, len, dir, Location::caller())?;
        let m = self.table.get(i);
        // SAFETY: an active mapping: its buffer is valid until unmap, and handing it back to
        // the device is this call's meaning (map's contract covers the time after it).
        unsafe { self.give_to_device(&m) };
        self.table.set_device_owns(i, true);
        self.stats.syncs += 1;
        Ok(())
    }
}
