//! Mixed sizes and lifetimes on one thread (the alloc-test shape): every step allocates one
//! object that dies soon (most), after a while, or much later.

use super::{mixed_size, Tally};
use crate::{scaled, Heap, Rng, Row, Timer};
use std::collections::VecDeque;

/// Objects alive at once in each lifetime class: short ones wait in a FIFO of 16, medium
/// ones in a FIFO of 1024; long ones replace a random slot of 8192.
const SHORT: usize = 16;
const MEDIUM: usize = 1024;
const LONG: usize = 8192;

/// The row's operation is one `malloc` or `free`.
pub fn run<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let steps = scaled(2_000_000, scale);
    let mut rng = Rng::new(11);
    let mut tally = Tally::new(11);
    let mut short: VecDeque<(usize, usize)> = VecDeque::with_capacity(SHORT + 1);
    let mut medium: VecDeque<(usize, usize)> = VecDeque::with_capacity(MEDIUM + 1);
    let mut long: Vec<(usize, usize)> = vec![(0, 0); LONG];
    let t = Timer::start();
    for _ in 0..steps {
        let s = mixed_size(&mut rng, 4096);
        let b = (tally.alloc(h, s) as usize, s);
        let old = match rng.range(0, 9) {
            0..=6 => {
                short.push_back(b);
                (short.len() > SHORT).then(|| short.pop_front()).flatten()
            }
            7..=8 => {
                medium.push_back(b);
                (medium.len() > MEDIUM)
                    .then(|| medium.pop_front())
                    .flatten()
            }
            _ => Some(std::mem::replace(&mut long[rng.range(0, LONG - 1)], b)).filter(|o| o.0 != 0),
        };
        if let Some((p, s)) = old {
            // SAFETY: a live block, taken out of its lifetime class.
            unsafe { tally.free(h, p as *mut u8, s) };
        }
    }
    let rest = short
        .into_iter()
        .chain(medium)
        .chain(long.into_iter().filter(|o| o.0 != 0));
    for (p, s) in rest {
        // SAFETY: the blocks still live, freed once.
        unsafe { tally.free(h, p as *mut u8, s) };
    }
    vec![tally.row(t, "alloc-test-1t", tally.calls)]
}
