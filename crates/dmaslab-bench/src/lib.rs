//! Workloads shared by the benchmark binaries (see `BENCHMARKS.md`).
//!
//! Every workload runs against a [`Heap`]: the C library's `malloc` family ([`Libc`], which
//! `LD_PRELOAD` replaces) or a Rust [`GlobalAlloc`] ([`Global`]). A workload returns rows of
//! `(name, operations, nanoseconds)`; only the measured part is timed (no setup, no process
//! start), and the allocator's lock counts, where it exports them ([`probe`]), are taken around
//! the same part. The workloads of the field's shapes (issue 13) are in [`shapes`].

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::Instant;

pub mod probe;
pub mod shapes;
pub mod trace;

/// A heap the workloads can drive.
///
/// # Safety
/// Implementations behave as the C `malloc` family: `malloc`/`memalign` return null or a fresh
/// block of at least `size` bytes; `free` and `realloc` accept exactly those blocks.
pub unsafe trait Heap: Sync {
    /// `malloc(size)`.
    fn malloc(&self, size: usize) -> *mut u8;
    /// `memalign(align, size)`.
    fn memalign(&self, align: usize, size: usize) -> *mut u8;
    /// `free(p)`; `size` and `align` are what it was allocated with.
    ///
    /// # Safety
    /// `p` is a live block of this heap.
    unsafe fn free(&self, p: *mut u8, size: usize, align: usize);
    /// `realloc(p, new)`.
    ///
    /// # Safety
    /// `p` is a live block of this heap of `old` bytes (alignment 8 or less).
    unsafe fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8;
}

/// The C library's allocator (or whatever `LD_PRELOAD` put in its place).
pub struct Libc;

// SAFETY: the C malloc contract.
unsafe impl Heap for Libc {
    #[inline]
    fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: malloc has no preconditions.
        unsafe { libc::malloc(size).cast() }
    }
    fn memalign(&self, align: usize, size: usize) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        // SAFETY: `p` is a valid out-pointer.
        if unsafe { libc::posix_memalign(&mut p, align.max(8), size) } != 0 {
            return std::ptr::null_mut();
        }
        p.cast()
    }
    #[inline]
    unsafe fn free(&self, p: *mut u8, _size: usize, _align: usize) {
        // SAFETY: the caller's contract.
        unsafe { libc::free(p.cast()) }
    }
    unsafe fn realloc(&self, p: *mut u8, _old: usize, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { libc::realloc(p.cast(), new).cast() }
    }
}

/// A Rust global allocator, called directly (not registered).
pub struct Global<A>(pub A);

fn layout(size: usize, align: usize) -> Layout {
    match Layout::from_size_align(size.max(1), align.max(8)) {
        Ok(l) => l,
        Err(_) => panic!("bad layout {size}/{align}"),
    }
}

// SAFETY: forwards to a `GlobalAlloc`, whose contract is stricter than C's.
unsafe impl<A: GlobalAlloc + Sync> Heap for Global<A> {
    #[inline]
    fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: the layout has a non-zero size.
        unsafe { self.0.alloc(layout(size, 8)) }
    }
    fn memalign(&self, align: usize, size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { self.0.alloc(layout(size, align)) }
    }
    #[inline]
    unsafe fn free(&self, p: *mut u8, size: usize, align: usize) {
        // SAFETY: the caller's contract: `p` was allocated with this layout.
        unsafe { self.0.dealloc(p, layout(size, align)) }
    }
    unsafe fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract; `new` is not zero.
        unsafe { self.0.realloc(p, layout(old, 8), new.max(1)) }
    }
}

/// One measured row.
#[derive(Clone, Debug)]
pub struct Row {
    /// Workload row name, e.g. `pair-64`.
    pub name: String,
    /// Operations performed (what one operation is depends on the row: BENCHMARKS.md).
    pub ops: u64,
    /// Calls into the allocator (each `malloc`, `free`, `realloc` ...): the denominator of the
    /// lock counts.
    pub calls: u64,
    /// Nanoseconds taken.
    pub nanos: u128,
    /// Lock calls and contended lock calls in the measured part, if the allocator counts them.
    pub locks: Option<(u64, u64)>,
    /// `(read, written)` sums of the tags the workload wrote into its objects and read back
    /// before freeing them: equal when no object was lost or overwritten ([`shapes::Tally`]).
    pub check: Option<(u64, u64)>,
}

/// The measured part of a workload: its time and the lock counts around it.
pub struct Timer {
    start: Instant,
    locks: Option<(u64, u64)>,
}

impl Timer {
    /// Starts measuring (reads the lock counts first, so reading them is not timed).
    pub fn start() -> Timer {
        let locks = probe::lock_counts();
        Timer {
            start: Instant::now(),
            locks,
        }
    }
    /// Stops measuring: the row of `ops` operations and `calls` allocator calls.
    pub fn row(self, name: impl Into<String>, ops: u64, calls: u64) -> Row {
        let nanos = self.start.elapsed().as_nanos();
        let locks = match (self.locks, probe::lock_counts()) {
            (Some((a0, c0)), Some((a1, c1))) => Some((a1 - a0, c1 - c0)),
            _ => None,
        };
        Row {
            name: name.into(),
            ops,
            calls,
            nanos,
            locks,
            check: None,
        }
    }
}

/// A small xorshift generator (deterministic workloads).
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

pub(crate) fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale) as usize).max(1)
}

/// Sizes of the malloc/free pair workload: the power-of-two kmalloc classes, 8 to 8192.
pub const PAIR_SIZES: [usize; 11] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/// `malloc(s)`, write a byte, `free`: per size class.
pub fn pairs<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let n = scaled(2_000_000, scale);
    PAIR_SIZES
        .iter()
        .map(|&s| {
            // Warm up: the first pair fills magazines / thread caches.
            for _ in 0..1000 {
                let p = h.malloc(s);
                // SAFETY: a fresh block of `s` bytes.
                unsafe { h.free(black_box(p), s, 8) };
            }
            let t = Timer::start();
            for i in 0..n {
                let p = h.malloc(black_box(s));
                // SAFETY: a fresh block of at least one byte, then freed once.
                unsafe {
                    p.write_volatile(i as u8);
                    h.free(p, s, 8);
                }
            }
            t.row(format!("pair-{s}"), n as u64, 2 * n as u64)
        })
        .collect()
}

/// A million random objects of 1..=256 bytes, then freed in a random order.
pub fn random<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let n = scaled(1_000_000, scale);
    let mut rng = Rng::new(0x5eed);
    let sizes: Vec<usize> = (0..n).map(|_| rng.range(1, 256)).collect();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.range(0, i));
    }
    let mut ptrs = vec![std::ptr::null_mut::<u8>(); n];
    let t = Timer::start();
    for (p, &s) in ptrs.iter_mut().zip(&sizes) {
        *p = h.malloc(s);
        // SAFETY: fresh block of `s >= 1` bytes.
        unsafe { p.write_volatile(1) };
    }
    for &i in &order {
        // SAFETY: each block is freed once.
        unsafe { h.free(ptrs[i], sizes[i], 8) };
    }
    vec![t.row("random-1M", 2 * n as u64, 2 * n as u64)]
}

/// A single-producer single-consumer ring of pointers.
struct Ring {
    slots: Box<[AtomicPtr<u8>]>,
    sizes: Box<[AtomicUsize]>,
    head: AtomicUsize,
    tail: AtomicUsize,
}

/// One thread allocates (16..=256 bytes), another frees, through a 1024-slot ring.
pub fn prodcons<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    const CAP: usize = 1024;
    let n = scaled(2_000_000, scale);
    let ring = Ring {
        slots: (0..CAP)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
        sizes: (0..CAP).map(|_| AtomicUsize::new(0)).collect(),
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
    };
    let t = Timer::start();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng::new(7);
            for i in 0..n {
                let s = rng.range(16, 256);
                let p = h.malloc(s);
                // SAFETY: a fresh block of at least 16 bytes.
                unsafe { p.write_volatile(1) };
                while i - ring.tail.load(Ordering::Acquire) >= CAP {
                    std::thread::yield_now();
                }
                ring.slots[i % CAP].store(p, Ordering::Relaxed);
                ring.sizes[i % CAP].store(s, Ordering::Relaxed);
                ring.head.store(i + 1, Ordering::Release);
            }
        });
        s.spawn(|| {
            for i in 0..n {
                while ring.head.load(Ordering::Acquire) <= i {
                    std::thread::yield_now();
                }
                let p = ring.slots[i % CAP].load(Ordering::Relaxed);
                let s = ring.sizes[i % CAP].load(Ordering::Relaxed);
                ring.tail.store(i + 1, Ordering::Release);
                // SAFETY: each pointer comes through the ring once.
                unsafe { h.free(p, s, 8) };
            }
        });
    });
    vec![t.row("prodcons", n as u64, 2 * n as u64)]
}

/// Four threads of larson-style churn ([`shapes::larson`]), objects freed by other threads.
pub fn larson<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    shapes::larson::run(h, scale, 4, false, "larson-4t")
}

/// 1000 buffers grown round-robin by `realloc`, 24 bytes at a time, from 16 bytes to 16 KiB.
pub fn realloc_growth<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let bufs = scaled(1000, scale);
    let steps = 680;
    let mut v: Vec<(*mut u8, usize)> = (0..bufs).map(|_| (h.malloc(16), 16)).collect();
    let t = Timer::start();
    for step in 1..=steps {
        let new = 16 + 24 * step;
        for b in v.iter_mut() {
            // SAFETY: a live block of `b.1` bytes, replaced by the result.
            let q = unsafe { h.realloc(b.0, b.1, new) };
            // SAFETY: at least `new` bytes.
            unsafe { q.add(new - 1).write_volatile(1) };
            *b = (q, new);
        }
    }
    let row = t.row("realloc-grow", (bufs * steps) as u64, (bufs * steps) as u64);
    for &(p, s) in &v {
        // SAFETY: freed once.
        unsafe { h.free(p, s, 8) };
    }
    vec![row]
}

/// The seed's workload (`dmaslab report`): the active objects of its five kmalloc caches,
/// allocated and kept (the process's memory at exit is the footprint).
pub fn seed<H: Heap>(h: &H) -> Vec<Row> {
    let mut kept = Vec::with_capacity(dmaslab_core::seed::seed_objects());
    let t = Timer::start();
    for &(size, count) in &dmaslab_core::seed::SEED_ACTIVE {
        for _ in 0..count {
            let p = h.malloc(size);
            // SAFETY: a fresh block of `size` bytes.
            unsafe { p.write_volatile(1) };
            kept.push(p as usize);
        }
    }
    let n = dmaslab_core::seed::seed_objects() as u64;
    let row = t.row("seed", n, n);
    black_box(&kept);
    std::mem::forget(kept);
    vec![row]
}

/// `scale` million malloc(64)/free pairs, untimed beyond the loop: the workload whose
/// instructions callgrind counts (the harness runs it twice and takes the difference).
pub fn fastpath<H: Heap>(h: &H, scale: f64) -> Vec<Row> {
    let n = scaled(1_000_000, scale);
    let t = Timer::start();
    for i in 0..n {
        let p = h.malloc(black_box(64));
        // SAFETY: a fresh block, freed once.
        unsafe {
            p.write_volatile(i as u8);
            h.free(p, 64, 8);
        }
    }
    vec![t.row("fastpath-64", n as u64, 2 * n as u64)]
}

/// The names of the workloads [`run`] knows.
pub const WORKLOADS: [&str; 7] = [
    "pairs", "random", "prodcons", "larson", "realloc", "trace", "seed",
];

/// Runs workload `name`: one of [`WORKLOADS`] (`trace` needs `trace_path`), `fastpath` or one
/// of [`shapes::SHAPES`].
pub fn run<H: Heap>(h: &H, name: &str, scale: f64, trace_path: Option<&str>) -> Vec<Row> {
    match name {
        "pairs" => pairs(h, scale),
        "random" => random(h, scale),
        "prodcons" => prodcons(h, scale),
        "larson" => larson(h, scale),
        "realloc" => realloc_growth(h, scale),
        "seed" => seed(h),
        "fastpath" => fastpath(h, scale),
        "trace" => match trace_path {
            Some(p) => match trace::load(p) {
                Ok(t) => trace::replay(h, &t),
                Err(e) => {
                    eprintln!("cannot read trace {p}: {e}");
                    std::process::exit(2)
                }
            },
            None => {
                eprintln!("trace needs a path");
                std::process::exit(2)
            }
        },
        _ => shapes::run(h, name, scale).unwrap_or_else(|| {
            eprintln!("unknown workload {name}");
            std::process::exit(2)
        }),
    }
}

/// Prints rows as the harness reads them: `RESULT name ops nanos calls`, then
/// `LOCKS name calls contended` where the allocator counts its locks and `CHECK name read
/// written` where the workload tags its objects.
pub fn print_rows(rows: &[Row]) {
    for r in rows {
        println!("RESULT {} {} {} {}", r.name, r.ops, r.nanos, r.calls);
        if let Some((a, c)) = r.locks {
            println!("LOCKS {} {a} {c}", r.name);
        }
        if let Some((read, written)) = r.check {
            println!("CHECK {} {read} {written}", r.name);
        }
    }
}
