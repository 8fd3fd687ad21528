//! The tables issue 13's targets are read from: dmaslab-C and dmaslab-B against the best peer
//! of each row (time) and the lowest peer of each workload (peak RSS), and dmaslab's lock calls
//! per 1,000 allocator calls, counted in one more run of each workload under a `lock-stats`
//! build of `libdmaslab.so` (so the timed runs use the normal build).

use crate::{dmaslab_allocs, exe_dir, median, run_one, Alloc, Results};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The dmaslab policies the targets are about.
const OURS: [&str; 2] = ["dmaslab-C", "dmaslab-B"];

/// Rows whose objects are freed by threads other than the one that allocated them (the
/// lock-count target is on these).
/// (A name ending in `-` stands for every thread count.)
const CROSS_THREAD: [&str; 7] = [
    "prodcons",
    "larson-4t",
    "larson-2t",
    "larson-sized-2t",
    "sh8-",
    "xmalloc-",
    "cache-scratch-",
];

fn cross_thread(row: &str) -> bool {
    CROSS_THREAD
        .iter()
        .any(|p| row == *p || (p.ends_with('-') && row.starts_with(p)))
}

/// (row, allocator) → (allocator calls, lock calls, contended lock calls).
pub type LockCounts = BTreeMap<(String, String), (u64, u64, u64)>;

/// The `lock-stats` build of the library: `DMASLAB_LOCK_LIB`, or where scripts/bench.sh
/// builds it (`target/lock-stats/release/libdmaslab.so`).
fn lock_lib() -> Option<PathBuf> {
    let p = std::env::var_os("DMASLAB_LOCK_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir().join("../lock-stats/release/libdmaslab.so"));
    p.exists().then_some(p)
}

/// One untimed run of each workload under each of [`OURS`] with the lock-stats library.
pub fn count_locks(workloads: &[&str], scale: f64, trace: Option<&Path>) -> LockCounts {
    let mut out = LockCounts::new();
    let Some(lib) = lock_lib() else {
        println!("\nSKIPPED: lock counts: no lock-stats build of libdmaslab.so (scripts/bench.sh builds it; or set DMASLAB_LOCK_LIB)");
        return out;
    };
    let allocs: Vec<Alloc> = dmaslab_allocs(&lib)
        .into_iter()
        .filter(|a| OURS.contains(&a.name.as_str()))
        .collect();
    eprintln!("dmaslab-bench: lock counts with {}", lib.display());
    for w in workloads {
        for a in &allocs {
            let t = if *w == "trace" { trace } else { None };
            for r in run_one(a, w, scale, t).map_or(vec![], |o| o.rows) {
                if let Some((acq, cont)) = r.locks {
                    out.insert((r.name, a.name.clone()), (r.calls, acq, cont));
                }
            }
        }
    }
    out
}

/// The median of `m[key]`, NaN if there is none.
fn med(key: (String, String), m: &mut BTreeMap<(String, String), Vec<f64>>) -> f64 {
    m.get_mut(&key).map_or(f64::NAN, |v| median(v))
}

fn geo(v: &[(f64, String)]) -> String {
    let l: Vec<f64> = v
        .iter()
        .map(|x| x.0.ln())
        .filter(|x| x.is_finite())
        .collect();
    format!(
        "**{:.2}**",
        (l.iter().sum::<f64>() / l.len().max(1) as f64).exp()
    )
}

fn worst(v: &[(f64, String)]) -> String {
    v.iter()
        .filter(|x| x.0.is_finite())
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or("-".into(), |(x, n)| format!("{x:.2} ({n})"))
}

/// The best-peer, lowest-RSS-peer and lock tables (see the module doc).
pub fn print(title: &str, allocs: &[Alloc], r: &mut Results, locks: &LockCounts) {
    let peers: Vec<&str> = allocs
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| !n.starts_with("dmaslab"))
        .collect();
    println!("\n### {title}: dmaslab / best peer, time (below 1.0: dmaslab faster)\n");
    println!("| workload | best peer | dmaslab-C / best | dmaslab-B / best |");
    println!("|---|---|---|---|");
    let mut ratios: [Vec<(f64, String)>; 2] = [vec![], vec![]];
    for (row, _) in r.rows.clone() {
        let best = peers
            .iter()
            .map(|p| (med((row.clone(), p.to_string()), &mut r.time), *p))
            .filter(|x| x.0.is_finite())
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((b, bp)) = best else { continue };
        let mut cells = Vec::new();
        for (i, o) in OURS.iter().enumerate() {
            let x = med((row.clone(), o.to_string()), &mut r.time) / b;
            ratios[i].push((x, row.clone()));
            cells.push(format!("{x:.2}"));
        }
        println!("| {row} | {bp} | {} |", cells.join(" | "));
    }
    println!(
        "| geometric mean | | {} | {} |",
        geo(&ratios[0]),
        geo(&ratios[1])
    );
    println!(
        "| worst | | {} | {} |",
        worst(&ratios[0]),
        worst(&ratios[1])
    );

    let mut workloads: Vec<String> = Vec::new();
    for (_, w) in &r.rows {
        if !workloads.contains(w) {
            workloads.push(w.clone());
        }
    }
    println!("\n### {title}: dmaslab / lowest peer, peak RSS (below 1.0: dmaslab smaller)\n");
    println!("| workload | lowest peer | KiB | dmaslab-C / lowest | dmaslab-B / lowest |");
    println!("|---|---|---|---|---|");
    let mut rss: [Vec<(f64, String)>; 2] = [vec![], vec![]];
    for w in &workloads {
        let low = peers
            .iter()
            .map(|p| (med((w.clone(), p.to_string()), &mut r.rss), *p))
            .filter(|x| x.0.is_finite())
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((l, lp)) = low else { continue };
        let mut cells = Vec::new();
        for (i, o) in OURS.iter().enumerate() {
            let x = med((w.clone(), o.to_string()), &mut r.rss) / l;
            rss[i].push((x, w.clone()));
            cells.push(format!("{x:.2}"));
        }
        println!("| {w} | {lp} | {l:.0} | {} |", cells.join(" | "));
    }
    println!("| worst | | | {} | {} |", worst(&rss[0]), worst(&rss[1]));

    if locks.is_empty() {
        return;
    }
    println!("\n### {title}: dmaslab lock calls per 1,000 allocator calls (lock-stats build, one run; contended in brackets)\n");
    println!("| workload | cross-thread | allocator calls | dmaslab-C | dmaslab-B |");
    println!("|---|---|---|---|---|");
    let mut worst_cross = [(0.0f64, String::new()), (0.0, String::new())];
    for (row, _) in &r.rows {
        let mut calls = 0;
        let mut cells = Vec::new();
        for (i, o) in OURS.iter().enumerate() {
            match locks.get(&(row.clone(), o.to_string())) {
                Some(&(c, a, k)) if c > 0 => {
                    calls = c;
                    let per = 1000.0 * a as f64 / c as f64;
                    if cross_thread(row) && per > worst_cross[i].0 {
                        worst_cross[i] = (per, row.clone());
                    }
                    cells.push(format!("{per:.2} ({:.2})", 1000.0 * k as f64 / c as f64));
                }
                _ => cells.push("-".into()),
            }
        }
        let ct = if cross_thread(row) { "yes" } else { "" };
        println!("| {row} | {ct} | {calls} | {} |", cells.join(" | "));
    }
    let w: Vec<String> = worst_cross
        .iter()
        .map(|(x, n)| format!("**{x:.2}** ({n})"))
        .collect();
    println!("| worst cross-thread row | | | {} |", w.join(" | "));
}
