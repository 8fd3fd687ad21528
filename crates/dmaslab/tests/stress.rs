//! Multithreaded stress on the process-wide heap: threads allocate, fill, pass objects to other
//! threads, check contents there and free them; memory must stay bounded.

use dmaslab::heap;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A block whose bytes are derived from its tag, so the receiver can check them.
struct Block {
    ptr: usize,
    len: usize,
    tag: u8,
}

fn fill(len: usize, tag: u8) -> Block {
    let p = heap().malloc(len);
    assert!(!p.is_null(), "malloc({len}) failed");
    // SAFETY: a fresh block of `len` bytes.
    unsafe { std::ptr::write_bytes(p, tag, len) };
    Block {
        ptr: p as usize,
        len,
        tag,
    }
}

fn check_and_free(b: Block) {
    let p = b.ptr as *mut u8;
    // SAFETY: a live block of `len` bytes that this thread now owns.
    let s = unsafe { std::slice::from_raw_parts(p, b.len) };
    assert!(
        s.iter().all(|&x| x == b.tag),
        "block {:#x} of {} bytes corrupted",
        b.ptr,
        b.len
    );
    assert!(heap().usable_size(p) >= b.len);
    // SAFETY: live and ours.
    unsafe { heap().free(p) };
}

fn sizes(seed: &mut u64) -> usize {
    match xorshift(seed) % 16 {
        0 => 8193 + (xorshift(seed) % 40000) as usize,
        1..=3 => 513 + (xorshift(seed) % 7680) as usize,
        _ => 1 + (xorshift(seed) % 512) as usize,
    }
}

/// How long a stress test runs: `DMASLAB_STRESS_SECS`, else `default` seconds.
fn stress_secs(default: u64) -> u64 {
    std::env::var("DMASLAB_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn threads_allocate_and_free_across_threads() {
    let secs = stress_secs(3);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let n = 4;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Vec<Block>>()).unzip();
    let mut handles = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let next = txs[(i + 1) % n].clone();
        handles.push(thread::spawn(move || {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
            let mut local: Vec<Block> = Vec::new();
            let mut ops = 0u64;
            while Instant::now() < deadline {
                let mut batch = Vec::new();
                for _ in 0..64 {
                    let len = sizes(&mut seed);
                    let b = fill(len, (xorshift(&mut seed) & 0xff) as u8);
                    if xorshift(&mut seed) & 1 == 0 {
                        batch.push(b);
                    } else {
                        local.push(b);
                    }
                }
                // Free half of the local ones here (same-thread frees).
                while local.len() > 256 {
                    let j = (xorshift(&mut seed) as usize) % local.len();
                    check_and_free(local.swap_remove(j));
                }
                // Hand the batch to the next thread (cross-thread frees).
                let _ = next.send(batch);
                while let Ok(got) = rx.try_recv() {
                    for b in got {
                        check_and_free(b);
                    }
                }
                ops += 64;
            }
            drop(next);
            for b in local {
                check_and_free(b);
            }
            (rx, ops)
        }));
    }
    drop(txs);
    let mut total = 0;
    let mut rxs = Vec::new();
    for h in handles {
        let (rx, ops) = h.join().expect("stress thread panicked");
        total += ops;
        rxs.push(rx);
    }
    for rx in rxs {
        while let Ok(got) = rx.try_recv() {
            for b in got {
                check_and_free(b);
            }
        }
    }
    assert!(total > 1000, "only {total} allocations");
    eprintln!("stress: {total} allocations in {secs} s");
}

#[test]
fn alignment_and_sizes() {
    let h = heap();
    for align in [8usize, 16, 32, 64, 128, 256, 512, 1024, 4096, 65536] {
        for size in [1usize, 7, 24, 65, 100, 513, 3000, 9000, 70000] {
            let p = h.malloc_aligned(size, align);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            assert!(h.usable_size(p) >= size);
            // SAFETY: ours.
            unsafe { h.free(p) };
        }
    }
    for k in 3..20 {
        let p = h.malloc(1 << k);
        assert_eq!(
            p as usize % (1 << k),
            0,
            "malloc(2^{k}) not naturally aligned"
        );
        // SAFETY: ours.
        unsafe { h.free(p) };
    }
    assert!(h.malloc_aligned(8, 48).is_null());
}

#[test]
fn realloc_keeps_contents() {
    let h = heap();
    let mut p = h.malloc(10);
    // SAFETY: our block, resized; each step keeps the first 10 bytes.
    unsafe {
        p.copy_from(b"0123456789".as_ptr(), 10);
        for size in [20usize, 100, 5000, 100_000, 12, 10] {
            p = h.realloc(p, size);
            assert!(!p.is_null());
            assert_eq!(std::slice::from_raw_parts(p, 10), b"0123456789");
        }
        h.free(p);
    }
}

/// A block that `realloc` must move to grow gets a quarter more than it had at least, so a
/// buffer grown a little at a time moves once per quarter; a shrink stays in place down to half
/// the block, and a move keeps the contents.
#[test]
fn realloc_growth_has_headroom() {
    let h = heap();
    let mut p = h.malloc(16);
    let mut moves = 0;
    // SAFETY: our block, resized; its first byte is checked after every step.
    unsafe {
        p.write(0xa5);
        let mut size = 16;
        while size < 64 * 1024 {
            let old = h.usable_size(p);
            size += 24;
            let q = h.realloc(p, size);
            assert!(!q.is_null());
            assert_eq!(q.read(), 0xa5, "contents kept at {size}");
            if q != p {
                moves += 1;
                assert!(
                    h.usable_size(q) >= old + old / 4,
                    "{size}: {old} grew to {}",
                    h.usable_size(q)
                );
            }
            p = q;
        }
        // 16 B .. 64 KiB by quarters or more: at most log(4096) / log(1.25) ≈ 38 moves (one
        // per size class between would be more than 60).
        assert!(moves <= 38, "{moves} moves");
        let big = h.usable_size(p);
        assert_eq!(
            h.realloc(p, big / 2 + 1),
            p,
            "a shrink to more than half stays"
        );
        h.free(p);
    }
}

/// The fast paths trust a thread's segment hint only while the segment map's generation is
/// unchanged; here one thread keeps bumping it (huge blocks, and whole segments of 8 KiB
/// objects given back) while others free through their hints, and every block must come back
/// intact and be freed exactly once (an invalid or double free would abort the test).
#[test]
fn segments_given_back_race_the_hinted_fast_paths() {
    let deadline = Instant::now() + Duration::from_secs(stress_secs(2));
    let churn = thread::spawn(move || {
        let mut rounds = 0u64;
        while Instant::now() < deadline {
            // Two segments' worth of 8 KiB objects, then all of them back: their slabs and
            // segments return to the OS, bumping the generation.
            let big: Vec<Block> = (0..500).map(|i| fill(8192, i as u8)).collect();
            let huge = fill(3 << 20, 0x5a);
            for b in big {
                check_and_free(b);
            }
            check_and_free(huge);
            heap().core().shrink_all();
            rounds += 1;
        }
        rounds
    });
    let workers: Vec<_> = (0..3)
        .map(|t| {
            thread::spawn(move || {
                let mut seed = 0xD1B5_4A32_D192_ED03u64 ^ t;
                let mut live: Vec<Block> = Vec::new();
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    let len = 1 + (xorshift(&mut seed) % 2048) as usize;
                    live.push(fill(len, (xorshift(&mut seed) & 0xff) as u8));
                    if live.len() > 512 {
                        let j = (xorshift(&mut seed) as usize) % live.len();
                        check_and_free(live.swap_remove(j));
                    }
                    ops += 1;
                }
                for b in live {
                    check_and_free(b);
                }
                ops
            })
        })
        .collect();
    let rounds = churn.join().expect("churn thread panicked");
    let ops: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("worker panicked"))
        .sum();
    assert!(
        rounds > 0 && ops > 1000,
        "{rounds} rounds, {ops} operations"
    );
    eprintln!("segment churn: {rounds} rounds against {ops} hinted operations");
}
