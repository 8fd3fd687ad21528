//! The checks the map path (and the model's CPU and allocator) ask the [`Checker`] to make:
//! findings (a) to (f), each reported with both parties, their line and the call site.
//! `line` is always the CPU's cache line; the bounce rules' DMA line only widens what (a)
//! looks at.

use crate::bounce_rule::{line_neighbours, NeighbourKind};
use crate::checker::{Checker, Finding, FindingKind, Party, Role};
use crate::direction::Direction;
use crate::error::{DmaAddr, DmaError};
use crate::heap_layout::HeapLayout;
use crate::mapping::{lines_overlap, shared_line, Mapping, MappingTable};
use alloc::vec::Vec;
use core::panic::Location;
use dmaslab_core::Owner;

type Site = &'static Location<'static>;

/// A party whose first line is that of `addr`.
pub(crate) fn party(role: Role, addr: usize, size: usize, line: usize) -> Party {
    Party {
        role,
        addr,
        size,
        line: addr & !(line - 1),
    }
}

/// A mapping as a party of a finding.
pub(crate) fn mapping_party(m: &Mapping, line: usize) -> Party {
    party(Role::Mapping(m.dir), m.addr, m.len, line)
}

impl Checker {
    /// Kind (f): may the subject's range be mapped at all? It must lie inside one live
    /// allocation of `heap` (a range running past its allocation is an error, not a finding).
    pub(crate) fn check_target(
        &mut self,
        heap: &impl HeapLayout,
        subject: Party,
        line: usize,
        site: Site,
    ) -> Result<(), DmaError> {
        let (addr, len) = (subject.addr, subject.size);
        let (role, a, s, err) = match heap.owner_of(addr) {
            Owner::Object {
                start,
                size,
                live: true,
                ..
            }
            | Owner::Large { start, size } => {
                return match addr + len <= start + size {
                    true => Ok(()),
                    false => Err(DmaError::OutOfBounds { addr, len }),
                };
            }
            Owner::Foreign => (Role::Foreign, addr, len, DmaError::NotDmaAble { addr }),
            Owner::Object { start, size, .. } => (
                Role::Object { live: false },
                start,
                size,
                DmaError::NotLive { addr },
            ),
            Owner::Metadata { start, size } => {
                (Role::Metadata, start, size, DmaError::NotLive { addr })
            }
            Owner::Unused => (Role::NotLive, addr, len, DmaError::NotLive { addr }),
        };
        self.report(Finding {
            kind: FindingKind::NotDmaAble,
            subject,
            other: Some(party(role, a, s, line)),
            line: subject.line,
            site,
        });
        Err(err)
    }

    /// Kinds (a) and (b) for a new mapping: what shares the lines of the memory the device
    /// will access. (a) only when the device writes the driver's buffer itself (non-coherent,
    /// not bounced), over the bounce rule's `rule_line`; (b) against every active mapping
    /// unless both are `ToDevice`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_sharing(
        &mut self,
        heap: &impl HeapLayout,
        table: &MappingTable,
        subject: Party,
        dir: Direction,
        device_writes_buffer: bool,
        rule_line: usize,
        line: usize,
        site: Site,
    ) {
        let (addr, len) = (subject.addr, subject.size);
        if device_writes_buffer {
            for n in line_neighbours(addr, len, rule_line, |a| heap.owner_of(a)) {
                let role = match n.kind {
                    NeighbourKind::Object { live: true } | NeighbourKind::Large => {
                        Role::Object { live: true }
                    }
                    NeighbourKind::Metadata => Role::Metadata,
                    NeighbourKind::Object { live: false } => continue,
                };
                self.report(Finding {
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
        let hits: Vec<Mapping> = table
            .iter()
            .filter(|m| {
                !(m.dir == Direction::ToDevice && dir == Direction::ToDevice)
                    && lines_overlap(m.addr, m.len, addr, len, line)
            })
            .copied()
            .collect();
        for m in hits {
            self.report(Finding {
                kind: FindingKind::OverlappingMappings,
                subject,
                other: Some(mapping_party(&m, line)),
                line: shared_line(m.addr, addr, line),
                site,
            });
        }
    }

    /// Kinds (d) and (e): the active mapping at `dma`, checked for size and direction. `call`
    /// is the unmap or sync call as made (its address the CPU address of `dma`).
    pub(crate) fn check_lookup(
        &mut self,
        table: &MappingTable,
        dma: DmaAddr,
        call: Party,
        dir: Direction,
        line: usize,
        site: Site,
    ) -> Result<usize, DmaError> {
        let Some(i) = table.position(dma.0) else {
            let old = table.retired_at(dma.0);
            let (kind, err) = match old {
                Some(_) => (FindingKind::DoubleUnmap, DmaError::DoubleUnmap(dma)),
                None => (FindingKind::NeverMapped, DmaError::NotMapped(dma)),
            };
            self.report(Finding {
                kind,
                subject: call,
                other: old.map(|m| mapping_party(&m, line)),
                line: call.line,
                site,
            });
            return Err(err);
        };
        let m = table.get(i);
        if m.len != call.size || m.dir != dir {
            let subject = party(call.role, m.addr, call.size, line);
            self.report(Finding {
                kind: FindingKind::WrongSizeOrDirection,
                subject,
                other: Some(mapping_party(&m, line)),
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

    /// Kind (c): a CPU load or store to a buffer the device owns and writes.
    pub(crate) fn check_cpu_access(
        &mut self,
        table: &MappingTable,
        addr: usize,
        len: usize,
        write: bool,
        line: usize,
        site: Site,
    ) {
        let hits: Vec<Mapping> = table
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
            self.report(Finding {
                kind: FindingKind::CpuAccessWhileMapped,
                subject: party(Role::CpuAccess { write }, addr, len, line),
                other: Some(mapping_party(&m, line)),
                line: addr.max(m.addr) & !(line - 1),
                site,
            });
        }
    }

    /// Kind (a) at allocation: a new object `start .. start + len` landing in a line that a
    /// device is writing directly.
    pub(crate) fn check_allocation(
        &mut self,
        table: &MappingTable,
        start: usize,
        len: usize,
        line: usize,
        site: Site,
    ) {
        let obj = party(Role::Object { live: true }, start, len, line);
        let hits: Vec<Mapping> = table
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
            self.report(Finding {
                kind: FindingKind::SharedCacheLine,
                subject: mapping_party(&m, line),
                other: Some(obj),
                line: shared_line(m.addr, start, line),
                site,
            });
        }
    }
}
