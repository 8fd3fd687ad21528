//! Statistics in the shape of `/proc/slabinfo` version 2.1.

use crate::page_layer::PageCounts;
use core::fmt::{self, Write};

/// A cache's name: up to 31 bytes, stored inline (no `alloc`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; 31],
    len: u8,
}

impl CacheName {
    /// The empty name.
    pub const EMPTY: CacheName = CacheName {
        bytes: [0; 31],
        len: 0,
    };

    /// `s` cut to 31 bytes at a character boundary.
    pub fn new(s: &str) -> Self {
        let mut n = CacheName::EMPTY;
        let _ = n.write_str(s);
        n
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl Write for CacheName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let mut buf = [0u8; 4];
            let e = ch.encode_utf8(&mut buf).as_bytes();
            let at = self.len as usize;
            if at + e.len() > self.bytes.len() {
                return Err(fmt::Error);
            }
            self.bytes[at..at + e.len()].copy_from_slice(e);
            self.len += e.len() as u8;
        }
        Ok(())
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cache's row of `/proc/slabinfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    /// Cache name (`kmalloc-64`, `dma-kmalloc-128`, ...).
    pub name: CacheName,
    /// Objects handed out.
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Object size (the slot stride).
    pub objsize: usize,
    /// Objects per slab.
    pub objperslab: usize,
    /// Pages per slab.
    pub pagesperslab: usize,
    /// Slabs with at least one object in use.
    pub active_slabs: usize,
    /// All slabs, empty ones kept for reuse included.
    pub num_slabs: usize,
}

impl SlabInfo {
    /// Pages this cache holds.
    pub fn pages(&self) -> usize {
        self.num_slabs * self.pagesperslab
    }

    /// Writes the row as Linux does (tunables are always 0 for SLUB).
    pub fn write_row<W: Write>(&self, w: &mut W) -> fmt::Result {
        writeln!(
            w,
            "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
            self.name.as_str(),
            self.active_objs,
            self.num_objs,
            self.objsize,
            self.objperslab,
            self.pagesperslab,
            0,
            0,
            0,
            self.active_slabs,
            self.num_slabs,
            0
        )
    }
}

/// The two header lines of `/proc/slabinfo` version 2.1.
pub fn write_slabinfo_header<W: Write>(w: &mut W) -> fmt::Result {
    writeln!(w, "slabinfo - version: 2.1")?;
    writeln!(
        w,
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
    )
}

/// Byte and allocation counts of what one lock protects (a cache, or the page layer's large
/// runs and huge segments): plain fields, updated under that lock, summed by
/// [`Kmalloc::totals`](crate::Kmalloc::totals). Atomic counters cost a locked instruction each,
/// six per `kmalloc`/`kfree` pair: 38 of the core's 67 ns per pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) requested: usize,
    pub(crate) handed_out: usize,
    pub(crate) in_use: usize,
    pub(crate) live: usize,
}

impl Usage {
    /// No allocation yet.
    pub(crate) const ZERO: Usage = Usage {
        requested: 0,
        handed_out: 0,
        in_use: 0,
        live: 0,
    };

    /// `n` allocations of `size` bytes served with `got` each.
    #[inline]
    pub(crate) fn alloc(&mut self, size: usize, got: usize, n: usize) {
        self.requested += size * n;
        self.handed_out += got * n;
        self.in_use += got * n;
        self.live += n;
    }

    /// `n` frees of allocations served with `got` bytes each.
    #[inline]
    pub(crate) fn free(&mut self, got: usize, n: usize) {
        self.in_use -= got * n;
        self.live -= n;
    }

    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: &Usage) {
        self.requested += other.requested;
        self.handed_out += other.handed_out;
        self.in_use += other.in_use;
        self.live += other.live;
    }
}

/// Totals over the whole allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Page-layer counts.
    pub pages: PageCounts,
    /// Pages held from the page source in all: segments, huge segments and map tables.
    pub pages_held: usize,
    /// Bytes asked for by all allocations so far (cumulative).
    pub bytes_requested: u64,
    /// Bytes handed out for them (`ksize`, cumulative).
    pub bytes_handed_out: u64,
    /// Bytes in live objects and large runs now (`ksize` of each).
    pub bytes_in_use: u64,
    /// Live allocations now.
    pub live_allocations: u64,
}
