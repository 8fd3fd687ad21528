//! The `no_std` core (`Kmalloc` on an [`ArenaPageSource`]) against talc, linked_list_allocator
//! and buddy_system_allocator, each on its own arena of the same size, single-threaded. The
//! peers run unlocked; the core takes its cache lock on every call (it is `Sync`, as a
//! `no_std` global allocator must be), so talc also runs behind the core's own spin lock
//! (`talc+spin`), as it would as a global allocator.

use dmaslab_bench::{Rng, PAIR_SIZES};
use dmaslab_core::{ArenaPageSource, Config, Gfp, Kmalloc, Policy, SpinLock};
use std::alloc::Layout;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::time::Instant;

/// Arena size for every allocator.
const ARENA: usize = 64 << 20;

/// A single-threaded allocator on an arena.
trait ArenaHeap {
    fn alloc(&mut self, l: Layout) -> *mut u8;
    /// # Safety
    /// `p` was returned by `alloc(l)` and is freed once.
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout);
}

fn arena() -> &'static mut [MaybeUninit<u8>] {
    Box::leak(Box::new_uninit_slice(ARENA))
}

struct Core(Kmalloc<ArenaPageSource<'static>>);
impl ArenaHeap for Core {
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0
            .kmalloc_aligned(l.size(), l.align(), Gfp::KERNEL)
            .map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&mut self, p: *mut u8, _l: Layout) {
        // SAFETY: the caller's contract.
        let _ = unsafe { self.0.kfree(p) };
    }
}

struct Talc(talc::base::Talc<talc::source::Manual, talc::base::binning::DefaultBinning>);
impl ArenaHeap for Talc {
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        // SAFETY: workload sizes are non-zero.
        unsafe { self.0.allocate(l) }.map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract.
        unsafe { self.0.deallocate(p, l) }
    }
}

/// A peer behind one spin lock, taken for every call.
struct Spin<H>(SpinLock<H>);
impl<H: ArenaHeap> ArenaHeap for Spin<H> {
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        // `&self` locking, as a shared global allocator does (not `get_mut`).
        let lock = &self.0;
        lock.lock().alloc(l)
    }
    #[inline]
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        let lock = &self.0;
        // SAFETY: the caller's contract.
        unsafe { lock.lock().dealloc(p, l) }
    }
}

struct Lla(linked_list_allocator::Heap);
impl ArenaHeap for Lla {
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0
            .allocate_first_fit(l)
            .map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract (p is non-null: the workloads check allocations).
        unsafe { self.0.deallocate(NonNull::new_unchecked(p), l) }
    }
}

struct Buddy(buddy_system_allocator::Heap<32>);
impl ArenaHeap for Buddy {
    #[inline]
    fn alloc(&mut self, l: Layout) -> *mut u8 {
        self.0.alloc(l).map_or(std::ptr::null_mut(), |p| p.as_ptr())
    }
    #[inline]
    unsafe fn dealloc(&mut self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract (p is non-null).
        unsafe { self.0.dealloc(NonNull::new_unchecked(p), l) }
    }
}

fn make(name: &str) -> Box<dyn ArenaHeap> {
    let a = arena();
    match name {
        "dmaslab-core-C" | "dmaslab-core-A" => {
            let p = if name.ends_with('A') {
                Policy::A
            } else {
                Policy::C
            };
            let src = ArenaPageSource::new(a).unwrap_or_else(|e| panic!("arena: {e:?}"));
            Box::new(Core(
                Kmalloc::new(src, Config::new(p)).unwrap_or_else(|e| panic!("kmalloc: {e:?}")),
            ))
        }
        "talc" | "talc+spin" => {
            let mut t = talc::base::Talc::new(talc::source::Manual);
            // SAFETY: the leaked arena is ours for the rest of the process.
            unsafe { t.claim(a.as_mut_ptr().cast(), ARENA) };
            if name == "talc" {
                Box::new(Talc(t))
            } else {
                Box::new(Spin(SpinLock::new(Talc(t))))
            }
        }
        "linked_list_allocator" => {
            let mut h = linked_list_allocator::Heap::empty();
            // SAFETY: as above.
            unsafe { h.init(a.as_mut_ptr().cast(), ARENA) };
            Box::new(Lla(h))
        }
        _ => {
            let mut h = buddy_system_allocator::Heap::<32>::new();
            // SAFETY: as above.
            unsafe { h.init(a.as_mut_ptr() as usize, ARENA) };
            Box::new(Buddy(h))
        }
    }
}

fn pairs(h: &mut dyn ArenaHeap, n: usize, out: &mut Vec<(String, f64)>) {
    for s in PAIR_SIZES {
        let l = Layout::from_size_align(s, 8).unwrap_or(Layout::new::<u8>());
        let t = Instant::now();
        for i in 0..n {
            let p = h.alloc(black_box(l));
            assert!(!p.is_null());
            // SAFETY: fresh block, freed once.
            unsafe {
                p.write_volatile(i as u8);
                h.dealloc(p, l);
            }
        }
        out.push((
            format!("pair-{s}"),
            t.elapsed().as_nanos() as f64 / n as f64,
        ));
    }
}

fn random(h: &mut dyn ArenaHeap, n: usize, out: &mut Vec<(String, f64)>) {
    let mut rng = Rng::new(0x5eed);
    let ls: Vec<Layout> = (0..n)
        .map(|_| Layout::from_size_align(rng.range(1, 256), 8).unwrap_or(Layout::new::<u8>()))
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.range(0, i));
    }
    let mut ps = vec![std::ptr::null_mut(); n];
    let t = Instant::now();
    for (p, l) in ps.iter_mut().zip(&ls) {
        *p = h.alloc(*l);
        assert!(!p.is_null());
    }
    for &i in &order {
        // SAFETY: freed once.
        unsafe { h.dealloc(ps[i], ls[i]) };
    }
    out.push((
        format!("random-{}k", n / 1000),
        t.elapsed().as_nanos() as f64 / (2 * n) as f64,
    ));
}

/// Runs the core comparison and prints its table.
pub fn run(rounds: usize, scale: f64) {
    let names = [
        "dmaslab-core-C",
        "dmaslab-core-A",
        "talc",
        "talc+spin",
        "linked_list_allocator",
        "buddy_system_allocator",
    ];
    let n = ((200_000.0 * scale) as usize).max(1000);
    let nr = ((20_000.0 * scale) as usize).max(1000);
    let mut samples: Vec<Vec<Vec<f64>>> = vec![Vec::new(); names.len()];
    let mut rows: Vec<String> = Vec::new();
    for round in 0..rounds {
        for i in 0..names.len() {
            let j = (i + round) % names.len();
            let mut h = make(names[j]);
            let mut out = Vec::new();
            pairs(&mut *h, n, &mut out);
            random(&mut *h, nr, &mut out);
            if rows.is_empty() {
                rows = out.iter().map(|(r, _)| r.clone()).collect();
            }
            samples[j].push(out.iter().map(|(_, x)| *x).collect());
            // The arena stays leaked; 64 MiB each, untouched pages cost nothing.
        }
    }
    println!(
        "\n### no_std core on a {} MiB arena: time per operation (ns, median of {rounds})\n",
        ARENA >> 20
    );
    println!(
        "| workload | {} | C / talc | C / talc+spin |",
        names.join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(names.len()));
    for (k, row) in rows.iter().enumerate() {
        let med: Vec<f64> = (0..names.len())
            .map(|j| {
                let mut v: Vec<f64> = samples[j].iter().map(|s| s[k]).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                v[v.len() / 2]
            })
            .collect();
        let cells: Vec<String> = med.iter().map(|x| format!("{x:.1}")).collect();
        println!(
            "| {row} | {} | {:.2} | {:.2} |",
            cells.join(" | "),
            med[0] / med[2],
            med[0] / med[3]
        );
    }
}
