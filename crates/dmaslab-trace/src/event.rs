//! The events dmaslab replays, and how each one's body is read. Field names and order are this
//! kernel's print formats (`/sys/kernel/tracing/events/{kmem,dma,swiotlb}/*/format`, Linux 6.18).

use crate::error::{quoted, ParseError};
use crate::fields::{array, dec, extract, hex, ptr};
use dmaslab_dma::Direction;
use std::collections::HashMap;

/// One address range of a DMA event (a `dma_map_phys` mapping, or one scatterlist entry).
/// Fields an event does not print are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRange {
    /// CPU physical address.
    pub phys: u64,
    /// Bus (DMA) address.
    pub dma: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What happened. Strings (call sites, cache names, devices) are indices into the
/// [`Trace`](crate::Trace)'s tables; DMA ranges index [`Trace::ranges`](crate::Trace::ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `kmem:kmalloc`.
    Kmalloc {
        /// Call site.
        site: u32,
        /// The object.
        ptr: u64,
        /// Bytes asked for.
        bytes_req: u64,
        /// Bytes the kernel handed out (its size class).
        bytes_alloc: u64,
        /// `gfp_flags` holds `__GFP_DMA` (served from `dma-kmalloc-*`).
        gfp_dma: bool,
    },
    /// `kmem:kfree`.
    Kfree {
        /// Call site.
        site: u32,
        /// The object.
        ptr: u64,
    },
    /// `kmem:kmem_cache_alloc`.
    CacheAlloc {
        /// Call site.
        site: u32,
        /// The object.
        ptr: u64,
        /// Cache name.
        name: u32,
        /// The cache's object size.
        bytes_req: u64,
        /// The cache's slot size.
        bytes_alloc: u64,
    },
    /// `kmem:kmem_cache_free`.
    CacheFree {
        /// Call site.
        site: u32,
        /// The object.
        ptr: u64,
        /// Cache name.
        name: u32,
    },
    /// `dma:dma_map_phys` (one range) or `dma:dma_map_sg` (one per entry).
    DmaMap {
        /// Device.
        dev: u32,
        /// Direction; `None` for `DMA_NONE`.
        dir: Option<Direction>,
        /// First range.
        first: u32,
        /// Ranges.
        count: u32,
    },
    /// `dma:dma_unmap_phys` (ranges with `dma` and `len`) or `dma:dma_unmap_sg` (`phys` only).
    DmaUnmap {
        /// Device.
        dev: u32,
        /// First range.
        first: u32,
        /// Ranges.
        count: u32,
    },
    /// `dma:dma_sync_{single,sg}_for_{cpu,device}` (ranges with `dma` and `len`).
    DmaSync {
        /// Device.
        dev: u32,
        /// First range.
        first: u32,
        /// Ranges.
        count: u32,
    },
    /// `swiotlb:swiotlb_bounced`: the kernel really bounced a mapping.
    SwiotlbBounced {
        /// Device.
        dev: u32,
        /// Bytes.
        size: u64,
    },
}

/// A table of distinct strings.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The index of `s`, added if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), i);
        i
    }

    /// The string of index `i`.
    pub fn get(&self, i: u32) -> &str {
        &self.names[i as usize]
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// None yet?
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What body parsing writes into: the string tables and DMA ranges.
#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) sites: Interner,
    pub(crate) names: Interner,
    pub(crate) devices: Interner,
    pub(crate) ranges: Vec<DmaRange>,
    /// A pointer printed with 16 digits but below 2^32 (hashed `%p`) was seen.
    pub(crate) small_wide_ptr: bool,
    /// A pointer at or above 2^32 was seen.
    pub(crate) big_ptr: bool,
}

/// Required/optional key lists, in print-format order.
const KMALLOC: [(&str, bool); 7] = [
    ("call_site", true),
    ("ptr", true),
    ("bytes_req", true),
    ("bytes_alloc", true),
    ("gfp_flags", true),
    ("node", false),
    ("accounted", false),
];
const KFREE: [(&str, bool); 2] = [("call_site", true), ("ptr", true)];
const CACHE_ALLOC: [(&str, bool); 8] = [
    ("call_site", true),
    ("ptr", true),
    ("name", true),
    ("bytes_req", true),
    ("bytes_alloc", true),
    ("gfp_flags", true),
    ("node", false),
    ("accounted", false),
];
const CACHE_FREE: [(&str, bool); 3] = [("call_site", true), ("ptr", true), ("name", true)];

impl Tables {
    fn ptr(&mut self, s: &str, line: usize) -> Result<u64, ParseError> {
        let p = ptr(s, "ptr", line)?;
        if p >= 1 << 32 {
            self.big_ptr = true;
        } else if p != 0 && s.trim_start_matches("0x").len() == 16 {
            self.small_wide_ptr = true;
        }
        Ok(p)
    }

    /// The device name: the text before ` dir=`.
    fn device(&mut self, body: &str, line: usize) -> Result<u32, ParseError> {
        let (dev, _) = body
            .split_once(" dir=")
            .ok_or_else(|| ParseError::new(line, "dir", "missing"))?;
        let dev = dev.trim();
        if dev.is_empty() {
            return Err(ParseError::new(line, "device", "missing"));
        }
        Ok(self.devices.intern(dev))
    }

    fn push_ranges(
        &mut self,
        phys: &[u64],
        dma: &[u64],
        len: &[u64],
        line: usize,
    ) -> Result<(u32, u32), ParseError> {
        let n = phys.len().max(dma.len()).max(len.len());
        for (name, v) in [("phys_addrs", phys), ("dma_addrs", dma), ("sizes", len)] {
            if !v.is_empty() && v.len() != n {
                return Err(ParseError::new(
                    line,
                    name,
                    format!("{} entries where the others have {n}", v.len()),
                ));
            }
        }
        let first = self.ranges.len() as u32;
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        for i in 0..n {
            self.ranges.push(DmaRange {
                phys: at(phys, i),
                dma: at(dma, i),
                len: at(len, i),
            });
        }
        Ok((first, n as u32))
    }

    /// Reads the body of event `name`; `Ok(None)` for an event dmaslab does not replay.
    pub(crate) fn event(
        &mut self,
        name: &str,
        body: &str,
        line: usize,
    ) -> Result<Option<EventKind>, ParseError> {
        Ok(Some(match name {
            "kmalloc" => {
                let [site, p, req, alloc, gfp, _, _] = extract(body, KMALLOC, line)?;
                EventKind::Kmalloc {
                    site: self.sites.intern(site),
                    ptr: self.ptr(p, line)?,
                    bytes_req: dec(req, "bytes_req", line)?,
                    bytes_alloc: dec(alloc, "bytes_alloc", line)?,
                    gfp_dma: gfp_dma(gfp, line)?,
                }
            }
            "kfree" => {
                let [site, p] = extract(body, KFREE, line)?;
                EventKind::Kfree {
                    site: self.sites.intern(site),
                    ptr: self.ptr(p, line)?,
                }
            }
            "kmem_cache_alloc" => {
                let [site, p, cache, req, alloc, gfp, _, _] = extract(body, CACHE_ALLOC, line)?;
                gfp_dma(gfp, line)?;
                EventKind::CacheAlloc {
                    site: self.sites.intern(site),
                    ptr: self.ptr(p, line)?,
                    name: self.name(cache, line)?,
                    bytes_req: dec(req, "bytes_req", line)?,
                    bytes_alloc: dec(alloc, "bytes_alloc", line)?,
                }
            }
            "kmem_cache_free" => {
                let [site, p, cache] = extract(body, CACHE_FREE, line)?;
                EventKind::CacheFree {
                    site: self.sites.intern(site),
                    ptr: self.ptr(p, line)?,
                    name: self.name(cache, line)?,
                }
            }
            "dma_map_phys" => {
                let dev = self.device(body, line)?;
                let [dir, dma, size, phys, _] = extract(
                    body,
                    [
                        ("dir", true),
                        ("dma_addr", true),
                        ("size", true),
                        ("phys_addr", true),
                        ("attrs", false),
                    ],
                    line,
                )?;
                let (first, count) = self.push_ranges(
                    &[hex(phys, "phys_addr", line)?],
                    &[hex(dma, "dma_addr", line)?],
                    &[dec(size, "size", line)?],
                    line,
                )?;
                EventKind::DmaMap {
                    dev,
                    dir: direction(dir, line)?,
                    first,
                    count,
                }
            }
            "dma_map_sg" => {
                let dev = self.device(body, line)?;
                let [dir, _, _, dma, sizes, phys, _] = extract(
                    body,
                    [
                        ("dir", true),
                        ("nents", true),
                        ("ents", true),
                        ("dma_addrs", true),
                        ("sizes", true),
                        ("phys_addrs", true),
                        ("attrs", false),
                    ],
                    line,
                )?;
                let (mut p, mut d, mut l) = (Vec::new(), Vec::new(), Vec::new());
                array(phys, "phys_addrs", line, &mut p)?;
                array(dma, "dma_addrs", line, &mut d)?;
                array(sizes, "sizes", line, &mut l)?;
                let (first, count) = self.push_ranges(&p, &d, &l, line)?;
                EventKind::DmaMap {
                    dev,
                    dir: direction(dir, line)?,
                    first,
                    count,
                }
            }
            "dma_unmap_phys" => {
                let dev = self.device(body, line)?;
                let [dir, dma, size, _] = extract(
                    body,
                    [
                        ("dir", true),
                        ("dma_addr", true),
                        ("size", true),
                        ("attrs", false),
                    ],
                    line,
                )?;
                direction(dir, line)?;
                let (first, count) = self.push_ranges(
                    &[],
                    &[hex(dma, "dma_addr", line)?],
                    &[dec(size, "size", line)?],
                    line,
                )?;
                EventKind::DmaUnmap { dev, first, count }
            }
            "dma_unmap_sg" => {
                let dev = self.device(body, line)?;
                let [dir, phys, _] = extract(
                    body,
                    [("dir", true), ("phys_addrs", true), ("attrs", false)],
                    line,
                )?;
                direction(dir, line)?;
                let mut p = Vec::new();
                array(phys, "phys_addrs", line, &mut p)?;
                let (first, count) = self.push_ranges(&p, &[], &[], line)?;
                EventKind::DmaUnmap { dev, first, count }
            }
            "dma_sync_single_for_cpu" | "dma_sync_single_for_device" => {
                let dev = self.device(body, line)?;
                let [dir, dma, size] = extract(
                    body,
                    [("dir", true), ("dma_addr", true), ("size", true)],
                    line,
                )?;
                direction(dir, line)?;
                let (first, count) = self.push_ranges(
                    &[],
                    &[hex(dma, "dma_addr", line)?],
                    &[dec(size, "size", line)?],
                    line,
                )?;
                EventKind::DmaSync { dev, first, count }
            }
            "dma_sync_sg_for_cpu" | "dma_sync_sg_for_device" => {
                let dev = self.device(body, line)?;
                let [dir, dma, sizes] = extract(
                    body,
                    [("dir", true), ("dma_addrs", true), ("sizes", true)],
                    line,
                )?;
                direction(dir, line)?;
                let (mut d, mut l) = (Vec::new(), Vec::new());
                array(dma, "dma_addrs", line, &mut d)?;
                array(sizes, "sizes", line, &mut l)?;
                let (first, count) = self.push_ranges(&[], &d, &l, line)?;
                EventKind::DmaSync { dev, first, count }
            }
            "swiotlb_bounced" => {
                let rest = body
                    .strip_prefix("dev_name:")
                    .ok_or_else(|| ParseError::new(line, "dev_name", "missing"))?;
                let (dev, _) = rest
                    .split_once(" dma_mask=")
                    .ok_or_else(|| ParseError::new(line, "dma_mask", "missing"))?;
                let [mask, addr, size] = extract(
                    body,
                    [("dma_mask", true), ("dev_addr", true), ("size", true)],
                    line,
                )?;
                hex(mask, "dma_mask", line)?;
                hex(addr, "dev_addr", line)?;
                // `size=%zu %s`: the count, then FORCE or NORMAL.
                let size = size.split_whitespace().next().unwrap_or("");
                EventKind::SwiotlbBounced {
                    dev: self.devices.intern(dev.trim()),
                    size: dec(size, "size", line)?,
                }
            }
            _ => return Ok(None),
        }))
    }

    fn name(&mut self, s: &str, line: usize) -> Result<u32, ParseError> {
        if s.is_empty() {
            return Err(ParseError::new(line, "name", "empty"));
        }
        Ok(self.names.intern(s))
    }
}

/// `dir=`: `BIDIRECTIONAL`, `TO_DEVICE`, `FROM_DEVICE` or `NONE` (no direction).
fn direction(s: &str, line: usize) -> Result<Option<Direction>, ParseError> {
    match s {
        "BIDIRECTIONAL" => Ok(Some(Direction::Bidirectional)),
        "TO_DEVICE" => Ok(Some(Direction::ToDevice)),
        "FROM_DEVICE" => Ok(Some(Direction::FromDevice)),
        "NONE" => Ok(None),
        _ => Err(ParseError::new(
            line,
            "dir",
            format!("not a DMA direction: {}", quoted(s)),
        )),
    }
}

/// Does `gfp_flags` (`GFP_KERNEL|__GFP_ZERO`, `none`, or leftover bits in hex) ask for
/// `__GFP_DMA` (bit 0)?
fn gfp_dma(s: &str, line: usize) -> Result<bool, ParseError> {
    if s.is_empty() {
        return Err(ParseError::new(line, "gfp_flags", "empty"));
    }
    let mut dma = false;
    for flag in s.split('|') {
        if flag == "GFP_DMA" || flag == "__GFP_DMA" {
            dma = true;
        } else if flag.starts_with("0x") {
            dma |= hex(flag, "gfp_flags", line)? & 1 != 0;
        } else if flag.is_empty() || !flag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ParseError::new(
                line,
                "gfp_flags",
                format!("not a flag list: {}", quoted(s)),
            ));
        }
    }
    Ok(dma)
}
