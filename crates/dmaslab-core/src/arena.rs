//! A page source over a caller-given memory region, for kernels and firmware.

use crate::buddy::{for_each_block, BuddyLink, FreeArea, Zone, MAX_ORDER};
use crate::page_source::{PageSource, DEFAULT_PAGE_SIZE};
use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::ptr::NonNull;

/// Why a region cannot become an arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaError {
    /// The page size is not a power of two of at least 64 bytes.
    BadPageSize,
    /// After the descriptors, not one page is left.
    TooSmall,
}

/// A buddy allocator over a region: hands out runs of `2^order` pages aligned to their size.
///
/// The region's first pages hold one [`BuddyLink`] per usable page; the pages handed out are
/// never written by the arena.
///
/// # Invariants
/// `zone` describes the usable pages: page index `i` is at address `zone_base + i * page_size`,
/// and its descriptor lies in the region's first pages. `zone_base` is aligned to the largest
/// block (`page_size << max_order`), so blocks are aligned to their size in absolute addresses.
/// `region` carries the provenance of the whole region, borrowed mutably for `'a`.
pub struct ArenaPageSource<'a> {
    region: *mut u8,
    region_addr: usize,
    zone_base: usize,
    page_shift: u32,
    zone: Zone,
    free: FreeArea,
    usable_pages: usize,
    _region: PhantomData<&'a mut [MaybeUninit<u8>]>,
}

// SAFETY: the arena exclusively borrows its region; its raw pointers point only into it.
unsafe impl Send for ArenaPageSource<'_> {}

impl<'a> ArenaPageSource<'a> {
    /// An arena of 4 KiB pages over `region`.
    pub fn new(region: &'a mut [MaybeUninit<u8>]) -> Result<Self, ArenaError> {
        Self::with_page_size(region, DEFAULT_PAGE_SIZE)
    }

    /// An arena of `page_size` pages over `region`.
    pub fn with_page_size(
        region: &'a mut [MaybeUninit<u8>],
        page_size: usize,
    ) -> Result<Self, ArenaError> {
        if !page_size.is_power_of_two() || page_size < 64 {
            return Err(ArenaError::BadPageSize);
        }
        let region_addr = region.as_ptr() as usize;
        let start = region_addr.next_multiple_of(page_size);
        let end = region_addr + region.len();
        if start >= end {
            return Err(ArenaError::TooSmall);
        }
        let pages = (end - start) / page_size;
        let meta_pages = (pages * size_of::<BuddyLink>()).div_ceil(page_size);
        if meta_pages >= pages {
            return Err(ArenaError::TooSmall);
        }
        let usable = pages - meta_pages;
        let usable_start = start + meta_pages * page_size;
        let max_order = (usize::BITS - 1 - usable.leading_zeros()).min(MAX_ORDER);
        let block = page_size << max_order;
        let zone_base = usable_start & !(block - 1);
        let page_shift = page_size.trailing_zeros();
        let first = (usable_start - zone_base) >> page_shift;
        let region_ptr = region.as_mut_ptr().cast::<u8>();
        // SAFETY: `start - region_addr` is within the region (start < end).
        let nodes = unsafe { region_ptr.add(start - region_addr) };
        for k in 0..usable {
            // SAFETY: the descriptor array lies in the first `meta_pages` pages of the region,
            // which are inside it, and is suitably aligned (page-aligned start, stride a multiple
            // of the link's alignment).
            unsafe { nodes.cast::<BuddyLink>().add(k).write(BuddyLink::UNLINKED) };
        }
        let zone = Zone {
            nodes,
            stride: size_of::<BuddyLink>(),
            first,
            end: first + usable,
        };
        let mut arena = ArenaPageSource {
            region: region_ptr,
            region_addr,
            zone_base,
            page_shift,
            zone,
            free: FreeArea::new(max_order),
            usable_pages: usable,
            _region: PhantomData,
        };
        // Carve the usable pages into the largest aligned blocks (at most `max_order`: no block
        // is larger than the usable pages).
        for_each_block(first, zone.end, |i, k| {
            // SAFETY: the block lies in the zone and is on no list yet.
            let _ = unsafe { arena.free.free(&zone, i, k) };
        });
        Ok(arena)
    }

    /// Pages the arena can hand out in all.
    pub fn usable_pages(&self) -> usize {
        self.usable_pages
    }

    /// Pages free now.
    pub fn free_page_count(&self) -> usize {
        self.free.free_pages
    }

    fn index_of(&self, addr: usize) -> Option<usize> {
        let off = addr.checked_sub(self.zone_base)?;
        let i = off >> self.page_shift;
        (off & ((1 << self.page_shift) - 1) == 0 && i >= self.zone.first && i < self.zone.end)
            .then_some(i)
    }
}

impl PageSource for ArenaPageSource<'_> {
    fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    fn alloc_pages(&mut self, order: u32) -> Option<NonNull<u8>> {
        let zone = self.zone;
        // SAFETY: every block on the lists belongs to the arena's one zone.
        let (_, _, i) = unsafe { self.free.alloc(order, |_| zone) }?;
        let addr = self.zone_base + (i << self.page_shift);
        // SAFETY: page `i` is a usable page inside the region, so the offset is in bounds.
        NonNull::new(unsafe { self.region.add(addr - self.region_addr) })
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32) {
        let i = self
            .index_of(ptr.as_ptr() as usize)
            .expect("ArenaPageSource::free_pages: pointer not from this arena");
        assert!(
            i.is_multiple_of(1 << order),
            "ArenaPageSource::free_pages: misaligned run"
        );
        let zone = self.zone;
        // SAFETY: the caller hands back a run this arena gave out with this order.
        let _ = unsafe { self.free.free(&zone, i, order) };
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.usable_pages << self.page_shift)
    }

    fn min_region(&self, order: u32) -> Option<usize> {
        Some(min_region(1 << self.page_shift, order))
    }
}

/// The smallest region over which an arena of `page_size` pages can hand out a run of
/// `2^order` pages and then one page more, wherever the region starts: the worst start is one
/// page past a run boundary (and `page_size - 1` bytes before a page), which needs
/// `2^(order+1) - 1` usable pages (2 for order 0), after the descriptors of all the region's
/// pages.
fn min_region(page_size: usize, order: u32) -> usize {
    let need = ((2usize << order) - 1).max((1 << order) + 1);
    let mut pages = need;
    while pages - (pages * size_of::<BuddyLink>()).div_ceil(page_size) < need {
        pages += 1;
    }
    pages * page_size + page_size - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(bytes: usize) -> std::vec::Vec<MaybeUninit<u8>> {
        let mut v = std::vec::Vec::with_capacity(bytes);
        // SAFETY: MaybeUninit<u8> needs no initialisation (and Miri need not write it).
        unsafe { v.set_len(bytes) };
        v
    }

    #[test]
    fn split_merge_and_exhaustion() {
        let mut mem = region(64 * 4096 + 4095);
        let mut a = ArenaPageSource::new(&mut mem).unwrap();
        let total = a.usable_pages();
        assert_eq!(a.free_page_count(), total);
        let mut got = std::vec::Vec::new();
        while let Some(p) = a.alloc_pages(0) {
            assert_eq!(p.as_ptr() as usize % 4096, 0);
            got.push(p);
        }
        assert_eq!(got.len(), total, "every page handed out once");
        assert_eq!(a.free_page_count(), 0);
        assert!(
            a.alloc_pages(0).is_none(),
            "exhaustion is None, not a panic"
        );
        for p in got.drain(..) {
            // SAFETY: each page came from this arena with order 0.
            unsafe { a.free_pages(p, 0) };
        }
        assert_eq!(a.free_page_count(), total);
        // Everything merged back: the largest aligned block is available again.
        let big = 1u32 << (usize::BITS - 1 - total.leading_zeros());
        let order = big.trailing_zeros();
        let blk = a.alloc_pages(order);
        if let Some(b) = blk {
            assert_eq!(
                b.as_ptr() as usize % (4096 << order),
                0,
                "runs aligned to their size"
            );
            // SAFETY: returned above with this order.
            unsafe { a.free_pages(b, order) };
        }
    }

    #[test]
    fn runs_are_aligned_and_disjoint() {
        let mut mem = region(300 * 4096);
        let mut a = ArenaPageSource::new(&mut mem).unwrap();
        let mut runs = std::vec::Vec::new();
        for order in [3u32, 0, 2, 1, 4, 0, 3] {
            let p = a.alloc_pages(order).unwrap();
            assert_eq!(p.as_ptr() as usize % (4096 << order), 0);
            runs.push((p.as_ptr() as usize, 4096usize << order, order, p));
        }
        for (i, x) in runs.iter().enumerate() {
            for y in &runs[i + 1..] {
                assert!(x.0 + x.1 <= y.0 || y.0 + y.1 <= x.0, "runs overlap");
            }
        }
        let before = a.free_page_count();
        for (_, _, order, p) in runs {
            // SAFETY: each run came from this arena with this order.
            unsafe { a.free_pages(p, order) };
        }
        assert_eq!(a.free_page_count(), before + 8 + 1 + 4 + 2 + 16 + 1 + 8);
    }

    #[test]
    fn too_small_and_bad_page_size() {
        let mut mem = region(4096);
        assert_eq!(
            ArenaPageSource::new(&mut mem).err(),
            Some(ArenaError::TooSmall)
        );
        let mut mem = region(8192 * 4);
        assert_eq!(
            ArenaPageSource::with_page_size(&mut mem, 3000).err(),
            Some(ArenaError::BadPageSize)
        );
    }

    /// Can an arena over `len` bytes at `off` bytes into `mem` hand out a run of `order`
    /// pages and then one page?
    fn holds(mem: &mut [MaybeUninit<u8>], off: usize, len: usize, page: usize, order: u32) -> bool {
        let Ok(mut a) = ArenaPageSource::with_page_size(&mut mem[off..off + len], page) else {
            return false;
        };
        a.alloc_pages(order).is_some() && a.alloc_pages(0).is_some()
    }

    #[test]
    fn min_region_is_enough_everywhere_and_one_page_less_is_not() {
        let page = 1024;
        for order in 0..=6u32 {
            let min = ArenaPageSource::with_page_size(&mut region(64 * page), page)
                .unwrap()
                .min_region(order)
                .unwrap();
            let run = page << order;
            let mut mem = region(min + 2 * run);
            let aligned = (run - mem.as_ptr() as usize % run) % run;
            let mut some_start_fails = false;
            // Every page offset against a run boundary, and both ends of a page.
            for p in 0..(1usize << order) {
                for byte in [0, 1, page - 1] {
                    let off = aligned + p * page + byte;
                    assert!(
                        holds(&mut mem, off, min, page, order),
                        "order {order}: {min} bytes at offset {off} do not hold a run"
                    );
                    some_start_fails |= !holds(&mut mem, off, min - page, page, order);
                }
            }
            assert!(
                some_start_fails,
                "order {order}: {min} bytes is not the smallest"
            );
        }
    }
}
