//! A tree rebuilt every step (the barnes shape): bodies in a unit cube, an octree of them built
//! from heap cells each step, the cells' masses and centres summed bottom-up, every body's
//! acceleration taken from the tree (Barnes-Hut, opening angle 1), the bodies moved, and the
//! tree freed.

use super::Tally;
use crate::{scaled, Heap, Rng, Row, Timer};

/// A cell: tag, 8 children, mass, centre of mass (x, y, z), tag; a child is a cell or a leaf
/// (a leaf's pointer has its low bit set).
const CELL: usize = 14 * 8;
const CHILD: usize = 1;
const MASS: usize = 9;
const COM: usize = 10;
/// A leaf: tag, body index, tag.
const LEAF: usize = 3 * 8;
const BODY: usize = 1;
/// Bodies with the same position to 2^-30 share a leaf's parent cell at this depth.
const MAX_DEPTH: u32 = 30;

/// Word `i` of a cell or leaf.
///
/// # Safety
/// `p` is a live cell (`i < 14`) or leaf (`i < 3`).
unsafe fn word(p: usize, i: usize) -> *mut u64 {
    // SAFETY: the caller's contract: word `i` lies inside the block.
    unsafe { (p as *mut u64).add(i) }
}

struct Tree<'a, H: Heap> {
    h: &'a H,
    tally: Tally,
    pos: Vec<[f64; 3]>,
}

impl<H: Heap> Tree<'_, H> {
    fn cell(&mut self) -> usize {
        let p = self.tally.alloc(self.h, CELL) as usize;
        for i in CHILD..CHILD + 8 {
            // SAFETY: a fresh cell.
            unsafe { word(p, i).write(0) };
        }
        p
    }

    fn octant(&self, body: usize, c: [f64; 3]) -> usize {
        let b = self.pos[body];
        (b[0] > c[0]) as usize | ((b[1] > c[1]) as usize) << 1 | ((b[2] > c[2]) as usize) << 2
    }

    /// Puts `leaf` (of body `body`) under `cell`, the cube around `c` of half-size `half`.
    fn insert(
        &mut self,
        cell: usize,
        leaf: usize,
        body: usize,
        c: [f64; 3],
        half: f64,
        depth: u32,
    ) {
        let o = self.octant(body, c);
        let q = half / 2.0;
        let cc = [0, 1, 2].map(|k| c[k] + if o >> k & 1 == 1 { q } else { -q });
        // SAFETY: `cell` is a live cell; child word `o` is in it.
        let slot = unsafe { word(cell, CHILD + o) };
        // SAFETY: as above.
        let child = unsafe { slot.read() } as usize;
        if child == 0 || (child & 1 == 1 && depth >= MAX_DEPTH) {
            if child != 0 {
                // Coincident bodies: keep the deeper one's leaf, free the other.
                // SAFETY: a live leaf of this tree, unlinked here.
                unsafe { self.tally.free(self.h, (child & !1) as *mut u8, LEAF) };
            }
            // SAFETY: as above.
            unsafe { slot.write(leaf as u64 | 1) };
        } else if child & 1 == 1 {
            let n = self.cell();
            // SAFETY: as above.
            unsafe { slot.write(n as u64) };
            let old = child & !1;
            // SAFETY: a live leaf; its body index word.
            let old_body = unsafe { word(old, BODY).read() } as usize;
            self.insert(n, old, old_body, cc, q, depth + 1);
            self.insert(n, leaf, body, cc, q, depth + 1);
        } else {
            self.insert(child, leaf, body, cc, q, depth + 1);
        }
    }

    /// Sums masses and centres bottom-up: returns (mass, mass × centre).
    fn summarise(&self, node: usize) -> (f64, [f64; 3]) {
        if node & 1 == 1 {
            // SAFETY: a live leaf.
            let b = unsafe { word(node & !1, BODY).read() } as usize;
            return (1.0, self.pos[b]);
        }
        let (mut m, mut s) = (0.0, [0.0; 3]);
        for i in 0..8 {
            // SAFETY: a live cell.
            let c = unsafe { word(node, CHILD + i).read() } as usize;
            if c != 0 {
                let (cm, cs) = self.summarise(c);
                m += cm;
                (0..3).for_each(|k| s[k] += cs[k]);
            }
        }
        // SAFETY: a live cell's mass and centre words.
        unsafe {
            word(node, MASS).write(f64::to_bits(m));
            (0..3).for_each(|k| word(node, COM + k).write(f64::to_bits(s[k] / m)));
        }
        (m, s)
    }

    /// Acceleration of body `b` from `node`, a cube of size `size`.
    fn accel(&self, b: usize, node: usize, size: f64, a: &mut [f64; 3]) {
        let p = self.pos[b];
        let (m, c) = if node & 1 == 1 {
            // SAFETY: a live leaf.
            let o = unsafe { word(node & !1, BODY).read() } as usize;
            if o == b {
                return;
            }
            (1.0, self.pos[o])
        } else {
            // SAFETY: a live, summarised cell.
            unsafe {
                let m = f64::from_bits(word(node, MASS).read());
                (
                    m,
                    [0, 1, 2].map(|k| f64::from_bits(word(node, COM + k).read())),
                )
            }
        };
        let d = [0, 1, 2].map(|k| c[k] - p[k]);
        let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 1e-4;
        if node & 1 == 1 || size * size < r2 {
            let f = m / (r2 * r2.sqrt());
            (0..3).for_each(|k| a[k] += f * d[k]);
        } else {
            for i in 0..8 {
                // SAFETY: a live cell.
                let c = unsafe { word(node, CHILD + i).read() } as usize;
                if c != 0 {
                    self.accel(b, c, size / 2.0, a);
                }
            }
        }
    }

    /// Frees `node` and everything under it.
    fn free(&mut self, node: usize) {
        if node & 1 == 1 {
            // SAFETY: a live leaf, unlinked with its parent.
            unsafe { self.tally.free(self.h, (node & !1) as *mut u8, LEAF) };
            return;
        }
        for i in 0..8 {
            // SAFETY: a live cell.
            let c = unsafe { word(node, CHILD + i).read() } as usize;
            if c != 0 {
                self.free(c);
            }
        }
        // SAFETY: a live cell whose children are freed.
        unsafe { self.tally.free(self.h, node as *mut u8, CELL) };
    }
}

/// The row's operation is one `malloc` or `free`.
pub fn run<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    const BODIES: usize = 2000;
    let steps = scaled(40, scale);
    let mut rng = Rng::new(5);
    let mut unit = || rng.next_u64() as f64 / u64::MAX as f64;
    let mut tree = Tree {
        h,
        tally: Tally::new(5),
        pos: (0..BODIES).map(|_| [unit(), unit(), unit()]).collect(),
    };
    let mut vel = vec![[0.0f64; 3]; BODIES];
    let t = Timer::start();
    for _ in 0..steps {
        let root = tree.cell();
        for b in 0..BODIES {
            let leaf = tree.tally.alloc(h, LEAF) as usize;
            // SAFETY: a fresh leaf's body word.
            unsafe { word(leaf, BODY).write(b as u64) };
            tree.insert(root, leaf, b, [0.5; 3], 0.5, 0);
        }
        let (mass, _) = tree.summarise(root);
        assert!(
            mass <= BODIES as f64 && mass > 0.0,
            "tree lost its bodies: {mass}"
        );
        for (b, v) in vel.iter_mut().enumerate() {
            let mut a = [0.0; 3];
            tree.accel(b, root, 1.0, &mut a);
            (0..3).for_each(|k| v[k] += 1e-9 * a[k]);
        }
        for (p, v) in tree.pos.iter_mut().zip(&vel) {
            (0..3).for_each(|k| p[k] = (p[k] + v[k]).clamp(0.0, 1.0));
        }
        tree.free(root);
    }
    let calls = tree.tally.calls;
    vec![tree.tally.row(t, "barnes", calls)]
}
