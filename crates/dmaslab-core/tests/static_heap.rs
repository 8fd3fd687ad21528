//! `StaticHeap` as a `GlobalAlloc` (alignment, contents, realloc, OOM then recovery, threads)
//! and `Kmalloc::new`'s region checks.

mod common;

use common::region;
use core::alloc::{GlobalAlloc, Layout};
use dmaslab_core::{
    ArenaPageSource, Config, ConfigError, Gfp, HeapRegion, Kmalloc, PageSource, Policy, StaticHeap,
    StaticHeapError,
};
use proptest::prelude::*;
use std::mem::MaybeUninit;

/// A fresh static heap over a fresh 1 MiB region (leaked: a test's heap lives for the process).
/// A pointer kept for the life of the process.
struct Kept(#[allow(dead_code)] *mut u8);
// SAFETY: never dereferenced; it only keeps its memory reachable.
unsafe impl Send for Kept {}
static KEPT: std::sync::Mutex<Vec<Kept>> = std::sync::Mutex::new(Vec::new());

/// Leaks `b` on purpose (a static heap and its region live as long as the process), kept
/// reachable from a static so that Miri's leak check, which ignores such memory, does not report it.
fn keep<T: ?Sized>(b: Box<T>) -> &'static mut T {
    let p = Box::into_raw(b);
    KEPT.lock().unwrap().push(Kept(p.cast()));
    // SAFETY: `p` came from `Box::into_raw` and is never freed.
    unsafe { &mut *p }
}

fn heap_1m() -> &'static StaticHeap {
    let heap: &'static StaticHeap = keep(Box::new(StaticHeap::new()));
    heap.init(keep(region(1 << 20)), Config::new(Policy::C))
        .expect("1 MiB with the default config");
    heap
}

fn live_bytes(h: &StaticHeap) -> u64 {
    h.with_kmalloc(|k| k.totals().bytes_in_use).unwrap()
}

#[test]
fn before_init_alloc_is_null_and_init_is_once() {
    static HEAP: StaticHeap = StaticHeap::new();
    // Not 256 KiB: that holds one 128 KiB segment only where the static happens to start on a
    // page boundary (the smallest region that works wherever it starts is ~260 KiB).
    static REGION: HeapRegion<{ 512 << 10 }> = HeapRegion::new();
    let l = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a non-zero-size layout.
    assert!(unsafe { HEAP.alloc(l) }.is_null(), "alloc before init");
    assert!(HEAP.with_kmalloc(|_| ()).is_none());
    HEAP.init(REGION.take().unwrap(), Config::new(Policy::A))
        .unwrap();
    assert!(REGION.take().is_none(), "a region is handed out once");
    let again: &'static mut [MaybeUninit<u8>] = keep(region(1 << 20));
    assert_eq!(
        HEAP.init(again, Config::new(Policy::A)),
        Err(StaticHeapError::AlreadyInitialised)
    );
    // SAFETY: as above; freed once with its layout.
    unsafe {
        let p = HEAP.alloc(l);
        assert!(!p.is_null());
        assert_eq!(p as usize % 64, 0, "policy A: every object on a DMA line");
        HEAP.dealloc(p, l);
    }
}

#[test]
fn a_failed_init_can_be_retried() {
    static HEAP: StaticHeap = StaticHeap::new();
    let small: &'static mut [MaybeUninit<u8>] = keep(region(64 << 10));
    let err = HEAP.init(small, Config::new(Policy::C)).unwrap_err();
    assert!(matches!(
        err,
        StaticHeapError::Config(ConfigError::RegionTooSmall { .. })
    ));
    assert!(
        err.to_string().contains("smallest workable region"),
        "{err}"
    );
    assert!(!HEAP.is_initialised());
    let big: &'static mut [MaybeUninit<u8>] = keep(region(1 << 20));
    HEAP.init(big, Config::new(Policy::C)).unwrap();
    assert!(HEAP.is_initialised());
}

#[test]
fn oom_returns_null_then_recovers() {
    let h = heap_1m();
    let l = Layout::from_size_align(4096, 4096).unwrap();
    let mut got = Vec::new();
    loop {
        // SAFETY: a non-zero-size layout.
        let p = unsafe { h.alloc(l) };
        if p.is_null() {
            break;
        }
        got.push(p);
        assert!(got.len() < 1 << 20, "a 1 MiB heap never runs out");
    }
    let n = got.len();
    // 8-page slabs of kmalloc-4k fit 3 to a 128 KiB segment (the header page spoils the
    // first run): 24 of its 32 pages; docs/firmware.md has the measured table.
    assert!(n * 4096 >= 512 << 10, "only {n} pages of 4 KiB from 1 MiB");
    for p in got.drain(..) {
        // SAFETY: each came from `alloc(l)` and is freed once.
        unsafe { h.dealloc(p, l) };
    }
    assert_eq!(live_bytes(h), 0);
    for _ in 0..n {
        // SAFETY: as above.
        let p = unsafe { h.alloc(l) };
        assert!(
            !p.is_null(),
            "after freeing everything the heap serves as much again"
        );
        got.push(p);
    }
    for p in got {
        // SAFETY: as above.
        unsafe { h.dealloc(p, l) };
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_log: u32 },
    Free(usize),
    Realloc(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..20_000, 0u32..13).prop_map(|(size, align_log)| Op::Alloc { size, align_log }),
        2 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), 1usize..20_000).prop_map(|(i, n)| Op::Realloc(i, n)),
    ]
}

/// Fills `len` bytes at `p` with a pattern derived from `tag`.
fn fill(p: *mut u8, len: usize, tag: usize) {
    for i in 0..len {
        // SAFETY: `p` holds at least `len` bytes (caller).
        unsafe { p.add(i).write((tag.wrapping_mul(31) ^ i) as u8) };
    }
}

fn check(p: *const u8, len: usize, tag: usize) -> bool {
    // SAFETY: as `fill`.
    (0..len).all(|i| unsafe { p.add(i).read() } == (tag.wrapping_mul(31) ^ i) as u8)
}

proptest! {
    // Under Miri: no failure file (the file system is isolated), and fewer, shorter cases.
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 48 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Against a model (the live blocks and their contents): every block honours its
    /// alignment, blocks never overlap, realloc keeps the contents, and freeing everything
    /// leaves nothing in use.
    #[test]
    fn global_alloc_matches_the_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 16 } else { 120 })) {
        let h = heap_1m();
        let mut live: Vec<(*mut u8, Layout, usize)> = Vec::new();
        for (tag, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_log } => {
                    let l = Layout::from_size_align(size, 1 << align_log).unwrap();
                    // SAFETY: size >= 1.
                    let p = unsafe { h.alloc(l) };
                    if p.is_null() {
                        continue; // out of memory is allowed; the heap stays usable
                    }
                    prop_assert_eq!(p as usize % l.align(), 0);
                    for &(q, m, _) in &live {
                        let (a, b) = (p as usize, q as usize);
                        prop_assert!(a + l.size() <= b || b + m.size() <= a, "overlap");
                    }
                    fill(p, size, tag);
                    live.push((p, l, tag));
                }
                Op::Free(i) if !live.is_empty() => {
                    let (p, l, t) = live.swap_remove(i % live.len());
                    prop_assert!(check(p, l.size(), t), "contents changed");
                    // SAFETY: live, from this heap, freed once.
                    unsafe { h.dealloc(p, l) };
                }
                Op::Realloc(i, n) if !live.is_empty() => {
                    let k = i % live.len();
                    let (p, l, t) = live[k];
                    // SAFETY: live with layout `l`; n >= 1.
                    let q = unsafe { h.realloc(p, l, n) };
                    if q.is_null() {
                        prop_assert!(check(p, l.size(), t), "failed realloc kept the block");
                        continue;
                    }
                    prop_assert_eq!(q as usize % l.align(), 0);
                    prop_assert!(check(q, l.size().min(n), t), "realloc lost contents");
                    fill(q, n, tag);
                    live[k] = (q, Layout::from_size_align(n, l.align()).unwrap(), tag);
                }
                _ => {}
            }
        }
        for (p, l, t) in live {
            prop_assert!(check(p, l.size(), t));
            // SAFETY: as above.
            unsafe { h.dealloc(p, l) };
        }
        prop_assert_eq!(live_bytes(h), 0);
    }
}

#[test]
fn threads_share_the_default_spin_lock() {
    let h = heap_1m();
    std::thread::scope(|s| {
        for t in 0..4usize {
            s.spawn(move || {
                for round in 0..if cfg!(miri) { 40 } else { 2000usize } {
                    let l = Layout::from_size_align(8 + (round * 7 + t) % 900, 8).unwrap();
                    // SAFETY: non-zero size; freed once below.
                    let p = unsafe { h.alloc(l) };
                    assert!(!p.is_null());
                    fill(p, l.size(), t);
                    assert!(check(p, l.size(), t));
                    // SAFETY: from `alloc(l)`, freed once.
                    unsafe { h.dealloc(p, l) };
                }
            });
        }
    });
    assert_eq!(live_bytes(h), 0);
}

#[test]
fn slabinfo_reads_under_the_lock() {
    let h = heap_1m();
    let b = Box::new(0u64);
    let l = Layout::from_size_align(96, 32).unwrap();
    // SAFETY: non-zero size; freed below.
    let p = unsafe { h.alloc(l) };
    let mut s = String::new();
    h.with_kmalloc(|k| k.write_slabinfo(&mut s))
        .unwrap()
        .unwrap();
    let row = s.lines().find(|r| r.starts_with("kmalloc-96 ")).unwrap();
    let active: usize = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(active, 1, "{row}");
    // SAFETY: from `alloc(l)`.
    unsafe { h.dealloc(p, l) };
    drop(b);
}

/// Kmalloc over `len` bytes at `off` into `mem` with `config`.
fn build(
    mem: &mut [MaybeUninit<u8>],
    off: usize,
    len: usize,
    config: Config,
) -> Result<Kmalloc<ArenaPageSource<'_>>, ConfigError> {
    let arena = ArenaPageSource::new(&mut mem[off..off + len]).expect("arena");
    Kmalloc::new(arena, config)
}

#[test]
fn too_small_a_region_is_an_error_naming_a_region_that_works() {
    // The case: 1 MiB with 2 MiB segments used to return Ok and then fail every
    // allocation.
    let mut mem = region(4 << 20);
    let err = match build(&mut mem, 0, 1 << 20, Config::new(Policy::C).seg_order(9)) {
        Err(e) => e,
        Ok(_) => panic!("1 MiB cannot hold a 2 MiB segment"),
    };
    let ConfigError::RegionTooSmall {
        segment,
        min_region: Some(min),
        min_region_any: Some(any),
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(segment, 2 << 20);
    let text = err.to_string();
    assert!(
        text.contains(&format!("smallest workable region is {min} bytes")),
        "{text}"
    );
    assert!(any < min);
    // The region named works wherever it starts (each page offset against a 2 MiB boundary
    // of a few), and the default config over 1 MiB works too.
    let mut mem = region(min + (4 << 20));
    let base2 = mem.as_ptr() as usize;
    let aligned = (2 << 20) - base2 % (2 << 20);
    for pages in [0usize, 1, 2, 255, 511] {
        let k = build(
            &mut mem,
            aligned + pages * 4096,
            min,
            Config::new(Policy::C).seg_order(9),
        )
        .unwrap_or_else(|e| panic!("{min} bytes at +{pages} pages: {e}"));
        let p = k
            .kmalloc(64, Gfp::KERNEL)
            .expect("an allocation from the region named");
        // SAFETY: just allocated, freed once.
        unsafe { k.kfree(p.as_ptr()).unwrap() };
    }
    let mut mem = region(1 << 20);
    let k = build(&mut mem, 0, 1 << 20, Config::new(Policy::C)).expect("default over 1 MiB");
    assert!(k.kmalloc(64, Gfp::KERNEL).is_some());
    assert_eq!(k.config().seg_order, Some(5), "1 MiB gets 128 KiB segments");
}

#[test]
fn default_segments_follow_the_region_and_stay_2mib_for_mmap_and_large() {
    assert_eq!(Config::default_seg_order(None, 4096), 9);
    assert_eq!(Config::default_seg_order(Some(64 << 20), 4096), 9);
    assert_eq!(Config::default_seg_order(Some(16 << 20), 4096), 9);
    assert_eq!(Config::default_seg_order(Some(8 << 20), 4096), 8);
    assert_eq!(Config::default_seg_order(Some(1 << 20), 4096), 5);
    assert_eq!(Config::default_seg_order(Some(64 << 10), 4096), 5);
    // A Kmalloc's config records the order chosen for its source.
    let mut mem = region(32 << 20);
    let arena = ArenaPageSource::new(&mut mem).unwrap();
    let cap = arena.capacity().unwrap();
    let k = Kmalloc::new(arena, Config::new(Policy::B)).unwrap();
    assert_eq!(
        k.config().seg_order,
        Some(Config::default_seg_order(Some(cap), 4096))
    );
}

#[test]
fn small_pages_make_a_64k_heap() {
    static HEAP: StaticHeap = StaticHeap::new();
    let r: &'static mut [MaybeUninit<u8>] = keep(region(64 << 10));
    assert!(
        HEAP.init(r, Config::new(Policy::C)).is_err(),
        "64 KiB of 4 KiB pages holds no segment"
    );
    let r: &'static mut [MaybeUninit<u8>] = keep(region(64 << 10));
    HEAP.init_with_page_size(r, 1024, Config::new(Policy::C))
        .unwrap();
    let seg = HEAP
        .with_kmalloc(|k| k.page_size() << k.config().seg_order.unwrap())
        .unwrap();
    assert_eq!(seg, 32 << 10);
    let mut n = 0;
    let l = Layout::from_size_align(64, 8).unwrap();
    let mut got = Vec::new();
    loop {
        // SAFETY: a non-zero-size layout.
        let p = unsafe { HEAP.alloc(l) };
        if p.is_null() {
            break;
        }
        got.push(p);
        n += 1;
    }
    assert!(n * 64 >= 16 << 10, "only {n} objects of 64 bytes in 64 KiB");
    for p in got {
        // SAFETY: from `alloc(l)`, freed once.
        unsafe { HEAP.dealloc(p, l) };
    }
}
