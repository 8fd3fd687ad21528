//! `dmaslab report`: the seed's workload under each policy, and what policy A costs.

use crate::CliError;
use dmaslab_core::seed::{allocate_seed_workload, seed_objects};
use dmaslab_core::{ArenaPageSource, Config, Kmalloc, Policy, SlabInfo};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write;
use std::mem::MaybeUninit;

/// Arguments of `dmaslab report`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// One policy's run of the seed workload.
#[derive(Serialize)]
struct Run {
    policy: String,
    kmalloc_minalign: usize,
    dma_minalign: usize,
    /// Pages held by the kmalloc caches.
    total_pages: usize,
    bytes_requested: u64,
    bytes_handed_out: u64,
    caches: Vec<CacheRow>,
}

#[derive(Serialize)]
struct CacheRow {
    name: String,
    active_objs: usize,
    num_objs: usize,
    objsize: usize,
    objperslab: usize,
    pagesperslab: usize,
    active_slabs: usize,
    num_slabs: usize,
}

impl From<&SlabInfo> for CacheRow {
    fn from(i: &SlabInfo) -> Self {
        CacheRow {
            name: i.name.as_str().to_string(),
            active_objs: i.active_objs,
            num_objs: i.num_objs,
            objsize: i.objsize,
            objperslab: i.objperslab,
            pagesperslab: i.pagesperslab,
            active_slabs: i.active_slabs,
            num_slabs: i.num_slabs,
        }
    }
}

/// The policies the report compares, in order.
const RUNS: [(Policy, usize); 4] = [
    (Policy::A, 64),
    (Policy::A, 128),
    (Policy::B, 64),
    (Policy::C, 64),
];

/// Arena size for one run: the seed workload needs about 12 MiB under A with 128-byte lines.
const ARENA_BYTES: usize = 64 << 20;

fn run_policy(policy: Policy, line: usize) -> Result<(Run, String), CliError> {
    let mut mem: Vec<MaybeUninit<u8>> = Vec::with_capacity(ARENA_BYTES);
    // SAFETY: MaybeUninit<u8> needs no initialisation.
    unsafe { mem.set_len(ARENA_BYTES) };
    let arena =
        ArenaPageSource::new(&mut mem).map_err(|e| CliError::failure(format!("arena: {e:?}")))?;
    let k = Kmalloc::new(arena, Config::new(policy).dma_minalign(line))
        .map_err(|e| CliError::failure(format!("allocator: {e}")))?;
    let done = allocate_seed_workload(&k);
    if done != seed_objects() {
        return Err(CliError::failure(format!(
            "policy {policy}: the arena ran out after {done} of {} objects",
            seed_objects()
        )));
    }
    let mut caches = Vec::new();
    let mut table = String::new();
    dmaslab_core::write_slabinfo_header(&mut table).expect("write to String");
    let mut total_pages = 0;
    k.for_each_cache(|id, info| {
        if k.is_kmalloc(id) {
            total_pages += info.pages();
            info.write_row(&mut table).expect("write to String");
            caches.push(CacheRow::from(info));
        }
    });
    let t = k.totals();
    let run = Run {
        policy: policy.name().to_string(),
        kmalloc_minalign: k.kmalloc_minalign(),
        dma_minalign: line,
        total_pages,
        bytes_requested: t.bytes_requested,
        bytes_handed_out: t.bytes_handed_out,
        caches,
    };
    Ok((run, table))
}

fn mib(pages: usize) -> f64 {
    pages as f64 * 4096.0 / (1 << 20) as f64
}

/// Runs the report.
pub fn run(args: Args) -> Result<(), CliError> {
    let mut runs = Vec::new();
    let mut text = String::new();
    writeln!(
        text,
        "dmaslab report: the seed's active objects ({} objects: 17141 x 8, 26844 x 16, 80325 x 32, 54406 x 64, 11527 x 96 bytes)\nallocated in a fresh allocator on a 64 MiB arena, under each policy.\n",
        seed_objects()
    )
    .unwrap();
    for (policy, line) in RUNS {
        let (r, table) = run_policy(policy, line)?;
        let _ = writeln!(
            text,
            "== policy {} (kmalloc minalign {}, DMA line {})",
            r.policy, r.kmalloc_minalign, r.dma_minalign
        );
        for l in table.lines() {
            let used = l.starts_with("slabinfo") || l.starts_with('#') || {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(2).is_some_and(|n| *n != "0")
            };
            if used {
                let _ = writeln!(text, "{l}");
            }
        }
        let _ = writeln!(
            text,
            "total: {} pages ({:.2} MiB); bytes requested {} / handed out {} ({:.1}% overhead)\n",
            r.total_pages,
            mib(r.total_pages),
            r.bytes_requested,
            r.bytes_handed_out,
            (r.bytes_handed_out as f64 / r.bytes_requested.max(1) as f64 - 1.0) * 100.0
        );
        runs.push(r);
    }
    let b = runs
        .iter()
        .find(|r| r.policy == "B")
        .map(|r| r.total_pages)
        .unwrap_or(0);
    let mut summary = Vec::new();
    let _ = writeln!(
        text,
        "== what policy A costs against B ({b} pages, {:.2} MiB)",
        mib(b)
    );
    for r in runs.iter().filter(|r| r.policy == "A") {
        let extra = r.total_pages as i64 - b as i64;
        let pct = extra as f64 * 100.0 / b.max(1) as f64;
        let _ = writeln!(
            text,
            "A with {}-byte lines: {} pages, {extra:+} pages ({:+.2} MiB, {pct:+.1}%)",
            r.dma_minalign,
            r.total_pages,
            extra as f64 * 4096.0 / (1 << 20) as f64
        );
        summary.push(json!({"dma_minalign": r.dma_minalign, "pages": r.total_pages, "extra_pages": extra, "extra_bytes": extra * 4096}));
    }
    let c = runs
        .iter()
        .find(|r| r.policy == "C")
        .map(|r| r.total_pages)
        .unwrap_or(0);
    let _ = writeln!(text, "C holds {c} pages: compact like B; its DMA safety comes from bouncing (see the DMA section).");
    let mut out: Value = json!({
        "workload": "seed-active",
        "page_size": 4096,
        "runs": runs,
        "a_cost_vs_b": summary,
    });
    let (t, j) = crate::demo::report_section();
    let _ = write!(text, "\n{t}");
    out["dma"] = j;
    match crate::run::report_section() {
        Some((t, j)) => {
            let _ = write!(text, "\n{t}");
            out["real_program"] = j;
        }
        None => {
            let _ = writeln!(
                text,
                "\n== real program: python3 or libdmaslab.so not found; skipped"
            );
        }
    }
    let (t, j) = crate::trace::report_section();
    let _ = write!(text, "\n{t}");
    out["real_kernel_stream"] = j;
    match crate::cost::report_section() {
        Some((t, j)) => {
            let _ = write!(text, "\n{t}");
            out["cost"] = j;
        }
        None => {
            let _ = writeln!(
                text,
                "\n== cost of A on this machine: /proc/slabinfo is not readable here"
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON of plain data")
        );
    } else {
        print!("{text}");
    }
    Ok(())
}
