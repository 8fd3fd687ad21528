//! Model tests of the per-CPU layer: random allocations and frees through several `CpuCache`s
//! of one allocator (frees of another cache's objects are remote frees), flushes, deliberate
//! double frees, against a model of what is live. After every operation `validate()` must find
//! nothing and the accounting must add up: the slabs' active objects are the live slab objects,
//! plus what the CPU caches and depots hold, plus the magazines themselves.

mod common;

use common::{natural_align, region};
use dmaslab_core::magazine::capacity_for;
use dmaslab_core::{
    ArenaPageSource, CpuCache, FindingKind, FreeError, Gfp, Kmalloc, Owner, Policy,
    DEFAULT_PAGE_SIZE, HINT_SLOTS, NO_CLASS, STASH_BYTES, STASH_MAGS,
};
use proptest::prelude::*;

const CPUS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        cpu: usize,
        size: usize,
        align_log: u32,
        dma: bool,
    },
    /// Free live object `i` from CPU `cpu` (remote when another CPU allocated it); `fast`: try
    /// `kfree_fast` first.
    Free {
        cpu: usize,
        i: usize,
        fast: bool,
    },
    /// Free the most recent `n` live objects at once from `cpu`: a burst.
    Burst {
        cpu: usize,
        n: usize,
    },
    /// Free live object `i`, then free it again: the second must be refused.
    DoubleFree {
        cpu: usize,
        i: usize,
    },
    Flush {
        cpu: usize,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..=256,
        3 => 257usize..=8192,
        1 => 8193usize..=40_000,
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..CPUS, size_strategy(), prop_oneof![4 => Just(0u32), 1 => 0u32..=12], any::<bool>())
            .prop_map(|(cpu, size, align_log, dma)| Op::Alloc { cpu, size, align_log, dma }),
        6 => (0..CPUS, any::<usize>(), any::<bool>()).prop_map(|(cpu, i, fast)| Op::Free { cpu, i, fast }),
        1 => (0..CPUS, 1usize..=if cfg!(miri) { 8 } else { 150 }).prop_map(|(cpu, n)| Op::Burst { cpu, n }),
        1 => (0..CPUS, any::<usize>()).prop_map(|(cpu, i)| Op::DoubleFree { cpu, i }),
        1 => (0..CPUS).prop_map(|cpu| Op::Flush { cpu }),
    ]
}

struct Live {
    ptr: *mut u8,
    size: usize,
    fill: u8,
    slab: bool,
}

fn check_contents(l: &Live) {
    // SAFETY: the object is live and at least `size` bytes, all written with `fill`.
    let s = unsafe { std::slice::from_raw_parts(l.ptr, l.size) };
    assert!(
        s.iter().all(|&b| b == l.fill),
        "object at {:p} lost its contents (handed out twice?)",
        l.ptr
    );
}

/// The accounting invariant of the per-CPU layer: every object the slabs count as active is a
/// live slab object of the model, an object held by a CPU cache or a depot, or a magazine.
fn check_accounting(k: &Kmalloc<ArenaPageSource<'_>>, ccs: &[CpuCache], live: &[Live]) {
    let mut active = 0;
    k.for_each_cache(|_, info| active += info.active_objs);
    let (mut mags, mut cached) = (0, 0);
    for cc in ccs {
        let (m, o) = cc.counts();
        mags += m;
        cached += o;
    }
    let (full, empty, depot_objs) = k.depot_counts();
    let slab_live = live.iter().filter(|l| l.slab).count();
    assert_eq!(
        active,
        slab_live + cached + depot_objs + mags + full + empty,
        "active objects: {slab_live} live + {cached} cached + {depot_objs} in depots + {} magazines",
        mags + full + empty
    );
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
}

fn free_one(k: &Kmalloc<ArenaPageSource<'_>>, cc: &mut CpuCache, l: &Live, fast: bool) {
    check_contents(l);
    // SAFETY: `cc` is used with `k` only; `l` is live and dropped from the model.
    unsafe {
        if !(fast && k.kfree_fast(cc, l.ptr)) {
            k.kfree_cpu(cc, l.ptr, 0).expect("free of a live object");
        }
    }
}

fn run(policy: Policy, line: usize, debug: bool, ops: &[Op]) {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 24 << 20 });
    let k = common::kmalloc_mode(&mut mem, policy, line, debug);
    let mut ccs: Vec<CpuCache> = (0..CPUS).map(|_| CpuCache::NEW).collect();
    let mut live: Vec<Live> = Vec::new();
    let mut fills = 0u8;
    for op in ops {
        match *op {
            Op::Alloc {
                cpu,
                size,
                align_log,
                dma,
            } => {
                let align = 1usize << align_log;
                let gfp = if dma { Gfp::DMA } else { Gfp::KERNEL };
                // SAFETY: `ccs[cpu]` is used with `k` only.
                let r = unsafe { k.kmalloc_cpu(&mut ccs[cpu], size, align, gfp, 0) };
                let Some(p) = r.expect("no corruption") else {
                    continue;
                };
                let addr = p.as_ptr() as usize;
                assert_eq!(addr % align, 0, "alignment {align} of size {size}");
                let natural = natural_align(size).min(k.max_natural_align());
                assert_eq!(addr % natural, 0, "natural alignment of size {size}");
                assert!(
                    live.iter()
                        .all(|l| addr + size <= l.ptr as usize || l.ptr as usize + l.size <= addr),
                    "{addr:#x} overlaps a live object"
                );
                fills = fills.wrapping_add(1);
                let l = Live {
                    ptr: p.as_ptr(),
                    size,
                    fill: fills,
                    slab: k.cache_of(p.as_ptr()).is_some(),
                };
                // The whole first word of a slab object is written: the free paths read it (for
                // its freed-object tag), and Miri holds reading unwritten bytes against them.
                // (Debug mode reads none, and the bytes past `size` are its red zone.)
                let n = if l.slab && !debug {
                    l.size.max(8)
                } else {
                    l.size
                };
                // SAFETY: a fresh allocation of at least `n` bytes (a slab slot has 8 at least).
                unsafe { l.ptr.write_bytes(l.fill, n) };
                live.push(l);
            }
            Op::Free { cpu, i, fast } if !live.is_empty() => {
                let l = live.swap_remove(i % live.len());
                free_one(&k, &mut ccs[cpu], &l, fast);
            }
            Op::Burst { cpu, n } => {
                for _ in 0..n.min(live.len()) {
                    let l = live.pop().expect("non-empty");
                    free_one(&k, &mut ccs[cpu], &l, true);
                }
            }
            Op::DoubleFree { cpu, i } if !live.is_empty() => {
                let l = live.swap_remove(i % live.len());
                free_one(&k, &mut ccs[cpu], &l, false);
                // SAFETY: deliberate misuse: the allocator must refuse it and change nothing.
                let again = unsafe { k.kfree_cpu(&mut ccs[cpu], l.ptr, 0) };
                if l.slab {
                    let named = match again {
                        Err(FreeError::DoubleFree(a)) => a,
                        // Debug mode: the core's full check, with the object's record.
                        Err(FreeError::Found(f)) if f.kind == FindingKind::DoubleFree => f.addr,
                        other => panic!("second free of a slab object gave {other:?}"),
                    };
                    assert_eq!(named, l.ptr as usize);
                } else {
                    // A page run's pages went back: no longer an allocation at all.
                    assert!(again.is_err(), "second free of a page run accepted");
                }
            }
            Op::Flush { cpu } => {
                // SAFETY: `ccs[cpu]` is used with `k` only.
                unsafe { k.cpu_cache_flush(&mut ccs[cpu]) }.expect("flush");
                assert_eq!(ccs[cpu].counts(), (0, 0));
            }
            _ => {}
        }
        check_accounting(&k, &ccs, &live);
    }
    for (n, l) in live.iter().enumerate() {
        free_one(&k, &mut ccs[n % CPUS], l, n % 2 == 0);
    }
    live.clear();
    for cc in &mut ccs {
        // SAFETY: used with `k` only.
        unsafe { k.cpu_cache_flush(cc) }.expect("flush");
    }
    check_accounting(&k, &ccs, &live);
    // Everything left is magazines parked in the depots.
    let (full, empty, objs) = k.depot_counts();
    assert_eq!(
        k.totals().live_allocations as usize,
        full + empty + objs,
        "nothing but the depots' magazines and their objects is allocated"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 48 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn per_cpu_layer_policy_c(ops in prop::collection::vec(op_strategy(), 1..if cfg!(miri) { 24 } else { 400 })) {
        run(Policy::C, 64, false, &ops);
    }

    #[test]
    fn per_cpu_layer_policy_a(ops in prop::collection::vec(op_strategy(), 1..if cfg!(miri) { 24 } else { 300 })) {
        run(Policy::A, 128, false, &ops);
    }

    #[test]
    #[cfg_attr(miri, ignore = "validate() re-checks every object's poison after each step: hours under Miri; policies C and A cover the same unsafe code")]
    fn per_cpu_layer_debug_mode_bypasses_magazines(ops in prop::collection::vec(op_strategy(), 1..if cfg!(miri) { 20 } else { 200 })) {
        run(Policy::B, 64, true, &ops);
    }
}

/// `kmalloc_cpu(size)` through `cc`, with the object's bytes written (as a program would before
/// freeing it; the free paths read its first word).
///
/// # Safety
/// `cc` is used with `k` only.
unsafe fn alloc_written(
    k: &Kmalloc<ArenaPageSource<'_>>,
    cc: &mut CpuCache,
    size: usize,
) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    let p = unsafe { k.kmalloc_cpu(cc, size, 1, Gfp::KERNEL, 0) }
        .expect("no misuse")
        .expect("memory")
        .as_ptr();
    // SAFETY: a fresh allocation of `size` bytes.
    unsafe { p.write_bytes(0x5a, size) };
    p
}

/// A remote free lands in the freeing CPU's magazine; the allocating CPU gets a full magazine
/// back through the depot, and none of it takes more than the magazine's own slab lock.
#[test]
fn remote_frees_come_back_through_the_depot() {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 8 << 20 });
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let (mut a, mut b) = (CpuCache::NEW, CpuCache::NEW);
    let n = if cfg!(miri) { 200 } else { 2000 };
    // SAFETY: `a` and `b` are used with `k` only; every object is freed once.
    unsafe {
        let objs: Vec<*mut u8> = (0..n).map(|_| alloc_written(&k, &mut a, 64)).collect();
        for &p in &objs {
            if !k.kfree_fast(&mut b, p) {
                k.kfree_cpu(&mut b, p, 0).unwrap();
            }
        }
        let (full, _, _) = k.depot_counts();
        assert!(full > 0, "b's full magazines went to the depot");
        assert_eq!(
            b.stashed_bytes(),
            0,
            "b never allocated: it keeps none back"
        );
        // Once its own magazines are empty, `a` takes b's back before it refills from the slabs.
        let before = k.depot_counts().2;
        let again: Vec<*mut u8> = (0..200).map(|_| alloc_written(&k, &mut a, 64)).collect();
        assert!(
            again.iter().any(|p| objs.contains(p)),
            "a reused b's remote frees"
        );
        assert!(
            k.depot_counts().2 < before,
            "a took a loaded magazine from the depot"
        );
        for p in again {
            k.kfree_cpu(&mut a, p, 0).unwrap();
        }
        k.cpu_cache_flush(&mut a).unwrap();
        k.cpu_cache_flush(&mut b).unwrap();
    }
    assert_eq!(k.validate(|f| panic!("{f}")), 0);
}

/// Passive false sharing (the cache-scratch shape): one CPU allocates objects back to back and
/// hands one to each of two others, which free it and then allocate their own. A cache that
/// never allocated from the class keeps the given object back: neither gets the object it was
/// given, nor one on a cache line with the other's or with the given ones. The given object
/// stays in the cache (a second free of it is still a double free) and is used once the
/// cache's own refill runs out.
#[test]
fn a_given_object_is_not_the_next_allocation_of_a_fresh_cache() {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 8 << 20 });
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let mut main = CpuCache::NEW;
    let mut workers = [CpuCache::NEW, CpuCache::NEW];
    const SIZE: usize = 24;
    let line = |p: *mut u8| p as usize / 64;
    // SAFETY: every cache is used with `k` only; every object is freed once (the deliberate
    // double free is refused and changes nothing).
    unsafe {
        let given: Vec<*mut u8> = (0..2).map(|_| alloc_written(&k, &mut main, SIZE)).collect();
        let mut own = Vec::new();
        for (w, &g) in workers.iter_mut().zip(&given) {
            k.kfree_cpu(w, g, 0).unwrap();
            assert_eq!(w.counts().1, 1, "the given object stays in the cache");
            own.push(alloc_written(&k, w, SIZE));
        }
        for &p in &own {
            assert!(
                !given.contains(&p),
                "{p:p}: a worker got a given object back"
            );
        }
        let lines: Vec<usize> = given.iter().chain(&own).map(|&p| line(p)).collect();
        for (i, &p) in own.iter().enumerate() {
            let others = lines
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != given.len() + i);
            for (_, &l) in others {
                assert_ne!(
                    line(p),
                    l,
                    "{p:p} shares a cache line with another thread's object"
                );
            }
        }
        let again = k.kfree_cpu(&mut workers[0], given[0], 0);
        assert!(
            matches!(again, Err(FreeError::Found(f)) if f.kind == FindingKind::DoubleFree
                && f.addr == given[0] as usize),
            "the waiting object keeps its freed-object tag: {again:?}"
        );
        // The worker's own objects come first, then the given one.
        let cap = capacity_for(k.kmalloc_size_roundup(SIZE));
        let more: Vec<*mut u8> = (0..cap + 1)
            .map(|_| alloc_written(&k, &mut workers[0], SIZE))
            .collect();
        assert!(more[..cap - 1].iter().all(|p| *p != given[0]));
        assert!(
            more.contains(&given[0]),
            "the given object is used in the end"
        );
        for p in more.into_iter().chain(own) {
            if !k.kfree_fast(&mut workers[0], p) {
                k.kfree_cpu(&mut workers[0], p, 0).unwrap();
            }
        }
        assert!(k.kfree_cpu(&mut workers[1], given[1], 0).is_err());
        for cc in [&mut main].into_iter().chain(workers.iter_mut()) {
            k.cpu_cache_flush(cc).unwrap();
        }
    }
    assert_eq!(k.validate(|f| panic!("{f}")), 0);
}

/// A burst of a CPU cache's own frees beyond its two magazines stays with it (the stash, up to
/// `STASH_MAGS` full magazines per class) and its next allocations take those objects back
/// before the depot's; beyond the stash, full magazines go to the depot.
#[test]
fn a_burst_of_own_frees_is_stashed_and_taken_back_first() {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 8 << 20 });
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let (mut a, mut b) = (CpuCache::NEW, CpuCache::NEW);
    // 1 KiB objects (few to a magazine, so that Miri gets through), far below STASH_BYTES for
    // STASH_MAGS magazines of them.
    const SIZE: usize = 1024;
    const CAP: usize = capacity_for(SIZE);
    const { assert!(STASH_MAGS * CAP * SIZE <= STASH_BYTES) };
    let held = (2 + STASH_MAGS) * CAP;
    // SAFETY: `a` and `b` are used with `k` only; every object is freed once.
    unsafe {
        // `b` puts a loaded magazine in the depot, which `a` must not prefer to its own.
        let theirs: Vec<*mut u8> = (0..3 * CAP)
            .map(|_| alloc_written(&k, &mut b, SIZE))
            .collect();
        for &p in &theirs {
            k.kfree_cpu(&mut b, p, 0).unwrap();
        }
        k.cpu_cache_flush(&mut b).unwrap();
        let depot = k.depot_counts();
        assert!(depot.0 > 0, "b's magazines are in the depot");
        let ours: Vec<*mut u8> = (0..held).map(|_| alloc_written(&k, &mut a, SIZE)).collect();
        // The refill's leftovers go: `a` holds only what it frees next.
        k.cpu_cache_flush(&mut a).unwrap();
        let depot = k.depot_counts();
        for &p in &ours {
            k.kfree_cpu(&mut a, p, 0).unwrap();
        }
        let (mags, objs) = a.counts();
        assert_eq!(objs, held, "every free stays in a");
        assert!(mags >= 2 + STASH_MAGS, "{mags} magazines");
        assert_eq!(a.stashed_bytes(), STASH_MAGS * CAP * SIZE);
        assert_eq!(
            k.depot_counts().0,
            depot.0,
            "no full magazine of a's went to the depot"
        );
        let again: Vec<*mut u8> = (0..held).map(|_| alloc_written(&k, &mut a, SIZE)).collect();
        let mut sorted = ours.clone();
        sorted.sort();
        assert!(
            again.iter().all(|p| sorted.binary_search(p).is_ok()),
            "a took its own objects back first"
        );
        assert_eq!(k.depot_counts().0, depot.0, "and left the depot's alone");
        // Beyond the stash: the excess goes to the depot.
        let more: Vec<*mut u8> = (0..2 * CAP)
            .map(|_| alloc_written(&k, &mut a, SIZE))
            .collect();
        let depot = k.depot_counts();
        for &p in again.iter().chain(&more) {
            k.kfree_cpu(&mut a, p, 0).unwrap();
        }
        assert!(k.depot_counts().0 > depot.0, "the stash is bounded");
        assert!(a.stashed_bytes() <= STASH_BYTES);
        k.cpu_cache_flush(&mut a).unwrap();
        assert_eq!(a.counts(), (0, 0));
    }
    assert_eq!(k.validate(|f| panic!("{f}")), 0);
}

/// `ksize_cpu` agrees with `ksize` through the CPU cache's segment hint, refuses what is no
/// object start, and does not trust a hint whose segment went back to the page source.
/// `validate` checks the magazines parked in the depots: a write into an object held by one (its
/// freed-object tag overwritten) is a broken invariant naming the magazine, and the depot's
/// magazines are all still there afterwards.
#[test]
fn validate_finds_a_write_into_a_depot_magazine() {
    let mut mem = region(2 << 20);
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let mut cc = CpuCache::NEW;
    // SAFETY: `cc` is used with `k` only; every object is freed once and, once freed, only its
    // first word is written (while a depot holds it).
    unsafe {
        let objs: Vec<*mut u8> = (0..100).map(|_| alloc_written(&k, &mut cc, 64)).collect();
        for &p in &objs {
            k.kfree_cpu(&mut cc, p, 0).unwrap();
        }
        k.cpu_cache_flush(&mut cc).unwrap();
        let parked = k.depot_counts();
        // The freed objects and what is left of the refills.
        assert!(
            parked.2 >= objs.len(),
            "every freed object is in a depot magazine"
        );
        assert_eq!(k.validate(|f| panic!("{f}")), 0);
        objs[10].cast::<usize>().write(0x1234_5678);
        let mut found = Vec::new();
        assert_eq!(k.validate(|f| found.push(f.kind)), 1);
        assert_eq!(found, [FindingKind::BrokenInvariant]);
        assert_eq!(
            k.depot_counts(),
            parked,
            "validate gave every magazine back"
        );
    }
}

#[test]
fn hinted_lookup_agrees_with_the_map_and_forgets_released_segments() {
    let mut mem = region(8 << 20);
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let mut cc = CpuCache::NEW;
    let objs: Vec<*mut u8> = (0..2000)
        .map(|i| k.kmalloc(8 + i % 300, Gfp::KERNEL).unwrap().as_ptr())
        .collect();
    // SAFETY (all `ksize_cpu` calls): `cc` is used with `k` only.
    for &p in &objs {
        assert_eq!(unsafe { k.ksize_cpu(&mut cc, p) }, k.ksize(p));
        assert_eq!(unsafe { k.ksize_cpu(&mut cc, p.wrapping_add(1)) }, None);
    }
    assert!(cc.is_hinted());
    let newest = *objs.last().unwrap();
    let seg = newest as usize & !((DEFAULT_PAGE_SIZE << common::SEG_ORDER) - 1);
    // SAFETY: `cc` is used with `k` only.
    assert!(unsafe { k.ksize_cpu(&mut cc, newest) }.is_some());
    // SAFETY: as above; a query of any address is allowed.
    assert_eq!(unsafe { k.ksize_cpu(&mut cc, seg as *const u8) }, None);
    let pages = 1usize << common::SEG_ORDER;
    let free_page = (0..pages)
        .map(|p| seg + p * DEFAULT_PAGE_SIZE)
        .find(|&a| k.owner_of(a) == Owner::Unused)
        .expect("the newest segment has a free page left");
    assert_eq!(
        // SAFETY: `cc` is used with `k` only; a query of any address is allowed.
        unsafe { k.ksize_cpu(&mut cc, free_page as *const u8) },
        None
    );
    let stale = objs[0];
    for p in objs {
        // SAFETY: live, freed once.
        unsafe { k.kfree(p).unwrap() };
    }
    k.shrink_all();
    assert_eq!(k.totals().pages.segments, 0, "every segment given back");
    // SAFETY: `cc` is used with `k` only; a query of any address is allowed.
    assert_eq!(unsafe { k.ksize_cpu(&mut cc, stale) }, None);
    // SAFETY: `stale` is no allocation any more: the free must be refused.
    assert_eq!(
        unsafe { k.kfree_cpu(&mut cc, stale, 0) },
        Err(FreeError::InvalidPointer(stale as usize))
    );
}

/// Up to `HINT_SLOTS` adjacent segments sit in distinct hint slots: once the full path has seen
/// each, the lock-free `kfree_fast` accepts an object of every one of them.
#[test]
#[cfg_attr(miri, ignore = "a 48 MiB arena")]
fn a_cpu_hint_holds_every_adjacent_segment_at_once() {
    let mut mem = region(48 << 20);
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let mut cc = CpuCache::NEW;
    let objs: Vec<*mut u8> = std::iter::from_fn(|| k.kmalloc(8192, Gfp::KERNEL))
        .map(|p| p.as_ptr())
        .collect();
    let seg_bytes = DEFAULT_PAGE_SIZE << common::SEG_ORDER;
    let mut segs: Vec<usize> = objs.iter().map(|&p| p as usize / seg_bytes).collect();
    segs.dedup();
    assert!(
        segs.len() > 100 && segs.len() <= HINT_SLOTS,
        "{} segments",
        segs.len()
    );
    let x = k.cpu_class(8192, Gfp::KERNEL);
    assert_ne!(x, NO_CLASS);
    // SAFETY: `cc` is used with `k` only; each object is freed once and taken back.
    unsafe {
        for &p in &objs {
            assert!(k.ksize_cpu(&mut cc, p).is_some());
        }
        // The full path gives the class its magazine: the first free of a class the cache
        // never allocated from waits in `prev`, the second makes that magazine `loaded`.
        k.kfree_cpu(&mut cc, objs[0], 0).unwrap();
        assert_eq!(k.kmalloc_fast(&mut cc, x), None, "no loaded magazine yet");
        k.kfree_cpu(&mut cc, objs[1], 0).unwrap();
        for &p in [objs[1], objs[0]].iter() {
            assert_eq!(k.kmalloc_fast(&mut cc, x).map(|p| p.as_ptr()), Some(p));
        }
        for &p in &objs {
            assert!(k.kfree_fast(&mut cc, p), "{p:p}: hint slot lost");
            assert_eq!(k.kmalloc_fast(&mut cc, x).map(|p| p.as_ptr()), Some(p));
        }
        k.cpu_cache_flush(&mut cc).unwrap();
    }
}

/// Threads with a `CpuCache` each hand their objects to the next thread, which checks the
/// contents and frees them (remote frees, magazines through the depot): the freed-object tag
/// check must never take a correct free or reuse for misuse, and no object may be handed out
/// twice (each one carries its owner's pattern until freed).
#[test]
fn remote_frees_from_many_threads_raise_no_false_alarm() {
    use std::sync::mpsc;
    const THREADS: usize = 3;
    // (Miri: a few rounds of small objects; it interprets every byte written.)
    let rounds = if cfg!(miri) { 16 } else { 20_000 };
    let sizes: &[usize] = if cfg!(miri) {
        &[8, 24, 64, 200]
    } else {
        &[8, 24, 64, 200, 512, 4096]
    };
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 32 << 20 });
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
        .map(|_| mpsc::sync_channel::<(usize, usize, u8)>(256))
        .unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let tx = txs[(t + 1) % THREADS].clone();
            let k = &k;
            s.spawn(move || {
                let mut cc = CpuCache::NEW;
                let mut mine: Vec<(usize, usize, u8)> = Vec::new();
                let check_and_free = |cc: &mut CpuCache, (addr, size, fill): (usize, usize, u8)| {
                    let p = addr as *mut u8;
                    // SAFETY: a live object of `size` bytes, all written with `fill`, given to
                    // this thread to free; freed once.
                    unsafe {
                        let s = std::slice::from_raw_parts(p, size);
                        assert!(s.iter().all(|&b| b == fill), "{p:p} handed out twice");
                        if !k.kfree_fast(cc, p) {
                            k.kfree_cpu(cc, p, 0).expect("a correct free");
                        }
                    }
                };
                for i in 0..rounds {
                    let size = sizes[(i * 7 + t) % sizes.len()];
                    let fill = (i as u8) ^ (t as u8 * 85);
                    let x = k.cpu_class(size, Gfp::KERNEL);
                    // SAFETY: `cc` is this thread's and used with `k` only; `x` is a class
                    // (every size here is a slab class's).
                    let p = match unsafe { k.kmalloc_fast(&mut cc, x) } {
                        Some(p) => p.as_ptr(),
                        // SAFETY: as above.
                        None => unsafe { k.kmalloc_cpu(&mut cc, size, 1, Gfp::KERNEL, 0) }
                            .expect("a correct allocation")
                            .expect("memory")
                            .as_ptr(),
                    };
                    // SAFETY: a fresh allocation of at least `size` bytes.
                    unsafe { p.write_bytes(fill, size) };
                    let obj = (p as usize, size, fill);
                    if i % 3 == 0 {
                        mine.push(obj);
                    } else if tx.try_send(obj).is_err() {
                        check_and_free(&mut cc, obj);
                    }
                    while let Ok(o) = rx.try_recv() {
                        check_and_free(&mut cc, o);
                    }
                    if mine.len() > 40 {
                        for o in mine.drain(..20) {
                            check_and_free(&mut cc, o);
                        }
                    }
                }
                for o in mine {
                    check_and_free(&mut cc, o);
                }
                drop(tx);
                for o in rx.iter() {
                    check_and_free(&mut cc, o);
                }
                // SAFETY: `cc` is used with `k` only; everything goes back.
                unsafe { k.cpu_cache_flush(&mut cc) }.expect("a clean flush");
            });
        }
        drop(txs);
    });
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
    let (full, empty, objs) = k.depot_counts();
    assert_eq!(
        k.totals().live_allocations as usize,
        full + empty + objs,
        "nothing but the depots' magazines and their objects is allocated"
    );
}
