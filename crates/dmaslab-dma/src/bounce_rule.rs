//! When to bounce a mapping: exactly (policy C, from the allocator's layout) or by Linux's size
//! rule (`dma_kmalloc_needs_bounce`).

use crate::device::Device;
use crate::direction::Direction;
use crate::heap_layout::HeapLayout;
use alloc::vec::Vec;
use dmaslab_core::Owner;

/// The rule a [`crate::DmaMap`] (and so a [`crate::Machine`]) bounces by (non-coherent devices only; coherent ones never
/// bounce, except for the address mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BounceRule {
    /// Bounce iff the direction is not `ToDevice` and the first or last cache line of the range
    /// holds bytes outside the range that belong to something else (another object, live or
    /// free, or allocator metadata).
    #[default]
    Exact,
    /// Linux 6.5's `dma_kmalloc_needs_bounce`: the direction is not `ToDevice` and
    /// `kmalloc_size_roundup(size)` is not a multiple of the DMA line. False positives by design;
    /// false negatives for a range that is not a whole kmalloc object.
    LinuxSize,
    /// Never bounce for sharing (policies A and B: the driver is responsible).
    Never,
}

impl BounceRule {
    /// Would this rule bounce `addr .. addr + len` for sharing (the address mask aside)?
    /// `line` is the DMA line the rule works on: the larger of the device's and the CPU's.
    pub fn needs_bounce(
        self,
        heap: &impl HeapLayout,
        dev: &Device,
        addr: usize,
        len: usize,
        dir: Direction,
        line: usize,
    ) -> bool {
        match self {
            BounceRule::Exact => {
                exact_needs_bounce(dev.coherent, dir, addr, len, line, |a| heap.owner_of(a))
            }
            BounceRule::LinuxSize => {
                linux_needs_bounce(dev.coherent, dir, heap.kmalloc_size_roundup(len), line)
            }
            BounceRule::Never => false,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            BounceRule::Exact => "exact",
            BounceRule::LinuxSize => "linux-size",
            BounceRule::Never => "never",
        }
    }
}

/// Linux's rule: `!coherent && dir != ToDevice && kmalloc_size_roundup(size) % line != 0`.
pub fn linux_needs_bounce(
    coherent: bool,
    dir: Direction,
    roundup_size: usize,
    line: usize,
) -> bool {
    !coherent && dir != Direction::ToDevice && !roundup_size.is_multiple_of(line)
}

/// What a byte next to a mapping belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighbourKind {
    /// A slab object; `live` false for a free slot (still the allocator's: free-list link).
    Object {
        /// Allocated now.
        live: bool,
    },
    /// A large run.
    Large,
    /// Allocator metadata.
    Metadata,
}

/// Something that shares the first or last cache line of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Its first byte.
    pub start: usize,
    /// Its size.
    pub size: usize,
    /// What it is.
    pub kind: NeighbourKind,
    /// The shared line.
    pub line: usize,
}

/// The start of the allocation holding `addr`, if any (a slot, live or free, or a large run).
fn allocation_start(o: Owner) -> Option<usize> {
    match o {
        Owner::Object { start, .. } | Owner::Large { start, .. } => Some(start),
        _ => None,
    }
}

/// Everything other than the mapped allocation itself that has bytes in the first or last
/// `line`-byte line of `addr .. addr + len`, outside the range. `owner_of` is the allocator's
/// [`dmaslab_core::Kmalloc::owner_of`]. Unused bytes (a slab's tail, free pages) are nobody's.
pub fn line_neighbours(
    addr: usize,
    len: usize,
    line: usize,
    owner_of: impl Fn(usize) -> Owner,
) -> Vec<Neighbour> {
    let own = allocation_start(owner_of(addr));
    let first_line = addr & !(line - 1);
    let end = addr + len.max(1);
    let last_line = (end - 1) & !(line - 1);
    let mut out = Vec::new();
    let mut scan = |lo: usize, hi: usize, line_addr: usize| {
        let mut b = lo;
        while b < hi {
            let o = owner_of(b);
            let (next, n) = match o {
                Owner::Object {
                    start, size, live, ..
                } => (
                    start + size,
                    Some((start, size, NeighbourKind::Object { live })),
                ),
                Owner::Large { start, size } => {
                    (start + size, Some((start, size, NeighbourKind::Large)))
                }
                Owner::Metadata { start, size } => {
                    (start + size, Some((start, size, NeighbourKind::Metadata)))
                }
                Owner::Unused | Owner::Foreign => (b + 1, None),
            };
            if let Some((start, size, kind)) = n {
                if Some(start) != own && !out.iter().any(|x: &Neighbour| x.start == start) {
                    out.push(Neighbour {
                        start,
                        size,
                        kind,
                        line: line_addr,
                    });
                }
            }
            b = next.max(b + 1);
        }
    };
    scan(first_line, addr, first_line);
    scan(end, last_line + line, last_line);
    out
}

/// The exact rule: bounce iff the device is not coherent, the direction is not `ToDevice`, and
/// [`line_neighbours`] finds anything.
pub fn exact_needs_bounce(
    coherent: bool,
    dir: Direction,
    addr: usize,
    len: usize,
    line: usize,
    owner_of: impl Fn(usize) -> Owner,
) -> bool {
    !coherent
        && dir != Direction::ToDevice
        && !line_neighbours(addr, len, line, owner_of).is_empty()
}
