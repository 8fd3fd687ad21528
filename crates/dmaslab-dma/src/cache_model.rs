//! A write-back, write-allocate, set-associative CPU data cache over the RAM.
//!
//! The CPU's loads and stores go through it; devices go to memory. A dirty line reaches memory
//! only when it is cleaned or evicted, and an invalidate throws its data away: the two ways a
//! shared line corrupts a DMA transfer (DESIGN.md section 1). Victims are chosen by a seeded
//! xorshift generator, and [`CacheModel::evict`] forces an eviction at a chosen moment, so every
//! interleaving replays exactly.

use crate::maintenance::whole_lines;
use alloc::vec;
use alloc::vec::Vec;

/// The memory under the cache.
pub trait Backing {
    /// Reads `buf.len()` bytes at `addr`.
    fn fetch(&self, addr: usize, buf: &mut [u8]);
    /// Writes `data` at `addr`.
    fn store(&self, addr: usize, data: &[u8]);
}

/// Geometry and seed of a [`CacheModel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Line size: 32, 64, 128 or 256.
    pub line: usize,
    /// Total bytes.
    pub capacity: usize,
    /// Lines per set.
    pub ways: usize,
    /// Seed of the victim choice.
    pub seed: u64,
}

impl CacheConfig {
    /// A 32 KiB 4-way cache of `line`-byte lines.
    pub const fn new(line: usize) -> Self {
        CacheConfig {
            line,
            capacity: 32 * 1024,
            ways: 4,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Sets capacity and associativity.
    pub const fn geometry(mut self, capacity: usize, ways: usize) -> Self {
        self.capacity = capacity;
        self.ways = ways;
        self
    }

    /// Sets the seed.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Is the geometry usable? Line 32..=256 and a power of two, `ways >= 1`, and the capacity a
    /// power-of-two number of sets of `ways` lines.
    pub fn is_valid(&self) -> bool {
        [32, 64, 128, 256].contains(&self.line)
            && self.ways >= 1
            && self.capacity.is_multiple_of(self.line * self.ways)
            && (self.capacity / (self.line * self.ways)).is_power_of_two()
    }
}

/// Counters of a [`CacheModel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// CPU accesses that found their line.
    pub hits: u64,
    /// CPU accesses that filled a line.
    pub misses: u64,
    /// Dirty lines written to memory (evictions and cleans).
    pub writebacks: u64,
    /// Lines removed to make room or by [`CacheModel::evict`].
    pub evictions: u64,
    /// Dirty lines dropped by an invalidate (their data is lost).
    pub dirty_discards: u64,
}

const INVALID: u8 = 0;
const CLEAN: u8 = 1;
const DIRTY: u8 = 2;

/// The cache.
///
/// # Invariants
/// There are `sets * ways` slots; slot `i` holds `data[i*line .. (i+1)*line]`, the copy of the
/// line at address `tags[i]` when `state[i] != INVALID`. A line address is in at most one slot,
/// and that slot is in set `(addr / line) % sets`.
pub struct CacheModel {
    line: usize,
    sets: usize,
    ways: usize,
    tags: Vec<usize>,
    state: Vec<u8>,
    data: Vec<u8>,
    rng: u64,
    stats: CacheStats,
}

impl CacheModel {
    /// An empty cache; `None` if the geometry is not [valid](CacheConfig::is_valid).
    pub fn new(cfg: CacheConfig) -> Option<Self> {
        if !cfg.is_valid() {
            return None;
        }
        let slots = cfg.capacity / cfg.line;
        Some(CacheModel {
            line: cfg.line,
            sets: slots / cfg.ways,
            ways: cfg.ways,
            tags: vec![0; slots],
            state: vec![INVALID; slots],
            data: vec![0; cfg.capacity],
            rng: cfg.seed | 1,
            stats: CacheStats::default(),
        })
    }

    /// The line size.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The line holding `addr`.
    pub fn line_of(&self, addr: usize) -> usize {
        addr & !(self.line - 1)
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn set_range(&self, line_addr: usize) -> core::ops::Range<usize> {
        let set = (line_addr / self.line) % self.sets;
        set * self.ways..(set + 1) * self.ways
    }

    fn find(&self, line_addr: usize) -> Option<usize> {
        self.set_range(line_addr)
            .find(|&i| self.state[i] != INVALID && self.tags[i] == line_addr)
    }

    fn slot_data(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * self.line..(i + 1) * self.line]
    }

    fn write_back<M: Backing + ?Sized>(&mut self, mem: &M, i: usize) {
        if self.state[i] == DIRTY {
            let (tag, line) = (self.tags[i], self.line);
            mem.store(tag, &self.data[i * line..(i + 1) * line]);
            self.state[i] = CLEAN;
            self.stats.writebacks += 1;
        }
    }

    /// The slot of `line_addr`, filling it (and evicting a seeded victim) on a miss.
    fn fill<M: Backing + ?Sized>(&mut self, mem: &M, line_addr: usize) -> usize {
        if let Some(i) = self.find(line_addr) {
            self.stats.hits += 1;
            return i;
        }
        self.stats.misses += 1;
        let range = self.set_range(line_addr);
        let i = match range.clone().find(|&i| self.state[i] == INVALID) {
            Some(i) => i,
            None => {
                let v = range.start + (self.next_rand() % self.ways as u64) as usize;
                self.write_back(mem, v);
                self.state[v] = INVALID;
                self.stats.evictions += 1;
                v
            }
        };
        self.tags[i] = line_addr;
        self.state[i] = CLEAN;
        let line = self.line;
        mem.fetch(line_addr, &mut self.data[i * line..(i + 1) * line]);
        i
    }

    /// Calls `f(line_addr, offset_in_line, range_in_buffer)` for each line piece of a range.
    fn pieces(
        &self,
        addr: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, core::ops::Range<usize>),
    ) {
        let mut done = 0;
        while done < len {
            let a = addr + done;
            let la = self.line_of(a);
            let off = a - la;
            let n = (self.line - off).min(len - done);
            f(la, off, done..done + n);
            done += n;
        }
    }

    /// A CPU load of `buf.len()` bytes at `addr`.
    pub fn read<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize, buf: &mut [u8]) {
        let mut ops = Vec::new();
        self.pieces(addr, buf.len(), |la, off, r| ops.push((la, off, r)));
        for (la, off, r) in ops {
            let i = self.fill(mem, la);
            let n = r.len();
            buf[r].copy_from_slice(&self.slot_data(i)[off..off + n]);
        }
    }

    /// A CPU store of `data` at `addr` (write-allocate: a miss fills the line first).
    pub fn write<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize, data: &[u8]) {
        let mut ops = Vec::new();
        self.pieces(addr, data.len(), |la, off, r| ops.push((la, off, r)));
        for (la, off, r) in ops {
            let i = self.fill(mem, la);
            let n = r.len();
            self.slot_data(i)[off..off + n].copy_from_slice(&data[r]);
            self.state[i] = DIRTY;
        }
    }

    fn lines(&self, addr: usize, len: usize) -> impl Iterator<Item = usize> {
        let (first, n) = whole_lines(addr, len, self.line);
        (first..first + n).step_by(self.line)
    }

    /// Writes the dirty lines covering `addr .. addr + len` back; they stay cached, clean.
    pub fn clean_range<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize, len: usize) {
        for la in self.lines(addr, len) {
            if let Some(i) = self.find(la) {
                self.write_back(mem, i);
            }
        }
    }

    /// Drops the lines covering `addr .. addr + len`, dirty or not: a dirty line's data is lost.
    pub fn invalidate_range(&mut self, addr: usize, len: usize) {
        for la in self.lines(addr, len) {
            if let Some(i) = self.find(la) {
                if self.state[i] == DIRTY {
                    self.stats.dirty_discards += 1;
                }
                self.state[i] = INVALID;
            }
        }
    }

    /// Cleans then invalidates the lines covering the range.
    pub fn flush_range<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize, len: usize) {
        if len > self.data.len() {
            // Cheaper to walk the cache than the range.
            let line = self.line;
            for i in 0..self.tags.len() {
                let t = self.tags[i];
                if self.state[i] != INVALID && t + line > addr && t < addr + len {
                    self.write_back(mem, i);
                    self.state[i] = INVALID;
                }
            }
            return;
        }
        self.clean_range(mem, addr, len);
        for la in self.lines(addr, len) {
            if let Some(i) = self.find(la) {
                self.state[i] = INVALID;
            }
        }
    }

    /// Forces the eviction of the line holding `addr` now (write back if dirty, then drop).
    /// Returns whether the line was cached.
    pub fn evict<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize) -> bool {
        match self.find(self.line_of(addr)) {
            Some(i) => {
                self.write_back(mem, i);
                self.state[i] = INVALID;
                self.stats.evictions += 1;
                true
            }
            None => false,
        }
    }

    /// Evicts one cached line chosen by the seeded generator; returns its address.
    pub fn evict_random<M: Backing + ?Sized>(&mut self, mem: &M) -> Option<usize> {
        let valid: Vec<usize> = (0..self.tags.len())
            .filter(|&i| self.state[i] != INVALID)
            .collect();
        if valid.is_empty() {
            return None;
        }
        let i = valid[(self.next_rand() % valid.len() as u64) as usize];
        let la = self.tags[i];
        self.evict(mem, la);
        Some(la)
    }

    /// Writes every dirty line back and empties the cache.
    pub fn flush_all<M: Backing + ?Sized>(&mut self, mem: &M) {
        for i in 0..self.tags.len() {
            self.write_back(mem, i);
            self.state[i] = INVALID;
        }
    }

    /// Is the line holding `addr` cached?
    pub fn is_cached(&self, addr: usize) -> bool {
        self.find(self.line_of(addr)).is_some()
    }

    /// Is the line holding `addr` cached and dirty?
    pub fn is_dirty(&self, addr: usize) -> bool {
        self.find(self.line_of(addr))
            .is_some_and(|i| self.state[i] == DIRTY)
    }

    /// A snooping (coherent) device read: memory, overlaid with cached copies.
    pub fn snoop_read<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize, buf: &mut [u8]) {
        mem.fetch(addr, buf);
        let mut ops = Vec::new();
        self.pieces(addr, buf.len(), |la, off, r| ops.push((la, off, r)));
        for (la, off, r) in ops {
            if let Some(i) = self.find(la) {
                let n = r.len();
                buf[r].copy_from_slice(&self.slot_data(i)[off..off + n]);
            }
        }
    }

    /// Copies memory's bytes of `addr .. addr + len` into the cached lines that hold them
    /// (after someone wrote memory behind the cache and the CPU must see it: a coherent device's
    /// write, or the allocator's own bookkeeping). Dirty state is unchanged.
    pub fn refresh_from<M: Backing + ?Sized>(&mut self, mem: &M, addr: usize, len: usize) {
        let mut ops = Vec::new();
        self.pieces(addr, len, |la, off, r| ops.push((la, off, r)));
        for (la, off, r) in ops {
            if let Some(i) = self.find(la) {
                let line = self.line;
                mem.fetch(
                    addr + r.start,
                    &mut self.data[i * line + off..i * line + off + r.len()],
                );
            }
        }
    }
}
