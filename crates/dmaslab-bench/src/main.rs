//! `dmaslab-bench`: runs the workloads of `BENCHMARKS.md` under every allocator and prints
//! markdown tables.
//!
//! ```text
//! dmaslab-bench [--rounds N] [--scale F] [SECTION...]
//!   SECTION: preload (C allocators by LD_PRELOAD: the workloads of lib.rs, the field's shapes
//!   of `shapes` and sqlite3), field (only the field's shapes and sqlite3), rust (GlobalAlloc crates), core (no_std
//!   core on an arena vs talc, linked_list_allocator, buddy_system_allocator), dma (map/unmap
//!   cost), fastpath (callgrind instruction counts). Default: all.
//! ```
//!
//! Each (workload, allocator) runs in its own child process; rounds are interleaved (round r
//! runs every workload under every allocator, in a rotated order) and the tables give medians.
//! Peak RSS is the child's `ru_maxrss` from `wait4`; dmaslab's pages come from its
//! `DMASLAB_STATS` line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod core_peers;
mod dma;
mod field;
mod sqlite_run;

const PEERS: [(&str, &str); 3] = [
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    (
        "tcmalloc",
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
];

/// One allocator to run a child under.
#[derive(Clone)]
struct Alloc {
    name: String,
    preload: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// For the `rust` section: the allocator argument of `dmaslab-bench-rs`.
    rust: Option<String>,
    dmaslab: bool,
}

/// One row of a child run: name, ns per operation, allocator calls, lock counts.
struct RowOut {
    name: String,
    ns: f64,
    calls: u64,
    locks: Option<(u64, u64)>,
}

/// What one child run measured.
struct Outcome {
    rows: Vec<RowOut>,
    maxrss_kib: i64,
    pages: Option<(u64, u64, u64)>,
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn stats_value(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Runs `cmd` and waits with `wait4` for its rusage.
fn run_child(mut cmd: Command) -> Option<(String, i64)> {
    cmd.stdout(std::process::Stdio::piped());
    let child = cmd.spawn().ok()?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).ok()?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (Child's handle does not wait on drop).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        eprintln!("dmaslab-bench: child failed: {cmd:?} (status {status})");
        return None;
    }
    Some((text, ru.ru_maxrss))
}

/// Reads the work binary's `RESULT`, `LOCKS` and `CHECK` lines; `None` (and a message) if a
/// row's tag check failed.
fn parse_rows(text: &str, cmd: &str) -> Option<Vec<RowOut>> {
    let mut rows: Vec<RowOut> = Vec::new();
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| w.get(i).and_then(|x| x.parse::<u64>().ok());
        match (w.first().copied(), w.get(1)) {
            (Some("RESULT"), Some(name)) => {
                let (Some(ops), Some(ns)) = (num(2), num(3)) else {
                    continue;
                };
                rows.push(RowOut {
                    name: name.to_string(),
                    ns: ns as f64 / ops as f64,
                    calls: num(4).unwrap_or(ops),
                    locks: None,
                });
            }
            (Some("LOCKS"), Some(name)) => {
                if let (Some(r), Some(a), Some(c)) =
                    (rows.iter_mut().find(|r| r.name == *name), num(2), num(3))
                {
                    r.locks = Some((a, c));
                }
            }
            (Some("CHECK"), Some(name)) if w.get(2) != w.get(3) => {
                eprintln!("dmaslab-bench: {cmd}: {name}: tag check failed ({l})");
                return None;
            }
            _ => {}
        }
    }
    Some(rows)
}

fn run_one(a: &Alloc, workload: &str, scale: f64, trace: Option<&Path>) -> Option<Outcome> {
    if workload == sqlite_run::WORKLOAD {
        return sqlite_run::run(a);
    }
    let dir = exe_dir();
    let mut cmd = match &a.rust {
        Some(r) => {
            let mut c = Command::new(dir.join("dmaslab-bench-rs"));
            c.arg(r);
            c
        }
        None => Command::new(dir.join("dmaslab-bench-work")),
    };
    cmd.arg(workload).arg(scale.to_string());
    if let Some(t) = trace {
        cmd.arg(t);
    }
    let stats = std::env::temp_dir().join(format!("dmaslab-bench-{}.stats", std::process::id()));
    let _ = std::fs::remove_file(&stats);
    if let Some(p) = &a.preload {
        cmd.env("LD_PRELOAD", p);
    }
    for (k, v) in &a.env {
        cmd.env(k, v);
    }
    if a.dmaslab {
        cmd.env("DMASLAB_STATS", &stats);
    }
    let (text, maxrss_kib) = run_child(cmd)?;
    let rows = parse_rows(&text, &format!("{} under {}", workload, a.name))?;
    let pages = dmaslab_pages(&stats);
    Some(Outcome {
        rows,
        maxrss_kib,
        pages,
    })
}

/// dmaslab's (held, slab, large) pages from its `DMASLAB_STATS` file, which is then removed.
fn dmaslab_pages(stats: &Path) -> Option<(u64, u64, u64)> {
    let pages = std::fs::read_to_string(stats).ok().and_then(|s| {
        let l = s.lines().find(|l| l.starts_with("# dmaslab-totals"))?;
        Some((
            stats_value(l, "pages_held")?,
            stats_value(l, "slab_pages")?,
            stats_value(l, "large_pages")?,
        ))
    });
    let _ = std::fs::remove_file(stats);
    pages
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn dmaslab_allocs(lib: &Path) -> Vec<Alloc> {
    ["C", "B", "A"]
        .iter()
        .map(|p| Alloc {
            name: format!("dmaslab-{p}"),
            preload: Some(lib.to_path_buf()),
            env: vec![("DMASLAB_POLICY".into(), p.to_string())],
            rust: None,
            dmaslab: true,
        })
        .collect()
}

fn preload_allocs() -> Vec<Alloc> {
    let mut v = vec![Alloc {
        name: "glibc".into(),
        preload: None,
        env: vec![],
        rust: None,
        dmaslab: false,
    }];
    for (name, path) in PEERS {
        if Path::new(path).exists() {
            v.push(Alloc {
                name: name.into(),
                preload: Some(path.into()),
                env: vec![],
                rust: None,
                dmaslab: false,
            });
        } else {
            eprintln!("dmaslab-bench: {path} missing (scripts/bench-setup.sh installs it); skipping {name}");
        }
    }
    let lib = std::env::var_os("DMASLAB_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir().join("libdmaslab.so"));
    if lib.exists() {
        v.extend(dmaslab_allocs(&lib));
    } else {
        eprintln!(
            "dmaslab-bench: {} missing (cargo build --release -p dmaslab-preload)",
            lib.display()
        );
    }
    v
}

fn rust_allocs() -> Vec<Alloc> {
    ["system", "mimalloc", "jemalloc", "dmaslab"]
        .iter()
        .map(|r| Alloc {
            name: format!("rs-{r}"),
            preload: None,
            env: if *r == "dmaslab" {
                vec![("DMASLAB_POLICY".into(), "C".into())]
            } else {
                vec![]
            },
            rust: Some(r.to_string()),
            dmaslab: *r == "dmaslab",
        })
        .collect()
}

/// Records the python3 trace (`workloads/py_alloc.py`) under libdmaslab.so.
fn record_trace() -> Option<PathBuf> {
    let lib = exe_dir().join("libdmaslab.so");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/py_alloc.py");
    let out = std::env::temp_dir().join("dmaslab-bench-python.trace");
    let st = Command::new("python3")
        .arg(&script)
        .env("LD_PRELOAD", &lib)
        .env("PYTHONMALLOC", "malloc")
        .env("DMASLAB_TRACE", &out)
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    if !st.success() {
        eprintln!("dmaslab-bench: recording the python3 trace failed ({st})");
        return None;
    }
    let len = std::fs::metadata(&out).ok()?.len();
    eprintln!(
        "dmaslab-bench: recorded {} ({} events) from python3 {}",
        out.display(),
        len.saturating_sub(8) / 32,
        script.display()
    );
    Some(out)
}

struct Results {
    /// (row, alloc) → ns/op samples.
    time: BTreeMap<(String, String), Vec<f64>>,
    /// (workload, alloc) → peak RSS samples (KiB).
    rss: BTreeMap<(String, String), Vec<f64>>,
    /// (workload, alloc) → (pages held, slab pages, large pages) of the last run.
    pages: BTreeMap<(String, String), (u64, u64, u64)>,
    /// Rows in first-seen order, with their workload.
    rows: Vec<(String, String)>,
}

fn measure(
    allocs: &[Alloc],
    workloads: &[&str],
    rounds: usize,
    scale: f64,
    trace: Option<&Path>,
) -> Results {
    let mut r = Results {
        time: BTreeMap::new(),
        rss: BTreeMap::new(),
        pages: BTreeMap::new(),
        rows: Vec::new(),
    };
    for round in 0..rounds {
        eprintln!("dmaslab-bench: round {}/{rounds}", round + 1);
        for w in workloads {
            for i in 0..allocs.len() {
                let a = &allocs[(i + round) % allocs.len()];
                let t = if *w == "trace" { trace } else { None };
                let Some(o) = run_one(a, w, scale, t) else {
                    continue;
                };
                for row in o.rows {
                    if !r.rows.iter().any(|(x, _)| *x == row.name) {
                        r.rows.push((row.name.clone(), w.to_string()));
                    }
                    r.time
                        .entry((row.name, a.name.clone()))
                        .or_default()
                        .push(row.ns);
                }
                r.rss
                    .entry((w.to_string(), a.name.clone()))
                    .or_default()
                    .push(o.maxrss_kib as f64);
                if let Some(p) = o.pages {
                    r.pages.insert((w.to_string(), a.name.clone()), p);
                }
            }
        }
    }
    r
}

fn fmt_ns(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

fn print_tables(title: &str, allocs: &[Alloc], ours: &str, r: &mut Results) {
    let names: Vec<&str> = allocs.iter().map(|a| a.name.as_str()).collect();
    println!("\n### {title}: time per operation (ns, median)\n");
    println!("| workload | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    let mut med: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (row, _) in &r.rows {
        let mut cells = Vec::new();
        for n in &names {
            let m = r
                .time
                .get_mut(&(row.clone(), n.to_string()))
                .map_or(f64::NAN, |v| median(v));
            med.insert((row.clone(), n.to_string()), m);
            cells.push(fmt_ns(m));
        }
        println!("| {row} | {} |", cells.join(" | "));
    }
    let peers: Vec<&str> = names.iter().copied().filter(|n| *n != ours).collect();
    println!("\n### {title}: {ours} time / peer time (below 1.0: {ours} faster)\n");
    println!("| workload | {} |", peers.join(" | "));
    println!("|---|{}", "---|".repeat(peers.len()));
    let mut logs: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut worst: Vec<(f64, String)> = vec![(0.0, String::new()); peers.len()];
    for (row, _) in &r.rows {
        let o = med[&(row.clone(), ours.to_string())];
        let mut cells = Vec::new();
        for (j, p) in peers.iter().enumerate() {
            let ratio = o / med[&(row.clone(), p.to_string())];
            if ratio.is_finite() {
                logs[j].push(ratio.ln());
                if ratio > worst[j].0 {
                    worst[j] = (ratio, row.clone());
                }
            }
            cells.push(format!("{ratio:.2}"));
        }
        println!("| {row} | {} |", cells.join(" | "));
    }
    let geo: Vec<String> = logs
        .iter()
        .map(|l| {
            format!(
                "**{:.2}**",
                (l.iter().sum::<f64>() / l.len().max(1) as f64).exp()
            )
        })
        .collect();
    println!("| geometric mean | {} |", geo.join(" | "));
    let w: Vec<String> = worst.iter().map(|(x, n)| format!("{x:.2} ({n})")).collect();
    println!("| worst | {} |", w.join(" | "));

    let mut workloads: Vec<String> = Vec::new();
    for (_, w) in &r.rows {
        if !workloads.contains(w) {
            workloads.push(w.clone());
        }
    }
    println!("\n### {title}: peak RSS (KiB, median of the runs' ru_maxrss)\n");
    println!("| workload | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for w in &workloads {
        let cells: Vec<String> = names
            .iter()
            .map(|n| {
                r.rss
                    .get_mut(&(w.clone(), n.to_string()))
                    .map_or("-".into(), |v| format!("{:.0}", median(v)))
            })
            .collect();
        println!("| {w} | {} |", cells.join(" | "));
    }
    let ds: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.contains("dmaslab"))
        .collect();
    if !ds.is_empty() && !r.pages.is_empty() {
        println!("\n### {title}: dmaslab pages at exit (held / slab / large, 4 KiB pages)\n");
        println!("| workload | {} |", ds.join(" | "));
        println!("|---|{}", "---|".repeat(ds.len()));
        for w in &workloads {
            let cells: Vec<String> = ds
                .iter()
                .map(|n| {
                    r.pages
                        .get(&(w.clone(), n.to_string()))
                        .map_or("-".into(), |(h, s, l)| format!("{h} / {s} / {l}"))
                })
                .collect();
            println!("| {w} | {} |", cells.join(" | "));
        }
    }
}

/// Instructions per malloc(64)/free pair: callgrind's total for 2N pairs minus N pairs, over N.
fn fastpath(allocs: &[Alloc]) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("\n(valgrind missing: no instruction counts; scripts/bench-setup.sh installs it)");
        return;
    }
    println!("\n### Instructions per malloc(64)+free pair (callgrind, (Ir(2M pairs) - Ir(1M pairs)) / 1M, includes ~6 loop instructions)\n");
    println!("| allocator | instructions per pair |");
    println!("|---|---|");
    for a in allocs {
        let mut irs = Vec::new();
        for scale in [1.0, 2.0] {
            let out = std::env::temp_dir().join(format!("dmaslab-bench-cg-{}", std::process::id()));
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(exe_dir().join("dmaslab-bench-work"))
                .arg("fastpath")
                .arg(scale.to_string())
                .stderr(std::process::Stdio::null());
            if let Some(p) = &a.preload {
                c.env("LD_PRELOAD", p);
            }
            for (k, v) in &a.env {
                c.env(k, v);
            }
            if run_child(c).is_none() {
                break;
            }
            let ir = std::fs::read_to_string(&out).ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            });
            let _ = std::fs::remove_file(&out);
            if let Some(ir) = ir {
                irs.push(ir);
            }
        }
        if irs.len() == 2 {
            println!("| {} | {:.1} |", a.name, (irs[1] - irs[0]) / 1e6);
        }
    }
}

fn main() {
    let mut rounds = 5;
    let mut scale = 1.0;
    let mut sqlite_rows = None;
    let mut sections: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(rounds),
            "--scale" => scale = args.next().and_then(|s| s.parse().ok()).unwrap_or(scale),
            "--sqlite-rows" => sqlite_rows = args.next().and_then(|s| s.parse().ok()),
            "-h" | "--help" => {
                println!(
                    "dmaslab-bench [--rounds N] [--scale F] [--sqlite-rows N] [preload|field|rust|core|dma|fastpath ...]"
                );
                return;
            }
            s => sections.push(s.to_string()),
        }
    }
    if sections.is_empty() {
        sections = ["preload", "rust", "core", "dma", "fastpath"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    let all: Vec<&str> = vec![
        "pairs", "random", "prodcons", "larson", "realloc", "trace", "seed",
    ];
    let sqlite_rows = sqlite_rows
        .unwrap_or(((dmaslab_bench::shapes::sqlite::ROWS as f64 * scale) as usize).max(100));
    for s in &sections {
        match s.as_str() {
            "preload" | "field" => {
                // `field`: only the workloads of the field's shapes (issue 13).
                let mut w: Vec<&str> = if s == "preload" { all.clone() } else { vec![] };
                w.extend(dmaslab_bench::shapes::SHAPES);
                if sqlite_run::prepare(sqlite_rows) {
                    w.push(sqlite_run::WORKLOAD);
                }
                let trace = if s == "preload" { record_trace() } else { None };
                let allocs = preload_allocs();
                let title = if s == "preload" {
                    "C allocators (LD_PRELOAD)"
                } else {
                    "C allocators (LD_PRELOAD), the field's shapes"
                };
                let mut r = measure(&allocs, &w, rounds, scale, trace.as_deref());
                let locks = field::count_locks(&w, scale, trace.as_deref());
                print_tables(title, &allocs, "dmaslab-C", &mut r);
                field::print(title, &allocs, &mut r, &locks);
                if let Some(t) = trace {
                    let _ = std::fs::remove_file(t);
                }
                sqlite_run::cleanup();
            }
            "rust" => {
                if !exe_dir().join("dmaslab-bench-rs").exists() {
                    println!("\n(dmaslab-bench-rs not built: build with --features rust-peers)");
                    continue;
                }
                let allocs = rust_allocs();
                let w: Vec<&str> = all.iter().copied().filter(|w| *w != "trace").collect();
                let mut r = measure(&allocs, &w, rounds, scale, None);
                print_tables("Rust global allocators", &allocs, "rs-dmaslab", &mut r);
            }
            "core" => core_peers::run(rounds, scale),
            "dma" => dma::run(),
            "fastpath" => {
                let a: Vec<Alloc> = preload_allocs()
                    .into_iter()
                    .filter(|a| a.name != "dmaslab-B" && a.name != "dmaslab-A")
                    .collect();
                fastpath(&a);
            }
            other => {
                eprintln!("dmaslab-bench: unknown section {other}");
                std::process::exit(2);
            }
        }
    }
}
