//! Large blocks allocated and freed over and over (the malloc-large shape): eight live blocks of
//! 64 KiB .. 4 MiB, one replaced per step, every page of a new block written once (as a
//! program filling its buffer would).

use super::Tally;
use crate::{scaled, Heap, Rng, Row, Timer};

const LIVE: usize = 8;
const MIN: usize = 64 << 10;
const MAX: usize = 4 << 20;
const PAGE: usize = 4096;

/// The row's operation is one `malloc` or `free` of a large block.
pub fn run<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let steps = scaled(600, scale);
    let mut rng = Rng::new(64);
    let mut tally = Tally::new(64);
    let mut live: Vec<(usize, usize)> = Vec::with_capacity(LIVE);
    let new_block = |tally: &mut Tally, rng: &mut Rng| {
        // Log-uniform sizes: as many 64..128 KiB blocks as 2..4 MiB ones.
        let bits = rng.range(
            MIN.trailing_zeros() as usize,
            (MAX / 2).trailing_zeros() as usize,
        );
        let s = rng.range(1 << bits, (2 << bits).min(MAX));
        let p = tally.alloc(h, s);
        for off in (PAGE..s - 8).step_by(PAGE) {
            // SAFETY: inside the block, clear of the two tags.
            unsafe { p.add(off).write_volatile(1) };
        }
        (p as usize, s)
    };
    let t = Timer::start();
    for _ in 0..LIVE {
        live.push(new_block(&mut tally, &mut rng));
    }
    for _ in 0..steps {
        let i = rng.range(0, LIVE - 1);
        let (p, s) = live[i];
        // SAFETY: a live block, replaced below.
        unsafe { tally.free(h, p as *mut u8, s) };
        live[i] = new_block(&mut tally, &mut rng);
    }
    for (p, s) in live {
        // SAFETY: the blocks still live, freed once.
        unsafe { tally.free(h, p as *mut u8, s) };
    }
    vec![tally.row(t, "malloc-large", tally.calls)]
}
