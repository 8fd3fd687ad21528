//! Which slab caches are kmalloc caches, of which family and which size.
//!
//! A modern kernel prints these kmalloc families (`mm/slab_common.c`, `kmalloc_info[]`):
//!
//! | name                 | family                                   |
//! |----------------------|------------------------------------------|
//! | `kmalloc-N`          | normal                                   |
//! | `kmalloc-cg-N`       | memory-cgroup accounted (`__GFP_ACCOUNT`) |
//! | `kmalloc-rcl-N`      | reclaimable (`__GFP_RECLAIMABLE`)        |
//! | `dma-kmalloc-N`      | `GFP_DMA` (ZONE_DMA)                     |
//! | `kmalloc-rnd-NN-N`   | copy NN of the random kmalloc caches     |
//!
//! `N` is a byte count with an optional `k` or `M` suffix (`96`, `1k`, `8k`). Only sizes that are a
//! kmalloc class ([`KMALLOC_CLASSES`]) or a power of two above it (older kernels with SLAB had
//! `kmalloc-4M`) are recognised; anything else is an ordinary cache.

use dmaslab_core::size_class::{KMALLOC_CLASSES, KMALLOC_MAX_CACHE_SIZE};
use std::fmt;

/// A kmalloc family: one set of caches covering every size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `kmalloc-N`
    Normal,
    /// `kmalloc-cg-N`
    Cgroup,
    /// `kmalloc-rcl-N`
    Reclaimable,
    /// `dma-kmalloc-N`
    Dma,
    /// `kmalloc-rnd-NN-N`, with NN
    Random(u8),
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Family::Normal => write!(f, "kmalloc"),
            Family::Cgroup => write!(f, "kmalloc-cg"),
            Family::Reclaimable => write!(f, "kmalloc-rcl"),
            Family::Dma => write!(f, "dma-kmalloc"),
            Family::Random(n) => write!(f, "kmalloc-rnd-{n:02}"),
        }
    }
}

/// A recognised kmalloc cache name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmallocCache {
    pub family: Family,
    /// The class size in bytes, from the name (not the printed objsize, which debugging can grow).
    pub size: u64,
}

/// Parses a size as printed in kmalloc cache names: `8`, `96`, `1k`, `8k`, `4M`.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.as_bytes().last()? {
        b'k' => (&s[..s.len() - 1], 1024),
        b'M' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Is `size` the size of some kmalloc cache?
fn is_kmalloc_size(size: u64) -> bool {
    KMALLOC_CLASSES.iter().any(|&c| c as u64 == size)
        || (size > KMALLOC_MAX_CACHE_SIZE as u64 && size.is_power_of_two())
}

/// Recognises a kmalloc cache by name; `None` for every other cache.
pub fn recognise(name: &str) -> Option<KmallocCache> {
    let (family, size) = if let Some(rest) = name.strip_prefix("dma-kmalloc-") {
        (Family::Dma, rest)
    } else if let Some(rest) = name.strip_prefix("kmalloc-cg-") {
        (Family::Cgroup, rest)
    } else if let Some(rest) = name.strip_prefix("kmalloc-rcl-") {
        (Family::Reclaimable, rest)
    } else if let Some(rest) = name.strip_prefix("kmalloc-rnd-") {
        let (nn, size) = rest.split_once('-')?;
        if nn.len() != 2 || !nn.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (Family::Random(nn.parse().ok()?), size)
    } else if let Some(rest) = name.strip_prefix("kmalloc-") {
        (Family::Normal, rest)
    } else {
        return None;
    };
    let size = parse_size(size)?;
    is_kmalloc_size(size).then_some(KmallocCache { family, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(family: Family, size: u64) -> Option<KmallocCache> {
        Some(KmallocCache { family, size })
    }

    #[test]
    fn every_family_is_recognised() {
        assert_eq!(recognise("kmalloc-8"), k(Family::Normal, 8));
        assert_eq!(recognise("kmalloc-96"), k(Family::Normal, 96));
        assert_eq!(recognise("kmalloc-1k"), k(Family::Normal, 1024));
        assert_eq!(recognise("kmalloc-8k"), k(Family::Normal, 8192));
        assert_eq!(recognise("kmalloc-cg-192"), k(Family::Cgroup, 192));
        assert_eq!(recognise("kmalloc-rcl-2k"), k(Family::Reclaimable, 2048));
        assert_eq!(recognise("dma-kmalloc-512"), k(Family::Dma, 512));
        assert_eq!(recognise("kmalloc-rnd-01-16"), k(Family::Random(1), 16));
        assert_eq!(recognise("kmalloc-rnd-15-4k"), k(Family::Random(15), 4096));
        assert_eq!(recognise("kmalloc-4M"), k(Family::Normal, 4 << 20));
        assert_eq!(recognise("kmalloc-16k"), k(Family::Normal, 16384));
    }

    #[test]
    fn other_caches_are_not_kmalloc() {
        for name in [
            "kmem_cache",
            "kmalloc",
            "kmalloc-",
            "kmalloc-100",
            "kmalloc-12k",
            "kmalloc-08",
            "kmalloc-k",
            "kmalloc-64x",
            "kmalloc-cg-",
            "kmalloc-rnd-1-8",
            "kmalloc-rnd-ab-8",
            "kmalloc-rnd-01",
            "dma-kmalloc",
            "bio-312",
            "kmalloc-99999999999999999999999k",
            "xkmalloc-8",
        ] {
            assert_eq!(recognise(name), None, "{name}");
        }
    }

    #[test]
    fn family_names_print_as_the_kernel_prefix() {
        assert_eq!(Family::Random(1).to_string(), "kmalloc-rnd-01");
        assert_eq!(Family::Dma.to_string(), "dma-kmalloc");
    }
}
