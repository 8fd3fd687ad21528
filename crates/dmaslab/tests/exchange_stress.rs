//! Randomized stress on the cross-thread parts of the heap: magazine exchange with the depot,
//! depot bounds, remote frees (a block freed by another thread than the one that allocated it)
//! and thread exit (magazines flushed to the depot), with the hardening checks on.
//!
//! Threads come and go in generations; each allocates from a few size classes whose magazines
//! are small (so exchanges with the depot are frequent), fills every block with a pattern made
//! of its address and a tag, and frees blocks locally or sends them to a random other thread.
//! A shared set of live addresses catches a block handed out twice; contents are checked at
//! every free; at the end the slab walk must find nothing and the depots must be within bounds.
//! Runs for `DMASLAB_EXCHANGE_SECS` seconds (default 4).

use dmaslab::heap;
use dmaslab_core::depot::{DEPOT_EMPTY_MAX, DEPOT_FULL_MAX};
use std::collections::HashSet;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const THREADS: usize = 4;
/// Sizes of classes with magazines of 4 (2k, 4k, 8k), 16 (512) and 62 (64, 96 objects).
const SIZES: [usize; 7] = [2000, 4096, 8000, 512, 64, 90, 1500];

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

struct Block {
    ptr: usize,
    len: usize,
    tag: u8,
}

fn pattern(ptr: usize, tag: u8, i: usize) -> u8 {
    (ptr >> 4) as u8 ^ tag ^ (i as u8).wrapping_mul(31)
}

type Live = Arc<Mutex<HashSet<usize>>>;

fn alloc(live: &Live, len: usize, tag: u8) -> Block {
    let p = heap().malloc(len);
    assert!(!p.is_null(), "malloc({len})");
    assert!(
        live.lock().unwrap().insert(p as usize),
        "block {p:p} handed out twice"
    );
    // SAFETY: a fresh block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = pattern(p as usize, tag, i);
    }
    Block {
        ptr: p as usize,
        len,
        tag,
    }
}

fn check_and_free(live: &Live, b: Block) {
    // SAFETY: a live block of `len` bytes this thread now owns.
    let s = unsafe { std::slice::from_raw_parts(b.ptr as *const u8, b.len) };
    if let Some(i) = (0..b.len).find(|&i| s[i] != pattern(b.ptr, b.tag, i)) {
        panic!(
            "block {:#x} ({} bytes) corrupted at offset {i}",
            b.ptr, b.len
        );
    }
    assert!(
        live.lock().unwrap().remove(&b.ptr),
        "block {:#x} not live",
        b.ptr
    );
    // SAFETY: live and ours; nothing uses it afterwards.
    unsafe { heap().free(b.ptr as *mut u8) };
}

/// One thread's life: allocate, free locally, send to others, receive and free.
fn worker(
    me: usize,
    seed: u64,
    rx: Receiver<Vec<Block>>,
    peers: Vec<Sender<Vec<Block>>>,
    live: Live,
    until: Instant,
) -> (Receiver<Vec<Block>>, u64) {
    let mut s = seed | 1;
    let mut local: Vec<Block> = Vec::new();
    let mut ops = 0u64;
    while Instant::now() < until {
        let mut out: Vec<Vec<Block>> = (0..THREADS).map(|_| Vec::new()).collect();
        for _ in 0..48 {
            let len = SIZES[(xorshift(&mut s) % SIZES.len() as u64) as usize];
            let b = alloc(&live, len, xorshift(&mut s) as u8);
            let to = (xorshift(&mut s) % THREADS as u64) as usize;
            if to == me {
                local.push(b);
            } else {
                out[to].push(b);
            }
        }
        for (to, batch) in out.into_iter().enumerate() {
            if !batch.is_empty() {
                // A receiver that is between generations still holds its channel: never fails
                // while the test runs; if it did, free here.
                if let Err(e) = peers[to].send(batch) {
                    for b in e.0 {
                        check_and_free(&live, b);
                    }
                }
            }
        }
        // Free in bursts, so magazines fill and empty and go through the depot.
        let keep = (xorshift(&mut s) % 200) as usize;
        while local.len() > keep {
            let j = (xorshift(&mut s) as usize) % local.len();
            check_and_free(&live, local.swap_remove(j));
        }
        while let Ok(got) = rx.try_recv() {
            for b in got {
                check_and_free(&live, b);
            }
        }
        ops += 48;
    }
    for b in local {
        check_and_free(&live, b);
    }
    (rx, ops)
}

#[test]
fn magazine_exchange_depot_and_remote_frees_under_stress() {
    let secs: u64 = std::env::var("DMASLAB_EXCHANGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let end = Instant::now() + Duration::from_secs(secs);
    let live: Live = Arc::new(Mutex::new(HashSet::new()));
    let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| channel()).unzip();
    let mut rxs: Vec<Option<Receiver<Vec<Block>>>> = rxs.drain(..).map(Some).collect();
    let mut total = 0u64;
    let mut generation = 0u64;
    // Generations of about 150 ms: threads exit (flushing their magazines to the depot) and
    // fresh threads start with empty thread caches.
    while Instant::now() < end {
        generation += 1;
        let until = (Instant::now() + Duration::from_millis(150)).min(end);
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let rx = rxs[i].take().unwrap();
                let peers = txs.clone();
                let live = live.clone();
                let seed = 0x9E37_79B9_7F4A_7C15 ^ (generation << 8) ^ i as u64;
                thread::spawn(move || worker(i, seed, rx, peers, live, until))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let (rx, ops) = h.join().expect("stress thread panicked");
            rxs[i] = Some(rx);
            total += ops;
        }
    }
    drop(txs);
    for rx in rxs.into_iter().flatten() {
        while let Ok(got) = rx.try_recv() {
            for b in got {
                check_and_free(&live, b);
            }
        }
    }
    assert!(live.lock().unwrap().is_empty());
    assert!(total > 10_000, "only {total} allocations");
    assert_eq!(heap().validate(), 0, "the slab walk found problems");
    let (full, empty, _) = heap().depot_counts();
    let caches = dmaslab_core_caches();
    assert!(
        full <= caches * DEPOT_FULL_MAX && empty <= caches * DEPOT_EMPTY_MAX,
        "depots beyond their bounds: {full} loaded, {empty} empty"
    );
    eprintln!("exchange stress: {total} allocations, {generation} generations in {secs} s");
}

/// How many caches the heap has (bounds the depot totals).
fn dmaslab_core_caches() -> usize {
    let mut n = 0;
    heap().core().for_each_cache(|_, _| n += 1);
    n
}
