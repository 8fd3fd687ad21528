//! What a large request costs (issue 13): its size rounded up to pages, with natural alignment
//! kept exactly (2^k to 2^k, and any size to the largest power of two dividing it, up to
//! `max_natural_align`); the page layer's counts add up after every step.

mod common;

use common::{natural_align, region};
use dmaslab_core::{Gfp, Kmalloc, PageSource, Policy};

/// The page layer's pages add up: every page of every segment is a header, slab, large or free
/// page.
fn check_sum<P: PageSource>(k: &Kmalloc<P>) {
    let c = k.totals().pages;
    assert_eq!(
        c.header_pages + c.slab_pages + c.large_pages + c.free_pages,
        c.segment_pages,
        "{c:?}"
    );
}

#[test]
fn runs_cost_their_pages_and_keep_natural_alignment() {
    let mut mem = region(if cfg!(miri) { 1 << 20 } else { 8 << 20 });
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let page = k.page_size();
    let max = k.max_natural_align();
    let mut live = Vec::new();
    let mut sizes = Vec::new();
    let mut s = 8192 + 1;
    while s <= max {
        sizes.extend([s - 1, s, s + 1, 3 * (s - 1) / 2]);
        s = (s - 1) * 2 + 1;
    }
    for size in sizes.into_iter().filter(|&s| s > 8192 && s <= max) {
        let before = k.totals().pages.large_pages;
        let p = k.kmalloc(size, Gfp::KERNEL).expect("a large run").as_ptr();
        let pages = size.div_ceil(page);
        let addr = p as usize;
        assert_eq!(k.ksize(p), Some(pages * page), "size {size}");
        assert_eq!(addr % natural_align(size).max(page), 0, "size {size}");
        let c = k.totals().pages;
        assert!(
            c.large_pages == before + pages || c.huge_pages > 0,
            "size {size}: {pages} pages, counts {c:?}"
        );
        check_sum(&k);
        live.push(p);
    }
    for p in live {
        // SAFETY: live, freed once.
        unsafe { k.kfree(p).unwrap() };
        check_sum(&k);
    }
    assert_eq!(k.totals().pages.large_pages, 0);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri's 32-page test segments (common::SEG_ORDER) make 16 pages their largest run, so a 9-page request gets a huge segment instead"
)]
fn the_tail_of_a_run_serves_the_next_request() {
    let mut mem = region(4 << 20);
    let k = common::kmalloc(&mut mem, Policy::B, 64);
    let page = k.page_size();
    // 9 pages out of a 16-page block: pages 9..16 go back at once, and a 4-page request (the
    // smallest order that fits, naturally aligned) is served from them, inside the same block.
    let a = k.kmalloc(9 * page - 100, Gfp::KERNEL).unwrap().as_ptr() as usize;
    let b = k.kmalloc(4 * page, Gfp::KERNEL).unwrap().as_ptr() as usize;
    let c = k.kmalloc(3 * page, Gfp::KERNEL).unwrap().as_ptr() as usize;
    assert_eq!(a % (16 * page), 0, "carved from an aligned 16-page block");
    assert_eq!(b, a + 12 * page, "the 4-page tail block");
    assert_eq!(c % (4 * page), 0);
    assert_eq!(k.totals().pages.large_pages, 9 + 4 + 3);
    check_sum(&k);
    for p in [a, b, c] {
        // SAFETY: live, freed once.
        unsafe { k.kfree(p as *mut u8).unwrap() };
    }
    check_sum(&k);
}

#[cfg(not(miri))]
#[test]
fn huge_segments_cost_their_pages_plus_a_header() {
    let k = Kmalloc::new(
        dmaslab_core::MmapPageSource::new(),
        dmaslab_core::Config::new(Policy::C),
    )
    .unwrap();
    let page = k.page_size();
    let max = k.max_natural_align();
    for size in [max - 1, max + 1, 3 * max + 5, 7 * max] {
        let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
        let pages = size.div_ceil(page);
        assert_eq!(k.ksize(p), Some(pages * page), "size {size}");
        let c = k.totals().pages;
        assert_eq!(c.huge_pages - c.cached_huge_pages, pages + 1, "size {size}");
        // SAFETY: live, freed once.
        unsafe { k.kfree(p).unwrap() };
    }
    // 2^k up to the limit stays naturally aligned. From 256 KiB on, an mmap source gives it a
    // huge segment for its guard pages: the header, the padding up to its alignment (address
    // space), its pages.
    let p = k.kmalloc(max, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(p as usize % max, 0);
    let c = k.totals().pages;
    assert_eq!(c.huge_pages - c.cached_huge_pages, 2 * max / page);
    // SAFETY: live, freed once.
    unsafe { k.kfree(p).unwrap() };
}

#[test]
fn freed_huge_segments_are_reused_and_decay() {
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 8 << 20 });
    let k = common::kmalloc(&mut mem, Policy::C, 64);
    let seg = k.max_natural_align() * 2;
    let size = seg + 3 * k.page_size() + 1;
    let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: live, freed once.
    unsafe { k.kfree(p).unwrap() };
    let c = k.totals().pages;
    assert!(
        c.cached_huge_pages > 0 && c.cached_huge_pages == c.huge_pages,
        "{c:?}"
    );
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
    // SAFETY: freed: a second free is refused while it waits in the cache.
    assert!(unsafe { k.kfree(p) }.is_err());
    let q = k.kmalloc(size - 100, Gfp::KERNEL).unwrap().as_ptr();
    assert_eq!(q, p, "the cached segment is reused");
    assert_eq!(k.totals().pages.cached_huge_pages, 0);
    // SAFETY: live, freed once.
    unsafe { k.kfree(q).unwrap() };
    // No clock in an arena: the cache decays after 1024 large operations.
    for _ in 0..600 {
        let r = k.kmalloc(3 * k.page_size(), Gfp::KERNEL).unwrap().as_ptr();
        // SAFETY: live, freed once.
        unsafe { k.kfree(r).unwrap() };
    }
    let c = k.totals().pages;
    assert_eq!((c.cached_huge_pages, c.huge_pages), (0, 0), "decayed");
    assert_eq!(k.validate(|f| panic!("validate: {f}")), 0);
}

/// An mmap source that logs its `protect` calls.
#[cfg(not(miri))]
struct Logged {
    inner: dmaslab_core::MmapPageSource,
    protected: Vec<(usize, usize, bool)>,
}

#[cfg(not(miri))]
impl PageSource for Logged {
    fn page_size(&self) -> usize {
        self.inner.page_size()
    }
    fn alloc_pages(&mut self, order: u32) -> Option<core::ptr::NonNull<u8>> {
        self.inner.alloc_pages(order)
    }
    unsafe fn free_pages(&mut self, ptr: core::ptr::NonNull<u8>, order: u32) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.free_pages(ptr, order) }
    }
    fn alloc_span(&mut self, p: usize, a: usize, o: usize) -> Option<core::ptr::NonNull<u8>> {
        self.inner.alloc_span(p, a, o)
    }
    unsafe fn free_span(&mut self, ptr: core::ptr::NonNull<u8>, p: usize, a: usize, o: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.free_span(ptr, p, a, o) }
    }
    fn protect(&mut self, ptr: core::ptr::NonNull<u8>, len: usize, access: bool) -> bool {
        self.protected.push((ptr.as_ptr() as usize, len, access));
        self.inner.protect(ptr, len, access)
    }
}

/// The protection of the mapping holding `addr`, from /proc/self/maps (e.g. "---p").
#[cfg(not(miri))]
fn mapping_perms(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let (range, rest) = l.split_once(' ')?;
        let (a, b) = range.split_once('-')?;
        let (a, b) = (
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        );
        (a..b).contains(&addr).then(|| rest[..4].to_string())
    })
}

#[test]
#[cfg_attr(miri, ignore = "mmap and mprotect are not available under Miri")]
fn a_huge_segment_is_followed_by_a_guard_page() {
    #[cfg(not(miri))]
    {
        let mut src = Logged {
            inner: dmaslab_core::MmapPageSource::new(),
            protected: Vec::new(),
        };
        let page = src.page_size();
        let k = Kmalloc::new(&mut src, dmaslab_core::Config::new(Policy::C)).unwrap();
        let size = 3 << 20;
        let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize;
        let guard = p + size;
        // SAFETY: the whole object is usable, its last byte too.
        unsafe { ((guard - 1) as *mut u8).write(1) };
        match mapping_perms(guard) {
            Some(perms) => assert_eq!(&perms, "---p", "the page after the object"),
            None => {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: /proc/self/maps check: not readable"
                );
            }
        }
        let pages_before = k.totals().pages.huge_pages;
        assert_eq!(
            pages_before,
            1 + size / page,
            "the guard is not counted as a page held"
        );
        // SAFETY: live, freed once; then the allocator and its mappings go.
        unsafe { k.kfree(p as *mut u8).unwrap() };
        drop(k);
        // The guard, then the freed object while it waited in the cache (no access).
        assert_eq!(src.protected, [(guard, page, false), (p, size, false)]);
    }
}

#[test]
#[cfg_attr(miri, ignore = "mmap and mprotect are not available under Miri")]
fn a_debug_page_run_lies_between_guard_pages_and_faults_in_quarantine() {
    #[cfg(not(miri))]
    {
        let mut src = Logged {
            inner: dmaslab_core::MmapPageSource::new(),
            protected: Vec::new(),
        };
        let page = src.page_size();
        let config = dmaslab_core::Config::new(Policy::C).debug(true);
        let k = Kmalloc::new(&mut src, config).unwrap();
        let mut freed = Vec::new();
        for size in [8192, 12 << 10, 256 << 10, 3 << 20] {
            let p = k.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize;
            // Natural alignment up to half a segment (1 MiB), pages beyond.
            let owed = if size <= 1 << 20 {
                natural_align(size)
            } else {
                page
            };
            assert_eq!(p % owed, 0, "{size}: alignment");
            // SAFETY: the whole object is usable.
            unsafe { (p as *mut u8).write_bytes(1, size) };
            let Some(after) = mapping_perms(p + size) else {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "SKIPPED: /proc/self/maps check: not readable"
                );
                return;
            };
            assert_eq!(after, "---p", "{size}: the page right after the object");
            assert_eq!(
                mapping_perms(p - 1).unwrap(),
                "---p",
                "{size}: the page before"
            );
            assert_eq!(mapping_perms(p).unwrap(), "rw-p");
            // SAFETY: live, freed once.
            unsafe { k.kfree(p as *mut u8).unwrap() };
            assert_eq!(mapping_perms(p).unwrap(), "---p", "{size}: quarantined");
            freed.push((p, size.next_multiple_of(page), false));
        }
        assert!(k.quarantine_flush().is_ok());
        assert_eq!(k.totals().pages.huge_pages, 0, "every debug run went back");
        drop(k);
        for f in freed {
            assert!(
                src.protected.contains(&f),
                "the object's pages are protected at free: {f:x?}"
            );
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "mmap and mprotect are not available under Miri")]
fn the_huge_cache_trims_for_smaller_requests_and_stays_near_the_live_peak() {
    #[cfg(not(miri))]
    {
        use dmaslab_core::HUGE_CACHE_SLACK_BYTES as SLACK;
        let k = Kmalloc::new(
            dmaslab_core::MmapPageSource::new(),
            dmaslab_core::Config::new(Policy::C),
        )
        .unwrap();
        let page = k.page_size();
        let cached = |k: &Kmalloc<_>| k.totals().pages.cached_huge_pages * page;
        // A smaller request reuses a cached segment, trimmed: the page after it is a guard.
        let a = k.kmalloc(3 << 20, Gfp::KERNEL).unwrap().as_ptr();
        // SAFETY: the whole object is usable.
        unsafe { a.write_bytes(7, 3 << 20) };
        // SAFETY: live, freed once.
        unsafe { k.kfree(a).unwrap() };
        let small = (3 << 20) / 2;
        let b = k.kmalloc(small, Gfp::KERNEL).unwrap().as_ptr();
        assert_eq!(b, a, "the cached segment serves the smaller request");
        assert_eq!(k.ksize(b), Some(small), "trimmed to the request");
        // SAFETY: the whole object is usable.
        unsafe { b.write_bytes(1, small) };
        if let Some(perms) = mapping_perms(b as usize + small) {
            assert_eq!(perms, "---p", "the guard follows the trimmed object");
        }
        // SAFETY: live, freed once.
        unsafe { k.kfree(b).unwrap() };
        // The tail's pages stayed (within the bound): the segment serves 3 MiB again, and its
        // pages past the smaller object still hold what the first object wrote.
        let c = k.kmalloc(3 << 20, Gfp::KERNEL).unwrap().as_ptr();
        assert_eq!(c, a, "the same segment, whole again");
        // SAFETY: inside the 3 MiB object just handed out.
        assert_eq!(
            unsafe { c.add(small).read() },
            7,
            "the tail was kept resident"
        );
        // SAFETY: live, freed once.
        unsafe { k.kfree(c).unwrap() };
        // Three live 3 MiB blocks freed: the cache keeps them (the program held that much).
        let live: Vec<_> = (0..3)
            .map(|_| k.kmalloc(3 << 20, Gfp::KERNEL).unwrap().as_ptr())
            .collect();
        for &p in &live {
            // SAFETY: live, freed once.
            unsafe { k.kfree(p).unwrap() };
        }
        assert!(cached(&k) >= 9 << 20, "{} bytes cached", cached(&k));
        // Small requests served by those segments keep their tails only within the bound:
        // cache plus tails stay under the live peak's spare room plus the slack (`validate`
        // checks it while they are live).
        let smalls: Vec<_> = (0..3)
            .map(|_| k.kmalloc(300 << 10, Gfp::KERNEL).unwrap().as_ptr())
            .collect();
        assert!(
            smalls.iter().all(|p| live.contains(p)),
            "served by the cache"
        );
        assert_eq!(k.validate(|f| panic!("{f}")), 0);
        for p in smalls {
            // SAFETY: live, freed once.
            unsafe { k.kfree(p).unwrap() };
        }
        assert_eq!(k.validate(|f| panic!("{f}")), 0);
        // Now the program holds more than ever, in blocks the cache cannot serve: it gives
        // back down to the slack.
        let big: Vec<_> = (0..3)
            .map(|_| k.kmalloc(6 << 20, Gfp::KERNEL).unwrap().as_ptr())
            .collect();
        assert!(cached(&k) <= SLACK, "{} bytes cached", cached(&k));
        for p in big {
            // SAFETY: live, freed once.
            unsafe { k.kfree(p).unwrap() };
        }
        assert_eq!(k.validate(|f| panic!("{f}")), 0);
    }
}
