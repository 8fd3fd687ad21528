//! kmalloc size classes and their lookup (DESIGN.md section 2), in two sets.
//!
//! - [`ClassSet::Kmalloc`] (the default): the classes of Linux's `kmalloc_info[]`, 8, 16, 32, 64,
//!   96, 128, 192, 256, 512, 1k, 2k, 4k and 8k ([`KMALLOC_CLASSES`]). Kernel and firmware users,
//!   `dmaslab report` and the cost tool keep exactly these.
//! - [`ClassSet::Fine`]: the hosted heap's ([`FINE_CLASSES`]): Linux's up to 256, then eight
//!   classes per doubling up to 8k, less those whose slabs would waste more than 1/16 of their
//!   pages. A request between two powers of two above 256 then pays at most 1/8 of its class
//!   for rounding (1/4 next to a left-out class), not up to 1/2: sqlite's 1032- and 4368-byte
//!   page-cache entries take 1152 and 4608 bytes, not 2048 and 8192. Below 256 the set keeps
//!   Linux's classes: finer ones there (16-byte steps) were measured to cost more than they
//!   save, as each class keeps its own partial slabs and magazines.
//!
//! Both sets keep the same rules: every class is a multiple of 8 (of 16 from 16 on), so an
//! object aligns to its class's natural alignment (the largest power of two dividing it: 2^k
//! requests get 2^k, 96 gets 32, 192 gets 64); with a kmalloc minimum alignment `M` only the
//! classes that are at least `M` and a multiple of `M` exist (sizes below `M` use the `M`
//! cache, 96 exists only if `M <= 32`, 192 only if `M <= 64`).
//!
//! The lookup is two loads and no search: sizes up to 256 through a 32-entry table indexed by
//! `(size - 1) / 8`; larger ones through their point on a grid of `2^s` points per doubling
//! (`s` = 0 for the kmalloc set: the next power of two, as `kmalloc_slab()` does; 3 for the
//! fine set), computed from the size's leading zeros, and a table from grid points to classes.

/// Linux's kmalloc classes, smallest first: the [`ClassSet::Kmalloc`] set.
pub const KMALLOC_CLASSES: [usize; 13] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];

/// The hosted heap's classes, smallest first: the [`ClassSet::Fine`] set. Up to 256 Linux's;
/// above, the points of a grid of eight per doubling, less 3328, 5632, 6656, 7168 and 7680,
/// whose slabs (at most 8 pages of 4 KiB, `geometry.rs`) would waste more than 1/16 of their
/// pages (7680 goes with 6656 and 7168 so that the gap after 6144 is a power of two, which the
/// aligned lookup needs).
pub const FINE_CLASSES: [usize; 43] = [
    8, 16, 32, 64, 96, 128, 192, 256, //
    288, 320, 352, 384, 416, 448, 480, 512, //
    576, 640, 704, 768, 832, 896, 960, 1024, //
    1152, 1280, 1408, 1536, 1664, 1792, 1920, 2048, //
    2304, 2560, 2816, 3072, 3584, 3840, 4096, //
    4608, 5120, 6144, 8192,
];

/// Classes per doubling above 256 of the fine set's grid, as a shift.
const FINE_GRID_SHIFT: u32 = 3;

/// The most classes any set has: the length of the per-class tables of an allocator.
pub const MAX_CLASSES: usize = FINE_CLASSES.len();

/// Number of kmalloc classes (the length of [`KMALLOC_CLASSES`]).
pub const NR_KMALLOC_CLASSES: usize = KMALLOC_CLASSES.len();

/// The largest size served by a kmalloc slab cache; larger requests get whole pages.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;

/// Sizes up to this are looked up in the small table.
const SMALL_LIMIT: usize = 256;
const SMALL_TABLE_LEN: usize = SMALL_LIMIT / 8;
/// Doublings from [`SMALL_LIMIT`] to [`KMALLOC_MAX_CACHE_SIZE`], and the most grid points.
const GRID_DOUBLINGS: usize = 5;
/// The grid table's length: a power of two holding the most points of any set, so that a mask
/// keeps an index in bounds without a branch.
const GRID_LEN: usize = (GRID_DOUBLINGS << FINE_GRID_SHIFT).next_power_of_two();
const _: () = assert!(SMALL_LIMIT << GRID_DOUBLINGS == KMALLOC_MAX_CACHE_SIZE);
const _: () = assert!(MAX_CLASSES <= u8::MAX as usize);
const _: () = assert!(on_grid(ClassSet::Kmalloc) && on_grid(ClassSet::Fine));

/// Is every class of `set` above [`SMALL_LIMIT`] a point of its grid (so the lookup reaches it)?
const fn on_grid(set: ClassSet) -> bool {
    let classes = set.classes();
    let mut c = 0;
    while c < classes.len() {
        let size = classes[c];
        if size > SMALL_LIMIT
            && grid_point(grid_index(size, set.grid_shift()), set.grid_shift()) != size
        {
            return false;
        }
        c += 1;
    }
    true
}

/// Which classes an allocator has ([`Config::classes`](crate::Config::classes)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClassSet {
    /// Linux's `kmalloc_info[]` classes ([`KMALLOC_CLASSES`]): the default.
    #[default]
    Kmalloc,
    /// Finer classes for hosted heaps ([`FINE_CLASSES`]): less rounding, more caches.
    Fine,
}

impl ClassSet {
    /// The set's classes, smallest first.
    pub const fn classes(self) -> &'static [usize] {
        match self {
            ClassSet::Kmalloc => &KMALLOC_CLASSES,
            ClassSet::Fine => &FINE_CLASSES,
        }
    }

    /// log2 of the grid points per doubling above [`SMALL_LIMIT`].
    const fn grid_shift(self) -> u32 {
        match self {
            ClassSet::Kmalloc => 0,
            ClassSet::Fine => FINE_GRID_SHIFT,
        }
    }
}

/// The grid point (of `2^shift` per doubling) that a size in `(256, 8192]` rounds up to: its
/// index, counted from the first point above 256.
#[inline(always)]
const fn grid_index(size: usize, shift: u32) -> usize {
    // 2^k < size <= 2^(k+1), k >= 8; `sub` is which of the doubling's steps holds `size`.
    let k = usize::BITS - 1 - (size - 1).leading_zeros();
    let sub = ((size - 1) >> (k - shift)) & ((1 << shift) - 1);
    (((k - 8) as usize) << shift) + sub
}

/// The size of grid point `g` (the inverse of [`grid_index`]).
const fn grid_point(g: usize, shift: u32) -> usize {
    let k = 8 + (g >> shift) as u32;
    let sub = g & ((1 << shift) - 1);
    (1 << k) + ((sub + 1) << (k - shift))
}

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

/// Index into `classes` of the smallest class that is at least `size` and exists under
/// `minalign` (the definition every table is built from).
const fn smallest_at_least(classes: &[usize], size: usize, minalign: usize) -> usize {
    let mut c = 0;
    while !(classes[c] >= size && class_exists(classes[c], minalign)) {
        c += 1;
    }
    c
}

/// The kmalloc geometry for one class set and minimum alignment: which class serves which size.
///
/// # Invariants
/// `small[i]` is the index into `set.classes()` of the smallest existing class that is at least
/// `(i + 1) * 8`; `grid[g]` that of the smallest existing class that is at least grid point `g`
/// (for the set's first `GRID_DOUBLINGS << set.grid_shift()` points); every class index
/// stored anywhere names a class that exists under `minalign`. Every class of the set above
/// 256 is a grid point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeClasses {
    set: ClassSet,
    shift: u32,
    minalign: usize,
    small: [u8; SMALL_TABLE_LEN],
    grid: [u8; GRID_LEN],
}

impl SizeClasses {
    /// Builds the lookup of `set` for kmalloc minimum alignment `minalign`, a power of two from 8
    /// to 256.
    pub const fn new(set: ClassSet, minalign: usize) -> Option<Self> {
        if !minalign.is_power_of_two() || minalign < 8 || minalign > 256 {
            return None;
        }
        let classes = set.classes();
        let shift = set.grid_shift();
        let mut small = [0u8; SMALL_TABLE_LEN];
        let mut i = 0;
        while i < SMALL_TABLE_LEN {
            small[i] = smallest_at_least(classes, (i + 1) * 8, minalign) as u8;
            i += 1;
        }
        let mut grid = [0u8; GRID_LEN];
        let mut g = 0;
        while g < GRID_DOUBLINGS << shift {
            grid[g] = smallest_at_least(classes, grid_point(g, shift), minalign) as u8;
            g += 1;
        }
        Some(SizeClasses {
            set,
            shift,
            minalign,
            small,
            grid,
        })
    }

    /// The class set this table was built for.
    pub const fn set(&self) -> ClassSet {
        self.set
    }

    /// The kmalloc minimum alignment this table was built for.
    pub const fn minalign(&self) -> usize {
        self.minalign
    }

    /// The size of class index `i` (an index [`index_for`](Self::index_for) returned).
    #[inline]
    pub fn class(&self, i: usize) -> usize {
        self.set.classes()[i]
    }

    /// Index into the set's classes ([`ClassSet::classes`]) of the class serving `size`, or
    /// `None` above [`KMALLOC_MAX_CACHE_SIZE`]. Size 0 is served by the smallest class.
    #[inline]
    pub fn index_for(&self, size: usize) -> Option<usize> {
        if size <= SMALL_LIMIT {
            let i = size.saturating_sub(1) / 8;
            return Some(self.small[i] as usize);
        }
        if size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        // The mask never changes the index (the last grid point is 8192); it only drops the
        // bounds check.
        Some(self.grid[grid_index(size, self.shift) & (GRID_LEN - 1)] as usize)
    }

    /// The class size serving `size`, or `None` above [`KMALLOC_MAX_CACHE_SIZE`].
    #[inline]
    pub fn class_for(&self, size: usize) -> Option<usize> {
        self.index_for(size).map(|i| self.class(i))
    }

    /// The class serving a request of `size` bytes aligned to `align`: the smallest existing class
    /// that holds `size` and whose natural alignment is at least `align`. `None` when no slab class
    /// qualifies (the request then goes to whole pages).
    ///
    /// No search: that class is the one serving `size` rounded up to `align`, because in both
    /// sets and under every minimum alignment each class `c` exceeds the one below it by a
    /// power of two `d` dividing `c` (a multiple of `align >= d` in that gap is `c` itself; for
    /// `align < d`, `c`'s natural alignment is at least `d`). The tests check it for every size
    /// and alignment.
    #[inline]
    pub fn index_for_aligned(&self, size: usize, align: usize) -> Option<usize> {
        self.index_for(size.max(1).checked_next_multiple_of(align.max(1))?)
    }

    /// The existing classes under this minimum alignment, smallest first.
    pub fn classes(&self) -> impl Iterator<Item = usize> + '_ {
        self.set
            .classes()
            .iter()
            .copied()
            .filter(move |&c| class_exists(c, self.minalign))
    }
}

/// The kmalloc class serving `size` under minimum alignment `minalign`, computed directly (no
/// table): the smallest of [`KMALLOC_CLASSES`] that is at least `size`, at least `minalign` and
/// a multiple of it. Used by tools that reason about Linux's geometry without building an
/// allocator.
pub fn target_class(size: usize, minalign: usize) -> Option<usize> {
    KMALLOC_CLASSES
        .iter()
        .copied()
        .find(|&c| c >= size && class_exists(c, minalign))
}

#[cfg(test)]
mod tests;
