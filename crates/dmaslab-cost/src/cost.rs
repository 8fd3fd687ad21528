//! What policy A (every kmalloc buffer DMA-safe, DESIGN.md section 1) would cost on the machine a
//! slabinfo came from.
//!
//! For a minimum alignment `M` every kmalloc cache of size `s` moves to its *target class*: the
//! smallest kmalloc class that is at least `s`, at least `M` and a multiple of `M`
//! ([`dmaslab_core::size_class::target_class`]). Per cache, on a counting basis (`total` =
//! `num_objs`, `active` = `active_objs`, the objects `count`):
//!
//! - pages now: `total`: `num_slabs * pagesperslab` as printed; `active`:
//!   `ceil(active_objs / objperslab) * pagesperslab`;
//! - pages then: `ceil(count / objperslab') * pagesperslab'`, where the primed geometry is that
//!   of the target class in the same family if the input has it, else of any family's cache of
//!   that size in the input (the normal family first, then input order), else the core's slab
//!   geometry rule (for every class up to 256: one page holding `page_size / size` objects).
//!   A cache whose target is itself is untouched: pages then = pages now.
//!
//! Extra pages (then - now) are summed over the kmalloc caches and compared with the kmalloc and
//! the whole slab memory of the input *on the same basis*.

use crate::family::{recognise, Family, KmallocCache};
use crate::slabinfo::{SlabInfo, SlabRow};
use dmaslab_core::geometry::{objs_per_slab, slab_order};
use dmaslab_core::size_class::{target_class, ClassSet, SizeClasses};
use serde::Serialize;
use std::fmt;

/// The minimum alignments analysed when the user names none.
pub const DEFAULT_MINALIGNS: [u64; 5] = [16, 32, 64, 128, 256];

/// Which object count a scenario is computed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// `num_objs`: every object slot the caches hold, allocated or not.
    Total,
    /// `active_objs`: only the allocated objects, packed into as few slabs as possible.
    Active,
}

impl Basis {
    pub const ALL: [Basis; 2] = [Basis::Total, Basis::Active];

    fn count(self, row: &SlabRow) -> u64 {
        match self {
            Basis::Total => row.num_objs,
            Basis::Active => row.active_objs,
        }
    }

    /// The pages `row` occupies now on this basis.
    fn pages_now(self, row: &SlabRow) -> u64 {
        match self {
            Basis::Total => row.num_slabs.saturating_mul(row.pagesperslab),
            Basis::Active => pages_for(row.active_objs, row.objperslab, row.pagesperslab),
        }
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Basis::Total => "total",
            Basis::Active => "active",
        })
    }
}

/// Is `m` a minimum alignment this tool analyses? (A power of two from 8 to 256, as the core's
/// [`SizeClasses`] accepts.)
pub fn valid_minalign(m: u64) -> bool {
    usize::try_from(m)
        .ok()
        .and_then(|m| SizeClasses::new(ClassSet::Kmalloc, m))
        .is_some()
}

/// `ceil(count / objperslab) * pagesperslab`, saturating (inputs are untrusted).
fn pages_for(count: u64, objperslab: u64, pagesperslab: u64) -> u64 {
    count
        .div_ceil(objperslab.max(1))
        .saturating_mul(pagesperslab)
}

/// `then - now` as a signed count, saturating.
fn diff(then: u64, now: u64) -> i64 {
    let d = i128::from(then) - i128::from(now);
    d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// One kmalloc cache under one scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheCost {
    pub name: String,
    /// The class size from the cache's name (not in the JSON: `objsize` and `target` are).
    #[serde(skip)]
    pub class: u64,
    /// `objsize` as printed.
    pub objsize: u64,
    /// The class its objects would live in.
    pub target: u64,
    /// Objects counted on the scenario's basis.
    pub count: u64,
    pub pages_now: u64,
    pub pages_then: u64,
    pub extra_pages: i64,
}

/// One minimum alignment on one basis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub minalign: u64,
    pub basis: Basis,
    pub extra_pages: i64,
    pub extra_bytes: i64,
    /// Pages of all kmalloc caches now, on this basis.
    pub kmalloc_pages: u64,
    /// Pages of all caches in the input now, on this basis.
    pub slab_pages: u64,
    /// Every kmalloc cache, in input order.
    pub caches: Vec<CacheCost>,
}

fn percent(part: i64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

impl Scenario {
    /// Extra memory as a percentage of all kmalloc memory (None if there is none).
    pub fn percent_of_kmalloc(&self) -> Option<f64> {
        percent(self.extra_pages, self.kmalloc_pages)
    }
    /// Extra memory as a percentage of all slab memory (None if there is none).
    pub fn percent_of_slab(&self) -> Option<f64> {
        percent(self.extra_pages, self.slab_pages)
    }
    /// The caches whose objects move or whose page count changes.
    pub fn changed(&self) -> impl Iterator<Item = &CacheCost> {
        self.caches
            .iter()
            .filter(|c| c.extra_pages != 0 || c.target != c.class)
    }
}

/// The whole analysis of one input. Serialises as the `--json` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// Where the input came from: a path, `/proc/slabinfo`, `stdin` or `seed`.
    pub source: String,
    /// Bytes per page, for `extra_bytes` and the fallback geometry.
    pub page_size: u64,
    /// One per minimum alignment and basis: M-major, `total` before `active`.
    pub scenarios: Vec<Scenario>,
    /// Number of caches in the input.
    #[serde(skip)]
    pub caches: usize,
    /// Number of kmalloc caches in the input.
    #[serde(skip)]
    pub kmalloc_caches: usize,
}

/// Slab geometry `(objperslab, pagesperslab)` of a cache.
type Geometry = (u64, u64);

/// Where the geometry of a target class comes from, per the module rule.
struct GeometryTable<'a> {
    kmalloc: Vec<(KmallocCache, &'a SlabRow)>,
    page_size: u64,
}

impl GeometryTable<'_> {
    fn lookup(&self, family: Family, size: u64) -> Geometry {
        let of = |r: &SlabRow| (r.objperslab, r.pagesperslab);
        let same_size = || self.kmalloc.iter().filter(|(k, _)| k.size == size);
        if let Some((_, r)) = same_size().find(|(k, _)| k.family == family) {
            return of(r);
        }
        if let Some((_, r)) = same_size().find(|(k, _)| k.family == Family::Normal) {
            return of(r);
        }
        if let Some((_, r)) = same_size().next() {
            return of(r);
        }
        // The core's rule; for the classes up to 256 that policy A can create this is one page
        // holding page_size / size objects.
        let (size, page) = (size as usize, (self.page_size as usize).max(1));
        (
            (objs_per_slab(size, page) as u64).max(1),
            1u64 << slab_order(size, page),
        )
    }
}

/// Computes every scenario for `minaligns` (each must pass [`valid_minalign`]; others are skipped)
/// on both bases.
pub fn analyse(info: &SlabInfo, source: &str, page_size: u64, minaligns: &[u64]) -> Analysis {
    let kmalloc: Vec<(KmallocCache, &SlabRow)> = info
        .rows
        .iter()
        .filter_map(|r| recognise(&r.name).map(|k| (k, r)))
        .collect();
    let table = GeometryTable { kmalloc, page_size };
    let mut scenarios = Vec::new();
    for &m in minaligns.iter().filter(|&&m| valid_minalign(m)) {
        for basis in Basis::ALL {
            scenarios.push(scenario(info, &table, m, basis));
        }
    }
    Analysis {
        source: source.to_string(),
        page_size,
        scenarios,
        caches: info.rows.len(),
        kmalloc_caches: table.kmalloc.len(),
    }
}

fn scenario(info: &SlabInfo, table: &GeometryTable<'_>, minalign: u64, basis: Basis) -> Scenario {
    let mut caches = Vec::with_capacity(table.kmalloc.len());
    for (k, row) in &table.kmalloc {
        let target = usize::try_from(k.size)
            .ok()
            .and_then(|s| target_class(s, minalign as usize))
            .map_or(k.size, |t| t as u64);
        let count = basis.count(row);
        let pages_now = basis.pages_now(row);
        let pages_then = if target == k.size {
            pages_now
        } else {
            let (objperslab, pagesperslab) = table.lookup(k.family, target);
            pages_for(count, objperslab, pagesperslab)
        };
        caches.push(CacheCost {
            name: row.name.clone(),
            class: k.size,
            objsize: row.objsize,
            target,
            count,
            pages_now,
            pages_then,
            extra_pages: diff(pages_then, pages_now),
        });
    }
    let extra_pages = caches
        .iter()
        .fold(0i64, |sum, c| sum.saturating_add(c.extra_pages));
    let kmalloc_pages = caches
        .iter()
        .fold(0u64, |sum, c| sum.saturating_add(c.pages_now));
    let slab_pages = info
        .rows
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(basis.pages_now(r)));
    Scenario {
        minalign,
        basis,
        extra_pages,
        extra_bytes: extra_pages.saturating_mul(page_size_i64(table.page_size)),
        kmalloc_pages,
        slab_pages,
        caches,
    }
}

fn page_size_i64(p: u64) -> i64 {
    i64::try_from(p).unwrap_or(i64::MAX)
}
