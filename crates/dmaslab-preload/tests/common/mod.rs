//! Helpers for the preload tests: build `libdmaslab.so`, make scratch directories, run commands
//! with and without the library, compile small C programs. The CLI's `run` tests include it too
//! (`#[path]`), for the library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const POLICIES: [&str; 3] = ["A", "B", "C"];

/// `libdmaslab.so` built from the current source: `cargo build --release -p dmaslab-preload`
/// (the workspace's cargo and target directory; a no-op when it is up to date), once per test
/// binary. `$DMASLAB_LIB` names a library to test instead. Panics (fails the test) when the build
/// fails.
pub fn lib_path() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| match std::env::var_os("DMASLAB_LIB") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "DMASLAB_LIB={} is not a file", p.display());
            p.canonicalize().expect("canonical library path")
        }
        None => build_lib(),
    })
    .clone()
}

/// Builds the library and returns the path cargo reports for it.
fn build_lib() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Spelled from crates/<any crate>, so other crates' tests can include this module.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dmaslab-preload/Cargo.toml");
    let o = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo build");
    assert!(
        o.status.success(),
        "cargo build --release -p dmaslab-preload failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The compiler-artifact message of the cdylib lists its file; no JSON parser among this
    // crate's dependencies, and the path is a plain string in `"filenames":["..."]`.
    let out = String::from_utf8_lossy(&o.stdout);
    let path = out
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains("cdylib"))
        .find_map(|l| {
            const KEY: &str = r#""filenames":[""#;
            let files = &l[l.find(KEY)? + KEY.len()..];
            let file = &files[..files.find('"')?];
            file.ends_with("/libdmaslab.so")
                .then(|| PathBuf::from(file))
        })
        .expect("cargo build reported no libdmaslab.so");
    assert!(
        path.is_file(),
        "{} is missing after the build",
        path.display()
    );
    path
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
    // Succeeded, with the system allocator's output.
    let same = |o: &Output, how: &str| {
        assert!(o.status.success(), "{name} {how} failed: {}", show(o));
        assert!(
            o.stdout == base.stdout,
            "{name} {how}: output differs from the system allocator's\n--- system:\n{}\n--- dmaslab:\n{}",
            String::from_utf8_lossy(&base.stdout),
            String::from_utf8_lossy(&o.stdout)
        );
    };
    for p in POLICIES {
        let dir = Scratch::new("stats");
        let stats = dir.path().join("slabinfo.%p");
        same(
            &run(make(), Some(p), Some(&stats)),
            &format!("under policy {p}"),
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
    // Debug mode (every check, quarantine, red zones; the exit-time slab walk included) must
    // not change the output either, nor find anything in a correct program.
    let mut c = make();
    c.env("DMASLAB_DEBUG", "1");
    same(&run(c, Some("C"), None), "in debug mode");
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
    compile(dir, name, src, "cc", "c", &["-O1", "-Wall", "-pthread"])
}

/// Compiles `src` with `compiler` (`cc`, `g++`: installed by scripts/ci.d/15-packages.sh)
/// and `flags` into `dir/name`; the source file is `dir/name.ext`.
pub fn compile(
    dir: &Path,
    name: &str,
    src: &str,
    compiler: &str,
    ext: &str,
    flags: &[&str],
) -> PathBuf {
    require(compiler);
    let file = dir.join(format!("{name}.{ext}"));
    let exe = dir.join(name);
    std::fs::write(&file, src).unwrap();
    let o = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&file)
        .output()
        .expect(compiler);
    assert!(
        o.status.success(),
        "{compiler} {name}.{ext} failed: {}",
        show(&o)
    );
    exe
}
