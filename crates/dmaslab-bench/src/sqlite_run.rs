//! The `sqlite3` row: the real `sqlite3` program (Debian's package; scripts/bench-setup.sh
//! installs it) runs `.read` of the script of `dmaslab_bench::shapes::sqlite` on a fresh
//! database file, under each allocator. Its time is the child's wall time (process start
//! included) per order row; its output must be what the script's generator computed.

use crate::{dmaslab_pages, run_child, Alloc, Outcome, RowOut};
use dmaslab_bench::shapes::sqlite::{generate, Script};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The workload (and row) name.
pub const WORKLOAD: &str = "sqlite3";

/// The generated script: its path and what it prints.
static SCRIPT: OnceLock<Option<(PathBuf, Script)>> = OnceLock::new();

fn temp(ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dmaslab-bench-{}.{ext}", std::process::id()))
}

/// Writes the script for `rows` order rows; false (with a `SKIPPED:` line) if `sqlite3` is
/// missing or the script cannot be written.
pub fn prepare(rows: usize) -> bool {
    SCRIPT
        .get_or_init(|| {
            if Command::new("sqlite3").arg("-version").output().is_err() {
                println!(
                    "SKIPPED: sqlite3 row: no sqlite3 program (scripts/bench-setup.sh installs it)"
                );
                return None;
            }
            let path = temp("sql");
            match generate(&path, rows) {
                Ok(s) => {
                    eprintln!("dmaslab-bench: {} ({rows} order rows)", path.display());
                    Some((path, s))
                }
                Err(e) => {
                    println!("SKIPPED: sqlite3 row: cannot write {}: {e}", path.display());
                    None
                }
            }
        })
        .is_some()
}

/// Removes the script (at the end of a section).
pub fn cleanup() {
    if let Some(Some((p, _))) = SCRIPT.get() {
        let _ = std::fs::remove_file(p);
    }
}

/// One run under `a`; `None` (and a message) if it failed or printed something else.
pub fn run(a: &Alloc) -> Option<Outcome> {
    let (script, s) = SCRIPT.get()?.as_ref()?;
    let db = temp("db");
    let stats = temp("sqlite-stats");
    let _ = std::fs::remove_file(&db);
    let mut cmd = Command::new("sqlite3");
    cmd.arg(&db).arg(format!(".read {}", script.display()));
    if let Some(p) = &a.preload {
        cmd.env("LD_PRELOAD", p);
    }
    for (k, v) in &a.env {
        cmd.env(k, v);
    }
    if a.dmaslab {
        cmd.env("DMASLAB_STATS", &stats);
    }
    let t = Instant::now();
    let out = run_child(cmd);
    let nanos = t.elapsed().as_nanos() as f64;
    let _ = std::fs::remove_file(&db);
    let (text, maxrss_kib) = out?;
    if text != s.expected {
        eprintln!(
            "dmaslab-bench: sqlite3 under {} printed\n{text}instead of\n{}",
            a.name, s.expected
        );
        return None;
    }
    Some(Outcome {
        rows: vec![RowOut {
            name: WORKLOAD.into(),
            ns: nanos / s.rows as f64,
            calls: 0,
            locks: None,
        }],
        maxrss_kib,
        pages: dmaslab_pages(&stats),
    })
}
