//! `dmaslab cost` end to end: the built binary on the seed, on stdin, and on bad input (exit
//! status 2, one line on stderr naming line and field, nothing on stdout).

mod cli;

use cli::{assert_rejected, dmaslab, text};
use std::process::Output;

const GOOD: &str = "kmalloc-8 17141 21504 8 512 1 : slabdata 42 42 0\n";

#[test]
fn malformed_inputs_exit_2_with_one_line_naming_line_and_field() {
    let cases = [
        (
            "slabinfo - version: 2.0\n",
            "stdin: line 1: field `version`: unsupported slabinfo version \"2.0\"",
        ),
        (
            "kmalloc-16 1 1 16 256\n",
            "line 2: field `pagesperslab`: missing",
        ),
        (
            "kmalloc-16 1 many 16 256 1 : slabdata 1 1 0\n",
            "line 2: field `num_objs`: not a number: \"many\"",
        ),
        (
            "kmalloc-16 -5 1 16 256 1 : slabdata 1 1 0\n",
            "line 2: field `active_objs`: negative count: \"-5\"",
        ),
        (
            "kmalloc-16 1 1 16 0 1 : slabdata 1 1 0\n",
            "line 2: field `objperslab`: must be at least 1, found 0",
        ),
        (
            "kmalloc-16 1 1 16 256 1 : tunables 0 0 0 : slabdata 1 -1 0\n",
            "line 2: field `num_slabs`: negative",
        ),
    ];
    for (bad, want) in cases {
        // The good line first: its output must not leak before the error.
        let input = if bad.starts_with("slabinfo") {
            format!("{bad}{GOOD}")
        } else {
            format!("{GOOD}{bad}")
        };
        let out = dmaslab(&["cost", "-"], &input);
        assert_rejected(&out, want);
        assert!(text(&out.stderr).starts_with("dmaslab: stdin: line "));
        let out = dmaslab(&["cost", "--json", "-"], &input);
        assert_rejected(&out, want);
    }
}

#[test]
fn bad_flags_and_missing_files_exit_2() {
    assert_rejected(
        &dmaslab(&["cost", "--seed", "--minalign", "64,48"], ""),
        "--minalign: 48 is not a power of two",
    );
    assert_rejected(
        &dmaslab(&["cost", "--seed", "--page-size", "1000"], ""),
        "--page-size: 1000",
    );
    assert_rejected(
        &dmaslab(&["cost", "/nonexistent/slabinfo"], ""),
        "cannot read /nonexistent/slabinfo",
    );
    let out = dmaslab(&["cost", "--seed", "/proc/slabinfo"], "");
    assert_eq!(out.status.code(), Some(2), "--seed and FILE conflict");
    assert!(out.stdout.is_empty());
}

#[test]
fn seed_json_has_the_interface_shape() {
    let out = dmaslab(&["cost", "--seed", "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"], "seed");
    assert_eq!(v["page_size"], 4096);
    let scenarios = v["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 10);
    let got: Vec<(u64, &str, i64)> = scenarios
        .iter()
        .map(|s| {
            (
                s["minalign"].as_u64().unwrap(),
                s["basis"].as_str().unwrap(),
                s["extra_pages"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (16, "total", 42),
            (16, "active", 33),
            (32, "total", 244),
            (32, "active", 205),
            (64, "total", 1423),
            (64, "active", 1263),
            (128, "total", 4528),
            (128, "active", 4055),
            (256, "total", 11231),
            (256, "active", 10000),
        ]
    );
    for s in scenarios {
        assert_eq!(
            s["extra_bytes"].as_i64().unwrap(),
            s["extra_pages"].as_i64().unwrap() * 4096
        );
        for c in s["caches"].as_array().unwrap() {
            for key in [
                "name",
                "objsize",
                "target",
                "count",
                "pages_now",
                "pages_then",
                "extra_pages",
            ] {
                assert!(c.get(key).is_some(), "cache lacks {key}: {c}");
            }
        }
    }
    assert_eq!(scenarios[4]["caches"][0]["target"], 128);
}

#[test]
fn minalign_list_stdin_and_svg() {
    let svg = std::env::temp_dir().join(format!("dmaslab-cost-test-{}.svg", std::process::id()));
    let svg_arg = svg.to_str().unwrap();
    let out = dmaslab(
        &["cost", "--minalign", "64", "--svg", svg_arg, "-"],
        dmaslab_cost::SEED_SLABINFO,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("on stdin:") && table.contains("+1423") && table.contains("+1263"),
        "{table}"
    );
    assert!(!table.contains("minalign 16 /"), "only M = 64: {table}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    let _ = std::fs::remove_file(&svg);
    assert!(chart.starts_with("<svg") && chart.contains("total (num_objs)"));
}

#[test]
fn empty_and_kmalloc_free_inputs_are_errors() {
    for args in [&["cost", "-"][..], &["cost", "--json", "-"][..]] {
        assert_rejected(
            &dmaslab(args, ""),
            "dmaslab: no slab caches in stdin (empty input): nothing to cost",
        );
        assert_rejected(
            &dmaslab(args, "slabinfo - version: 2.1\n"),
            "no slab caches in stdin",
        );
        assert_rejected(
            &dmaslab(args, "dentry 1 21 192 21 1 : slabdata 1 1 0\n"),
            "dmaslab: no kmalloc caches in stdin (1 other caches",
        );
    }
}

/// Two families of the seed's sizes: kmalloc-8 changes at M = 16, the empty dma-kmalloc-8
/// moves to 16 without changing pages, kmalloc-64 stays.
const TWO_FAMILIES: &str = "kmalloc-64 100 128 64 64 1 : slabdata 2 2 0\n\
dma-kmalloc-8 0 0 8 512 1 : slabdata 0 0 0\n\
kmalloc-8 17141 21504 8 512 1 : slabdata 42 42 0\n";

#[test]
fn text_lists_changed_caches_by_default_and_every_cache_with_all() {
    let m16 = |out: &Output| {
        let t = text(&out.stdout);
        let section = t
            .split("\nminalign 16 / total")
            .nth(1)
            .expect("an M = 16 section")
            .split("\nminalign")
            .next()
            .unwrap()
            .to_string();
        section
    };
    let out = dmaslab(&["cost", "--minalign", "16", "-"], TWO_FAMILIES);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = m16(&out);
    assert!(s.contains("\n  kmalloc-8 "), "{s}");
    assert!(
        !s.contains("dma-kmalloc-8") && !s.contains("kmalloc-64 "),
        "{s}"
    );
    assert!(s.contains("(2 other kmalloc caches unchanged"), "{s}");

    let out = dmaslab(&["cost", "--all", "--minalign", "16", "-"], TWO_FAMILIES);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = m16(&out);
    for name in ["kmalloc-8 ", "dma-kmalloc-8 ", "kmalloc-64 "] {
        assert!(s.contains(&format!("\n  {name}")), "{name}: {s}");
    }
    assert!(!s.contains("other kmalloc caches unchanged"), "{s}");
}
