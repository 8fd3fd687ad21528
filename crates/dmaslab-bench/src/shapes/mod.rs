//! Workloads of the shapes the field's allocator benchmarks measure (issue 13), written for
//! this bench: multi-threaded churn with remote frees, bursts of frees, large blocks, passive
//! false sharing, a tree rebuilt every step, many short-lived small objects, and a real program
//! (`sqlite3`, run by the harness: [`sqlite`]).
//!
//! Every object of these workloads carries a tag at its first and (from 16 bytes) last 8 bytes, written when it
//! is allocated and read back just before it is freed ([`Tally`]); a row's `check` holds the two
//! sums, which agree only if every object came back intact and was freed exactly once.

use crate::{Heap, Row, Timer};
use std::sync::Barrier;

pub mod alloc_test;
pub mod barnes;
pub mod cache_scratch;
pub mod espresso;
pub mod large;
pub mod larson;
pub mod sh;
pub mod sqlite;
pub mod xmalloc;

/// The workloads of this module, one child process (and one peak-RSS cell) each. `sqlite3` is
/// not here: it is a program the harness runs itself ([`sqlite`]).
pub const SHAPES: [&str; 15] = [
    "sh6-2t",
    "sh6-4t",
    "sh6-8t",
    "sh8-2t",
    "sh8-4t",
    "sh8-8t",
    "xmalloc-2p",
    "xmalloc-4p",
    "larson-2t",
    "larson-sized-2t",
    "cache-scratch-2t",
    "malloc-large",
    "alloc-test-1t",
    "barnes",
    "espresso",
];

/// Runs shape `name` at `scale` on `h`, or `None` for a name not in [`SHAPES`].
/// (`larson-sized-2t` on `h` is plain larson; the work binary passes the sized-delete heap.)
pub fn run<H: Heap>(h: &H, name: &str, scale: f64) -> Option<Vec<Row>> {
    let threads = |s: &str| s.parse::<usize>().ok();
    let rows = match name.rsplit_once('-') {
        Some(("sh6", t)) => sh::sh6(h, scale, threads(t.strip_suffix('t')?)?),
        Some(("sh8", t)) => sh::sh8(h, scale, threads(t.strip_suffix('t')?)?),
        Some(("xmalloc", p)) => xmalloc::run(h, scale, threads(p.strip_suffix('p')?)?),
        _ => match name {
            "larson-2t" | "larson-sized-2t" => larson::run(h, scale, 2, true, name),
            "cache-scratch-2t" => cache_scratch::run(h, scale, 2),
            "malloc-large" => large::run(h, scale),
            "alloc-test-1t" => alloc_test::run(h, scale),
            "barnes" => barnes::run(h, scale),
            "espresso" => espresso::run(h, scale),
            _ => return None,
        },
    };
    Some(rows)
}

/// Runs `work(tid, barrier)` on `threads` scoped threads and merges their tallies; the barrier
/// (of `threads`) lets the workers start together and meet in between.
pub(crate) fn on_threads<F>(threads: usize, work: F) -> Tally
where
    F: Fn(usize, &Barrier) -> Tally + Sync,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|tid| {
                let (work, barrier) = (&work, &barrier);
                sc.spawn(move || work(tid, barrier))
            })
            .collect();
        let mut all = Tally::default();
        for h in hs {
            all.merge(&h.join().unwrap_or_else(|_| panic!("worker panicked")));
        }
        all
    })
}

/// The tag sums of a set of objects (see the module doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Tags written so far (wrapping sum).
    pub written: u64,
    /// Tags read back so far (wrapping sum); a torn tag adds a mismatch.
    pub read: u64,
    /// Objects allocated (the next tag's sequence number).
    pub objects: u64,
    /// Allocator calls made through this tally.
    pub calls: u64,
    seed: u64,
}

/// splitmix64's finaliser: distinct tags for distinct (seed, sequence) pairs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Tally {
    /// A tally whose tags derive from `seed` (one per thread, so threads write different tags).
    pub fn new(seed: u64) -> Tally {
        Tally {
            seed: mix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)),
            ..Tally::default()
        }
    }

    /// `malloc(size)` (`size >= 8`), tagged at both ends. Aborts the workload on null.
    #[inline]
    pub fn alloc<H: Heap>(&mut self, h: &H, size: usize) -> *mut u8 {
        debug_assert!(size >= 8);
        let p = h.malloc(size);
        assert!(!p.is_null(), "malloc({size}) returned null");
        self.objects += 1;
        self.calls += 1;
        let tag = mix(self.seed ^ self.objects);
        // SAFETY: a fresh block of `size >= 8` bytes, at least 8-aligned (malloc's contract);
        // the end tag may be unaligned, and is written only where it does not overlap the head.
        unsafe {
            p.cast::<u64>().write(tag);
            if size >= 16 {
                p.add(size - 8).cast::<u64>().write_unaligned(tag);
            }
        }
        self.written = self.written.wrapping_add(tag);
        p
    }

    /// Reads `p`'s tags back and frees it.
    ///
    /// # Safety
    /// `p` is a live block of `h` that [`Tally::alloc`] (of any tally) returned for `size`.
    #[inline]
    pub unsafe fn free<H: Heap>(&mut self, h: &H, p: *mut u8, size: usize) {
        // SAFETY: the caller's contract: `p` is live, `size >= 8` bytes, tagged as in `alloc`.
        let (head, tail) = unsafe {
            let head = p.cast::<u64>().read();
            let tail = if size >= 16 {
                p.add(size - 8).cast::<u64>().read_unaligned()
            } else {
                head
            };
            (head, tail)
        };
        self.read = self.read.wrapping_add(head);
        if head != tail {
            self.read = self.read.wrapping_add(1);
        }
        self.calls += 1;
        // SAFETY: the caller's contract.
        unsafe { h.free(p, size, 8) };
    }

    /// Adds another tally's sums (objects moved between threads).
    pub fn merge(&mut self, o: &Tally) {
        self.written = self.written.wrapping_add(o.written);
        self.read = self.read.wrapping_add(o.read);
        self.objects += o.objects;
        self.calls += o.calls;
    }

    /// The row of this tally's calls: `ops` operations measured by `t`.
    pub fn row(&self, t: Timer, name: impl Into<String>, ops: u64) -> Row {
        let mut r = t.row(name, ops, self.calls);
        r.check = Some((self.read, self.written));
        r
    }
}

/// A size drawn the way small-object programs ask for memory: mostly 8..=64 bytes, a quarter
/// up to 512, a few up to `max`.
#[inline]
pub fn mixed_size(rng: &mut crate::Rng, max: usize) -> usize {
    match rng.range(0, 99) {
        0..=69 => rng.range(8, 64),
        70..=94 => rng.range(65, 512.min(max)),
        _ => rng.range(8, max),
    }
}
