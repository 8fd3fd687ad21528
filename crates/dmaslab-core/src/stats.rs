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
