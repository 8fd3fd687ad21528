//! Model-based property tests: random allocate / free / realloc sequences under every policy,
//! checked against a model of what must be live.

mod common;

use common::{natural_align, region};
use dmaslab_core::size_class::{ClassSet, SizeClasses};
use dmaslab_core::{ArenaPageSource, Config, Gfp, Kmalloc, Owner, PageSource, Policy};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        dma: bool,
    },
    Free(usize),
    Realloc(usize, usize),
    /// `kmem_cache_alloc_bulk` of `n` objects from the kmalloc cache for `size`.
    AllocBulk {
        size: usize,
        n: usize,
    },
    /// `kmem_cache_free_bulk` of up to `n` live objects sharing the cache of live object `i`.
    FreeBulk {
        i: usize,
        n: usize,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..=256,
        3 => 257usize..=8192,
        1 => 8193usize..=70_000,
        1 => prop::sample::select(vec![8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384]),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (size_strategy(), prop_oneof![4 => Just(0u32), 1 => 0u32..=13], any::<bool>())
            .prop_map(|(size, align_log, dma)| Op::Alloc { size, align_log, dma }),
        3 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), size_strategy()).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => (1usize..=8192, 1usize..=70).prop_map(|(size, n)| Op::AllocBulk {
            // Miri interprets every byte the model fills and checks: keep bulk runs small.
            size: if cfg!(miri) { size % 256 + 1 } else { size },
            n: if cfg!(miri) { n % 8 + 1 } else { n },
        }),
        1 => (any::<usize>(), 1usize..=70).prop_map(|(i, n)| Op::FreeBulk { i, n }),
    ]
}

struct Live {
    ptr: *mut u8,
    size: usize,
    ksize: usize,
    fill: u8,
}

fn fill(l: &Live) {
    // SAFETY: the object is live and at least `size` bytes.
    unsafe { l.ptr.write_bytes(l.fill, l.size) };
}

fn check_contents(l: &Live) {
    // SAFETY: the object is live and at least `size` bytes, all written with `fill`.
    let s = unsafe { std::slice::from_raw_parts(l.ptr, l.size) };
    assert!(
        s.iter().all(|&b| b == l.fill),
        "object at {:p} lost its contents",
        l.ptr
    );
}

fn check_placement<P: PageSource>(k: &Kmalloc<P>, l: &Live, align: usize, dma: bool) {
    let addr = l.ptr as usize;
    assert!(l.ksize >= l.size, "ksize {} < size {}", l.ksize, l.size);
    assert_eq!(
        addr % align,
        0,
        "explicit alignment {align} of size {}",
        l.size
    );
    let natural = natural_align(l.size).min(k.max_natural_align());
    assert_eq!(
        addr % natural,
        0,
        "natural alignment {natural} of size {}",
        l.size
    );
    let dma_safe = k.policy() == Policy::A || (dma && k.policy() != Policy::A);
    if dma_safe && l.size <= 8192 {
        let line = k.config().dma_minalign;
        assert_eq!(addr % line, 0, "DMA-safe object not line-aligned");
        assert_eq!(l.ksize % line, 0, "DMA-safe object shares its last line");
    }
}

/// A fresh allocation outside debug mode (whose red zones take room) is the configured set's
/// class for the request (Linux's for DMA buffers under B and C).
fn check_class<P: PageSource>(k: &Kmalloc<P>, l: &Live, align: usize, dma: bool) {
    if k.config().debug || l.size > 8192 {
        return;
    }
    let (set, m) = if dma && k.policy() != Policy::A {
        (ClassSet::Kmalloc, k.config().dma_minalign)
    } else {
        (k.config().classes, k.kmalloc_minalign())
    };
    let t = SizeClasses::new(set, m).unwrap();
    if let Some(i) = t.index_for_aligned(l.size, align) {
        assert_eq!(
            l.ksize,
            t.class(i),
            "{set:?} class of size {} align {align}",
            l.size
        );
    }
}

fn run(policy: Policy, line: usize, ops: &[Op]) {
    run_mode(policy, line, false, ClassSet::Kmalloc, ops)
}

fn run_mode(policy: Policy, line: usize, debug: bool, set: ClassSet, ops: &[Op]) {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 24 << 20 });
    let config = Config::new(policy)
        .dma_minalign(line)
        .seg_order(common::SEG_ORDER)
        .debug(debug)
        .classes(set);
    let k = Kmalloc::new(ArenaPageSource::new(&mut mem).expect("arena"), config).expect("config");
    let mut live: Vec<Live> = Vec::new();
    let mut fills = 0u8;
    for op in ops {
        match *op {
            Op::Alloc {
                size,
                align_log,
                dma,
            } => {
                let align = 1usize << align_log;
                let gfp = if dma { Gfp::DMA } else { Gfp::KERNEL };
                let Some(p) = k.kmalloc_aligned(size, align, gfp) else {
                    continue;
                };
                fills = fills.wrapping_add(1);
                let l = Live {
                    ptr: p.as_ptr(),
                    size,
                    ksize: k.ksize(p.as_ptr()).expect("ksize of live"),
                    fill: fills,
                };
                check_placement(&k, &l, align, dma);
                check_class(&k, &l, align, dma);
                fill(&l);
                live.push(l);
            }
            Op::Free(i) if !live.is_empty() => {
                let l = live.swap_remove(i % live.len());
                check_contents(&l);
                // SAFETY: `l` is live and dropped from the model.
                unsafe { k.kfree(l.ptr) }.expect("free of a live object");
            }
            Op::Realloc(i, size) if !live.is_empty() => {
                let idx = i % live.len();
                check_contents(&live[idx]);
                let old = &live[idx];
                // SAFETY: `old.ptr` is live; on success only the new pointer is used.
                let Some(p) = (unsafe { k.krealloc(old.ptr, size, Gfp::KERNEL) }) else {
                    continue;
                };
                let keep = old.size.min(size);
                // SAFETY: the new object is at least `size` bytes.
                let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), keep) };
                assert!(s.iter().all(|&b| b == old.fill), "krealloc lost contents");
                let l = Live {
                    ptr: p.as_ptr(),
                    size,
                    ksize: k.ksize(p.as_ptr()).unwrap(),
                    fill: old.fill,
                };
                check_placement(&k, &l, 1, false);
                fill(&l);
                live[idx] = l;
            }
            Op::AllocBulk { size, n } => {
                let Some(c) = k.kmalloc_cache(size, Gfp::KERNEL) else {
                    continue;
                };
                let mut out = vec![std::ptr::null_mut(); n];
                let got = k.kmem_cache_alloc_bulk(c, &mut out);
                for &p in &out[..got] {
                    fills = fills.wrapping_add(1);
                    let l = Live {
                        ptr: p,
                        size,
                        ksize: k.ksize(p).expect("ksize of live"),
                        fill: fills,
                    };
                    assert_eq!(k.cache_of(p), Some(c), "bulk object of another cache");
                    check_placement(&k, &l, 1, false);
                    fill(&l);
                    live.push(l);
                }
            }
            Op::FreeBulk { i, n } if !live.is_empty() => {
                let Some(c) = k.cache_of(live[i % live.len()].ptr) else {
                    continue;
                };
                let mut group = Vec::new();
                let mut j = 0;
                while j < live.len() && group.len() < n {
                    if k.cache_of(live[j].ptr) == Some(c) {
                        let l = live.swap_remove(j);
                        check_contents(&l);
                        group.push(l.ptr);
                    } else {
                        j += 1;
                    }
                }
                // SAFETY: each is a live object of `c`, dropped from the model.
                unsafe { k.kmem_cache_free_bulk(c, &group) }.expect("bulk free of live objects");
            }
            _ => {}
        }
        check_disjoint(&live);
        check_stats(&k, &live);
    }
    for l in &live {
        check_contents(l);
        match k.owner_of(l.ptr as usize + l.size - 1) {
            Owner::Object {
                start, live: true, ..
            }
            | Owner::Large { start, .. } => {
                assert_eq!(start, l.ptr as usize)
            }
            other => panic!("owner_of a live object says {other:?}"),
        }
    }
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
    for l in live.drain(..) {
        // SAFETY: each is live; the model forgets it.
        unsafe { k.kfree(l.ptr) }.unwrap();
    }
    check_stats(&k, &live);
    k.shrink_all();
    let t = k.totals();
    assert_eq!(
        t.pages.slab_pages + t.pages.large_pages + t.pages.huge_pages,
        0,
        "pages left after freeing all"
    );
}

fn check_disjoint(live: &[Live]) {
    let mut spans: Vec<(usize, usize)> = live
        .iter()
        .map(|l| (l.ptr as usize, l.ptr as usize + l.ksize))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "objects overlap: {:#x?} and {:#x?}",
            w[0],
            w[1]
        );
    }
}

fn check_stats<P: PageSource>(k: &Kmalloc<P>, live: &[Live]) {
    let mut active = 0;
    k.for_each_cache(|_, info| {
        assert!(info.active_objs <= info.num_objs);
        assert_eq!(info.num_objs, info.num_slabs * info.objperslab);
        active += info.active_objs;
    });
    let slab_objects = live
        .iter()
        .filter(|l| matches!(k.owner_of(l.ptr as usize), Owner::Object { .. }))
        .count();
    assert_eq!(active, slab_objects, "active_objs disagree with the model");
    assert_eq!(k.totals().live_allocations as usize, live.len());
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 1 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op_strategy(), 1..if cfg!(miri) { 16 } else { 400 })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn policy_a_line_64(ops in ops()) { run(Policy::A, 64, &ops) }

    #[test]
    fn policy_a_line_128(ops in ops()) { run(Policy::A, 128, &ops) }

    #[test]
    fn policy_b(ops in ops()) { run(Policy::B, 64, &ops) }

    #[test]
    fn policy_c(ops in ops()) { run(Policy::C, 64, &ops) }

    #[test]
    fn policy_c_line_32(ops in ops()) { run(Policy::C, 32, &ops) }

    // Debug mode (red zones, poison, records) keeps every placement promise. (Under Miri,
    // tests/debug.rs covers debug mode; poisoning whole slabs byte by byte is too slow there.)
    #[test]
    #[cfg_attr(miri, ignore)]
    fn debug_policy_a(ops in ops()) { run_mode(Policy::A, 64, true, ClassSet::Kmalloc, &ops) }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn debug_policy_b(ops in ops()) { run_mode(Policy::B, 64, true, ClassSet::Kmalloc, &ops) }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn debug_policy_c(ops in ops()) { run_mode(Policy::C, 64, true, ClassSet::Kmalloc, &ops) }

    // The hosted heap's finer classes keep every promise too.
    #[test]
    fn fine_policy_a_line_64(ops in ops()) { run_mode(Policy::A, 64, false, ClassSet::Fine, &ops) }

    #[test]
    fn fine_policy_a_line_128(ops in ops()) {
        run_mode(Policy::A, 128, false, ClassSet::Fine, &ops)
    }

    #[test]
    fn fine_policy_c(ops in ops()) { run_mode(Policy::C, 64, false, ClassSet::Fine, &ops) }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn fine_debug_policy_b(ops in ops()) { run_mode(Policy::B, 64, true, ClassSet::Fine, &ops) }
}
