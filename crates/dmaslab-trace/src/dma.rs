//! DMA mappings of slab memory: which live object each mapping covers (through the linear-map
//! offset inferred from the trace), and whether policy C would bounce it by dmaslab's exact rule
//! and by Linux's size rule, judged on the replayed allocator at the moment of the mapping.
//!
//! Devices are judged as if they were not cache-coherent: the question is what C costs where it
//! matters (a trace from a coherent x86 machine still shows which mappings would bounce on a
//! non-coherent Arm SoC).

use crate::event::EventKind;
use crate::lifetime::{Lifetimes, ObjKind, Op};
use crate::parse::Trace;
use crate::replay::View;
use dmaslab_dma::{exact_needs_bounce, linux_needs_bounce, Direction};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The linear-map offset is assumed to be a multiple of this (2 MiB): x86-64 randomises
/// `page_offset_base` in 1 GiB steps, arm64 aligns `memstart_addr` to at least 32 MiB, RISC-V
/// `phys_ram_base` to 2 MiB.
pub const OFFSET_GRANULE: u64 = 2 << 20;

/// Mapped ranges looked at to infer the offset (the first ones of the trace).
pub const VOTE_RANGES: usize = 20_000;

/// The linear-map offset found, and how sure it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Offset {
    /// `kernel virtual = physical + offset` (wrapping), as hex; `None` if no mapping landed in a
    /// live slab object under any offset.
    pub linear_map_offset: Option<String>,
    /// Distinct physical addresses that fall inside a live slab object under this offset.
    pub offset_votes: u64,
    /// The same for the next best offset.
    pub runner_up_votes: u64,
    /// votes / (votes + runner-up votes): 1.0 when nothing competes, 0.5 for a tie.
    pub confidence: f64,
    /// Why there is no offset (e.g. hashed pointers), if none.
    pub note: Option<String>,
    #[serde(skip)]
    pub(crate) value: Option<u64>,
}

/// Infers the offset by voting: for each mapped range, every offset (a multiple of
/// [`OFFSET_GRANULE`]) that puts its physical address inside a live slab object gets a vote.
/// The true offset collects a vote from every mapping of slab memory; wrong ones only from
/// chance coincidences, spread over many offsets.
pub fn infer_offset(trace: &Trace, lt: &Lifetimes) -> Offset {
    if trace.hashed_pointers {
        return Offset {
            note: Some("pointers are hashed (hash-ptr on): no address to match".into()),
            ..Offset::default()
        };
    }
    let mut live: BTreeMap<u64, u32> = BTreeMap::new();
    let mut regions: HashMap<u64, u32> = HashMap::new();
    let mut votes: HashSet<(u64, u64)> = HashSet::new();
    let mut seen = 0usize;
    for &(_, op) in &lt.ops {
        match op {
            Op::Alloc(i) => {
                let o = &lt.objects[i as usize];
                live.insert(o.kaddr, i);
                *regions.entry(o.kaddr / OFFSET_GRANULE).or_default() += 1;
            }
            Op::Free(i) => {
                let o = &lt.objects[i as usize];
                if live.get(&o.kaddr) == Some(&i) {
                    live.remove(&o.kaddr);
                }
                let r = o.kaddr / OFFSET_GRANULE;
                if let Some(c) = regions.get_mut(&r) {
                    *c -= 1;
                    if *c == 0 {
                        regions.remove(&r);
                    }
                }
            }
            Op::Dma(e) => {
                let EventKind::DmaMap { first, count, .. } = trace.events[e as usize].kind else {
                    continue;
                };
                for r in &trace.ranges[first as usize..(first + count) as usize] {
                    if seen >= VOTE_RANGES {
                        break;
                    }
                    seen += 1;
                    let low = r.phys % OFFSET_GRANULE;
                    for &region in regions.keys() {
                        let v = region * OFFSET_GRANULE + low;
                        if covering(&live, lt, v).is_some() {
                            votes.insert((v.wrapping_sub(r.phys), r.phys));
                        }
                    }
                }
            }
        }
    }
    let mut tally: HashMap<u64, u64> = HashMap::new();
    for (off, _) in votes {
        *tally.entry(off).or_default() += 1;
    }
    let mut ranked: Vec<(u64, u64)> = tally.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    match ranked.first() {
        None => Offset {
            note: Some("no mapping falls inside a live slab object under any offset".into()),
            ..Offset::default()
        },
        Some(&(off, best)) => {
            let second = ranked.get(1).map_or(0, |r| r.1);
            Offset {
                linear_map_offset: Some(format!("{off:#x}")),
                offset_votes: best,
                runner_up_votes: second,
                confidence: best as f64 / (best + second) as f64,
                note: None,
                value: Some(off),
            }
        }
    }
}

/// The live object (by kernel address) whose slot holds `v`.
fn covering(live: &BTreeMap<u64, u32>, lt: &Lifetimes, v: u64) -> Option<u32> {
    let (&start, &i) = live.range(..=v).next_back()?;
    (v < start + lt.objects[i as usize].kernel_alloc.max(1)).then_some(i)
}

/// Mappings of one device and direction at one DMA line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Device name as the trace prints it.
    pub device: String,
    /// `TO_DEVICE`, `FROM_DEVICE` or `BIDIRECTIONAL`.
    pub direction: &'static str,
    /// The DMA line both rules are judged at.
    pub dma_minalign: usize,
    /// Mapped ranges inside one live kmalloc object.
    pub kmalloc_mappings: u64,
    /// Mapped ranges inside one live named-cache object.
    pub cache_mappings: u64,
    /// Of those, bounced by dmaslab's exact rule (a first or last line shared with anything).
    pub exact_bounces: u64,
    /// Of those, bounced by Linux's size rule (`kmalloc_size_roundup(size) % line != 0`).
    pub linux_bounces: u64,
    /// Linux bounces, exact does not.
    pub false_positives: u64,
    /// Exact bounces, Linux does not.
    pub false_negatives: u64,
    /// Bytes copied through the bounce pool under the exact rule.
    pub exact_bytes_copied: u64,
    /// The same under Linux's rule.
    pub linux_bytes_copied: u64,
    /// Ranges that start in a live slab object but run past its end (not judged).
    pub spanning: u64,
    /// Ranges of other memory (page cache, stacks, ...): not judged by the exact rule.
    pub other_mappings: u64,
    /// Of those, what Linux's size rule bounces.
    pub other_linux_bounces: u64,
}

/// A live mapping, for syncs and unmaps: its row key and which rules bounced it, per line.
#[derive(Clone, Copy)]
struct Live {
    key: (u32, u8),
    exact: u32,
    linux: u32,
}

/// Watches the C replay's DMA events.
pub struct Judge {
    offset: Option<u64>,
    lines: Vec<usize>,
    live: BTreeMap<u64, u32>,
    by_dma: HashMap<(u32, u64), Live>,
    dma_of_phys: HashMap<(u32, u64), u64>,
    rows: BTreeMap<(u32, u8, usize), Row>,
    /// All mapped ranges seen.
    pub mappings: u64,
}

fn dir_index(d: Direction) -> u8 {
    match d {
        Direction::ToDevice => 0,
        Direction::FromDevice => 1,
        Direction::Bidirectional => 2,
    }
}

const DIR_NAMES: [&str; 3] = ["TO_DEVICE", "FROM_DEVICE", "BIDIRECTIONAL"];

impl Judge {
    /// A judge at the DMA lines `lines` (at most 32), translating with `offset`.
    pub fn new(offset: &Offset, lines: &[usize]) -> Self {
        Judge {
            offset: offset.value,
            lines: lines.iter().copied().take(32).collect(),
            live: BTreeMap::new(),
            by_dma: HashMap::new(),
            dma_of_phys: HashMap::new(),
            rows: BTreeMap::new(),
            mappings: 0,
        }
    }

    pub(crate) fn on_alloc(&mut self, lt: &Lifetimes, i: u32) {
        self.live.insert(lt.objects[i as usize].kaddr, i);
    }

    pub(crate) fn on_free(&mut self, lt: &Lifetimes, i: u32) {
        let a = lt.objects[i as usize].kaddr;
        if self.live.get(&a) == Some(&i) {
            self.live.remove(&a);
        }
    }

    fn row(&mut self, trace: &Trace, dev: u32, dir: u8, line: usize) -> &mut Row {
        self.rows.entry((dev, dir, line)).or_insert_with(|| Row {
            device: trace.devices.get(dev).to_string(),
            direction: DIR_NAMES[dir as usize],
            dma_minalign: line,
            ..Row::default()
        })
    }

    pub(crate) fn on_event(&mut self, trace: &Trace, lt: &Lifetimes, e: u32, view: &View<'_, '_>) {
        match trace.events[e as usize].kind {
            EventKind::DmaMap {
                dev,
                dir: Some(dir),
                first,
                count,
            } => {
                for r in &trace.ranges[first as usize..(first + count) as usize] {
                    self.map(trace, lt, view, dev, dir, r.phys, r.dma, r.len);
                }
            }
            EventKind::DmaUnmap { dev, first, count } => {
                for r in &trace.ranges[first as usize..(first + count) as usize] {
                    let dma = if r.len == 0 && r.dma == 0 {
                        self.dma_of_phys.remove(&(dev, r.phys))
                    } else {
                        Some(r.dma)
                    };
                    if let Some(d) = dma {
                        self.by_dma.remove(&(dev, d));
                    }
                }
            }
            EventKind::DmaSync { dev, first, count } => {
                for r in &trace.ranges[first as usize..(first + count) as usize] {
                    let Some(m) = self.by_dma.get(&(dev, r.dma)).copied() else {
                        continue;
                    };
                    for (li, &line) in self.lines.clone().iter().enumerate() {
                        let row = self.row(trace, m.key.0, m.key.1, line);
                        if m.exact & (1 << li) != 0 {
                            row.exact_bytes_copied += r.len;
                        }
                        if m.linux & (1 << li) != 0 {
                            row.linux_bytes_copied += r.len;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn map(
        &mut self,
        trace: &Trace,
        lt: &Lifetimes,
        view: &View<'_, '_>,
        dev: u32,
        dir: Direction,
        phys: u64,
        dma: u64,
        len: u64,
    ) {
        self.mappings += 1;
        let d = dir_index(dir);
        let roundup = view.allocs[0].kmalloc_size_roundup(len as usize);
        let obj = self
            .offset
            .and_then(|off| covering(&self.live, lt, phys.wrapping_add(off)).map(|i| (off, i)));
        let lines = self.lines.clone();
        let (mut exact_mask, mut linux_mask) = (0u32, 0u32);
        let Some((off, i)) = obj else {
            for &line in &lines {
                let linux = linux_needs_bounce(false, dir, roundup, line);
                let row = self.row(trace, dev, d, line);
                row.other_mappings += 1;
                row.other_linux_bounces += linux as u64;
            }
            return;
        };
        let o = &lt.objects[i as usize];
        let delta = phys.wrapping_add(off) - o.kaddr;
        let k = view.allocator_of(i);
        let ours = view.addr[i as usize];
        let size = k.ksize(ours as *const u8).unwrap_or(0) as u64;
        let spans = delta + len.max(1) > size;
        for (li, &line) in lines.iter().enumerate() {
            let linux = linux_needs_bounce(false, dir, roundup, line);
            let exact = !spans
                && exact_needs_bounce(false, dir, ours + delta as usize, len as usize, line, |a| {
                    k.owner_of(a)
                });
            let row = self.row(trace, dev, d, line);
            if spans {
                row.spanning += 1;
                continue;
            }
            match o.kind {
                ObjKind::Kmalloc { .. } => row.kmalloc_mappings += 1,
                ObjKind::Cache(_) => row.cache_mappings += 1,
            }
            row.exact_bounces += exact as u64;
            row.linux_bounces += linux as u64;
            row.false_positives += (linux && !exact) as u64;
            row.false_negatives += (exact && !linux) as u64;
            // Into the bounce buffer at map, back at unmap.
            row.exact_bytes_copied += 2 * len * exact as u64;
            row.linux_bytes_copied += 2 * len * linux as u64;
            exact_mask |= (exact as u32) << li;
            linux_mask |= (linux as u32) << li;
        }
        if !spans {
            let m = Live {
                key: (dev, d),
                exact: exact_mask,
                linux: linux_mask,
            };
            self.by_dma.insert((dev, dma), m);
            self.dma_of_phys.insert((dev, phys), dma);
        }
    }

    /// The rows, by device, direction and line.
    pub fn rows(self) -> Vec<Row> {
        self.rows.into_values().collect()
    }
}
