//! Every workload of the field's shapes at a tiny scale on the test's own allocator (glibc's
//! malloc through `Libc`): each must report its tag sums equal (every object came back intact
//! and was freed once) and a plausible call count; the sqlite3 script must print what its
//! generator computed. No timing is asserted.

use dmaslab_bench::shapes::{self, sqlite, SHAPES};
use dmaslab_bench::Libc;
use std::io::Write;
use std::process::Command;

#[test]
fn every_shape_checks_out_at_a_tiny_scale() {
    for name in SHAPES {
        let rows = shapes::run(&Libc, name, 0.01).unwrap_or_else(|| panic!("{name} unknown"));
        assert_eq!(rows.len(), 1, "{name}");
        let r = &rows[0];
        assert_eq!(r.name, name);
        let (read, written) = r.check.unwrap_or_else(|| panic!("{name}: no check"));
        assert_eq!(
            read, written,
            "{name}: tags read back differ from those written"
        );
        assert_ne!(written, 0, "{name}: nothing tagged");
        assert!(r.calls >= 2, "{name}: {} calls", r.calls);
        assert!(r.ops > 0, "{name}");
    }
}

#[test]
fn unknown_shapes_are_refused() {
    assert!(shapes::run(&Libc, "sh6-xt", 0.01).is_none());
    assert!(shapes::run(&Libc, "nope", 0.01).is_none());
}

#[test]
fn sqlite3_prints_what_the_generator_computed() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED: sqlite3 smoke test: no sqlite3 program (scripts/bench-setup.sh installs it)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("dmaslab-sqlite-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let script = dir.join("s.sql");
    let s = sqlite::generate(&script, 3000).unwrap_or_else(|e| panic!("generate: {e}"));
    let out = Command::new("sqlite3")
        .arg(dir.join("t.db"))
        .arg(format!(".read {}", script.display()))
        .output()
        .unwrap_or_else(|e| panic!("sqlite3: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), s.expected);
    // The script's queries printed rows beyond the journal mode: totals, 10 regions, 10
    // digits, the totals after the changes, the indexed count.
    assert_eq!(s.expected.lines().count(), 1 + 1 + 10 + 10 + 1 + 1);
}
