//! `dmaslab trace record|replay`: record a live kernel's kmalloc/kmem_cache/DMA event stream,
//! and replay a recorded one under policies A (at each DMA line), B and C (dmaslab-trace).

use crate::CliError;
use dmaslab_core::DMA_MINALIGNS;
use dmaslab_trace::{analyse, parse, record, DEFAULT_MINALIGNS};
use dmaslab_trace::{REAL_STREAM as FIXTURE, REAL_STREAM_PATH as FIXTURE_NAME};
use std::io::Read as _;
use std::path::PathBuf;

/// Arguments of `dmaslab trace`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Record the kernel's kmem and DMA events to FILE (root; Linux tracefs), from a trace
    /// instance of its own with pointer hashing off, while COMMAND runs, for N seconds, or
    /// until Ctrl-C.
    Record {
        /// Where to write the trace.
        #[arg(short = 'o', value_name = "FILE", default_value = "dmaslab-trace.txt")]
        output: PathBuf,
        /// Stop after N seconds (with a COMMAND: at most N seconds).
        #[arg(long, value_name = "N")]
        seconds: Option<f64>,
        /// The command to run while recording.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Replay a recorded trace (kernel `trace`/`trace_pipe` text or `trace-cmd report`) under
    /// A at each DMA line, B and C: pages over time, peak, mean, final, who pays for A, DMA.
    Replay {
        /// The trace (`-` for stdin).
        #[arg(value_name = "FILE")]
        file: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also draw pages over time per policy as SVG to OUT.
        #[arg(long, value_name = "OUT")]
        svg: Option<PathBuf>,
        /// DMA lines to replay policy A at, comma-separated (32, 64, 128, 256).
        #[arg(long, value_name = "LIST", value_delimiter = ',', default_values_t = DEFAULT_MINALIGNS)]
        minalign: Vec<usize>,
    },
}

/// A path or name safe in a one-line message.
fn one_line(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

pub fn run(args: Args) -> Result<(), CliError> {
    match args.command {
        Sub::Record {
            output,
            seconds,
            command,
        } => run_record(output, seconds, command),
        Sub::Replay {
            file,
            json,
            svg,
            minalign,
        } => run_replay(&file, json, svg, minalign),
    }
}

fn run_replay(
    file: &str,
    json: bool,
    svg: Option<PathBuf>,
    mut minalign: Vec<usize>,
) -> Result<(), CliError> {
    if let Some(l) = minalign.iter().find(|l| !DMA_MINALIGNS.contains(l)) {
        return Err(CliError::input(format!(
            "--minalign: {l} is not one of 32, 64, 128, 256"
        )));
    }
    minalign.sort_unstable();
    minalign.dedup();
    let name = if file == "-" {
        "stdin".to_string()
    } else {
        one_line(file)
    };
    let bytes = if file == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| CliError::input(format!("cannot read stdin: {e}")))?;
        b
    } else {
        std::fs::read(file).map_err(|e| CliError::input(format!("cannot read {name}: {e}")))?
    };
    let text =
        dmaslab_trace::text_of(&bytes).map_err(|e| CliError::input(format!("{name}: {e}")))?;
    let trace = parse(&text).map_err(|e| CliError::input(format!("{name}: {e}")))?;
    let report = analyse(&trace, &minalign);
    // Everything is built before anything is written: nothing half-printed on failure.
    let out = if json {
        dmaslab_trace::json(&report)
    } else {
        format!(
            "dmaslab trace replay {name}\n{}",
            dmaslab_trace::text(&report)
        )
    };
    if let Some(path) = svg {
        let title = std::path::Path::new(file)
            .file_name()
            .map_or(name.clone(), |f| one_line(&f.to_string_lossy()));
        let chart = dmaslab_trace::svg(&report, &title)
            .map_err(|e| CliError::failure(format!("cannot draw the chart: {e}")))?;
        std::fs::write(&path, chart).map_err(|e| {
            CliError::failure(format!(
                "cannot write {}: {e}",
                one_line(&path.display().to_string())
            ))
        })?;
    }
    print!("{out}");
    Ok(())
}

fn run_record(output: PathBuf, seconds: Option<f64>, command: Vec<String>) -> Result<(), CliError> {
    if let Some(s) = seconds.filter(|s| !s.is_finite() || *s <= 0.0) {
        return Err(CliError::input(format!(
            "--seconds: {s} is not a positive number"
        )));
    }
    let opts = record::Options {
        output: output.clone(),
        seconds,
        command,
    };
    let outcome = record::record(&opts, &mut |w| eprintln!("dmaslab: warning: {w}")).map_err(
        |e| match e {
            record::Error::Setup(m) => CliError::input(m),
            record::Error::Failed(m) => CliError::failure(m),
        },
    )?;
    eprintln!(
        "dmaslab: recorded {:.1} s, {} bytes to {} (instance {} removed); lost events: {} (kernel counters), {} (notices in the stream){}",
        outcome.seconds,
        outcome.bytes,
        one_line(&output.display().to_string()),
        outcome.instance,
        outcome.lost_events,
        outcome.lost_in_stream,
        if outcome.interrupted { "; stopped by a signal" } else { "" }
    );
    match outcome.status {
        Some(s) if !s.success() => Err(CliError {
            code: s.code().map_or(1, |c| c.clamp(1, 255) as u8),
            message: format!("the command exited with {s}; the trace is complete"),
        }),
        _ => Ok(()),
    }
}

/// For `dmaslab report`: the committed real kernel stream under every policy, as text and JSON.
pub fn report_section() -> (String, serde_json::Value) {
    let heading = format!(
        "== real kernel stream: {FIXTURE_NAME} (Linux 6.18, filesystem + pipes + loopback TCP; details: `dmaslab trace replay`)\n"
    );
    match dmaslab_trace::text_of(FIXTURE)
        .map_err(|e| e.to_string())
        .and_then(|t| parse(&t).map_err(|e| e.to_string()))
    {
        Ok(trace) => {
            let r = analyse(&trace, &DEFAULT_MINALIGNS);
            let value = serde_json::to_value(&r).unwrap_or_default();
            (heading + &dmaslab_trace::text(&r), value)
        }
        Err(e) => (
            format!("{heading}cannot parse the fixture: {e}\n"),
            serde_json::json!({ "source": FIXTURE_NAME, "error": e }),
        ),
    }
}
