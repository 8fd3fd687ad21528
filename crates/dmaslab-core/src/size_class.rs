//! kmalloc size classes and their lookup (DESIGN.md section 2).
//!
//! The classes are those of Linux's `kmalloc_info[]`: 8, 16, 32, 64, 96, 128, 192, 256, 512, 1k, 2k,
//! 4k and 8k. With a kmalloc minimum alignment `M` only the classes that are at least `M` and a
//! multiple of `M` exist, so sizes below `M` use the `M` cache, 96 exists only if `M <= 32` and 192
//! only if `M <= 64`. Sizes up to 192 are looked up through a 24-entry table indexed by
//! `(size - 1) / 8`, larger ones by the next power of two, as `kmalloc_slab()` does.

/// Every kmalloc class, smallest first.
pub const KMALLOC_CLASSES: [usize; 13] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];

/// Number of kmalloc classes (the length of [`KMALLOC_CLASSES`]).
pub const NR_KMALLOC_CLASSES: usize = KMALLOC_CLASSES.len();

/// The largest size served by a kmalloc slab cache; larger requests get whole pages.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;

/// Sizes up to this are looked up in the small table.
const SMALL_LIMIT: usize = 192;
const SMALL_TABLE_LEN: usize = SMALL_LIMIT / 8;

/// Does class `size` exist when the kmalloc minimum alignment is `minalign`?
pub const fn class_exists(size: usize, minalign: usize) -> bool {
    size >= minalign && size.is_multiple_of(minalign)
}

/// The guaranteed alignment of objects of class `size`: the largest power of two dividing it
/// (96 -> 32, 192 -> 64, 2^k -> 2^k). Objects start at `slab_base + i * size` and slabs are
/// aligned to at least their own size, which makes this hold.
pub const fn natural_align(size: usize) -> usize {
    1 << size.trailing_zeros()
}

/// The kmalloc geometry for one minimum alignment: which class serves which size.
///
/// # Invariants
/// `small[i]` is the index into [`KMALLOC_CLASSES`] of the smallest existing class that is at
/// least `(i + 1) * 8`; every class index stored anywhere names a class that exists under
/// `minalign`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeClasses {
    minalign: usize,
    small: [u8; SMALL_TABLE_LEN],
}

impl SizeClasses {
    /// Builds the lookup for kmalloc minimum alignment `minalign`, a power of two from 8 to 256.
    pub const fn new(minalign: usize) -> Option<Self> {
        if !minalign.is_power_of_two() || minalign < 8 || minalign > 256 {
            return None;
        }
        let mut small = [0u8; SMALL_TABLE_LEN];
        let mut i = 0;
        while i < SMALL_TABLE_LEN {
            let size = (i + 1) * 8;
            let mut c = 0;
            while !(KMALLOC_CLASSES[c] >= size && class_exists(KMALLOC_CLASSES[c], minalign)) {
                c += 1;
            }
            small[i] = c as u8;
            i += 1;
        }
        Some(SizeClasses { minalign, small })
    }

    /// The kmalloc minimum alignment this table was built for.
    pub const fn minalign(&self) -> usize {
        self.minalign
    }

    /// Index into [`KMALLOC_CLASSES`] of the class serving `size`, or `None` above
    /// [`KMALLOC_MAX_CACHE_SIZE`]. Size 0 is served by the smallest class.
    #[inline]
    pub fn index_for(&self, size: usize) -> Option<usize> {
        if size <= SMALL_LIMIT {
            let i = size.saturating_sub(1) / 8;
            return Some(self.small[i] as usize);
        }
        if size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        // 256 is index 7; each further power of two is one more.
        let pow = size.next_power_of_two().trailing_zeros() as usize;
        Some(7 + (pow - 8))
    }

    /// The class size serving `size`, or `None` above [`KMALLOC_MAX_CACHE_SIZE`].
    #[inline]
    pub fn class_for(&self, size: usize) -> Option<usize> {
        self.index_for(size).map(|i| KMALLOC_CLASSES[i])
    }

    /// The class serving a request of `size` bytes aligned to `align`: the smallest existing class
    /// that holds `size` and whose natural alignment is at least `align`. `None` when no slab class
    /// qualifies (the request then goes to whole pages).
    pub fn index_for_aligned(&self, size: usize, align: usize) -> Option<usize> {
        let first = self.index_for(size)?;
        (first..NR_KMALLOC_CLASSES).find(|&c| {
            let class = KMALLOC_CLASSES[c];
            class_exists(class, self.minalign) && natural_align(class) >= align
        })
    }

    /// The existing classes under this minimum alignment, smallest first.
    pub fn classes(&self) -> impl Iterator<Item = usize> + '_ {
        KMALLOC_CLASSES
            .iter()
            .copied()
            .filter(move |&c| class_exists(c, self.minalign))
    }
}

/// The class serving `size` under minimum alignment `minalign`, computed directly (no table):
/// the smallest class that is at least `size`, at least `minalign` and a multiple of it.
/// Used by tools that reason about geometry without building an allocator.
pub fn target_class(size: usize, minalign: usize) -> Option<usize> {
    KMALLOC_CLASSES
        .iter()
        .copied()
        .find(|&c| c >= size && class_exists(c, minalign))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the definition, applied by brute force.
    fn reference(size: usize, m: usize) -> usize {
        *KMALLOC_CLASSES
            .iter()
            .find(|&&c| c >= size.max(1) && c >= m && c % m == 0)
            .unwrap()
    }

    #[test]
    fn every_size_maps_to_the_right_class() {
        for m in [8, 32, 64, 128, 256] {
            let t = SizeClasses::new(m).unwrap();
            // Every size natively; a sample under Miri (the interpreter is slow).
            let step = if cfg!(miri) { 61 } else { 1 };
            for size in (1..=KMALLOC_MAX_CACHE_SIZE).step_by(step) {
                assert_eq!(
                    t.class_for(size),
                    Some(reference(size, m)),
                    "size {size} minalign {m}"
                );
                assert_eq!(target_class(size, m), Some(reference(size, m)));
            }
            assert_eq!(t.class_for(KMALLOC_MAX_CACHE_SIZE + 1), None);
        }
    }

    #[test]
    fn odd_classes_vanish_with_large_minalign() {
        let c8: std::vec::Vec<_> = SizeClasses::new(8).unwrap().classes().collect();
        assert_eq!(c8, KMALLOC_CLASSES);
        let c64: std::vec::Vec<_> = SizeClasses::new(64).unwrap().classes().collect();
        assert_eq!(c64, [64, 128, 192, 256, 512, 1024, 2048, 4096, 8192]);
        let c128: std::vec::Vec<_> = SizeClasses::new(128).unwrap().classes().collect();
        assert_eq!(c128, [128, 256, 512, 1024, 2048, 4096, 8192]);
        assert_eq!(SizeClasses::new(64).unwrap().class_for(96), Some(128));
        assert_eq!(SizeClasses::new(32).unwrap().class_for(96), Some(96));
    }

    #[test]
    fn natural_alignment_of_classes() {
        assert_eq!(natural_align(96), 32);
        assert_eq!(natural_align(192), 64);
        assert_eq!(natural_align(512), 512);
    }

    #[test]
    fn aligned_requests_skip_weakly_aligned_classes() {
        let t = SizeClasses::new(8).unwrap();
        assert_eq!(
            t.index_for_aligned(90, 64).map(|i| KMALLOC_CLASSES[i]),
            Some(128)
        );
        assert_eq!(
            t.index_for_aligned(8, 4096).map(|i| KMALLOC_CLASSES[i]),
            Some(4096)
        );
        assert_eq!(t.index_for_aligned(8, 16384), None);
    }

    #[test]
    fn bad_minalign_is_refused() {
        assert!(SizeClasses::new(4).is_none());
        assert!(SizeClasses::new(48).is_none());
        assert!(SizeClasses::new(512).is_none());
    }
}
