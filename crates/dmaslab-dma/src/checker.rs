//! The DMA API checker: what Linux's `CONFIG_DMA_API_DEBUG` reports and more. dma-debug keys
//! a mapping by its first cache line only; this checker asks the allocator who owns every byte of
//! a mapping's first and last lines.

use crate::direction::Direction;
use alloc::vec::Vec;
use core::fmt;
use core::panic::Location;

/// The kinds of finding, (a) to (f) of the issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// (a) A mapping that the device writes shares a cache line with another live object.
    SharedCacheLine,
    /// (b) Two active mappings overlap a cache line (not both `ToDevice`).
    OverlappingMappings,
    /// (c) CPU access through the cache model to a buffer the device owns (`FromDevice` or
    /// `Bidirectional`, before unmap / sync_for_cpu).
    CpuAccessWhileMapped,
    /// (d) Unmap or sync with a size or direction other than the mapping's.
    WrongSizeOrDirection,
    /// (e) Unmap or sync of a mapping already unmapped.
    DoubleUnmap,
    /// (e) Unmap or sync of an address never mapped.
    NeverMapped,
    /// (f) Mapping memory that is not the allocator's (a stack buffer, a wild address), or not a
    /// live allocation.
    NotDmaAble,
}

impl FindingKind {
    /// The letter.
    pub fn letter(self) -> char {
        match self {
            FindingKind::SharedCacheLine => 'a',
            FindingKind::OverlappingMappings => 'b',
            FindingKind::CpuAccessWhileMapped => 'c',
            FindingKind::WrongSizeOrDirection => 'd',
            FindingKind::DoubleUnmap | FindingKind::NeverMapped => 'e',
            FindingKind::NotDmaAble => 'f',
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::SharedCacheLine => "shared-cache-line",
            FindingKind::OverlappingMappings => "overlapping-mappings",
            FindingKind::CpuAccessWhileMapped => "cpu-access-while-mapped",
            FindingKind::WrongSizeOrDirection => "wrong-size-or-direction",
            FindingKind::DoubleUnmap => "double-unmap",
            FindingKind::NeverMapped => "unmap-never-mapped",
            FindingKind::NotDmaAble => "not-dma-able",
        }
    }
}

/// What a party of a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An active (or, for double unmap, former) mapping.
    Mapping(Direction),
    /// The unmap / sync call as the driver made it.
    Call(Direction),
    /// A slab object or large run; `live` false for a free slot.
    Object {
        /// Allocated now.
        live: bool,
    },
    /// Allocator metadata.
    Metadata,
    /// A CPU load or store.
    CpuAccess {
        /// A store?
        write: bool,
    },
    /// Memory the allocator does not own.
    Foreign,
    /// A free slot or unused page of the allocator.
    NotLive,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Mapping(d) => write!(f, "mapping {d}"),
            Role::Call(d) => write!(f, "call {d}"),
            Role::Object { live: true } => f.write_str("object"),
            Role::Object { live: false } => f.write_str("free slot"),
            Role::Metadata => f.write_str("allocator metadata"),
            Role::CpuAccess { write: true } => f.write_str("CPU store"),
            Role::CpuAccess { write: false } => f.write_str("CPU load"),
            Role::Foreign => f.write_str("foreign memory"),
            Role::NotLive => f.write_str("unallocated memory"),
        }
    }
}

/// One side of a finding: address, size and (first) cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    /// What it is.
    pub role: Role,
    /// First byte (CPU address).
    pub addr: usize,
    /// Bytes.
    pub size: usize,
    /// Its first cache line.
    pub line: usize,
}

impl Party {
    /// The same party with addresses made relative to `base` (e.g. the RAM's first byte), for
    /// output that does not depend on where the host put the RAM.
    pub fn rebased(mut self, base: usize) -> Self {
        self.addr = self.addr.wrapping_sub(base);
        self.line = self.line.wrapping_sub(base);
        self
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:#x}+{} (line {:#x})",
            self.role, self.addr, self.size, self.line
        )
    }
}

/// A finding: its kind, both parties, the cache line they meet in, and the call site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The kind.
    pub kind: FindingKind,
    /// The party that made the offending call (the mapping, the CPU access, the unmap call).
    pub subject: Party,
    /// The other party, when there is one (the neighbour, the other mapping, the original
    /// mapping).
    pub other: Option<Party>,
    /// The cache line where they meet (or the subject's first line).
    pub line: usize,
    /// Where the offending call was made.
    pub site: &'static Location<'static>,
}

impl Finding {
    /// The same finding with addresses relative to `base`.
    pub fn rebased(mut self, base: usize) -> Self {
        self.subject = self.subject.rebased(base);
        self.other = self.other.map(|o| o.rebased(base));
        self.line = self.line.wrapping_sub(base);
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}) {}: {}",
            self.kind.letter(),
            self.kind.name(),
            self.subject
        )?;
        if let Some(o) = &self.other {
            write!(f, " vs {o}")?;
        }
        write!(f, " at line {:#x}", self.line)?;
        write!(f, " [{}:{}]", self.site.file(), self.site.line())
    }
}

/// Collects findings, or panics on the first one.
#[derive(Default)]
pub struct Checker {
    findings: Vec<Finding>,
    panic: bool,
}

impl Checker {
    /// A collecting checker.
    pub fn new() -> Self {
        Checker::default()
    }

    /// Panic on every finding (for tests) instead of collecting.
    pub fn set_panic(&mut self, panic: bool) {
        self.panic = panic;
    }

    /// Records `f`.
    ///
    /// # Panics
    /// In panic mode, with the finding as message.
    pub fn report(&mut self, f: Finding) {
        if self.panic {
            panic!("dmaslab-dma checker: {f}");
        }
        self.findings.push(f);
    }

    /// The findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Takes the findings so far.
    pub fn take(&mut self) -> Vec<Finding> {
        core::mem::take(&mut self.findings)
    }
}
