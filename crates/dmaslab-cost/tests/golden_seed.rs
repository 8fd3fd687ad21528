//! Golden test: the seed's five slabinfo lines, every M and both bases, against values computed by
//! hand below.
//!
//! Seed rows (name active_objs num_objs objsize objperslab pagesperslab num_slabs):
//!
//! | cache      | active | num   | objperslab | num_slabs | pages now (total) | pages now (active)      |
//! |------------|--------|-------|------------|-----------|-------------------|-------------------------|
//! | kmalloc-96 | 11527  | 15792 | 42         | 376       | 376               | ceil(11527/42)  = 275   |
//! | kmalloc-64 | 54406  | 62912 | 64         | 983       | 983               | ceil(54406/64)  = 851   |
//! | kmalloc-32 | 80325  | 84096 | 128        | 657       | 657               | ceil(80325/128) = 628   |
//! | kmalloc-16 | 26844  | 30208 | 256        | 118       | 118               | ceil(26844/256) = 105   |
//! | kmalloc-8  | 17141  | 21504 | 512        | 42        | 42                | ceil(17141/512) = 34    |
//!
//! All slabs are one page. Target geometries: 16, 32, 64 from the input (256, 128, 64 objects per
//! page); 128 and 256 are not in the input, so one 4 KiB page of 32 resp. 16 objects.

use dmaslab_cost::cost::{analyse, Analysis, Basis, Scenario, DEFAULT_MINALIGNS};
use dmaslab_cost::slabinfo::parse;
use dmaslab_cost::{render, SEED_PAGE_SIZE, SEED_SLABINFO};

fn seed() -> Analysis {
    analyse(
        &parse(SEED_SLABINFO).unwrap(),
        "seed",
        SEED_PAGE_SIZE,
        &DEFAULT_MINALIGNS,
    )
}

fn find(a: &Analysis, m: u64, basis: Basis) -> &Scenario {
    a.scenarios
        .iter()
        .find(|s| s.minalign == m && s.basis == basis)
        .unwrap()
}

/// (name, target, count, pages now, pages then, extra) for every kmalloc cache, input order.
type Row = (&'static str, u64, u64, u64, u64, i64);

fn check(m: u64, basis: Basis, rows: [Row; 5], extra: i64) {
    let a = seed();
    let s = find(&a, m, basis);
    let got: Vec<Row> = s
        .caches
        .iter()
        .zip(rows.iter())
        .map(|(c, r)| {
            (
                r.0,
                c.target,
                c.count,
                c.pages_now,
                c.pages_then,
                c.extra_pages,
            )
        })
        .collect();
    let names: Vec<&str> = s.caches.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kmalloc-96",
            "kmalloc-64",
            "kmalloc-32",
            "kmalloc-16",
            "kmalloc-8"
        ]
    );
    assert_eq!(got, rows, "M={m} basis={basis}");
    assert_eq!(s.extra_pages, extra, "M={m} basis={basis}");
    assert_eq!(s.extra_bytes, extra * 4096);
    let now = match basis {
        Basis::Total => 376 + 983 + 657 + 118 + 42,  // 2176
        Basis::Active => 275 + 851 + 628 + 105 + 34, // 1893
    };
    assert_eq!((s.kmalloc_pages, s.slab_pages), (now, now));
}

#[test]
fn scenarios_come_m_major_total_first() {
    let order: Vec<(u64, Basis)> = seed()
        .scenarios
        .iter()
        .map(|s| (s.minalign, s.basis))
        .collect();
    let want: Vec<(u64, Basis)> = DEFAULT_MINALIGNS
        .iter()
        .flat_map(|&m| [(m, Basis::Total), (m, Basis::Active)])
        .collect();
    assert_eq!(order, want);
}

#[test]
fn minalign_16() {
    // Only kmalloc-8 moves, into kmalloc-16 (256 per page).
    // total: ceil(21504/256) = 84, 84 - 42 = 42.   active: ceil(17141/256) = 67, 67 - 34 = 33.
    check(
        16,
        Basis::Total,
        [
            ("kmalloc-96", 96, 15792, 376, 376, 0),
            ("kmalloc-64", 64, 62912, 983, 983, 0),
            ("kmalloc-32", 32, 84096, 657, 657, 0),
            ("kmalloc-16", 16, 30208, 118, 118, 0),
            ("kmalloc-8", 16, 21504, 42, 84, 42),
        ],
        42,
    );
    check(
        16,
        Basis::Active,
        [
            ("kmalloc-96", 96, 11527, 275, 275, 0),
            ("kmalloc-64", 64, 54406, 851, 851, 0),
            ("kmalloc-32", 32, 80325, 628, 628, 0),
            ("kmalloc-16", 16, 26844, 105, 105, 0),
            ("kmalloc-8", 16, 17141, 34, 67, 33),
        ],
        33,
    );
}

#[test]
fn minalign_32() {
    // 8 and 16 move into kmalloc-32 (128 per page); 96 stays (a multiple of 32).
    // total: 8: 21504/128 = 168 (+126); 16: 30208/128 = 236 (+118); sum 244.
    // active: 8: ceil(17141/128) = 134 (+100); 16: ceil(26844/128) = 210 (+105); sum 205.
    check(
        32,
        Basis::Total,
        [
            ("kmalloc-96", 96, 15792, 376, 376, 0),
            ("kmalloc-64", 64, 62912, 983, 983, 0),
            ("kmalloc-32", 32, 84096, 657, 657, 0),
            ("kmalloc-16", 32, 30208, 118, 236, 118),
            ("kmalloc-8", 32, 21504, 42, 168, 126),
        ],
        244,
    );
    check(
        32,
        Basis::Active,
        [
            ("kmalloc-96", 96, 11527, 275, 275, 0),
            ("kmalloc-64", 64, 54406, 851, 851, 0),
            ("kmalloc-32", 32, 80325, 628, 628, 0),
            ("kmalloc-16", 32, 26844, 105, 210, 105),
            ("kmalloc-8", 32, 17141, 34, 134, 100),
        ],
        205,
    );
}

#[test]
fn minalign_64_the_seed_question() {
    // 8, 16, 32 move into kmalloc-64 (64 per page); 96 into 128 (not in the input: 32 per page).
    // total: 96: ceil(15792/32) = 494 (+118); 32: 84096/64 = 1314 (+657); 16: 30208/64 = 472
    //        (+354); 8: 21504/64 = 336 (+294); sum 1423 (the message says 1799 = 1423 + 376: it
    //        adds the 494 new kmalloc-128 pages without taking away the 376 kmalloc-96 pages).
    // active: 96: ceil(11527/32) = 361 (+86); 32: ceil(80325/64) = 1256 (+628); 16:
    //        ceil(26844/64) = 420 (+315); 8: ceil(17141/64) = 268 (+234); sum 1263.
    check(
        64,
        Basis::Total,
        [
            ("kmalloc-96", 128, 15792, 376, 494, 118),
            ("kmalloc-64", 64, 62912, 983, 983, 0),
            ("kmalloc-32", 64, 84096, 657, 1314, 657),
            ("kmalloc-16", 64, 30208, 118, 472, 354),
            ("kmalloc-8", 64, 21504, 42, 336, 294),
        ],
        1423,
    );
    check(
        64,
        Basis::Active,
        [
            ("kmalloc-96", 128, 11527, 275, 361, 86),
            ("kmalloc-64", 64, 54406, 851, 851, 0),
            ("kmalloc-32", 64, 80325, 628, 1256, 628),
            ("kmalloc-16", 64, 26844, 105, 420, 315),
            ("kmalloc-8", 64, 17141, 34, 268, 234),
        ],
        1263,
    );
}

#[test]
fn minalign_128() {
    // Everything moves into kmalloc-128 (not in the input: 32 per page).
    // total: 96: 494 (+118); 64: 62912/32 = 1966 (+983); 32: 84096/32 = 2628 (+1971);
    //        16: 30208/32 = 944 (+826); 8: 21504/32 = 672 (+630); sum 4528.
    // active: 96: 361 (+86); 64: ceil(54406/32) = 1701 (+850); 32: ceil(80325/32) = 2511 (+1883);
    //        16: ceil(26844/32) = 839 (+734); 8: ceil(17141/32) = 536 (+502); sum 4055.
    check(
        128,
        Basis::Total,
        [
            ("kmalloc-96", 128, 15792, 376, 494, 118),
            ("kmalloc-64", 128, 62912, 983, 1966, 983),
            ("kmalloc-32", 128, 84096, 657, 2628, 1971),
            ("kmalloc-16", 128, 30208, 118, 944, 826),
            ("kmalloc-8", 128, 21504, 42, 672, 630),
        ],
        4528,
    );
    check(
        128,
        Basis::Active,
        [
            ("kmalloc-96", 128, 11527, 275, 361, 86),
            ("kmalloc-64", 128, 54406, 851, 1701, 850),
            ("kmalloc-32", 128, 80325, 628, 2511, 1883),
            ("kmalloc-16", 128, 26844, 105, 839, 734),
            ("kmalloc-8", 128, 17141, 34, 536, 502),
        ],
        4055,
    );
}

#[test]
fn minalign_256() {
    // Everything moves into kmalloc-256 (not in the input: 16 per page).
    // total: 96: 15792/16 = 987 (+611); 64: 62912/16 = 3932 (+2949); 32: 84096/16 = 5256 (+4599);
    //        16: 30208/16 = 1888 (+1770); 8: 21504/16 = 1344 (+1302); sum 11231.
    // active: 96: ceil(11527/16) = 721 (+446); 64: ceil(54406/16) = 3401 (+2550);
    //        32: ceil(80325/16) = 5021 (+4393); 16: ceil(26844/16) = 1678 (+1573);
    //        8: ceil(17141/16) = 1072 (+1038); sum 10000.
    check(
        256,
        Basis::Total,
        [
            ("kmalloc-96", 256, 15792, 376, 987, 611),
            ("kmalloc-64", 256, 62912, 983, 3932, 2949),
            ("kmalloc-32", 256, 84096, 657, 5256, 4599),
            ("kmalloc-16", 256, 30208, 118, 1888, 1770),
            ("kmalloc-8", 256, 21504, 42, 1344, 1302),
        ],
        11231,
    );
    check(
        256,
        Basis::Active,
        [
            ("kmalloc-96", 256, 11527, 275, 721, 446),
            ("kmalloc-64", 256, 54406, 851, 3401, 2550),
            ("kmalloc-32", 256, 80325, 628, 5021, 4393),
            ("kmalloc-16", 256, 26844, 105, 1678, 1573),
            ("kmalloc-8", 256, 17141, 34, 1072, 1038),
        ],
        10000,
    );
}

#[test]
fn percentages_are_of_the_same_basis() {
    let a = seed();
    let s = find(&a, 64, Basis::Total);
    // 1423 / 2176 = 65.395...%
    assert!((s.percent_of_kmalloc().unwrap() - 65.395).abs() < 0.001);
    assert_eq!(s.percent_of_kmalloc(), s.percent_of_slab());
    let s = find(&a, 64, Basis::Active);
    // 1263 / 1893 = 66.719...%
    assert!((s.percent_of_kmalloc().unwrap() - 66.719).abs() < 0.001);
}

#[test]
fn text_lists_the_changing_caches_only() {
    let t = render::text(&seed());
    assert!(t.contains("on seed:"), "{t}");
    // M = 16: only kmalloc-8 changes.
    let m16 = t
        .split("\nminalign 16 / total")
        .nth(1)
        .unwrap()
        .split("\nminalign")
        .next()
        .unwrap();
    assert!(
        m16.contains("kmalloc-8 ") && !m16.contains("kmalloc-16 ") && !m16.contains("kmalloc-96"),
        "{m16}"
    );
    assert!(m16.contains("(4 other kmalloc caches unchanged"), "{m16}");
    assert!(
        t.contains(
            "minalign 64 / total: +1423 pages (+5828608 bytes, +5.6 MiB); +65.40% of kmalloc"
        ),
        "{t}"
    );
    let row = t
        .lines()
        .find(|l| l.trim_start().starts_with("64  total"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["64", "total", "+1423", "+5828608", "+5.6", "+65.40%", "+65.40%"]
    );
}

#[test]
fn json_has_the_interface_fields() {
    let v: serde_json::Value = serde_json::from_str(&render::json(&seed())).unwrap();
    assert_eq!(v["source"], "seed");
    assert_eq!(v["page_size"], 4096);
    let s = &v["scenarios"][4];
    assert_eq!(
        (s["minalign"].as_u64(), s["basis"].as_str()),
        (Some(64), Some("total"))
    );
    assert_eq!(
        (s["extra_pages"].as_i64(), s["extra_bytes"].as_i64()),
        (Some(1423), Some(1423 * 4096))
    );
    let c = &s["caches"][0];
    let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "count",
            "extra_pages",
            "name",
            "objsize",
            "pages_now",
            "pages_then",
            "target"
        ]
    );
    assert_eq!(c["name"], "kmalloc-96");
    assert_eq!(
        (c["objsize"].as_u64(), c["target"].as_u64()),
        (Some(96), Some(128))
    );
    assert_eq!(v["scenarios"][5]["basis"], "active");
}

#[test]
fn svg_chart_draws_both_bases() {
    let svg = render::svg(&seed()).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("total (num_objs)") && svg.contains("active (active_objs)"));
    assert!(
        svg.contains("\n256\n</text>") && svg.contains("\n16\n</text>"),
        "x axis labels"
    );
    assert!(
        svg.contains("\n5.6\n</text>") && svg.contains("\n4.9\n</text>"),
        "M = 64 values in MiB"
    );
    assert!(svg.contains("<polyline"), "lines");
}
