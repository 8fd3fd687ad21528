//! `validate` for one cache: its free lists, debug mode's poison and red zones, and the
//! invariants of [`KmemCache`] (each slab on the list its state calls for, `active_objs` the sum
//! of `inuse`, live flags only for objects in use).

use super::*;

impl KmemCache {
    /// Checks every slab: free lists decode, and in debug mode every free object keeps its
    /// poison and every allocated one its red zone; and the type's invariants: each slab is on
    /// the list its descriptor names, with the objects in use that list stands for, the lists'
    /// lengths are their walks', and `active_objs` is the sum of `inuse`. Calls `found` for each
    /// problem; returns how many there were and the pages the cache's slabs hold.
    pub(crate) fn validate(&self, found: &mut dyn FnMut(&Finding)) -> (usize, usize) {
        let mut n = 0;
        let geom = self.geom();
        let mut inuse_sum = 0;
        let mut slabs = 0;
        let name = self.name;
        let broken = |at: usize| Finding {
            kind: FindingKind::BrokenInvariant,
            addr: at,
            cache: name,
            object: at,
            offset: 0,
            alloc_site: 0,
            free_site: 0,
        };
        for (list, tag) in [
            (&self.partial, LIST_PARTIAL),
            (&self.full, LIST_FULL),
            (&self.empty, LIST_EMPTY),
        ] {
            let mut d = list.head;
            let mut len = 0;
            while !d.is_null() {
                len += 1;
                // SAFETY: every slab on the lists is a live slab of this cache (type invariant)
                // and we hold the cache lock.
                unsafe {
                    let base = self.slab_base(d);
                    let inuse = (*d).inuse as usize;
                    // A debug slab's guard slot is never handed out.
                    let cap = self.objects - self.guard_slots();
                    let fits = match tag {
                        LIST_PARTIAL => inuse > 0 && inuse < cap,
                        LIST_FULL => inuse == cap,
                        _ => inuse == 0,
                    };
                    // Live flags (`kmalloc/live.rs`): objects out with callers are among the
                    // slab's objects in use.
                    let live_ok = !self.live_flags || {
                        let per = crate::kmalloc::FLAGS_PER_DESC;
                        let flags = (0..self.objects)
                            .filter(|k| {
                                let t = d.add(1 + k / per);
                                crate::kmalloc::tail_flag(t, k % per).load(Relaxed) != 0
                            })
                            .count();
                        flags <= inuse
                    };
                    if (*d).list != tag || !fits || !live_ok {
                        n += 1;
                        found(&broken(base as usize));
                    }
                    inuse_sum += inuse;
                    if let Err(c) = geom.is_free(d, base, usize::MAX) {
                        n += 1;
                        found(&Finding {
                            kind: FindingKind::CorruptedFreeList,
                            addr: c.at,
                            cache: self.name,
                            object: base as usize,
                            offset: c.at.wrapping_sub(base as usize),
                            alloc_site: 0,
                            free_site: 0,
                        });
                    }
                    if self.debug {
                        for k in 0..self.objects {
                            if let Err(f) = self.object_ref(base, base.add(k * self.size)).check() {
                                n += 1;
                                found(&f);
                            }
                        }
                    }
                    d = (*d).link.next.cast();
                }
                if len > list.len {
                    // A cycle, or a slab on two lists: stop walking.
                    break;
                }
            }
            if len != list.len {
                n += 1;
                found(&broken(0));
            }
            slabs += len;
        }
        if inuse_sum != self.active_objs {
            n += 1;
            found(&broken(0));
        }
        (n, slabs << self.order)
    }
}
