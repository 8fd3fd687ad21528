//! Many small short-lived objects of varied sizes (the espresso shape): a cover of cubes (bit
//! vectors between the two tags), each step combining two cubes through a few temporary
//! vectors that die at once; some results join the cover, which is pruned by half when it
//! grows too large. The vector width changes every 1000 steps, as from one subproblem to the
//! next.

use super::Tally;
use crate::{scaled, Heap, Rng, Row, Timer};

/// Cubes in the cover before it is pruned.
const COVER: usize = 2000;

/// A bit vector of `words` words in a block of `8 * words + 16` bytes.
#[derive(Clone, Copy)]
struct Cube {
    p: usize,
    words: usize,
}

impl Cube {
    fn bytes(self) -> usize {
        8 * self.words + 16
    }
    /// Where word `i` is (between the two tags while `i < words`).
    fn word(self, i: usize) -> *mut u64 {
        debug_assert!(i < self.words);
        (self.p as *mut u64).wrapping_add(1 + i)
    }
}

struct Cover<'a, H: Heap> {
    h: &'a H,
    tally: Tally,
}

impl<H: Heap> Cover<'_, H> {
    /// A new cube of `words` words, each from `f`.
    fn cube(&mut self, words: usize, mut f: impl FnMut(usize) -> u64) -> Cube {
        let p = self.tally.alloc(self.h, 8 * words + 16) as usize;
        let c = Cube { p, words };
        // SAFETY: the cube's own words, inside its fresh block.
        (0..words).for_each(|i| unsafe { c.word(i).write(f(i)) });
        c
    }
    /// Word `i` of `c`, or all ones past its width.
    fn get(c: Cube, i: usize) -> u64 {
        // SAFETY: a live cube's word, read only below its width.
        if i < c.words {
            unsafe { c.word(i).read() }
        } else {
            !0
        }
    }
    fn drop_cube(&mut self, c: Cube) {
        // SAFETY: a live cube of this cover, freed once.
        unsafe { self.tally.free(self.h, c.p as *mut u8, c.bytes()) };
    }
}

/// The row's operation is one `malloc` or `free`.
pub fn run<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let steps = scaled(400_000, scale);
    let mut rng = Rng::new(17);
    let mut cv = Cover {
        h,
        tally: Tally::new(17),
    };
    let mut cover: Vec<Cube> = Vec::with_capacity(COVER + 1);
    let mut words = 4;
    let t = Timer::start();
    for step in 0..steps {
        if step % 1000 == 0 {
            words = rng.range(1, 24);
        }
        if cover.len() < 2 {
            let c = cv.cube(words, |_| rng.next_u64());
            cover.push(c);
            continue;
        }
        let a = cover[rng.range(0, cover.len() - 1)];
        let b = cover[rng.range(0, cover.len() - 1)];
        // Intersection, the consensus term and a complement: temporaries of this step.
        let and = cv.cube(words, |i| Cover::<H>::get(a, i) & Cover::<H>::get(b, i));
        let xor = cv.cube(words, |i| Cover::<H>::get(a, i) ^ Cover::<H>::get(b, i));
        let not = cv.cube(words.div_ceil(2), |i| !Cover::<H>::get(and, i));
        let ones: u32 = (0..words)
            .map(|i| Cover::<H>::get(xor, i).count_ones())
            .sum();
        let merged = cv.cube(words, |i| Cover::<H>::get(and, i) | Cover::<H>::get(not, i));
        cv.drop_cube(not);
        cv.drop_cube(xor);
        cv.drop_cube(and);
        if ones.is_multiple_of(3) {
            cover.push(merged);
        } else {
            cv.drop_cube(merged);
        }
        if cover.len() > COVER {
            let mut kept = Vec::with_capacity(COVER + 1);
            for c in cover.drain(..) {
                if rng.next_u64() & 1 == 0 {
                    kept.push(c);
                } else {
                    cv.drop_cube(c);
                }
            }
            cover = kept;
        }
    }
    for c in cover.drain(..) {
        cv.drop_cube(c);
    }
    let calls = cv.tally.calls;
    vec![cv.tally.row(t, "espresso", calls)]
}
