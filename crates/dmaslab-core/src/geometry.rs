//! Slab geometry: how many pages a slab of a given object size spans.
//!
//! The rule (documented in the README and DESIGN.md section 2):
//! - objects up to 256 bytes: a slab is exactly one page (`objperslab = page_size / size`);
//! - larger objects: the smallest order up to [`SLAB_MAX_ORDER`] (8 pages) whose slab holds at
//!   least [`SLAB_MIN_OBJECTS`] objects and wastes at most 1/16 of itself; if no order does,
//!   order [`SLAB_MAX_ORDER`];
//! - objects larger than 8 pages (possible only in user caches): the smallest order that holds one.
//!
//! With 4 KiB pages this gives SLUB's choices on a real kernel: 512 -> 2 pages, 1k -> 4,
//! 2k, 4k and 8k -> 8. The fine classes of the hosted heap (`size_class.rs`) leave out the
//! sizes whose slab would waste more than 1/16 even at order [`SLAB_MAX_ORDER`], so every slab
//! of a class of either set meets the 1/16 bound on pages of 4 KiB and more.

/// Sizes up to this always get one-page slabs.
pub const SLAB_ONE_PAGE_LIMIT: usize = 256;
/// The order beyond which slabs of normal objects do not grow.
pub const SLAB_MAX_ORDER: u32 = 3;
/// The number of objects a slab of a larger object aims to hold.
pub const SLAB_MIN_OBJECTS: usize = 16;

/// The slab order (log2 of pages per slab) for objects of `size` bytes on pages of `page_size`.
pub fn slab_order(size: usize, page_size: usize) -> u32 {
    let size = size.max(1);
    if size <= SLAB_ONE_PAGE_LIMIT {
        return 0;
    }
    if size > page_size << SLAB_MAX_ORDER {
        let pages = size.div_ceil(page_size);
        return pages.next_power_of_two().trailing_zeros();
    }
    for order in 0..=SLAB_MAX_ORDER {
        let slab = page_size << order;
        let objects = slab / size;
        let waste = slab - objects * size;
        if objects >= SLAB_MIN_OBJECTS && waste * 16 <= slab {
            return order;
        }
    }
    SLAB_MAX_ORDER
}

/// Objects per slab for objects of `size` bytes on pages of `page_size`.
pub fn objs_per_slab(size: usize, page_size: usize) -> usize {
    (page_size << slab_order(size, page_size)) / size.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmalloc_orders_match_slub_on_4k_pages() {
        let pages = |s| 1usize << slab_order(s, 4096);
        for s in [8, 16, 32, 64, 96, 128, 192, 256] {
            assert_eq!(pages(s), 1, "size {s}");
            assert_eq!(objs_per_slab(s, 4096), 4096 / s);
        }
        assert_eq!(pages(512), 2);
        assert_eq!(pages(1024), 4);
        assert_eq!(pages(2048), 8);
        assert_eq!(pages(4096), 8);
        assert_eq!(pages(8192), 8);
        assert_eq!(objs_per_slab(8192, 4096), 4);
    }

    #[test]
    fn no_class_slab_wastes_more_than_a_sixteenth() {
        use crate::size_class::ClassSet;
        for set in [ClassSet::Kmalloc, ClassSet::Fine] {
            for page in [4096, 16384, 65536] {
                for &size in set.classes() {
                    let slab = page << slab_order(size, page);
                    let waste = slab - objs_per_slab(size, page) * size;
                    assert!(waste * 16 <= slab, "{set:?} {size} on {page}-byte pages");
                }
            }
        }
        // What the fine set leaves out for it, on 4 KiB pages.
        for size in [3328, 5632, 6656, 7168] {
            let slab = 4096 << slab_order(size, 4096);
            assert!(
                (slab - objs_per_slab(size, 4096) * size) * 16 > slab,
                "{size}"
            );
        }
    }

    #[test]
    fn odd_user_sizes() {
        assert_eq!(slab_order(300, 4096), 1);
        assert_eq!(slab_order(3000, 4096), 3);
        assert_eq!(slab_order(40000, 4096), 4);
        assert!(objs_per_slab(40000, 4096) >= 1);
    }
}
