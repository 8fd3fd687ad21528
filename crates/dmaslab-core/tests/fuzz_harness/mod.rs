//! The allocator API driven by arbitrary bytes against a model, with deliberate misuse: shared by
//! the `cargo fuzz` target (`fuzz/fuzz_targets/allocator_api.rs`) and the bounded proptest run
//! in CI (`tests/fuzz_model.rs`).
//!
//! The first byte picks the policy, the DMA line, debug mode and how many empty slabs are kept;
//! each further byte is an operation (its operands follow). What is checked:
//! - allocations: at least the size, aligned as asked and naturally (up to the core's limit),
//!   overlapping nothing live; contents survive until freed;
//! - misuse is reported as an error and changes nothing: interior, stack, wild and arena
//!   addresses that are no object start (`InvalidPointer`, always); an immediate double free
//!   (always); a free of any freed object (debug mode); a red-zone overflow (debug mode, at
//!   free); a write after free (debug mode: when the object is handed out again, or by
//!   `validate` at the end — debug runs keep every empty slab so freed objects stay checkable);
//! - nothing panics inside the allocator, and at the end `validate` finds exactly the objects
//!   misused (nothing in normal mode).
#![allow(dead_code)]

use dmaslab_core::{
    ArenaPageSource, Config, FindingKind, FreeError, Gfp, Kmalloc, Owner, Policy, POISON_FREE,
    RED_ZONE,
};
use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;

/// Arena size per run.
pub const ARENA: usize = if cfg!(miri) { 1 << 20 } else { 4 << 20 };

struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from(self.u16()?) | u32::from(self.u16()?) << 16)
    }
}

struct Obj {
    size: usize,
    ksize: usize,
    tag: u8,
}

fn natural_align(size: usize) -> usize {
    1 << size.trailing_zeros()
}

struct Model<'k, 'm> {
    k: &'k Kmalloc<ArenaPageSource<'m>>,
    debug: bool,
    /// Live allocations by start.
    live: BTreeMap<usize, Obj>,
    /// Allocated objects whose red zone we overwrote (their free was refused): start → ksize.
    leaked: BTreeMap<usize, usize>,
    /// Recently freed addresses (misuse candidates).
    freed: Vec<usize>,
    /// The last operation was the free of this address.
    last_free: Option<usize>,
    /// Free objects written after free, not yet reported.
    tainted: BTreeSet<usize>,
    /// Objects reported at allocation and kept out of circulation (still poisoned wrongly).
    quarantined: BTreeSet<usize>,
    arena: (usize, usize),
    misuse_reported: usize,
}

impl Model<'_, '_> {
    fn nth_live(&self, i: u16) -> Option<usize> {
        if self.live.is_empty() {
            return None;
        }
        self.live.keys().nth(i as usize % self.live.len()).copied()
    }

    fn overlaps(&self, p: usize, len: usize) -> bool {
        let hit = |m: &BTreeMap<usize, usize>| {
            m.range(..p + len)
                .next_back()
                .is_some_and(|(&s, &l)| s + l > p)
        };
        let live_hit = self
            .live
            .range(..p + len)
            .next_back()
            .is_some_and(|(&s, o)| s + o.ksize > p);
        live_hit || hit(&self.leaked)
    }

    fn alloc(&mut self, b: &mut Bytes, site: usize) -> Option<()> {
        let s = b.u16()? as usize;
        let size = if s >= 0xf000 {
            8192 + (s & 0xfff) * 16
        } else {
            1 + s % 4096
        };
        let a = b.u8()?;
        let align = if a & 0x10 != 0 {
            1usize << (a & 0xf).min(13)
        } else {
            1
        };
        let gfp = if a & 0x20 != 0 { Gfp::DMA } else { Gfp::KERNEL };
        match self.k.kmalloc_checked(size, align, gfp, site) {
            Ok(Some(p)) => {
                let p = p.as_ptr() as usize;
                let ksize = self
                    .k
                    .ksize(p as *const u8)
                    .expect("ksize of a fresh allocation");
                assert!(ksize >= size, "kmalloc({size}) gave {ksize} bytes");
                assert_eq!(p % align, 0, "kmalloc_aligned({size}, {align}) at {p:#x}");
                let nat = natural_align(size).min(self.k.max_natural_align());
                assert_eq!(p % nat, 0, "kmalloc({size}) at {p:#x} not {nat}-aligned");
                assert!(
                    !self.overlaps(p, ksize),
                    "kmalloc({size}) at {p:#x} overlaps a live object"
                );
                assert!(
                    !self.tainted.contains(&p),
                    "an object written after free was handed out unreported: {p:#x}"
                );
                self.freed.retain(|&f| !(p..p + ksize).contains(&f));
                let tag = site as u8 | 1;
                // SAFETY: a fresh allocation of at least `size` bytes.
                unsafe { (p as *mut u8).write_bytes(tag, size) };
                self.live.insert(p, Obj { size, ksize, tag });
            }
            Ok(None) => {}
            Err(FreeError::Found(f)) if f.kind == FindingKind::UseAfterFree => {
                assert!(self.debug, "a finding in normal mode: {f}");
                assert!(
                    self.tainted.remove(&f.object),
                    "use after free reported for an object nobody wrote: {f}"
                );
                self.quarantined.insert(f.object);
                self.misuse_reported += 1;
            }
            Err(e) => panic!("kmalloc({size}, {align}): unexpected error {e}"),
        }
        self.last_free = None;
        Some(())
    }

    fn free(&mut self, b: &mut Bytes, site: usize) -> Option<()> {
        let i = b.u16()?;
        let Some(p) = self.nth_live(i) else {
            return Some(());
        };
        let o = self.live.remove(&p).unwrap();
        // SAFETY: a live allocation of at least `size` bytes, written with `tag`.
        let s = unsafe { std::slice::from_raw_parts(p as *const u8, o.size) };
        assert!(
            s.iter().all(|&x| x == o.tag),
            "object at {p:#x} lost its contents"
        );
        // SAFETY: live, freed once.
        let r = unsafe { self.k.kfree_at(p as *mut u8, site) };
        assert_eq!(r, Ok(()), "free of live {p:#x}");
        self.freed.push(p);
        if self.freed.len() > 64 {
            self.freed.remove(0);
        }
        self.last_free = Some(p);
        Some(())
    }

    /// Frees `a`, which must be reported as misuse and change nothing.
    fn expect_refused(&mut self, a: usize, site: usize, what: &str) {
        let before = self.k.totals().live_allocations;
        // SAFETY: `a` is no live allocation (the caller checked): a misuse the allocator must
        // refuse without touching memory it does not own.
        let r = unsafe { self.k.kfree_at(a as *mut u8, site) };
        match r {
            Err(FreeError::InvalidPointer(x)) | Err(FreeError::DoubleFree(x)) => {
                assert_eq!(x, a, "{what}: error names another address")
            }
            Err(FreeError::Found(f))
                if f.kind == FindingKind::DoubleFree && f.addr == a && self.debug => {}
            other => panic!("{what} of {a:#x} not reported: {other:?}"),
        }
        assert_eq!(
            self.k.totals().live_allocations,
            before,
            "{what}: a refused free changed the counts"
        );
        self.misuse_reported += 1;
    }

    fn is_live_start(&self, a: usize) -> bool {
        self.live.contains_key(&a) || self.leaked.contains_key(&a)
    }

    fn free_of_freed(&mut self, b: &mut Bytes, site: usize) -> Option<()> {
        let i = b.u8()? as usize;
        if self.freed.is_empty() {
            return Some(());
        }
        let a = self.freed[i % self.freed.len()];
        if self.is_live_start(a) {
            return Some(());
        }
        let immediate = self.last_free == Some(a);
        let promised = self.debug
            || immediate
            || !matches!(self.k.owner_of(a), Owner::Object { start, live: false, .. } if start == a);
        if promised {
            self.expect_refused(a, site, "free of a freed object");
        }
        Some(())
    }

    fn invalid_free(&mut self, b: &mut Bytes, site: usize, stack: usize) -> Option<()> {
        let kind = b.u8()?;
        let x = b.u32()? as usize;
        let a = match kind % 4 {
            0 => {
                let Some(p) = self.nth_live(x as u16) else {
                    return Some(());
                };
                let ks = self.live[&p].ksize;
                if ks < 2 {
                    return Some(());
                }
                p + 1 + (x >> 16) % (ks - 1)
            }
            1 => stack + (x % 64),
            2 => 0x6000_0000_0000 + x * 8,
            _ => self.arena.0 + (x * 8) % (self.arena.1 - self.arena.0),
        };
        if (self.arena.0..self.arena.1).contains(&a) {
            if self.is_live_start(a) || self.quarantined.contains(&a) {
                return Some(());
            }
            if let Owner::Object { start, live, .. } = self.k.owner_of(a) {
                // A free slot's start: a double free, promised only in debug mode.
                if start == a && (!self.debug || live) {
                    return Some(());
                }
            }
        }
        self.expect_refused(a, site, "invalid free");
        Some(())
    }

    /// Debug mode: a write after free, or a red-zone overflow caught at free.
    fn corrupt(&mut self, b: &mut Bytes, site: usize) -> Option<()> {
        let kind = b.u8()?;
        let x = b.u16()?;
        if kind & 1 == 0 {
            if self.freed.is_empty() {
                return Some(());
            }
            let a = self.freed[x as usize % self.freed.len()];
            let Owner::Object {
                start,
                size,
                live: false,
                ..
            } = self.k.owner_of(a)
            else {
                return Some(());
            };
            if start != a || size <= 8 || self.quarantined.contains(&a) {
                return Some(());
            }
            let off = 8 + (x as usize >> 4) % (size - 8);
            // SAFETY: a free slot of a slab in the arena: memory the allocator owns, written on
            // purpose (the misuse under test); it holds no link beyond its first word.
            unsafe { ((a + off) as *mut u8).write(!POISON_FREE) };
            self.tainted.insert(a);
        } else {
            let Some(p) = self.nth_live(x) else {
                return Some(());
            };
            let o = &self.live[&p];
            if !matches!(self.k.owner_of(p), Owner::Object { .. }) || o.size >= o.ksize {
                return Some(());
            }
            let (size, ksize) = (o.size, o.ksize);
            // SAFETY: the first red-zone byte, inside the slot: the misuse under test.
            unsafe { ((p + size) as *mut u8).write(!RED_ZONE) };
            // SAFETY: live object; the free must be refused.
            match unsafe { self.k.kfree_at(p as *mut u8, site) } {
                Err(FreeError::Found(f))
                    if f.kind == FindingKind::RedZone && f.object == p && f.offset == size => {}
                other => panic!("red zone overflow of {p:#x} not reported: {other:?}"),
            }
            self.live.remove(&p);
            self.leaked.insert(p, ksize);
            self.misuse_reported += 1;
        }
        self.last_free = None;
        Some(())
    }

    /// Normal mode: krealloc keeps the contents.
    fn realloc(&mut self, b: &mut Bytes) -> Option<()> {
        let i = b.u16()?;
        let n = 1 + b.u16()? as usize % 9000;
        let Some(p) = self.nth_live(i) else {
            return Some(());
        };
        let old = self.live.remove(&p).unwrap();
        // SAFETY: `p` is live; on success only the result is used.
        match unsafe { self.k.krealloc(p as *mut u8, n, Gfp::KERNEL) } {
            Some(q) => {
                let q = q.as_ptr() as usize;
                let keep = old.size.min(n);
                // SAFETY: the new block holds at least `n` bytes.
                let s = unsafe { std::slice::from_raw_parts(q as *const u8, keep) };
                assert!(s.iter().all(|&x| x == old.tag), "krealloc lost contents");
                let ksize = self.k.ksize(q as *const u8).unwrap();
                assert!(!self.overlaps(q, ksize), "krealloc result overlaps");
                // SAFETY: `n` bytes of the live block.
                unsafe { (q as *mut u8).write_bytes(old.tag, n) };
                if q != p {
                    self.freed.push(p);
                }
                self.freed.retain(|&f| !(q..q + ksize).contains(&f));
                self.live.insert(
                    q,
                    Obj {
                        size: n,
                        ksize,
                        tag: old.tag,
                    },
                );
            }
            None => {
                self.live.insert(p, old);
            }
        }
        self.last_free = None;
        Some(())
    }
}

/// Uninitialised arena memory.
fn region(bytes: usize) -> Box<[MaybeUninit<u8>]> {
    let mut v = Vec::with_capacity(bytes);
    // SAFETY: MaybeUninit<u8> needs no initialisation.
    unsafe { v.set_len(bytes) };
    v.into_boxed_slice()
}

/// What one run saw reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reported {
    /// Refused frees (invalid, double) and red-zone overflows caught at free.
    pub at_free: usize,
    /// Writes after free caught when the object was handed out again.
    pub uaf_at_alloc: usize,
    /// Objects the final `validate` reported (writes after free, overwritten red zones).
    pub by_validate: usize,
}

/// Runs one input; panics on any broken promise. Returns what was reported.
pub fn run(data: &[u8]) -> Reported {
    let mut b = Bytes { data, at: 0 };
    let Some(cfg) = b.u8() else {
        return Reported::default();
    };
    let policy = [Policy::A, Policy::B, Policy::C][cfg as usize % 3];
    let line = [32, 64, 128, 256][(cfg as usize >> 2) & 3];
    let debug = cfg & 0x80 != 0;
    let mut config = Config::new(policy)
        .dma_minalign(line)
        .seg_order(6)
        .debug(debug);
    if debug {
        // Freed objects stay in their slabs, so every write after free stays checkable.
        config.empty_slabs_kept = usize::MAX;
    } else if cfg & 0x40 != 0 {
        // Empty slabs go back at once: frees of pointers into free slabs.
        config.empty_slabs_kept = 0;
    }
    let mut mem = region(ARENA);
    let arena = (mem.as_ptr() as usize, mem.as_ptr() as usize + mem.len());
    let k = Kmalloc::new(ArenaPageSource::new(&mut mem).expect("arena"), config).expect("config");
    let stack = [0u64; 8];
    let mut m = Model {
        k: &k,
        debug,
        live: BTreeMap::new(),
        leaked: BTreeMap::new(),
        freed: Vec::new(),
        last_free: None,
        tainted: BTreeSet::new(),
        quarantined: BTreeSet::new(),
        arena,
        misuse_reported: 0,
    };
    let mut site = 0x1000;
    while let Some(op) = b.u8() {
        site += 1;
        let done = match op % 10 {
            0..=3 => m.alloc(&mut b, site),
            4..=5 => m.free(&mut b, site),
            6 => m.free_of_freed(&mut b, site),
            7 => m.invalid_free(&mut b, site, stack.as_ptr() as usize),
            _ if debug => m.corrupt(&mut b, site),
            _ => m.realloc(&mut b),
        };
        if done.is_none() {
            break;
        }
    }
    let live: Vec<usize> = m.live.keys().copied().collect();
    for p in live {
        // SAFETY: live, freed once.
        assert_eq!(unsafe { k.kfree(p as *mut u8) }, Ok(()));
    }
    let mut uaf = BTreeSet::new();
    let mut red = BTreeSet::new();
    k.validate(|f| match f.kind {
        FindingKind::UseAfterFree if debug => {
            uaf.insert(f.object);
        }
        FindingKind::RedZone if debug => {
            red.insert(f.object);
        }
        _ => panic!("validate: unexpected finding {f}"),
    });
    let expect_uaf: BTreeSet<usize> = m.tainted.union(&m.quarantined).copied().collect();
    assert_eq!(uaf, expect_uaf, "writes after free found by validate");
    let expect_red: BTreeSet<usize> = m.leaked.keys().copied().collect();
    assert_eq!(red, expect_red, "red zones found by validate");
    Reported {
        at_free: m.misuse_reported - m.quarantined.len(),
        uaf_at_alloc: m.quarantined.len(),
        by_validate: uaf.len() + red.len(),
    }
}
