//! Golden test on a hand-made full slabinfo: header, tunables, every kmalloc family, caches that
//! are not kmalloc, and each way of finding the target class's geometry. Expected values are
//! computed by hand in the comments.

use dmaslab_cost::cost::{analyse, Analysis, Basis, Scenario, DEFAULT_MINALIGNS};
use dmaslab_cost::render;
use dmaslab_cost::slabinfo::parse;

/// Columns: name active num objsize objperslab pagesperslab : tunables : slabdata active num 0.
const FULL: &str = "\
slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
kmalloc-rnd-01-8      700   1024      8  512    1 : tunables    0    0    0 : slabdata      2      2      0
kmalloc-rnd-01-64     100    128     64  128    2 : tunables    0    0    0 : slabdata      1      1      0
kmalloc-64            500    640     64   64    1 : tunables    0    0    0 : slabdata     10     10      0
kmalloc-cg-16         300    512     16  256    1 : tunables    0    0    0 : slabdata      2      2      0
kmalloc-rcl-96         50     84     96   42    1 : tunables    0    0    0 : slabdata      2      2      0
kmalloc-128            64     96    128   32    1 : tunables    0    0    0 : slabdata      3      3      0
dma-kmalloc-96         10     42     96   42    1 : tunables    0    0    0 : slabdata      1      1      0
dma-kmalloc-128         0      0    128   64    2 : tunables    0    0    0 : slabdata      0      0      0
dma-kmalloc-192        21     42    192   21    1 : tunables    0    0    0 : slabdata      2      2      0
kmalloc-1k             30     64   1024   16    4 : tunables    0    0    0 : slabdata      4      4      0
kmalloc-8k              3      8   8192    4    8 : tunables    0    0    0 : slabdata      2      2      0
kmem_cache            200    224    256   16    1 : tunables    0    0    0 : slabdata     14     14      0
dentry               1000   1050    192   21    1 : tunables    0    0    0 : slabdata     50     50      0
";

fn full() -> Analysis {
    analyse(&parse(FULL).unwrap(), "full", 4096, &DEFAULT_MINALIGNS)
}

fn find(a: &Analysis, m: u64, basis: Basis) -> &Scenario {
    a.scenarios
        .iter()
        .find(|s| s.minalign == m && s.basis == basis)
        .unwrap()
}

/// (name, target, pages now, pages then, extra) of the caches that change, and the total.
type Changed<'a> = Vec<(&'a str, u64, u64, u64, i64)>;

fn changed(s: &Scenario) -> (Changed<'_>, i64) {
    let rows = s
        .changed()
        .map(|c| {
            (
                c.name.as_str(),
                c.target,
                c.pages_now,
                c.pages_then,
                c.extra_pages,
            )
        })
        .collect();
    (rows, s.extra_pages)
}

#[test]
fn eleven_kmalloc_caches_two_others() {
    let a = full();
    assert_eq!((a.caches, a.kmalloc_caches), (13, 11));
    // Every scenario lists every kmalloc cache, never kmem_cache or dentry.
    for s in &a.scenarios {
        assert_eq!(s.caches.len(), 11);
        assert!(s
            .caches
            .iter()
            .all(|c| c.name != "kmem_cache" && c.name != "dentry"));
    }
}

#[test]
fn minalign_16_takes_any_family_when_its_own_lacks_the_class() {
    // rnd-01-8 -> 16: no kmalloc-rnd-01-16, no kmalloc-16; kmalloc-cg-16 (256/page):
    // total ceil(1024/256) = 4 - 2 = +2; active ceil(700/256) = 3 - ceil(700/512) = 2 -> +1.
    let a = full();
    assert_eq!(
        changed(find(&a, 16, Basis::Total)),
        (vec![("kmalloc-rnd-01-8", 16, 2, 4, 2)], 2)
    );
    assert_eq!(
        changed(find(&a, 16, Basis::Active)),
        (vec![("kmalloc-rnd-01-8", 16, 2, 3, 1)], 1)
    );
}

#[test]
fn minalign_32_falls_back_to_one_page() {
    // No 32 cache anywhere: one 4 KiB page of 128.
    // total: rnd-01-8: 1024/128 = 8 - 2 = +6; cg-16: 512/128 = 4 - 2 = +2; sum 8.
    // active: rnd-01-8: ceil(700/128) = 6 - 2 = +4; cg-16: ceil(300/128) = 3 - ceil(300/256) = 2
    //         -> +1; sum 5. The 96 caches stay (96 is a multiple of 32).
    let a = full();
    assert_eq!(
        changed(find(&a, 32, Basis::Total)),
        (
            vec![
                ("kmalloc-rnd-01-8", 32, 2, 8, 6),
                ("kmalloc-cg-16", 32, 2, 4, 2)
            ],
            8
        )
    );
    assert_eq!(
        changed(find(&a, 32, Basis::Active)),
        (
            vec![
                ("kmalloc-rnd-01-8", 32, 2, 6, 4),
                ("kmalloc-cg-16", 32, 2, 3, 1)
            ],
            5
        )
    );
}

#[test]
fn minalign_64_prefers_the_same_family() {
    // total:
    //   rnd-01-8 -> kmalloc-rnd-01-64 (its family: 128 per 2 pages): ceil(1024/128)*2 = 16 - 2 = +14
    //   cg-16 -> 64: no kmalloc-cg-64; the normal kmalloc-64 (64/page): 512/64 = 8 - 2 = +6
    //   rcl-96 -> 128: no kmalloc-rcl-128; normal kmalloc-128 (32/page) before dma-kmalloc-128:
    //            ceil(84/32) = 3 - 2 = +1
    //   dma-96 -> dma-kmalloc-128 (its family: 64 per 2 pages): ceil(42/64)*2 = 2 - 1 = +1
    //   dma-192 stays (192 is a multiple of 64); sum 22.
    // kmalloc pages now: 2+2+10+2+2+3+1+0+2+16+16 = 56; all slabs: 56 + 14 + 50 = 120.
    let a = full();
    let s = find(&a, 64, Basis::Total);
    assert_eq!(
        changed(s),
        (
            vec![
                ("kmalloc-rnd-01-8", 64, 2, 16, 14),
                ("kmalloc-cg-16", 64, 2, 8, 6),
                ("kmalloc-rcl-96", 128, 2, 3, 1),
                ("dma-kmalloc-96", 128, 1, 2, 1),
            ],
            22
        )
    );
    assert_eq!((s.kmalloc_pages, s.slab_pages), (56, 120));
    // active:
    //   rnd-01-8: ceil(700/128)*2 = 12 - ceil(700/512) = 2 -> +10
    //   cg-16: ceil(300/64) = 5 - ceil(300/256) = 2 -> +3
    //   rcl-96: ceil(50/32) = 2 - ceil(50/42) = 2 -> 0 (moves, costs nothing: still listed)
    //   dma-96: ceil(10/64)*2 = 2 - ceil(10/42) = 1 -> +1; sum 14.
    // kmalloc pages now: 2+2+8+2+2+2+1+0+1+8+8 = 36; all: 36 + ceil(200/16) + ceil(1000/21)
    //   = 36 + 13 + 48 = 97.
    let s = find(&a, 64, Basis::Active);
    assert_eq!(
        changed(s),
        (
            vec![
                ("kmalloc-rnd-01-8", 64, 2, 12, 10),
                ("kmalloc-cg-16", 64, 2, 5, 3),
                ("kmalloc-rcl-96", 128, 2, 2, 0),
                ("dma-kmalloc-96", 128, 1, 2, 1),
            ],
            14
        )
    );
    assert_eq!((s.kmalloc_pages, s.slab_pages), (36, 97));
    assert_eq!(s.extra_bytes, 14 * 4096);
}

#[test]
fn minalign_128_and_256() {
    // M = 128, total (128 from the normal family, 32/page, except dma-96 -> dma-kmalloc-128):
    //   rnd-01-8: 1024/32 = 32 - 2 = +30; rnd-01-64: 128/32 = 4 - 2 = +2; kmalloc-64: 640/32 = 20
    //   - 10 = +10; cg-16: 512/32 = 16 - 2 = +14; rcl-96: +1; dma-96: +1;
    //   dma-192 -> 256: no 256 kmalloc cache (kmem_cache does not count): one page of 16,
    //   ceil(42/16) = 3 - 2 = +1. Sum 59.
    let a = full();
    assert_eq!(
        changed(find(&a, 128, Basis::Total)),
        (
            vec![
                ("kmalloc-rnd-01-8", 128, 2, 32, 30),
                ("kmalloc-rnd-01-64", 128, 2, 4, 2),
                ("kmalloc-64", 128, 10, 20, 10),
                ("kmalloc-cg-16", 128, 2, 16, 14),
                ("kmalloc-rcl-96", 128, 2, 3, 1),
                ("dma-kmalloc-96", 128, 1, 2, 1),
                ("dma-kmalloc-192", 256, 2, 3, 1),
            ],
            59
        )
    );
    // M = 256, total: everything below 256 goes to one page of 16; 1k and 8k stay.
    //   rnd-01-8: 1024/16 = 64 - 2 = +62; rnd-01-64: 128/16 = 8 - 2 = +6; kmalloc-64: 640/16 = 40
    //   - 10 = +30; cg-16: 512/16 = 32 - 2 = +30; rcl-96: ceil(84/16) = 6 - 2 = +4; kmalloc-128:
    //   96/16 = 6 - 3 = +3; dma-96: ceil(42/16) = 3 - 1 = +2; dma-128: 0; dma-192: +1. Sum 138.
    let s = find(&a, 256, Basis::Total);
    assert_eq!(s.extra_pages, 62 + 6 + 30 + 30 + 4 + 3 + 2 + 1);
    assert!(s
        .caches
        .iter()
        .filter(|c| c.name.ends_with('k'))
        .all(|c| c.extra_pages == 0 && c.target == c.objsize));
    let dma128 = s
        .caches
        .iter()
        .find(|c| c.name == "dma-kmalloc-128")
        .unwrap();
    assert_eq!((dma128.target, dma128.extra_pages), (256, 0));
}

#[test]
fn text_report_names_the_families_and_the_untouched() {
    let t = render::text(&full());
    assert!(
        t.contains("13 caches, 11 of them kmalloc, 2 other caches untouched"),
        "{t}"
    );
    assert!(t.contains("minalign 64 / total: +22 pages (+90112 bytes, +0.1 MiB); +39.29% of kmalloc memory (56 pages), +18.33% of slab memory (120 pages)"), "{t}");
    assert!(!t.contains("dentry") && !t.contains("kmem_cache"));
}

#[test]
fn kmalloc_free_and_empty_inputs_say_so() {
    let none = analyse(
        &parse("dentry 1 21 192 21 1 : slabdata 1 1 0\n").unwrap(),
        "x",
        4096,
        &[64],
    );
    assert_eq!(
        render::text(&none),
        "no kmalloc caches in x (1 other caches, all untouched): policy A costs nothing here\n"
    );
    assert_eq!(none.scenarios[0].extra_pages, 0);
    let empty = analyse(
        &parse("slabinfo - version: 2.1\n").unwrap(),
        "y",
        4096,
        &[64],
    );
    assert_eq!(
        render::text(&empty),
        "no slab caches in y (empty input): nothing to cost\n"
    );
}
