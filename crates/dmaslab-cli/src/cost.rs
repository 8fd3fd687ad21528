//! `dmaslab cost [FILE]`: what policy A (every kmalloc buffer DMA-safe) would cost on the machine
//! a `/proc/slabinfo` comes from. The analysis is `dmaslab-cost`'s; this module reads the input,
//! checks the flags and prints all of the output or none of it: the summary and, per scenario,
//! the caches whose pages change (`--all`: every kmalloc cache). An input without kmalloc caches
//! is an error (exit 2).

use crate::CliError;
use dmaslab_cost::cost::{analyse, valid_minalign, Analysis, DEFAULT_MINALIGNS};
use dmaslab_cost::render::{self, Rows};
use dmaslab_cost::{slabinfo, SEED_PAGE_SIZE, SEED_SLABINFO};
use std::io::Read as _;
use std::path::PathBuf;

const PROC_SLABINFO: &str = "/proc/slabinfo";

#[derive(clap::Args)]
pub struct Args {
    /// slabinfo 2.1 text to analyse (`-` for stdin). Default: /proc/slabinfo when readable,
    /// otherwise the seed's five lines.
    #[arg(value_name = "FILE", conflicts_with = "seed")]
    file: Option<String>,
    /// Analyse the five /proc/slabinfo lines quoted in the seed message.
    #[arg(long)]
    seed: bool,
    /// kmalloc minimum alignments to cost, comma-separated powers of two from 8 to 256.
    #[arg(long, value_name = "M,...", value_delimiter = ',', default_values_t = DEFAULT_MINALIGNS)]
    minalign: Vec<u64>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// List every kmalloc cache under each scenario, not only the ones whose pages change.
    #[arg(long)]
    all: bool,
    /// Also write a chart of extra memory against M, both bases, as SVG to this file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Bytes per page in the input. Default: this machine's for /proc/slabinfo, else 4096.
    #[arg(long, value_name = "BYTES")]
    page_size: Option<u64>,
}

/// This machine's page size, from the kernel's own account of our first mapping; 4096 if unknown.
fn machine_page_size() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    smaps
        .lines()
        .find_map(|l| l.strip_prefix("KernelPageSize:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(4096, |kb| kb * 1024)
}

/// A name safe to put in a one-line message.
fn one_line(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

/// The input text, its source name and its default page size.
fn read_input(args: &Args) -> Result<(String, String, u64), CliError> {
    let bytes_to_text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    match args.file.as_deref() {
        _ if args.seed => Ok((SEED_SLABINFO.to_string(), "seed".into(), SEED_PAGE_SIZE)),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CliError::input(format!("cannot read stdin: {e}")))?;
            Ok((bytes_to_text(buf), "stdin".into(), 4096))
        }
        Some(path) => {
            let name = one_line(path);
            let text = std::fs::read(path)
                .map_err(|e| CliError::input(format!("cannot read {name}: {e}")))?;
            let page = if path == PROC_SLABINFO {
                machine_page_size()
            } else {
                4096
            };
            Ok((bytes_to_text(text), name, page))
        }
        None => match std::fs::read(PROC_SLABINFO) {
            Ok(text) => Ok((
                bytes_to_text(text),
                PROC_SLABINFO.into(),
                machine_page_size(),
            )),
            Err(e) => {
                eprintln!(
                    "dmaslab: cannot read {PROC_SLABINFO} ({e}); using the seed's five lines"
                );
                Ok((SEED_SLABINFO.to_string(), "seed".into(), SEED_PAGE_SIZE))
            }
        },
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    if let Some(&m) = args.minalign.iter().find(|&&m| !valid_minalign(m)) {
        return Err(CliError::input(format!(
            "--minalign: {m} is not a power of two from 8 to 256"
        )));
    }
    if let Some(p) = args.page_size.filter(|p| !p.is_power_of_two() || *p < 4096) {
        return Err(CliError::input(format!(
            "--page-size: {p} is not a power of two of at least 4096"
        )));
    }
    let (text, source, default_page) = read_input(&args)?;
    let info = slabinfo::parse(&text).map_err(|e| CliError::input(format!("{source}: {e}")))?;
    let mut minaligns = args.minalign.clone();
    minaligns.sort_unstable();
    minaligns.dedup();
    let analysis = analyse(
        &info,
        &source,
        args.page_size.unwrap_or(default_page),
        &minaligns,
    );

    // Nothing to cost is bad input: costing a file without kmalloc caches is a mistake (a wrong
    // file, a truncated copy), not a result of zero.
    if let Some(reason) = render::nothing_to_cost(&analysis) {
        return Err(CliError::input(reason));
    }

    // Build everything before writing anything: on failure nothing is half-printed.
    let rows = if args.all { Rows::All } else { Rows::Changed };
    let out = if args.json {
        render::json(&analysis)
    } else {
        render::text_with(&analysis, rows)
    };
    if let Some(path) = &args.svg {
        let svg = render::svg(&analysis)
            .map_err(|e| CliError::failure(format!("cannot draw the chart: {e}")))?;
        std::fs::write(path, svg).map_err(|e| {
            CliError::failure(format!(
                "cannot write {}: {e}",
                one_line(&path.display().to_string())
            ))
        })?;
    }
    print!("{out}");
    Ok(())
}

/// Drops the per-cache lists, which are long on a real machine, from an analysis's JSON.
fn summary_json(a: &Analysis) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Some(scenarios) = v.get_mut("scenarios").and_then(|s| s.as_array_mut()) {
        for s in scenarios.iter_mut().filter_map(|s| s.as_object_mut()) {
            s.remove("caches");
        }
    }
    v
}

/// For `dmaslab report`: the cost of policy A on this machine's /proc/slabinfo (default M and both
/// bases), as text and JSON; `None` when /proc/slabinfo is not readable.
pub fn report_section() -> Option<(String, serde_json::Value)> {
    let text = std::fs::read(PROC_SLABINFO).ok()?;
    let text = String::from_utf8_lossy(&text);
    let heading =
        format!("Cost of policy A on this machine ({PROC_SLABINFO}; details: `dmaslab cost`)\n");
    match slabinfo::parse(&text) {
        Ok(info) => {
            let a = analyse(
                &info,
                PROC_SLABINFO,
                machine_page_size(),
                &DEFAULT_MINALIGNS,
            );
            Some((heading + &render::summary_text(&a), summary_json(&a)))
        }
        Err(e) => {
            let msg = format!("{PROC_SLABINFO}: {e}");
            Some((
                format!("{heading}cannot analyse {msg}\n"),
                serde_json::json!({ "source": PROC_SLABINFO, "error": msg }),
            ))
        }
    }
}
