//! `dmaslab run`: runs a command with `libdmaslab.so` preloaded and prints its exit status, wall
//! time, peak RSS and the slabinfo table it left; `--compare` runs it once per policy.
//!
//! The library is `$DMASLAB_LIB`, else `libdmaslab.so` next to the `dmaslab` binary (both live
//! in `target/release/`). Statistics come back through `DMASLAB_STATS=<dir>/slabinfo.%p`; the
//! command's own table is the file of its pid (children that `exit()` leave their own files;
//! ones that leave with `_exit()` leave none). Peak RSS is the command's own `ru_maxrss` from
//! `wait4`. `dmaslab run` exits with the command's status (128 + the signal number when a signal
//! ended it, as shells do).

use crate::CliError;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Arguments of `dmaslab run`.
#[derive(clap::Args)]
pub struct Args {
    /// DMA alignment policy of the heap (default C). With `--compare`, the policies to compare,
    /// comma-separated, at least two (default A,B,C).
    #[arg(long, value_parser = ["A", "B", "C"], value_delimiter = ',')]
    policy: Vec<String>,
    /// DMA cache line in bytes (default 64).
    #[arg(long = "dma-minalign", value_parser = ["32", "64", "128", "256"])]
    dma_minalign: Option<String>,
    /// Run the command once per policy (or per `--policy` listed) and print pages held and
    /// peak RSS side by side.
    #[arg(long)]
    compare: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, num_args = 1..)]
    cmd: Vec<OsString>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The policy letter.
    pub policy: String,
    /// Exit code, or `None` if killed by a signal.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Wall time.
    pub wall: Duration,
    /// Peak resident set size, KiB.
    pub peak_rss_kib: u64,
    /// The command's own slabinfo table, if it left one.
    pub table: Option<String>,
    /// Fields of the table's `# dmaslab-totals` line.
    pub totals: Vec<(String, u64)>,
    /// Tables left by child processes.
    pub child_tables: usize,
}

impl Measured {
    fn total(&self, key: &str) -> Option<u64> {
        self.totals.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
    /// Pages the heap held from the OS at exit (segments, huge runs, map tables).
    pub fn pages_held(&self) -> Option<u64> {
        self.total("pages_held")
    }
    fn status_text(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("signal {s}"),
            _ => "?".into(),
        }
    }
    /// The status a shell would give the command: its exit code, or 128 + the signal number.
    pub fn shell_status(&self) -> u8 {
        match (self.code, self.signal) {
            (Some(c), _) => c as u8,
            (None, Some(s)) => 128u8.wrapping_add(s as u8),
            _ => 1,
        }
    }
    /// `Err` carrying the command's own status when it did not exit 0.
    fn as_result(&self, context: &str) -> Result<(), CliError> {
        match self.shell_status() {
            0 => Ok(()),
            code => Err(CliError {
                code,
                message: match self.signal {
                    Some(s) => format!("the command {context}was killed by signal {s}"),
                    None => format!("the command {context}exited with status {code}"),
                },
            }),
        }
    }
}

/// `libdmaslab.so`: `$DMASLAB_LIB`, else next to this executable.
pub fn find_lib() -> Result<PathBuf, CliError> {
    if let Some(p) = std::env::var_os("DMASLAB_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(CliError::failure(format!(
                "DMASLAB_LIB={} is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure(format!("cannot locate the dmaslab binary: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    // Test binaries live in target/<profile>/deps; the library one level up.
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let p = d.join("libdmaslab.so");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(CliError::failure(format!(
        "libdmaslab.so not found next to {} (build it with `cargo build --release`, or set DMASLAB_LIB)",
        exe.display()
    )))
}

fn scratch_dir() -> Result<PathBuf, CliError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "dmaslab-run-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", d.display())))?;
    Ok(d)
}

fn parse_totals(table: &str) -> Vec<(String, u64)> {
    table
        .lines()
        .find_map(|l| l.strip_prefix("# dmaslab-totals "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `cmd` preloaded with `lib` under `policy`; `quiet` discards its stdout.
pub fn run_once(
    lib: &Path,
    policy: &str,
    minalign: Option<&str>,
    cmd: &[OsString],
    quiet: bool,
) -> Result<Measured, CliError> {
    let dir = scratch_dir()?;
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .env("LD_PRELOAD", lib)
        .env("DMASLAB_POLICY", policy)
        .env("DMASLAB_STATS", dir.join("slabinfo.%p"));
    match minalign {
        Some(l) => c.env("DMASLAB_DMA_MINALIGN", l),
        None => c.env_remove("DMASLAB_DMA_MINALIGN"),
    };
    if quiet {
        c.stdout(std::process::Stdio::null());
    }
    let start = Instant::now();
    let child = c
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot run {}: {e}", cmd[0].to_string_lossy())))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: `pid` is our unwaited child; `status` and `ru` are valid out-parameters.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    let wall = start.elapsed();
    drop(child); // already reaped by wait4
    if r < 0 {
        return Err(CliError::failure(format!(
            "wait4: {}",
            std::io::Error::last_os_error()
        )));
    }
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let own = dir.join(format!("slabinfo.{pid}"));
    let table = std::fs::read_to_string(&own).ok();
    let child_tables = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).count())
        .unwrap_or(0)
        .saturating_sub(usize::from(table.is_some()));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        policy: policy.to_string(),
        code,
        signal,
        wall,
        peak_rss_kib: ru.ru_maxrss.max(0) as u64,
        totals: table.as_deref().map(parse_totals).unwrap_or_default(),
        table,
        child_tables,
    })
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The side-by-side table of `--compare` (and the report section).
pub fn compare_text(runs: &[Measured]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<7} {:>6} {:>9} {:>11} {:>11} {:>12} {:>14}",
        "policy", "exit", "wall s", "pages held", "slab pages", "large pages", "peak RSS KiB"
    );
    for m in runs {
        let _ = writeln!(
            t,
            "{:<7} {:>6} {:>9.3} {:>11} {:>11} {:>12} {:>14}",
            m.policy,
            m.status_text(),
            m.wall.as_secs_f64(),
            opt(m.pages_held()),
            opt(m.total("slab_pages")),
            opt(m.total("large_pages")),
            m.peak_rss_kib
        );
    }
    let a = runs.iter().find(|m| m.policy == "A");
    let c = runs.iter().find(|m| m.policy == "C");
    if let (Some(a), Some(c)) = (a, c) {
        let pct = |x: i64, base: u64| {
            if base == 0 {
                0.0
            } else {
                x as f64 * 100.0 / base as f64
            }
        };
        if let (Some(pa), Some(pc)) = (a.pages_held(), c.pages_held()) {
            let d = pa as i64 - pc as i64;
            let _ = writeln!(
                t,
                "A vs C: {d:+} pages held ({:+.1}%, {:+} KiB)",
                pct(d, pc),
                d * 4
            );
        }
        let d = a.peak_rss_kib as i64 - c.peak_rss_kib as i64;
        let _ = writeln!(
            t,
            "A vs C: {d:+} KiB peak RSS ({:+.1}%)",
            pct(d, c.peak_rss_kib)
        );
    }
    t
}

fn json_of(m: &Measured) -> Value {
    json!({
        "policy": m.policy,
        "exit": m.code,
        "signal": m.signal,
        "wall_s": m.wall.as_secs_f64(),
        "peak_rss_kib": m.peak_rss_kib,
        "pages_held": m.pages_held(),
        "slab_pages": m.total("slab_pages"),
        "large_pages": m.total("large_pages"),
    })
}

/// `dmaslab run`.
pub fn run(args: Args) -> Result<(), CliError> {
    let lib = find_lib()?;
    let minalign = args.dma_minalign.as_deref();
    let shown = args
        .cmd
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if args.compare {
        let mut policies: Vec<&str> = match args.policy.is_empty() {
            true => vec!["A", "B", "C"],
            false => args.policy.iter().map(String::as_str).collect(),
        };
        policies.sort_unstable();
        policies.dedup();
        if policies.len() < 2 {
            return Err(CliError::input(
                "--compare --policy: name two or more policies to compare (e.g. --policy A,C), \
                 or drop --compare to run under one",
            ));
        }
        let mut runs = Vec::new();
        for p in &policies {
            runs.push(run_once(&lib, p, minalign, &args.cmd, false)?);
        }
        println!(
            "== {shown}\n   under {} with policies {} (DMA line {})",
            lib.display(),
            policies.join(", "),
            minalign.unwrap_or("64")
        );
        print!("{}", compare_text(&runs));
        // The first failure's status, as if the command had run alone.
        return match runs.iter().find(|m| m.shell_status() != 0) {
            Some(m) => m.as_result(&format!("under policy {} ", m.policy)),
            None => Ok(()),
        };
    }
    let policy = match args.policy.as_slice() {
        [] => "C",
        [p] => p.as_str(),
        _ => {
            return Err(CliError::input(
                "--policy: one policy without --compare (several are for --compare)",
            ))
        }
    };
    let m = run_once(&lib, policy, minalign, &args.cmd, false)?;
    println!("== {shown}");
    println!(
        "policy {policy}, DMA line {}, library {}",
        minalign.unwrap_or("64"),
        lib.display()
    );
    println!("exit status: {}", m.status_text());
    println!("wall time: {:.3} s", m.wall.as_secs_f64());
    println!("peak RSS: {} KiB", m.peak_rss_kib);
    match &m.table {
        Some(t) => {
            println!(
                "pages held: {} (slab {}, large {}, huge {})",
                opt(m.pages_held()),
                opt(m.total("slab_pages")),
                opt(m.total("large_pages")),
                opt(m.total("huge_pages"))
            );
            print!("{t}");
        }
        None => println!(
            "no slabinfo table: the command did not reach exit() (it used _exit, exec'd a \
             static binary, or was killed)"
        ),
    }
    if m.child_tables > 0 {
        println!("({} more tables from child processes)", m.child_tables);
    }
    m.as_result("")
}

/// The python workload of the report: fixed dicts, lists, strings, json and sqlite3.
pub const PY_WORKLOAD: &str = "import json, sqlite3\n\
d = {('k%d' % i): [i, str(i) * (i % 7), {'n': i}] for i in range(50000)}\n\
js = json.dumps(d, sort_keys=True)\n\
assert json.loads(js) == d\n\
db = sqlite3.connect(':memory:')\n\
db.execute('create table t (k text primary key, v integer, s text)')\n\
db.executemany('insert into t values (?, ?, ?)', ((k, v[0], v[1]) for k, v in d.items()))\n\
print(db.execute('select count(*), sum(v) from t').fetchone(), len(js))\n";

/// For `dmaslab report`: the fixed python3 workload under each policy, as text and JSON;
/// `None` when `python3` or `libdmaslab.so` is not there.
pub fn report_section() -> Option<(String, Value)> {
    let lib = find_lib().ok()?;
    let has_python = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_python {
        return None;
    }
    let cmd: Vec<OsString> = vec!["python3".into(), "-c".into(), PY_WORKLOAD.into()];
    let mut runs = Vec::new();
    for p in ["A", "B", "C"] {
        runs.push(run_once(&lib, p, None, &cmd, true).ok()?);
    }
    let text = format!(
        "== A real program under LD_PRELOAD: python3 (dicts, json, sqlite3; `dmaslab run --compare`)\n{}",
        compare_text(&runs)
    );
    let json = json!({
        "command": "python3 -c <dicts, json, sqlite3 workload>",
        "runs": runs.iter().map(json_of).collect::<Vec<_>>(),
    });
    Some((text, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_totals_line() {
        let t = "slabinfo - version: 2.1\n# dmaslab-totals pid=7 policy=C dma_minalign=64 pages_held=12 slab_pages=3\n";
        let v = parse_totals(t);
        assert!(v.contains(&("pages_held".into(), 12)));
        assert!(v.contains(&("slab_pages".into(), 3)));
        assert!(!v.iter().any(|(k, _)| k == "policy"));
    }
}
