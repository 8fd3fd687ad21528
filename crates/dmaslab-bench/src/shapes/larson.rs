//! Larson-style server churn: each thread replaces random slots of its array (random sizes
//! 16..=1024, random lifetimes); after each epoch the arrays move to the next thread, so
//! objects are freed by threads that did not allocate them.

use super::Tally;
use crate::{scaled, Heap, Rng, Row, Timer};
use std::sync::{Barrier, Mutex};

const SLOTS: usize = 2000;
const EPOCHS: usize = 8;

/// One array of live objects: (block, size).
type Slots = Vec<(usize, usize)>;

/// `threads` threads of churn, row `name`. With `tagged`, objects carry [`Tally`] tags (and the
/// row a check); without, each new object gets one byte written (the `larson-4t` row as it
/// always was).
pub fn run<H: Heap>(h: &H, scale: f64, threads: usize, tagged: bool, name: &str) -> Vec<Row> {
    let per_epoch = scaled(100_000, scale);
    let mut setup = Tally::new(0);
    let mut rng = Rng::new(3);
    let mut fill = || -> Slots {
        (0..SLOTS)
            .map(|_| {
                let s = rng.range(16, 1024);
                let p = if tagged {
                    setup.alloc(h, s)
                } else {
                    h.malloc(s)
                };
                (p as usize, s)
            })
            .collect()
    };
    let arrays: Mutex<Vec<Slots>> = Mutex::new((0..threads).map(|_| fill()).collect());
    let barrier = Barrier::new(threads);
    let t = Timer::start();
    let tallies: Vec<Tally> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|tid| {
                let (arrays, barrier) = (&arrays, &barrier);
                sc.spawn(move || {
                    let mut rng = Rng::new(100 + tid as u64);
                    let mut tally = Tally::new(1 + tid as u64);
                    let take = |i: usize| {
                        std::mem::take(&mut arrays.lock().unwrap_or_else(|e| e.into_inner())[i])
                    };
                    for e in 0..EPOCHS {
                        let idx = (tid + e) % threads;
                        let mut mine = take(idx);
                        for _ in 0..per_epoch {
                            let i = rng.range(0, SLOTS - 1);
                            let (p, s) = mine[i];
                            let s2 = rng.range(16, 1024);
                            let q = if tagged {
                                // SAFETY: the slot's block is live and owned by this array.
                                unsafe { tally.free(h, p as *mut u8, s) };
                                tally.alloc(h, s2)
                            } else {
                                // SAFETY: as above; the new block has at least 16 bytes.
                                unsafe {
                                    h.free(p as *mut u8, s, 8);
                                    let q = h.malloc(s2);
                                    q.write_volatile(1);
                                    q
                                }
                            };
                            mine[i] = (q as usize, s2);
                        }
                        arrays.lock().unwrap_or_else(|e| e.into_inner())[idx] = mine;
                        barrier.wait();
                    }
                    tally
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| panic!("larson thread panicked"))
            })
            .collect()
    });
    let calls = (2 * threads * EPOCHS * per_epoch) as u64;
    let mut row = t.row(name, calls, calls);
    let mut all = setup;
    for v in arrays.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        for &(p, s) in v {
            if tagged {
                // SAFETY: the remaining blocks, freed once.
                unsafe { all.free(h, p as *mut u8, s) };
            } else {
                // SAFETY: as above.
                unsafe { h.free(p as *mut u8, s, 8) };
            }
        }
    }
    if tagged {
        tallies.iter().for_each(|x| all.merge(x));
        row.check = Some((all.read, all.written));
    }
    vec![row]
}
