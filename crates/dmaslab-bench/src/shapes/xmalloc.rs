//! Producers and consumers (the xmalloc-test shape): `p` producer threads allocate batches of
//! small objects and `p` consumer threads free them, so every free is remote.

use super::{mixed_size, on_threads, Tally};
use crate::{scaled, Heap, Rng, Row, Timer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Objects per batch handed from a producer to a consumer.
const BATCH: usize = 64;
/// Batches queued at most; a producer that finds more waits (bounds the memory in flight).
const QUEUED: usize = 64;

/// `producers` producers and as many consumers.
pub fn run<H: Heap>(h: &H, scale: f64, producers: usize) -> Vec<Row> {
    let batches = scaled(30_000, scale).div_ceil(producers);
    let queue: Mutex<Vec<Vec<(usize, usize)>>> = Mutex::new(Vec::new());
    let lock = || queue.lock().unwrap_or_else(|e| e.into_inner());
    let done = AtomicUsize::new(0);
    let t = Timer::start();
    let all = on_threads(2 * producers, |tid, barrier| {
        barrier.wait();
        let mut tally = Tally::new(900 + tid as u64);
        if tid < producers {
            let mut rng = Rng::new(90 + tid as u64);
            for _ in 0..batches {
                let b = (0..BATCH)
                    .map(|_| {
                        let s = mixed_size(&mut rng, 256);
                        (tally.alloc(h, s) as usize, s)
                    })
                    .collect();
                while lock().len() >= QUEUED {
                    std::thread::yield_now();
                }
                lock().push(b);
            }
            done.fetch_add(1, Ordering::Release);
        } else {
            loop {
                let finished = done.load(Ordering::Acquire) == producers;
                let Some(b) = lock().pop() else {
                    if finished {
                        break;
                    }
                    std::thread::yield_now();
                    continue;
                };
                for (p, s) in b {
                    // SAFETY: a producer's live block, handed over once through the queue.
                    unsafe { tally.free(h, p as *mut u8, s) };
                }
            }
        }
        tally
    });
    vec![all.row(t, format!("xmalloc-{producers}p"), all.calls)]
}
