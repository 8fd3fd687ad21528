//! The size-class tables against their definition, by brute force (sampled under Miri).

use super::*;
use std::vec::Vec;

const SETS: [ClassSet; 2] = [ClassSet::Kmalloc, ClassSet::Fine];
const MINALIGNS: [usize; 6] = [8, 16, 32, 64, 128, 256];

/// Every size natively; a sample under Miri (the interpreter is slow).
const STEP: usize = if cfg!(miri) { 61 } else { 1 };

/// Reference: the definition, applied by brute force.
fn reference(set: ClassSet, size: usize, m: usize) -> Option<usize> {
    set.classes()
        .iter()
        .copied()
        .find(|&c| c >= size.max(1) && c >= m && c % m == 0)
}

/// Reference for aligned requests: the smallest existing class holding `size` whose natural
/// alignment is at least `align`.
fn reference_aligned(set: ClassSet, size: usize, align: usize, m: usize) -> Option<usize> {
    set.classes()
        .iter()
        .copied()
        .find(|&c| c >= size.max(1) && c >= m && c % m == 0 && natural_align(c) >= align)
}

#[test]
fn every_size_maps_to_the_right_class() {
    for set in SETS {
        for m in MINALIGNS {
            let t = SizeClasses::new(set, m).unwrap();
            for size in (0..=KMALLOC_MAX_CACHE_SIZE + 1).step_by(STEP) {
                let want = reference(set, size, m);
                assert_eq!(t.class_for(size), want, "{set:?} size {size} minalign {m}");
                if set == ClassSet::Kmalloc {
                    assert_eq!(
                        target_class(size.max(1), m),
                        want,
                        "size {size} minalign {m}"
                    );
                }
            }
            assert_eq!(t.class_for(KMALLOC_MAX_CACHE_SIZE), Some(8192));
            assert_eq!(t.class_for(KMALLOC_MAX_CACHE_SIZE + 1), None);
            assert_eq!(t.class_for(usize::MAX), None);
        }
    }
}

#[test]
fn aligned_requests_get_a_class_aligned_enough() {
    // Under Miri, fewer alignments (and the sampled sizes).
    let aligns: Vec<usize> = if cfg!(miri) {
        [1, 16, 64, 512, 16384].to_vec()
    } else {
        (0..=15).map(|k| 1 << k).collect()
    };
    for set in SETS {
        for m in MINALIGNS {
            let t = SizeClasses::new(set, m).unwrap();
            for &align in &aligns {
                for size in (0..=KMALLOC_MAX_CACHE_SIZE + 1).step_by(STEP) {
                    let got = t.index_for_aligned(size, align).map(|i| t.class(i));
                    let want = reference_aligned(set, size, align, m);
                    assert_eq!(got, want, "{set:?} size {size} align {align} minalign {m}");
                }
            }
            assert_eq!(t.index_for_aligned(usize::MAX, 8), None);
        }
    }
}

#[test]
fn each_gap_is_a_power_of_two_dividing_the_class_above() {
    // The reason `index_for_aligned` needs no search (see its comment).
    for set in SETS {
        for m in MINALIGNS {
            let c: Vec<usize> = SizeClasses::new(set, m).unwrap().classes().collect();
            for w in c.windows(2) {
                let d = w[1] - w[0];
                assert!(
                    d.is_power_of_two() && w[1] % d == 0,
                    "{set:?} minalign {m}: {} -> {}",
                    w[0],
                    w[1]
                );
            }
        }
    }
}

#[test]
fn both_sets_keep_the_alignment_guarantees() {
    for set in SETS {
        let classes = set.classes();
        assert!(classes.windows(2).all(|w| w[0] < w[1]), "{set:?} sorted");
        // Every power of two up to 8k is a class: kmalloc(2^k) gets 2^k alignment.
        for k in 3..=13 {
            assert!(classes.contains(&(1 << k)), "{set:?} lacks {}", 1 << k);
        }
        // 96 -> 32 and 192 -> 64 stay classes.
        assert!(classes.contains(&96) && classes.contains(&192), "{set:?}");
        // From 16 on, multiples of 16: malloc's 16-byte alignment for requests of 16 or more.
        assert!(classes.iter().all(|&c| c == 8 || c % 16 == 0), "{set:?}");
    }
    assert_eq!(natural_align(96), 32);
    assert_eq!(natural_align(192), 64);
    assert_eq!(natural_align(512), 512);
    assert_eq!(natural_align(1152), 128);
    assert_eq!(natural_align(4608), 512);
}

#[test]
fn odd_classes_vanish_with_large_minalign() {
    let classes = |set, m| -> Vec<usize> { SizeClasses::new(set, m).unwrap().classes().collect() };
    assert_eq!(classes(ClassSet::Kmalloc, 8), KMALLOC_CLASSES);
    assert_eq!(
        classes(ClassSet::Kmalloc, 64),
        [64, 128, 192, 256, 512, 1024, 2048, 4096, 8192]
    );
    assert_eq!(
        classes(ClassSet::Kmalloc, 128),
        [128, 256, 512, 1024, 2048, 4096, 8192]
    );
    assert_eq!(classes(ClassSet::Fine, 8), FINE_CLASSES);
    for m in MINALIGNS {
        let fine = classes(ClassSet::Fine, m);
        let want: Vec<usize> = FINE_CLASSES
            .iter()
            .copied()
            .filter(|&c| c >= m && c % m == 0)
            .collect();
        assert_eq!(fine, want, "minalign {m}");
        assert_eq!(
            fine.first(),
            Some(&m),
            "minalign {m}: the smallest class is M"
        );
    }
    assert_eq!(&classes(ClassSet::Fine, 128)[..4], [128, 256, 384, 512]);
    let t = |set, m| SizeClasses::new(set, m).unwrap();
    assert_eq!(t(ClassSet::Kmalloc, 64).class_for(96), Some(128));
    assert_eq!(t(ClassSet::Kmalloc, 32).class_for(96), Some(96));
    assert_eq!(t(ClassSet::Fine, 64).class_for(65), Some(128));
    assert_eq!(t(ClassSet::Fine, 64).class_for(1032), Some(1152));
}

#[test]
fn fine_classes_round_less() {
    let t = SizeClasses::new(ClassSet::Fine, 8).unwrap();
    // sqlite's page-cache entries (2048 and 8192 in the kmalloc set).
    assert_eq!(t.class_for(1032), Some(1152));
    assert_eq!(t.class_for(4368), Some(4608));
    // Up to 256, Linux's classes; above, under a quarter of the class is rounding (an eighth
    // where no grid point was left out).
    let linux = SizeClasses::new(ClassSet::Kmalloc, 8).unwrap();
    for size in (1..=KMALLOC_MAX_CACHE_SIZE).step_by(STEP) {
        let c = t.class_for(size).unwrap();
        if size <= 256 {
            assert_eq!(Some(c), linux.class_for(size), "size {size}");
        } else {
            assert!((c - size) * 4 < c, "size {size}: class {c}");
        }
    }
}

#[test]
fn grid_points_round_trip() {
    for set in SETS {
        let s = set.grid_shift();
        for g in 0..GRID_DOUBLINGS << s {
            let p = grid_point(g, s);
            assert_eq!(grid_index(p, s), g, "{set:?} point {p}");
            if g + 1 < GRID_DOUBLINGS << s {
                assert_eq!(grid_index(p + 1, s), g + 1, "{set:?} point {p} + 1");
            }
        }
        assert_eq!(grid_point(0, s), 256 + (256 >> s));
        assert_eq!(
            grid_point((GRID_DOUBLINGS << s) - 1, s),
            KMALLOC_MAX_CACHE_SIZE
        );
    }
}

#[test]
fn bad_minalign_is_refused() {
    for set in SETS {
        assert!(SizeClasses::new(set, 4).is_none());
        assert!(SizeClasses::new(set, 48).is_none());
        assert!(SizeClasses::new(set, 512).is_none());
    }
}
