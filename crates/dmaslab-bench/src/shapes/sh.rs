//! Arrays of mixed-size objects (the sh6bench and sh8bench shapes).
//!
//! `sh6`: each thread keeps its own buffer of objects and frees 80 % of it at once, in an order
//! that changes every round (forward, backward, strided, interleaved), then refills it: bursts
//! of local frees. `sh8`: each thread allocates batches, frees half of each batch itself and
//! hands the other half to the next thread, which frees it: part of every array freed remotely.
//! Total work is the same for every thread count (rounds are split between the threads).

use super::{mixed_size, on_threads, Tally};
use crate::{scaled, Heap, Rng, Row, Timer};
use std::sync::Mutex;

/// Slots of a `sh6` thread's buffer.
const BUFFER: usize = 2000;
/// Objects of a `sh8` batch.
const BATCH: usize = 512;
/// Largest object.
const MAX_SIZE: usize = 1024;

/// The slots a `sh6` round frees: 80 % of the buffer, in the round's order.
fn burst(round: usize, start: usize) -> impl Iterator<Item = usize> {
    let n = BUFFER * 4 / 5;
    (0..n).map(move |k| match round % 4 {
        0 => (start + k) % BUFFER,
        1 => (start + BUFFER - k) % BUFFER,
        // 7 is coprime with BUFFER: a stride through the whole buffer.
        2 => (start + 7 * k) % BUFFER,
        // Four of every five slots.
        _ => (start + k + k / 4) % BUFFER,
    })
}

/// `threads` threads of bursts of local frees (module doc).
pub fn sh6<H: Heap>(h: &H, scale: f64, threads: usize) -> Vec<Row> {
    let rounds = scaled(800, scale).div_ceil(threads);
    let t = Timer::start();
    let all = on_threads(threads, |tid, start| {
        start.wait();
        let mut rng = Rng::new(60 + tid as u64);
        let mut tally = Tally::new(600 + tid as u64);
        let mut buf: Vec<(usize, usize)> = vec![(0, 0); BUFFER];
        for round in 0..rounds {
            for slot in buf.iter_mut().filter(|s| s.0 == 0) {
                let s = mixed_size(&mut rng, MAX_SIZE);
                *slot = (tally.alloc(h, s) as usize, s);
            }
            for i in burst(round, rng.range(0, BUFFER - 1)) {
                let (p, s) = std::mem::take(&mut buf[i]);
                if p != 0 {
                    // SAFETY: a live block of this buffer, taken out of it.
                    unsafe { tally.free(h, p as *mut u8, s) };
                }
            }
        }
        for (p, s) in buf.into_iter().filter(|s| s.0 != 0) {
            // SAFETY: the blocks still live, freed once.
            unsafe { tally.free(h, p as *mut u8, s) };
        }
        tally
    });
    vec![all.row(t, format!("sh6-{threads}t"), all.calls)]
}

/// `threads` threads handing half of each batch to the next thread (module doc).
pub fn sh8<H: Heap>(h: &H, scale: f64, threads: usize) -> Vec<Row> {
    let rounds = scaled(3000, scale).div_ceil(threads);
    type Batch = Vec<(usize, usize)>;
    let mailboxes: Vec<Mutex<Vec<Batch>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let lock = |i: usize| mailboxes[i].lock().unwrap_or_else(|e| e.into_inner());
    let t = Timer::start();
    let all = on_threads(threads, |tid, barrier| {
        barrier.wait();
        let mut rng = Rng::new(80 + tid as u64);
        let mut tally = Tally::new(800 + tid as u64);
        let free_batches = |tally: &mut Tally| {
            let got = std::mem::take(&mut *lock(tid));
            for (p, s) in got.into_iter().flatten() {
                // SAFETY: blocks another thread allocated and handed over once.
                unsafe { tally.free(h, p as *mut u8, s) };
            }
        };
        for _ in 0..rounds {
            let mut mine: Batch = Vec::with_capacity(BATCH / 2);
            let mut theirs: Batch = Vec::with_capacity(BATCH / 2);
            for i in 0..BATCH {
                let s = mixed_size(&mut rng, MAX_SIZE);
                let b = (tally.alloc(h, s) as usize, s);
                if i % 2 == 0 {
                    mine.push(b)
                } else {
                    theirs.push(b)
                }
            }
            for &(p, s) in mine.iter().rev() {
                // SAFETY: this thread's own live blocks, freed once.
                unsafe { tally.free(h, p as *mut u8, s) };
            }
            lock((tid + 1) % threads).push(theirs);
            free_batches(&mut tally);
        }
        // Every thread has handed over its last batch before anyone frees the rest.
        barrier.wait();
        free_batches(&mut tally);
        tally
    });
    vec![all.row(t, format!("sh8-{threads}t"), all.calls)]
}
