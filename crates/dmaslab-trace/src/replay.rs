//! One policy's replay: every object of the trace allocated and freed, in order, in fresh
//! dmaslab-core allocators on arenas, with the pages they hold tracked after every operation.
//!
//! kmalloc objects go to the policy's allocator; named caches (identical under every policy:
//! kmalloc's minimum alignment does not apply to them) to `kmem_cache`s in host allocators of
//! their own, as many as the cache slots need. Pages = slab pages of every cache + pages of
//! large kmalloc runs, the same count `dmaslab report` gives for the seed.

use crate::dma::Judge;
use crate::lifetime::{Lifetimes, ObjKind, Op};
use crate::parse::Trace;
use dmaslab_core::{ArenaPageSource, CacheId, Config, Gfp, Kmalloc, Policy};
use std::mem::MaybeUninit;

/// Samples of pages over time kept per run (each the most pages held within its interval).
pub const SAMPLES: usize = 400;

/// A policy to replay under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// A, B or C.
    pub policy: Policy,
    /// The DMA line (A's kmalloc minimum alignment; B's and C's `dma-kmalloc-*` line).
    pub dma_minalign: usize,
}

/// What one replay measured.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyRun {
    /// The policy.
    pub setup: Setup,
    /// Most pages held at once.
    pub peak_pages: usize,
    /// The operation after which the peak was first reached.
    pub peak_op: usize,
    /// Pages averaged over the trace's time (each value weighted by how long it held).
    pub mean_pages: f64,
    /// Pages after the last operation.
    pub final_pages: usize,
    /// `(seconds from the first event, most pages in the interval)`.
    pub samples: Vec<(f64, usize)>,
    /// Bytes the replayed allocations asked for.
    pub bytes_requested: u64,
    /// Bytes the allocators handed out for them (`ksize`).
    pub bytes_handed_out: u64,
    /// Pages after each operation, when asked for.
    pub pages_after: Option<Vec<u32>>,
}

/// The arena ran out: replay again with a larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfArena;

/// Cache slots a host allocator (policy A at 256: six kmalloc caches) leaves for named caches.
const HOST_SLOTS: usize = dmaslab_core::MAX_CACHES - 6;
const LARGE: u32 = 0x8000_0000;

fn arena(bytes: usize) -> Vec<MaybeUninit<u8>> {
    let mut v = Vec::with_capacity(bytes);
    // SAFETY: MaybeUninit<u8> needs no initialisation; capacity is `bytes`.
    unsafe { v.set_len(bytes) };
    v
}

/// The allocators of one replay and where each object lives.
pub(crate) struct View<'a, 'm> {
    /// `allocs[0]` is the policy's kmalloc; the rest host named caches.
    pub(crate) allocs: &'a [Kmalloc<ArenaPageSource<'m>>],
    /// Per object: its address in the replay (0 when not live).
    pub(crate) addr: &'a [usize],
    /// Per object: `allocator << 8 | cache`, or `LARGE | pages`.
    pub(crate) loc: &'a [u32],
}

impl<'a, 'm> View<'a, 'm> {
    /// The allocator holding object `i`.
    pub(crate) fn allocator_of(&self, i: u32) -> &'a Kmalloc<ArenaPageSource<'m>> {
        let loc = self.loc[i as usize];
        let a = if loc & LARGE != 0 {
            (loc >> 24) & 0x7f
        } else {
            loc >> 8
        };
        &self.allocs[a as usize]
    }
}

/// Replays `lt` under `setup` on arenas of `arena_bytes` each. `judge`, if given, sees every DMA
/// operation with the allocators as they are at that moment.
pub fn replay(
    trace: &Trace,
    lt: &Lifetimes,
    setup: Setup,
    arena_bytes: usize,
    keep_pages: bool,
    mut judge: Option<&mut Judge>,
) -> Result<PolicyRun, OutOfArena> {
    let hosts = lt.caches.len().div_ceil(HOST_SLOTS);
    let mut mems: Vec<Vec<MaybeUninit<u8>>> = (0..=hosts).map(|_| arena(arena_bytes)).collect();
    let mut allocs = Vec::with_capacity(hosts + 1);
    for (i, m) in mems.iter_mut().enumerate() {
        let config = if i == 0 {
            Config::new(setup.policy).dma_minalign(setup.dma_minalign)
        } else {
            Config::new(Policy::A).dma_minalign(256)
        };
        let src = ArenaPageSource::new(m).map_err(|_| OutOfArena)?;
        allocs.push(Kmalloc::new(src, config.discard_threshold(usize::MAX)).expect("valid config"));
    }
    // Named caches: (allocator, cache) or a large run in the allocator when too big for a slab.
    let mut named: Vec<(u32, Option<CacheId>)> = Vec::with_capacity(lt.caches.len());
    for (i, c) in lt.caches.iter().enumerate() {
        let a = 1 + i / HOST_SLOTS;
        let id = allocs[a]
            .kmem_cache_create(trace.names.get(c.name), c.size as usize, 8, None)
            .ok();
        named.push((a as u32, id));
    }
    // CacheId by index, per allocator (the core hands ids out; frees look them up here).
    let ids: Vec<Vec<Option<CacheId>>> = allocs
        .iter()
        .map(|k| {
            let mut v = vec![None; dmaslab_core::MAX_CACHES];
            k.for_each_cache(|id, _| v[id.index()] = Some(id));
            v
        })
        .collect();
    let n = lt.objects.len();
    let mut addr = vec![0usize; n];
    let mut loc = vec![0u32; n];
    // Slab pages per (allocator, cache) as last read.
    let mut cache_pages = vec![[0usize; dmaslab_core::MAX_CACHES]; allocs.len()];
    let mut pages = 0usize;
    let (mut peak, mut peak_op) = (0usize, 0usize);
    let mut pages_after = keep_pages.then(|| Vec::with_capacity(lt.ops.len()));
    let t0 = lt.ops.first().map_or(0, |o| o.0);
    let t_end = lt.ops.last().map_or(0, |o| o.0);
    let span = (t_end - t0).max(1);
    let mut buckets = vec![usize::MAX; SAMPLES];
    // Σ pages × nanoseconds held, and Σ pages over operations (for a trace without duration).
    let (mut weighted, mut per_op) = (0u128, 0u128);
    let mut requested = 0u64;
    for (oi, &(ts, op)) in lt.ops.iter().enumerate() {
        if oi > 0 {
            weighted += pages as u128 * (ts - lt.ops[oi - 1].0) as u128;
        }
        match op {
            Op::Alloc(i) => {
                let o = &lt.objects[i as usize];
                let size = o.req as usize;
                requested += o.req;
                let (a, cache) = match o.kind {
                    ObjKind::Kmalloc { gfp_dma } => {
                        let gfp = if gfp_dma { Gfp::DMA } else { Gfp::KERNEL };
                        (0u32, allocs[0].kmalloc_cache(size, gfp).map(|c| (c, gfp)))
                    }
                    ObjKind::Cache(c) => (named[c as usize].0, None),
                };
                let k = &allocs[a as usize];
                let (p, id) = match (o.kind, cache) {
                    (ObjKind::Cache(c), _) => match named[c as usize].1 {
                        Some(id) => (k.kmem_cache_alloc(id), Some(id)),
                        None => (k.kmalloc(o.kernel_alloc as usize, Gfp::KERNEL), None),
                    },
                    (_, Some((id, gfp))) => (k.kmalloc(size, gfp), Some(id)),
                    (_, None) => (k.kmalloc(size, Gfp::KERNEL), None),
                };
                let p = p.ok_or(OutOfArena)?.as_ptr();
                addr[i as usize] = p as usize;
                match id {
                    Some(id) => {
                        loc[i as usize] = a << 8 | id.index() as u32;
                        pages = update(k, id, &mut cache_pages[a as usize], pages);
                    }
                    None => {
                        let got = k.ksize(p).unwrap_or(0).div_ceil(k.page_size());
                        loc[i as usize] = LARGE | a << 24 | got as u32;
                        pages += got;
                    }
                }
            }
            Op::Free(i) => {
                let (p, l) = (addr[i as usize], loc[i as usize]);
                addr[i as usize] = 0;
                if l & LARGE != 0 {
                    let k = &allocs[((l >> 24) & 0x7f) as usize];
                    // SAFETY: `p` is a live allocation of `k` made above, freed once here.
                    let _ = unsafe { k.kfree(p as *mut u8) };
                    pages -= (l & 0x00ff_ffff) as usize;
                } else {
                    let (a, c) = ((l >> 8) as usize, (l & 0xff) as usize);
                    let k = &allocs[a];
                    // SAFETY: as above.
                    let _ = unsafe { k.kfree(p as *mut u8) };
                    let id = ids[a][c].expect("a cache that allocated the object");
                    pages = update(k, id, &mut cache_pages[a], pages);
                }
            }
            Op::Dma(e) => {
                if let Some(j) = judge.as_deref_mut() {
                    let view = View {
                        allocs: &allocs,
                        addr: &addr,
                        loc: &loc,
                    };
                    j.on_event(trace, lt, e, &view);
                }
            }
        }
        if let Op::Alloc(i) = op {
            if let Some(j) = judge.as_deref_mut() {
                j.on_alloc(lt, i);
            }
        } else if let Op::Free(i) = op {
            if let Some(j) = judge.as_deref_mut() {
                j.on_free(lt, i);
            }
        }
        if pages > peak {
            (peak, peak_op) = (pages, oi);
        }
        let b = ((ts - t0) as u128 * (SAMPLES as u128 - 1) / span as u128) as usize;
        buckets[b] = if buckets[b] == usize::MAX {
            pages
        } else {
            buckets[b].max(pages)
        };
        per_op += pages as u128;
        if let Some(v) = pages_after.as_mut() {
            v.push(pages as u32);
        }
    }
    let mut samples = Vec::new();
    let mut last = 0;
    for (b, &v) in buckets.iter().enumerate() {
        let v = if v == usize::MAX { last } else { v };
        last = v;
        samples.push((b as f64 * span as f64 / (SAMPLES as f64 - 1.0) / 1e9, v));
    }
    let handed_out = allocs.iter().map(|k| k.totals().bytes_handed_out).sum();
    let mean = if t_end > t0 {
        weighted as f64 / (t_end - t0) as f64
    } else {
        per_op as f64 / lt.ops.len().max(1) as f64
    };
    Ok(PolicyRun {
        setup,
        peak_pages: peak,
        peak_op,
        mean_pages: mean,
        final_pages: pages,
        samples,
        bytes_requested: requested,
        bytes_handed_out: handed_out,
        pages_after,
    })
}

/// Re-reads cache `id`'s slab pages after an operation on it and returns the new total.
fn update(
    k: &Kmalloc<ArenaPageSource<'_>>,
    id: CacheId,
    cache_pages: &mut [usize; dmaslab_core::MAX_CACHES],
    total: usize,
) -> usize {
    let now = k.slabinfo(id).map_or(0, |i| i.pages());
    let was = std::mem::replace(&mut cache_pages[id.index()], now);
    total + now - was
}
