//! The seed message's workload: the active object counts of five kmalloc caches on one laptop
//! (Matthew Wilcox, LKML, 2018-09-24), which `dmaslab report` replays under each policy.

use crate::kmalloc::Kmalloc;
use crate::page_source::PageSource;
use crate::policy::Gfp;

/// `(object size, active_objs)` from the seed's `/proc/slabinfo` lines.
pub const SEED_ACTIVE: [(usize, usize); 5] = [
    (8, 17141),
    (16, 26844),
    (32, 80325),
    (64, 54406),
    (96, 11527),
];

/// Allocates exactly the seed's active objects, each of its cache's size, and keeps them.
/// Returns how many allocations succeeded (all of them unless the page source ran out).
pub fn allocate_seed_workload<P: PageSource>(k: &Kmalloc<P>) -> usize {
    let mut n = 0;
    for &(size, count) in &SEED_ACTIVE {
        for _ in 0..count {
            if k.kmalloc(size, Gfp::KERNEL).is_none() {
                return n;
            }
            n += 1;
        }
    }
    n
}

/// Total objects of the workload.
pub fn seed_objects() -> usize {
    SEED_ACTIVE.iter().map(|&(_, n)| n).sum()
}
