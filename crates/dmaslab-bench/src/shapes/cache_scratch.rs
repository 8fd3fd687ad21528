//! Passive false sharing (the cache-scratch shape): the main thread allocates one small object
//! per worker, back to back; each worker frees the one it was given, then over and over
//! allocates a small object of its own, writes it many times and frees it. If the allocator
//! hands a worker an object on a cache line another worker is writing, the writes contend for
//! the line: the time per write measures that. Objects are 8 bytes, as in the field's version of
//! the shape: the worker's writes go to the object's one word, its tag, which is put back before
//! the free. (A worker's first allocator call is the free of its runtime's spawn closure, a
//! 24-byte block of the main thread's: objects of that class would be handed out after it, see
//! BENCHMARKS.md, "Passive false sharing".)

use super::{on_threads, Tally};
use crate::{scaled, Heap, Row, Timer};

/// Object size: one word.
const SIZE: usize = 8;
/// Writes per object.
const WRITES: usize = 5_000;

/// `threads` workers; the row's operation is one write.
pub fn run<H: Heap>(h: &H, scale: f64, threads: usize) -> Vec<Row> {
    let rounds = scaled(1000, scale);
    let mut setup = Tally::new(0);
    let given: Vec<usize> = (0..threads)
        .map(|_| setup.alloc(h, SIZE) as usize)
        .collect();
    let t = Timer::start();
    let mut all = on_threads(threads, |tid, barrier| {
        barrier.wait();
        let mut tally = Tally::new(1000 + tid as u64);
        // SAFETY: the block the main thread allocated for this worker, freed once, here.
        unsafe { tally.free(h, given[tid] as *mut u8, SIZE) };
        for _ in 0..rounds {
            let p = tally.alloc(h, SIZE);
            let word = p.cast::<u64>();
            // SAFETY: the one word of a live block of SIZE bytes (its tag, put back below).
            let tag = unsafe { word.read() };
            for i in 0..WRITES {
                // SAFETY: as above; volatile, so every write reaches the line.
                unsafe { word.write_volatile(word.read_volatile().wrapping_add(i as u64)) };
            }
            // SAFETY: as above.
            unsafe { word.write(tag) };
            // SAFETY: a live block of this worker, freed once.
            unsafe { tally.free(h, p, SIZE) };
        }
        tally
    });
    all.merge(&setup);
    vec![all.row(
        t,
        format!("cache-scratch-{threads}t"),
        (threads * rounds * WRITES) as u64,
    )]
}
