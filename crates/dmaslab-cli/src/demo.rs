//! `dmaslab demo`: the seed's `kmalloc(4)` example, executed on the cache model under policy B
//! (direct kmalloc mapping, and the DMA interface), policy A, policy C and a coherent device,
//! in both corruption directions.

use crate::CliError;
use dmaslab_dma::scenario::demo::{self, Outcome, LINE};
use dmaslab_dma::{Finding, Party};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Write as _;

/// Options of `dmaslab demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Print `{"scenarios": [...]}` as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs the demo and prints the table (or JSON).
pub fn run(args: Args) -> Result<(), CliError> {
    let outcomes = outcomes()?;
    let text = if args.json {
        let v = json!({ "scenarios": outcomes.iter().map(scenario_json).collect::<Vec<_>>() });
        let mut t =
            serde_json::to_string_pretty(&v).map_err(|e| CliError::failure(e.to_string()))?;
        t.push('\n');
        t
    } else {
        table(&outcomes)
    };
    // A closed pipe (`dmaslab demo | head`) is not an error worth a panic.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(CliError::failure(format!("stdout: {e}")))
        }
        _ => {}
    }
    Ok(())
}

/// The DMA section of `dmaslab report`: a short text and its JSON, from the same run as the demo.
// Called by report.rs; allowed until that call lands so the binary builds warning-free meanwhile.
pub fn report_section() -> (String, Value) {
    let outcomes = match outcomes() {
        Ok(o) => o,
        Err(e) => {
            return (
                format!("DMA: demo failed: {}\n", e.message),
                json!({ "error": e.message }),
            )
        }
    };
    let corrupted: Vec<String> = outcomes
        .iter()
        .filter(|o| o.corrupted)
        .map(|o| o.name())
        .collect();
    let safe: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.corrupted)
        .map(|o| o.name())
        .collect();
    let findings: usize = outcomes.iter().map(|o| o.findings.len()).sum();
    let bounced = outcomes.iter().filter(|o| o.bounced).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "DMA ({} scenarios of the seed's kmalloc(4) example, non-coherent device, {LINE}-byte lines; `dmaslab demo`):",
        outcomes.len()
    );
    let _ = writeln!(s, "  corrupted: {}", list(&corrupted));
    let _ = writeln!(s, "  correct:   {}", list(&safe));
    let _ = writeln!(
        s,
        "  bounced mappings: {bounced}; checker findings: {findings} (all kind (a), all in the corrupted runs)"
    );
    let v = json!({
        "scenarios": outcomes.iter().map(scenario_json).collect::<Vec<_>>(),
        "corrupted": corrupted,
        "correct": safe,
    });
    (s, v)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn outcomes() -> Result<Vec<Outcome>, CliError> {
    demo::run_all().map_err(|e| CliError::failure(format!("demo: {e}")))
}

fn party_json(p: &Party) -> Value {
    json!({
        "role": p.role.to_string(),
        "addr": format!("{:#x}", p.addr),
        "size": p.size,
        "line": format!("{:#x}", p.line),
    })
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "kind": f.kind.letter().to_string(),
        "name": f.kind.name(),
        "subject": party_json(&f.subject),
        "other": f.other.as_ref().map(party_json),
        "line": format!("{:#x}", f.line),
        "site": format!("{}:{}", f.site.file(), f.site.line()),
        "message": f.to_string(),
    })
}

fn scenario_json(o: &Outcome) -> Value {
    json!({
        "name": o.name(),
        "policy": o.policy.name(),
        "coherent": o.coherent,
        "corrupted": o.corrupted,
        "value_expected": o.value_expected,
        "value_read": o.value_read,
        "neighbour_intact": o.neighbour_intact,
        "bounced": o.bounced,
        "findings": o.findings.iter().map(finding_json).collect::<Vec<_>>(),
    })
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "The seed's example on a non-coherent device with {LINE}-byte DMA lines:\n\
         \n    blocks = kmalloc(4); sg_init_one(&sg, blocks, 4); /* device writes 4 bytes */ result = ntohl(*blocks);\n\
         \nwhile the CPU writes a neighbouring kmalloc(4) object during the transfer.\n\
         \x20 stale-writeback:      CPU dirties the neighbour's line, device writes, the line is evicted\n\
         \x20 lost-neighbour-write: device writes, CPU dirties the neighbour's line, unmap invalidates it\n"
    );
    let _ = writeln!(
        s,
        "{:<38} {:<6} {:<8} {:<7} {:<10} {:<10} {:<9} result",
        "scenario", "policy", "coherent", "bounced", "expected", "read", "neighbour"
    );
    for o in outcomes {
        let _ = writeln!(
            s,
            "{:<38} {:<6} {:<8} {:<7} {:<10} {:<10} {:<9} {}",
            o.name(),
            o.policy.name(),
            yes(o.coherent),
            yes(o.bounced),
            format!("{:#010x}", o.value_expected),
            format!("{:#010x}", o.value_read),
            if o.neighbour_intact { "intact" } else { "LOST" },
            if o.corrupted { "CORRUPTED" } else { "ok" }
        );
    }
    let _ = writeln!(
        s,
        "\nChecker findings (addresses relative to the start of RAM):"
    );
    let mut any = false;
    for o in outcomes {
        for f in &o.findings {
            any = true;
            let _ = writeln!(s, "  {}: {f}", o.name());
        }
    }
    if !any {
        let _ = writeln!(s, "  none");
    }
    s
}
