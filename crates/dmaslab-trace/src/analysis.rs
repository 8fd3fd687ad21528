//! The whole replay of a trace: parse, pair, infer the DMA offset, replay under every policy
//! (in parallel), and what A costs by call site.

use crate::dma::{infer_offset, Judge, Offset, Row};
use crate::lifetime::{pair, Lifetimes, ObjKind, PairCounts};
use crate::parse::Trace;
use crate::replay::{replay, OutOfArena, PolicyRun, Setup};
use dmaslab_core::{ArenaPageSource, Config, Kmalloc, Policy};
use serde::Serialize;
use std::collections::HashMap;
use std::mem::MaybeUninit;

/// The DMA lines replayed by default.
pub const DEFAULT_MINALIGNS: [usize; 4] = [32, 64, 128, 256];

/// Call sites listed for A's cost.
pub const TOP_SITES: usize = 10;

/// One policy's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyRow {
    /// `A`, `B` or `C`.
    pub policy: &'static str,
    /// The DMA line.
    pub dma_minalign: usize,
    /// Most pages held at once.
    pub peak_pages: usize,
    /// Time-weighted mean.
    pub mean_pages: f64,
    /// At the end of the trace.
    pub final_pages: usize,
    /// Bytes asked for.
    pub bytes_requested: u64,
    /// Bytes handed out (`ksize`).
    pub bytes_handed_out: u64,
}

/// A call site's part of A's extra peak pages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteCost {
    /// As the trace prints it.
    pub call_site: String,
    /// Its share of A's extra pages at A's peak, rounded.
    pub extra_peak_pages: i64,
    /// Its share (0..1) of the extra object bytes live at A's peak.
    pub share: f64,
}

/// The DMA section.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DmaReport {
    /// Mapped ranges (a `dma_map_phys`, or one scatterlist entry).
    pub mappings: u64,
    /// The linear-map offset and its confidence.
    #[serde(flatten)]
    pub offset: Offset,
    /// `swiotlb_bounced` events: what the kernel really bounced, per device.
    pub kernel_bounced: Vec<KernelBounced>,
    /// Per device, direction and DMA line.
    pub rows: Vec<Row>,
}

/// The kernel's own bounces for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelBounced {
    /// Device.
    pub device: String,
    /// `swiotlb_bounced` events.
    pub events: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Everything `dmaslab trace replay` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Events replayed (kmem and DMA events).
    pub events: u64,
    /// Events the kernel lost.
    pub lost_events: u64,
    /// Frees of objects allocated before the trace began (ignored).
    pub unmatched_frees: u64,
    /// First to last event.
    pub duration_s: f64,
    /// Share of kmalloc allocations whose dmaslab class (policy C's kmalloc, 8-byte minimum)
    /// equals the kernel's `bytes_alloc`.
    pub kernel_class_match: f64,
    /// A at each line, then B and C.
    pub policies: Vec<PolicyRow>,
    /// Who pays for A: top call sites.
    pub a_cost_call_sites: Vec<SiteCost>,
    /// The line A's cost is attributed at (64 if replayed, else the first).
    pub a_cost_dma_minalign: usize,
    /// A's pages minus B's at A's peak.
    pub a_extra_peak_pages: i64,
    /// DMA, if the trace has DMA events.
    pub dma: Option<DmaReport>,
    /// Events of other kinds, skipped.
    pub unknown_events: u64,
    /// Pointers were hashed.
    pub hashed_pointers: bool,
    /// Pairing's counts.
    pub pairing: PairCountsJson,
    /// Bytes the kernel's kmalloc and caches were asked for / handed out.
    pub kernel_bytes_requested: u64,
    /// See above.
    pub kernel_bytes_allocated: u64,
    /// Named caches replayed (distinct slot sizes).
    pub named_caches: usize,
    /// Pages over time per policy, same order as `policies` (for the SVG; not in the JSON).
    #[serde(skip)]
    pub samples: Vec<Vec<(f64, usize)>>,
}

/// [`PairCounts`] for the JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairCountsJson {
    /// `kfree` of a named-cache object (freed).
    pub kfree_of_cache_object: u64,
    /// `kmem_cache_free` of a kmalloc object (freed).
    pub cache_free_of_kmalloc: u64,
    /// `kfree(NULL)` and `ZERO_SIZE_PTR`.
    pub null_frees: u64,
    /// NULL / `ZERO_SIZE_PTR` allocations.
    pub empty_allocs: u64,
    /// Allocation of a still-live pointer (a lost free).
    pub alloc_of_live_pointer: u64,
}

impl From<PairCounts> for PairCountsJson {
    fn from(c: PairCounts) -> Self {
        PairCountsJson {
            kfree_of_cache_object: c.kfree_of_cache_object,
            cache_free_of_kmalloc: c.cache_free_of_kmalloc,
            null_frees: c.null_frees,
            empty_allocs: c.empty_allocs,
            alloc_of_live_pointer: c.alloc_of_live_pointer,
        }
    }
}

/// Bytes of the arena behind a [`classes`] allocator: the smallest region `Kmalloc::new`
/// accepts is one 128 KiB segment plus its map, wherever the region starts (about 260 KiB).
const CLASS_ARENA: usize = 512 << 10;

/// An allocator only asked for its size classes (`kmalloc_size_roundup`), never to allocate.
fn classes(setup: Setup, mem: &mut [MaybeUninit<u8>]) -> Kmalloc<ArenaPageSource<'_>> {
    let src = ArenaPageSource::new(mem).expect("CLASS_ARENA holds an arena");
    Kmalloc::new(
        src,
        Config::new(setup.policy).dma_minalign(setup.dma_minalign),
    )
    .expect("valid config")
}

fn class_of(k: &Kmalloc<ArenaPageSource<'_>>, size: u64) -> u64 {
    k.kmalloc_size_roundup(size as usize) as u64
}

/// A bound on the arena one replay needs: the most bytes live at once, each object counted at
/// least 256 bytes and rounded up to a power of two, doubled, plus room for partly used slabs.
fn arena_estimate(lt: &Lifetimes) -> usize {
    let (mut live, mut peak) = (0u64, 0u64);
    for &(_, op) in &lt.ops {
        let size = |i: u32| {
            lt.objects[i as usize]
                .kernel_alloc
                .max(256)
                .next_power_of_two()
        };
        match op {
            crate::lifetime::Op::Alloc(i) => live += size(i),
            crate::lifetime::Op::Free(i) => live -= size(i),
            crate::lifetime::Op::Dma(_) => {}
        }
        peak = peak.max(live);
    }
    ((peak * 2 + (64 << 20)) as usize).next_power_of_two()
}

fn run_with_growth(
    trace: &Trace,
    lt: &Lifetimes,
    setup: Setup,
    mut bytes: usize,
    keep: bool,
    offset: Option<&Offset>,
    lines: &[usize],
) -> (PolicyRun, Option<Judge>) {
    loop {
        let mut judge = offset.map(|o| Judge::new(o, lines));
        match replay(trace, lt, setup, bytes, keep, judge.as_mut()) {
            Ok(r) => return (r, judge),
            Err(OutOfArena) => bytes *= 2,
        }
    }
}

/// Replays `trace` under A at each of `minaligns`, B and C.
pub fn analyse(trace: &Trace, minaligns: &[usize]) -> Report {
    let lt = pair(trace);
    let l_ref = if minaligns.contains(&64) {
        64
    } else {
        minaligns[0]
    };
    let mut setups: Vec<Setup> = minaligns
        .iter()
        .map(|&l| Setup {
            policy: Policy::A,
            dma_minalign: l,
        })
        .collect();
    for policy in [Policy::B, Policy::C] {
        setups.push(Setup {
            policy,
            dma_minalign: l_ref,
        });
    }
    let has_dma = trace.has_dma();
    let offset = has_dma.then(|| infer_offset(trace, &lt));
    let bytes = arena_estimate(&lt);
    let mut results: Vec<Option<(PolicyRun, Option<Judge>)>> =
        setups.iter().map(|_| None).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(setups.len());
    let out = std::sync::Mutex::new(&mut results);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&setup) = setups.get(i) else { break };
                let keep = setup.policy == Policy::B;
                let judge_offset = (setup.policy == Policy::C)
                    .then_some(offset.as_ref())
                    .flatten();
                let r = run_with_growth(trace, &lt, setup, bytes, keep, judge_offset, minaligns);
                out.lock().expect("no worker panics")[i] = Some(r);
            });
        }
    });
    let mut runs: Vec<PolicyRun> = Vec::new();
    let mut judge = None;
    for r in results.into_iter().flatten() {
        if r.1.is_some() {
            judge = r.1;
        }
        runs.push(r.0);
    }
    let (site_costs, extra) = a_cost(trace, &lt, &runs, l_ref);
    let kernel_class_match = class_match(&lt);
    let dma = offset.map(|offset| {
        let judge = judge.expect("the C run judges DMA");
        DmaReport {
            mappings: judge.mappings,
            offset,
            kernel_bounced: kernel_bounced(trace),
            rows: judge.rows(),
        }
    });
    let (kreq, kalloc) = lt
        .objects
        .iter()
        .fold((0, 0), |(r, a), o| (r + o.req, a + o.kernel_alloc));
    Report {
        events: trace.events.len() as u64,
        lost_events: trace.lost_events,
        unmatched_frees: lt.counts.unmatched_frees,
        duration_s: trace.duration_s(),
        kernel_class_match,
        policies: runs
            .iter()
            .map(|r| PolicyRow {
                policy: r.setup.policy.name(),
                dma_minalign: r.setup.dma_minalign,
                peak_pages: r.peak_pages,
                mean_pages: r.mean_pages,
                final_pages: r.final_pages,
                bytes_requested: r.bytes_requested,
                bytes_handed_out: r.bytes_handed_out,
            })
            .collect(),
        a_cost_call_sites: site_costs,
        a_cost_dma_minalign: l_ref,
        a_extra_peak_pages: extra,
        dma,
        unknown_events: trace.unknown_events(),
        hashed_pointers: trace.hashed_pointers,
        pairing: lt.counts.into(),
        kernel_bytes_requested: kreq,
        kernel_bytes_allocated: kalloc,
        named_caches: lt.caches.len(),
        samples: runs.iter().map(|r| r.samples.clone()).collect(),
    }
}

/// Share of kmalloc objects whose class under C equals the kernel's `bytes_alloc`.
fn class_match(lt: &Lifetimes) -> f64 {
    let mut mem = vec![MaybeUninit::new(0u8); CLASS_ARENA];
    let c = classes(
        Setup {
            policy: Policy::C,
            dma_minalign: 64,
        },
        &mut mem,
    );
    let (mut n, mut same) = (0u64, 0u64);
    for o in &lt.objects {
        if let ObjKind::Kmalloc { .. } = o.kind {
            n += 1;
            same += (class_of(&c, o.req) == o.kernel_alloc) as u64;
        }
    }
    if n == 0 {
        1.0
    } else {
        same as f64 / n as f64
    }
}

/// A's extra pages at A's peak (A's pages minus B's at that moment), shared among call sites
/// in proportion to the extra bytes (A's class minus B's) of their objects live then.
fn a_cost(trace: &Trace, lt: &Lifetimes, runs: &[PolicyRun], l_ref: usize) -> (Vec<SiteCost>, i64) {
    let a = runs
        .iter()
        .find(|r| r.setup.policy == Policy::A && r.setup.dma_minalign == l_ref);
    let b = runs.iter().find(|r| r.setup.policy == Policy::B);
    let (Some(a), Some(b)) = (a, b) else {
        return (Vec::new(), 0);
    };
    let Some(b_pages) = b.pages_after.as_ref().and_then(|v| v.get(a.peak_op)) else {
        return (Vec::new(), 0);
    };
    let extra = a.peak_pages as i64 - *b_pages as i64;
    let (mut ma, mut mb) = (
        vec![MaybeUninit::new(0u8); CLASS_ARENA],
        vec![MaybeUninit::new(0u8); CLASS_ARENA],
    );
    let ka = classes(a.setup, &mut ma);
    let kb = classes(b.setup, &mut mb);
    let at = a.peak_op as u32;
    let mut by_site: HashMap<u32, u64> = HashMap::new();
    for o in &lt.objects {
        if o.born <= at && o.died > at && matches!(o.kind, ObjKind::Kmalloc { .. }) {
            let d = class_of(&ka, o.req).saturating_sub(class_of(&kb, o.req));
            if d > 0 {
                *by_site.entry(o.site).or_default() += d;
            }
        }
    }
    let total: u64 = by_site.values().sum();
    let mut sites: Vec<(u32, u64)> = by_site.into_iter().collect();
    sites.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    let list = sites
        .into_iter()
        .take(TOP_SITES)
        .map(|(s, bytes)| {
            let share = bytes as f64 / total.max(1) as f64;
            SiteCost {
                call_site: trace.sites.get(s).to_string(),
                extra_peak_pages: (share * extra as f64).round() as i64,
                share,
            }
        })
        .collect();
    (list, extra)
}

fn kernel_bounced(trace: &Trace) -> Vec<KernelBounced> {
    let mut by: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for e in &trace.events {
        if let crate::event::EventKind::SwiotlbBounced { dev, size } = e.kind {
            let x = by.entry(dev).or_default();
            x.0 += 1;
            x.1 += size;
        }
    }
    by.into_iter()
        .map(|(d, (events, bytes))| KernelBounced {
            device: trace.devices.get(d).to_string(),
            events,
            bytes,
        })
        .collect()
}
