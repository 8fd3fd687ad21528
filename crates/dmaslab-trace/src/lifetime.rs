//! Pairs allocations with frees by pointer, in timestamp order: each allocation becomes an
//! object with a birth and (maybe) a death, and the trace a stream of operations on objects that
//! any allocator can replay.

use crate::event::EventKind;
use crate::parse::Trace;
use std::collections::HashMap;

/// What an object was allocated from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjKind {
    /// `kmalloc`; `gfp_dma` when it asked for `__GFP_DMA`.
    Kmalloc {
        /// Asked for `__GFP_DMA`.
        gfp_dma: bool,
    },
    /// A named cache: index into [`Lifetimes::caches`].
    Cache(u32),
}

/// One allocation of the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    /// Call site (index into the trace's sites).
    pub site: u32,
    /// Bytes asked for.
    pub req: u64,
    /// Bytes the kernel handed out.
    pub kernel_alloc: u64,
    /// Where from.
    pub kind: ObjKind,
    /// The kernel's address of it.
    pub kaddr: u64,
    /// Index of its `Alloc` in [`Lifetimes::ops`].
    pub born: u32,
    /// Index of its `Free`, or `u32::MAX` if alive at the end.
    pub died: u32,
}

/// One step of the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate object `i`.
    Alloc(u32),
    /// Free object `i`.
    Free(u32),
    /// DMA event: index into the trace's events.
    Dma(u32),
}

/// A named cache as the replay creates it: one `kmem_cache` per distinct slot size (as SLUB
/// merges caches of equal size), named after the first cache seen with that size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedCache {
    /// The first cache name with this size (index into the trace's names).
    pub name: u32,
    /// Slot size (`bytes_alloc`).
    pub size: u64,
}

/// What pairing counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairCounts {
    /// Frees of pointers not allocated in the trace (allocated before it began): ignored.
    pub unmatched_frees: u64,
    /// `kfree` of a named-cache object (legal since SLUB's kfree handles any slab object):
    /// the object is freed.
    pub kfree_of_cache_object: u64,
    /// `kmem_cache_free` of a kmalloc object: the object is freed.
    pub cache_free_of_kmalloc: u64,
    /// `kfree(NULL)` and frees of `ZERO_SIZE_PTR`: nothing to do.
    pub null_frees: u64,
    /// Allocations that returned NULL or `ZERO_SIZE_PTR` (`kmalloc(0)`): nothing to replay.
    pub empty_allocs: u64,
    /// Allocations of a pointer still live in the trace (its free was lost): the older object
    /// is freed first.
    pub alloc_of_live_pointer: u64,
}

/// The trace as objects and operations.
#[derive(Clone, Debug, Default)]
pub struct Lifetimes {
    /// Operations with their timestamps.
    pub ops: Vec<(u64, Op)>,
    /// Every allocation.
    pub objects: Vec<Object>,
    /// The named caches.
    pub caches: Vec<NamedCache>,
    /// Counts.
    pub counts: PairCounts,
}

/// Linux's `ZERO_SIZE_PTR`, what `kmalloc(0)` returns.
const ZERO_SIZE_PTR: u64 = 16;

/// Pairs the trace's allocations and frees.
pub fn pair(trace: &Trace) -> Lifetimes {
    let mut l = Lifetimes::default();
    let mut live: HashMap<u64, u32> = HashMap::new();
    let mut cache_of_size: HashMap<u64, u32> = HashMap::new();
    for (ei, e) in trace.events.iter().enumerate() {
        let (site, ptr, req, alloc, kind) = match e.kind {
            EventKind::Kmalloc {
                site,
                ptr,
                bytes_req,
                bytes_alloc,
                gfp_dma,
            } => (
                site,
                ptr,
                bytes_req,
                bytes_alloc,
                ObjKind::Kmalloc { gfp_dma },
            ),
            EventKind::CacheAlloc {
                site,
                ptr,
                name,
                bytes_req,
                bytes_alloc,
            } => {
                let next = l.caches.len() as u32;
                let c = *cache_of_size.entry(bytes_alloc).or_insert(next);
                if c == next {
                    l.caches.push(NamedCache {
                        name,
                        size: bytes_alloc,
                    });
                }
                (site, ptr, bytes_req, bytes_alloc, ObjKind::Cache(c))
            }
            EventKind::Kfree { ptr, .. } | EventKind::CacheFree { ptr, .. } => {
                let by_kfree = matches!(e.kind, EventKind::Kfree { .. });
                free(&mut l, &mut live, ptr, e.ts, by_kfree);
                continue;
            }
            EventKind::DmaMap { .. } | EventKind::DmaUnmap { .. } | EventKind::DmaSync { .. } => {
                l.ops.push((e.ts, Op::Dma(ei as u32)));
                continue;
            }
            EventKind::SwiotlbBounced { .. } => continue,
        };
        if ptr == 0 || ptr == ZERO_SIZE_PTR {
            l.counts.empty_allocs += 1;
            continue;
        }
        if let Some(&old) = live.get(&ptr) {
            l.counts.alloc_of_live_pointer += 1;
            end(&mut l, old, e.ts);
        }
        let i = l.objects.len() as u32;
        l.objects.push(Object {
            site,
            req,
            kernel_alloc: alloc,
            kind,
            kaddr: ptr,
            born: l.ops.len() as u32,
            died: u32::MAX,
        });
        l.ops.push((e.ts, Op::Alloc(i)));
        live.insert(ptr, i);
    }
    l
}

fn free(l: &mut Lifetimes, live: &mut HashMap<u64, u32>, ptr: u64, ts: u64, by_kfree: bool) {
    if ptr == 0 || ptr == ZERO_SIZE_PTR {
        l.counts.null_frees += 1;
        return;
    }
    let Some(i) = live.remove(&ptr) else {
        l.counts.unmatched_frees += 1;
        return;
    };
    match (l.objects[i as usize].kind, by_kfree) {
        (ObjKind::Cache(_), true) => l.counts.kfree_of_cache_object += 1,
        (ObjKind::Kmalloc { .. }, false) => l.counts.cache_free_of_kmalloc += 1,
        _ => {}
    }
    end(l, i, ts);
}

fn end(l: &mut Lifetimes, i: u32, ts: u64) {
    l.objects[i as usize].died = l.ops.len() as u32;
    l.ops.push((ts, Op::Free(i)));
}
