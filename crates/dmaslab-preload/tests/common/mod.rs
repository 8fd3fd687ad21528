//! Helpers for the preload tests: find `libdmaslab.so`, make scratch directories, run commands
//! with and without the library, compile small C programs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const POLICIES: [&str; 3] = ["A", "B", "C"];

/// `libdmaslab.so`: `$DMASLAB_LIB`, else `$CARGO_TARGET_DIR/release`, else the workspace's
/// `target/release`. Panics (fails the test) when it is missing: build it first.
pub fn lib_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = if let Some(p) = std::env::var_os("DMASLAB_LIB") {
        PathBuf::from(p)
    } else {
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
            Some(t) => root.join(t),
            None => root.join("target"),
        };
        target.join("release/libdmaslab.so")
    };
    assert!(
        candidate.is_file(),
        "{} is missing: run `cargo build --release -p dmaslab-preload` (or the whole workspace) \
         before these tests, or point DMASLAB_LIB at the library",
        candidate.display()
    );
    candidate.canonicalize().expect("canonical library path")
}

/// A fresh scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "dmaslab-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails the test if `tool` is not on PATH (CI installs it: scripts/ci.d/15-packages.sh).
pub fn require(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`{tool}` is not installed; scripts/ci.d/15-packages.sh installs it"
    );
}

/// Runs `cmd` without the library (policy `None`) or preloaded with `policy`; statistics go to
/// `stats` (with `%p`) when given.
pub fn run(mut cmd: Command, policy: Option<&str>, stats: Option<&Path>) -> Output {
    // Settings from the test's own environment must not leak in; ones the caller set stay.
    for var in [
        "LD_PRELOAD",
        "DMASLAB_POLICY",
        "DMASLAB_STATS",
        "DMASLAB_DMA_MINALIGN",
        "DMASLAB_DEBUG",
    ] {
        if !cmd.get_envs().any(|(k, _)| k == var) {
            cmd.env_remove(var);
        }
    }
    if let Some(p) = policy {
        cmd.env("LD_PRELOAD", lib_path()).env("DMASLAB_POLICY", p);
        if let Some(s) = stats {
            cmd.env("DMASLAB_STATS", s);
        }
    }
    cmd.output().expect("spawn")
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout[..o.stdout.len().min(2000)]),
        String::from_utf8_lossy(&o.stderr[..o.stderr.len().min(4000)])
    )
}

/// Runs `make` on the system allocator and under each policy; outputs must match byte for byte
/// and every preloaded run must leave a slabinfo table (proof the library was in use).
pub fn compare_with_system(name: &str, make: impl Fn() -> Command) {
    let base = run(make(), None, None);
    assert!(
        base.status.success(),
        "{name} on the system allocator failed: {}",
        show(&base)
    );
    for p in POLICIES {
        let dir = Scratch::new("stats");
        let stats = dir.path().join("slabinfo.%p");
        let o = run(make(), Some(p), Some(&stats));
        assert!(
            o.status.success(),
            "{name} under policy {p} failed: {}",
            show(&o)
        );
        assert!(
            o.stdout == base.stdout,
            "{name} under policy {p}: output differs from the system allocator's\n--- system:\n{}\n--- dmaslab:\n{}",
            String::from_utf8_lossy(&base.stdout),
            String::from_utf8_lossy(&o.stdout)
        );
        let tables = stats_files(dir.path());
        assert!(
            !tables.is_empty(),
            "{name} under {p}: no statistics file written"
        );
        for t in &tables {
            assert!(t.starts_with("slabinfo - version: 2.1"), "bad table:\n{t}");
            assert!(
                t.contains(&format!("policy={p} ")),
                "{name}: table not from policy {p}:\n{t}"
            );
        }
    }
}

/// Contents of the `slabinfo.*` files in `dir`.
pub fn stats_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("slabinfo."))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

/// Compiles the C program `src` into `dir/name`.
pub fn compile_c(dir: &Path, name: &str, src: &str) -> PathBuf {
    require("cc");
    let c = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&c, src).unwrap();
    let o = Command::new("cc")
        .args(["-O1", "-Wall", "-pthread", "-o"])
        .arg(&exe)
        .arg(&c)
        .output()
        .expect("cc");
    assert!(o.status.success(), "cc {name}.c failed: {}", show(&o));
    exe
}
