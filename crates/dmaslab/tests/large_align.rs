//! `DmaSlab` at every power-of-two alignment from 2^3 to 2^30 with sizes around every boundary
//! (issue 13): `alloc`, `alloc_zeroed` and `realloc` are aligned as the layout asks.

use dmaslab::DmaSlab;
use std::alloc::{GlobalAlloc, Layout};

#[test]
fn dmaslab_honours_every_alignment() {
    let seg = 2usize << 20;
    let mut sizes = vec![1usize, 96, 192];
    for b in [8usize, 256, 4096, 8192, seg / 2, seg, 2 * seg] {
        sizes.extend([b - 1, b, b + 1]);
    }
    for log in 3..=30 {
        let align = 1usize << log;
        for &size in &sizes {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero-size layout; each block is freed once with its layout.
            unsafe {
                let p = DmaSlab.alloc(layout);
                assert!(!p.is_null(), "alloc({size}, {align})");
                assert_eq!(p as usize % align, 0, "alloc({size}, {align})");
                p.add(size - 1).write(7);
                let z = DmaSlab.alloc_zeroed(layout);
                assert!(
                    !z.is_null() && (z as usize).is_multiple_of(align),
                    "alloc_zeroed({size}, {align})"
                );
                assert_eq!(z.add(size - 1).read(), 0);
                let r = DmaSlab.realloc(p, layout, size + 4097);
                assert!(
                    !r.is_null() && (r as usize).is_multiple_of(align),
                    "realloc({size}, {align})"
                );
                assert_eq!(r.add(size - 1).read(), 7);
                DmaSlab.dealloc(r, Layout::from_size_align(size + 4097, align).unwrap());
                DmaSlab.dealloc(z, layout);
            }
        }
    }
}
