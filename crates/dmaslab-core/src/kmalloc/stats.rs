//! Statistics and checks of [`Kmalloc`]: slabinfo rows, totals, and `validate` with the
//! invariants it checks.

use super::*;

/// The kmalloc name of class `size` after `prefix`: `96`, `1152`, and for multiples of 1 KiB
/// `1k`, `8k` (as Linux names them; `1k` for 1152 would name two caches alike).
pub(super) fn class_label(size: usize, out: &mut CacheName, prefix: &str) {
    let _ = out.write_str(prefix);
    let _ = if size >= 1024 && size.is_multiple_of(1024) {
        write!(out, "{}k", size / 1024)
    } else {
        write!(out, "{size}")
    };
}

impl<P: PageSource> Kmalloc<P> {
    /// Walks every slab of every cache: free lists must decode, and in debug mode every free
    /// object must keep its poison and every allocated one its red zone. Checks the documented
    /// invariants too ([`FindingKind::BrokenInvariant`](crate::FindingKind::BrokenInvariant)):
    /// each slab on exactly one list, the one its state calls for; a cache's active objects the
    /// sum of its slabs' objects in use; the page layer's slab pages the sum of the caches'
    /// slab pages, and the pages of the segments held the sum of header, slab, large and free
    /// pages; every depot magazine the shape its list and class call for, holding objects of its
    /// cache with their freed-object tags (`validate_depots`). Calls `found` for each problem
    /// and returns how many there were.
    pub fn validate(&self, mut found: impl FnMut(&Finding)) -> usize {
        // Before the cache locks: a magazine given back beyond a depot's bound is drained.
        let depots = self.validate_depots(&mut found);
        self.pages.lock().validate_huge_cache(&self.map);
        // Every cache lock at once (in index order, then the page layer's: the lock order), so
        // that the sums are exact while other threads allocate.
        let caches: [SpinGuard<'_, KmemCache>; MAX_CACHES] =
            core::array::from_fn(|i| self.caches[i].lock());
        let mut slab_pages = 0;
        let mut n = depots;
        for c in caches.iter().filter(|c| c.live) {
            // Lock order: cache, then sites.
            let (found_here, pages) = c.validate(&mut |f| found(&f.resolved(&self.sites.lock())));
            n += found_here;
            slab_pages += pages;
        }
        let pc = self.pages.lock().counts(&self.map);
        drop(caches);
        let held = pc.header_pages + pc.slab_pages + pc.large_pages + pc.free_pages;
        if slab_pages != pc.slab_pages || held != pc.segment_pages {
            n += 1;
            found(&Finding {
                kind: crate::FindingKind::BrokenInvariant,
                addr: 0,
                cache: CacheName::EMPTY,
                object: 0,
                offset: 0,
                alloc_site: 0,
                free_site: 0,
            });
        }
        n
    }

    /// Calls `f` with the slabinfo row of every live cache, kmalloc caches first.
    pub fn for_each_cache(&self, mut f: impl FnMut(CacheId, &SlabInfo)) {
        for (i, slot) in self.caches.iter().enumerate() {
            let info = {
                let c = slot.lock();
                if !c.live {
                    continue;
                }
                c.slabinfo()
            };
            f(CacheId(i as u16), &info);
        }
    }

    /// The slabinfo row of cache `id`.
    pub fn slabinfo(&self, id: CacheId) -> Option<SlabInfo> {
        let c = self.caches.get(id.index())?.lock();
        c.live.then(|| c.slabinfo())
    }

    /// Is cache `id` one of the kmalloc (or dma-kmalloc) caches?
    pub fn is_kmalloc(&self, id: CacheId) -> bool {
        self.is_kmalloc_cache(id.0)
    }

    /// Writes `/proc/slabinfo` version 2.1 for all caches, both header lines included.
    pub fn write_slabinfo<W: Write>(&self, w: &mut W) -> fmt::Result {
        write_slabinfo_header(w)?;
        let mut res = Ok(());
        self.for_each_cache(|_, info| {
            if res.is_ok() {
                res = info.write_row(w);
            }
        });
        res
    }

    /// Totals over the allocator.
    pub fn totals(&self) -> Totals {
        // Each cache's counts, then the page layer's: one lock at a time (the lock order puts
        // a cache's before the page layer's), so the sum is not one instant's, as with any
        // counters a concurrent allocator reads.
        let mut usage = Usage::ZERO;
        for c in &self.caches {
            usage.add(&c.lock().usage);
        }
        let (pages, large) = {
            let pl = self.pages.lock();
            (pl.counts(&self.map), pl.usage)
        };
        usage.add(&large);
        Totals {
            pages,
            pages_held: pages.segment_pages + pages.huge_pages + pages.map_pages,
            bytes_requested: usage.requested as u64,
            bytes_handed_out: usage.handed_out as u64,
            bytes_in_use: usage.in_use as u64,
            live_allocations: usage.live as u64,
        }
    }

    /// Runs `f` with the page source (under the page-layer lock), e.g. to read its counters.
    pub fn with_page_source<R>(&self, f: impl FnOnce(&mut P) -> R) -> R {
        f(&mut self.pages.lock().source)
    }
}
