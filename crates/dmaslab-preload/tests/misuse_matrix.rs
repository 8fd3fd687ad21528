//! The misuse matrix (issue 15): every misuse kind at the sizes it applies to (24 bytes, 4 KiB,
//! 256 KiB), each in its own child process under `LD_PRELOAD` with a 1 s CPU limit, in normal
//! mode and in debug mode (`DMASLAB_DEBUG=1`). The program (`misuse_matrix.cc`) prints
//! "unnoticed" after the misuse if it got through.
//!
//! [`EXPECT`] says, per case, what each mode does — the exact report kind with `SIGABRT`
//! (`"double free"`, `"invalid free"`, `"use after free"`, `"red zone overwritten"`, ...),
//! `"segv"` (a guard page), `"refused"` (an impossible request answered with null or
//! `bad_alloc`), `"completes"` (unnoticed, exit 0), or `"late <outcome>"` (unnoticed, then
//! stopped at exit: the exit-time slab walk) — and is asserted exactly, so that a promise can
//! neither widen nor shrink silently. On a difference the test prints the whole observed table
//! in [`EXPECT`]'s syntax, ready to paste. It also prints
//! `normal: caught X of N, debug: caught Y of N` and the same count for glibc (the programs run
//! without the preload; printed, not asserted). "Caught" is the count: the process
//! stopped or failed before printing "unnoticed". `DMASLAB_MATRIX_PRINT=1` prints the observed
//! table and the grouped table of docs/hardening.md even when everything matches.

mod common;
use common::*;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output};

const SOURCE: &str = include_str!("misuse_matrix.cc");

const SIZES: &[usize] = &[24, 4096, 262144];
const NO_SIZE: &[usize] = &[0];

/// The cases: each kind (the program's first argument) with the sizes it runs at, and the
/// group it is counted under in docs/hardening.md's table.
const KINDS: &[(&str, &[usize], &str)] = &[
    ("double_free", SIZES, "double free"),
    ("double_free_other", SIZES, "double free"),
    ("double_free_later", SIZES, "double free"),
    ("double_free_realloc", SIZES, "double free"),
    ("free_stack", SIZES, "invalid free"),
    ("free_wild", NO_SIZE, "invalid free"),
    ("free_interior", SIZES, "invalid free"),
    ("free_unaligned", SIZES, "invalid free"),
    ("free_nearby", SIZES, "invalid free"),
    ("overflow_1_write", SIZES, "overflow 1 B / 32 B"),
    ("overflow_1_memcpy", SIZES, "overflow 1 B / 32 B"),
    ("overflow_32_write", SIZES, "overflow 1 B / 32 B"),
    ("overflow_32_memcpy", SIZES, "overflow 1 B / 32 B"),
    ("overflow_1m_write", SIZES, "overflow 1 MiB"),
    ("overflow_1m_memcpy", SIZES, "overflow 1 MiB"),
    ("underflow_1_write", SIZES, "underflow 1 B / 32 B"),
    ("underflow_1_memcpy", SIZES, "underflow 1 B / 32 B"),
    ("underflow_32_write", SIZES, "underflow 1 B / 32 B"),
    ("underflow_32_memcpy", SIZES, "underflow 1 B / 32 B"),
    ("underflow_1m_write", SIZES, "underflow 1 MiB"),
    ("underflow_1m_memcpy", SIZES, "underflow 1 MiB"),
    ("read_after_free", SIZES, "read after free"),
    ("write_after_free", SIZES, "write / zero after free"),
    ("zero_after_free", SIZES, "write / zero after free"),
    ("reuse_after_free_malloc", SIZES, "reuse after free"),
    ("reuse_after_free_realloc", SIZES, "reuse after free"),
    ("zero_size_read", NO_SIZE, "zero-size access"),
    ("zero_size_write", NO_SIZE, "zero-size access"),
    (
        "cpp_new_delete_array",
        SIZES,
        "C++ delete / delete[] mismatch",
    ),
    (
        "cpp_new_array_delete",
        SIZES,
        "C++ delete / delete[] mismatch",
    ),
    ("cpp_sized_delete", SIZES, "C++ sized-delete mismatch"),
    ("exec_heap", SIZES, "executable heap"),
    ("huge_malloc", NO_SIZE, "impossibly large request"),
    ("huge_malloc_half", NO_SIZE, "impossibly large request"),
    ("huge_calloc", NO_SIZE, "impossibly large request"),
    ("huge_realloc", NO_SIZE, "impossibly large request"),
    ("huge_aligned", NO_SIZE, "impossibly large request"),
    ("huge_new", NO_SIZE, "impossibly large request"),
];

/// (kind, size, normal-mode outcome, debug-mode outcome), in [`KINDS`]' order.
type Row = (&'static str, usize, &'static str, &'static str);

#[rustfmt::skip]
const EXPECT: &[Row] = &[
    ("double_free", 24, "double free", "double free"),
    ("double_free", 4096, "double free", "double free"),
    ("double_free", 262144, "invalid free", "double free"),
    ("double_free_other", 24, "double free", "double free"),
    ("double_free_other", 4096, "double free", "double free"),
    ("double_free_other", 262144, "invalid free", "double free"),
    ("double_free_later", 24, "double free", "double free"),
    ("double_free_later", 4096, "double free", "double free"),
    ("double_free_later", 262144, "invalid free", "double free"),
    ("double_free_realloc", 24, "double free", "double free"),
    ("double_free_realloc", 4096, "double free", "double free"),
    ("double_free_realloc", 262144, "invalid free", "double free"),
    ("free_stack", 24, "invalid free", "invalid free"),
    ("free_stack", 4096, "invalid free", "invalid free"),
    ("free_stack", 262144, "invalid free", "invalid free"),
    ("free_wild", 0, "invalid free", "invalid free"),
    ("free_interior", 24, "invalid free", "invalid free"),
    ("free_interior", 4096, "invalid free", "invalid free"),
    ("free_interior", 262144, "invalid free", "invalid free"),
    ("free_unaligned", 24, "invalid free", "invalid free"),
    ("free_unaligned", 4096, "invalid free", "invalid free"),
    ("free_unaligned", 262144, "invalid free", "invalid free"),
    ("free_nearby", 24, "invalid free", "invalid free"),
    ("free_nearby", 4096, "completes", "invalid free"),
    ("free_nearby", 262144, "invalid free", "invalid free"),
    ("overflow_1_write", 24, "completes", "red zone overwritten"),
    ("overflow_1_write", 4096, "use after free", "red zone overwritten"),
    ("overflow_1_write", 262144, "segv", "segv"),
    ("overflow_1_memcpy", 24, "completes", "red zone overwritten"),
    ("overflow_1_memcpy", 4096, "use after free", "red zone overwritten"),
    ("overflow_1_memcpy", 262144, "segv", "segv"),
    ("overflow_32_write", 24, "completes", "red zone overwritten"),
    ("overflow_32_write", 4096, "use after free", "red zone overwritten"),
    ("overflow_32_write", 262144, "segv", "segv"),
    ("overflow_32_memcpy", 24, "completes", "red zone overwritten"),
    ("overflow_32_memcpy", 4096, "use after free", "red zone overwritten"),
    ("overflow_32_memcpy", 262144, "segv", "segv"),
    ("overflow_1m_write", 24, "segv", "double free"),
    ("overflow_1m_write", 4096, "use after free", "double free"),
    ("overflow_1m_write", 262144, "segv", "segv"),
    ("overflow_1m_memcpy", 24, "completes", "double free"),
    ("overflow_1m_memcpy", 4096, "use after free", "double free"),
    ("overflow_1m_memcpy", 262144, "segv", "segv"),
    ("underflow_1_write", 24, "completes", "red zone overwritten"),
    ("underflow_1_write", 4096, "completes", "red zone overwritten"),
    ("underflow_1_write", 262144, "segv", "segv"),
    ("underflow_1_memcpy", 24, "completes", "red zone overwritten"),
    ("underflow_1_memcpy", 4096, "completes", "red zone overwritten"),
    ("underflow_1_memcpy", 262144, "segv", "segv"),
    ("underflow_32_write", 24, "use after free", "red zone overwritten"),
    ("underflow_32_write", 4096, "completes", "red zone overwritten"),
    ("underflow_32_write", 262144, "segv", "segv"),
    ("underflow_32_memcpy", 24, "use after free", "red zone overwritten"),
    ("underflow_32_memcpy", 4096, "completes", "red zone overwritten"),
    ("underflow_32_memcpy", 262144, "segv", "segv"),
    ("underflow_1m_write", 24, "segv", "segv"),
    ("underflow_1m_write", 4096, "segv", "segv"),
    ("underflow_1m_write", 262144, "segv", "segv"),
    ("underflow_1m_memcpy", 24, "segv", "segv"),
    ("underflow_1m_memcpy", 4096, "segv", "segv"),
    ("underflow_1m_memcpy", 262144, "segv", "segv"),
    ("read_after_free", 24, "completes", "completes"),
    ("read_after_free", 4096, "completes", "completes"),
    ("read_after_free", 262144, "segv", "segv"),
    ("write_after_free", 24, "completes", "use after free"),
    ("write_after_free", 4096, "completes", "use after free"),
    ("write_after_free", 262144, "segv", "segv"),
    ("zero_after_free", 24, "use after free", "use after free"),
    ("zero_after_free", 4096, "use after free", "use after free"),
    ("zero_after_free", 262144, "segv", "segv"),
    ("reuse_after_free_malloc", 24, "completes", "use after free"),
    ("reuse_after_free_malloc", 4096, "completes", "use after free"),
    ("reuse_after_free_malloc", 262144, "segv", "segv"),
    ("reuse_after_free_realloc", 24, "completes", "use after free"),
    ("reuse_after_free_realloc", 4096, "completes", "use after free"),
    ("reuse_after_free_realloc", 262144, "segv", "segv"),
    ("zero_size_read", 0, "completes", "completes"),
    ("zero_size_write", 0, "completes", "red zone overwritten"),
    ("cpp_new_delete_array", 24, "invalid free", "timeout"),
    ("cpp_new_delete_array", 4096, "timeout", "timeout"),
    ("cpp_new_delete_array", 262144, "segv", "segv"),
    ("cpp_new_array_delete", 24, "invalid free", "invalid free"),
    ("cpp_new_array_delete", 4096, "invalid free", "invalid free"),
    ("cpp_new_array_delete", 262144, "invalid free", "invalid free"),
    ("cpp_sized_delete", 24, "sized delete mismatch", "sized delete mismatch"),
    ("cpp_sized_delete", 4096, "sized delete mismatch", "sized delete mismatch"),
    ("cpp_sized_delete", 262144, "sized delete mismatch", "sized delete mismatch"),
    ("exec_heap", 24, "segv", "segv"),
    ("exec_heap", 4096, "segv", "segv"),
    ("exec_heap", 262144, "segv", "segv"),
    ("huge_malloc", 0, "refused", "refused"),
    ("huge_malloc_half", 0, "refused", "refused"),
    ("huge_calloc", 0, "refused", "refused"),
    ("huge_realloc", 0, "refused", "refused"),
    ("huge_aligned", 0, "refused", "refused"),
    ("huge_new", 0, "refused", "refused"),
];

/// What one run did (see the module's text for the words).
fn outcome(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let stopped = match o.status.signal() {
        Some(SIGABRT) => match err.lines().find_map(|l| l.strip_prefix("dmaslab: ")) {
            Some(report) => report_kind(report).to_string(),
            None => "abort".to_string(),
        },
        Some(SIGSEGV) => "segv".to_string(),
        Some(SIGBUS) => "sigbus".to_string(),
        Some(SIGXCPU) | Some(SIGKILL) => "timeout".to_string(),
        Some(s) => format!("signal {s}"),
        None => match o.status.code() {
            Some(0) => "completes".to_string(),
            Some(1) if out.lines().any(|l| l == "refused") => "refused".to_string(),
            c => format!("exit {}", c.unwrap_or(-1)),
        },
    };
    let unnoticed = out.lines().any(|l| l == "unnoticed");
    if unnoticed && stopped != "completes" {
        format!("late {stopped}")
    } else {
        stopped
    }
}

const SIGABRT: i32 = 6;
const SIGBUS: i32 = 7;
const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;
const SIGXCPU: i32 = 24;

/// The kind of a report: `double free of 0x...` → `double free`,
/// `corrupted free list at 0x...` → `corrupted free list`,
/// `out of memory in operator new (N bytes)` → `out of memory in operator new`.
fn report_kind(report: &str) -> &str {
    [" of 0x", " at 0x", " ("]
        .iter()
        .filter_map(|sep| report.find(sep))
        .min()
        .map_or(report, |end| &report[..end])
}

/// Caught in the sense: stopped or failed before saying "unnoticed".
fn caught(outcome: &str) -> bool {
    outcome != "completes" && !outcome.starts_with("late ")
}

/// Runs case `kind size`: `mode` `None` without the preload (glibc), else preloaded with
/// `DMASLAB_DEBUG=mode`. One CPU second, no core file, no address randomisation (the layout,
/// and so what a wild write hits, is the same on every run).
fn run_case(exe: &Path, dir: &Path, kind: &str, size: usize, mode: Option<&str>) -> Output {
    let mut c = Command::new(exe);
    c.arg(kind).arg(size.to_string()).current_dir(dir);
    if let Some(debug) = mode {
        c.env("DMASLAB_DEBUG", debug);
    }
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls.
    unsafe {
        c.pre_exec(|| {
            let cpu = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 2,
            };
            let core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CPU, &cpu) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &core) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
            Ok(())
        })
    };
    run(c, mode.map(|_| "C"), None)
}

/// One observed row per case, for `mode` ([`run_case`]).
fn observe(exe: &Path, dir: &Path, mode: Option<&str>) -> Vec<((&'static str, usize), String)> {
    KINDS
        .iter()
        .flat_map(|&(kind, sizes, _)| sizes.iter().map(move |&s| (kind, s)))
        .map(|(kind, size)| ((kind, size), outcome(&run_case(exe, dir, kind, size, mode))))
        .collect()
}

fn format_table(rows: &[(&str, usize, String, String)]) -> String {
    let mut t = String::from("#[rustfmt::skip]\nconst EXPECT: &[Row] = &[\n");
    for (kind, size, normal, debug) in rows {
        t += &format!("    ({kind:?}, {size}, {normal:?}, {debug:?}),\n");
    }
    t + "];\n"
}

/// docs/hardening.md's table: caught / cases per group, in [`KINDS`]' order of groups.
fn format_groups(rows: &[(&str, usize, String, String)], glibc: &[String]) -> String {
    let mut groups: Vec<&str> = Vec::new();
    for &(_, _, g) in KINDS {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let group_of = |kind: &str| KINDS.iter().find(|k| k.0 == kind).unwrap().2;
    let mut t = String::from(
        "| misuse | cases | glibc | dmaslab normal | dmaslab debug |\n|---|---|---|---|---|\n",
    );
    let count = |pick: &dyn Fn(usize) -> bool| (0..rows.len()).filter(|&i| pick(i)).count();
    for g in groups.iter().chain(std::iter::once(&"all")) {
        let inside = |i: usize| *g == "all" || group_of(rows[i].0) == *g;
        let n = count(&inside);
        let g_c = count(&|i| inside(i) && caught(&glibc[i]));
        let n_c = count(&|i| inside(i) && caught(&rows[i].2));
        let d_c = count(&|i| inside(i) && caught(&rows[i].3));
        t += &format!("| {g} | {n} | {g_c} | {n_c} | {d_c} |\n");
    }
    t
}

fn err_line(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

#[test]
fn every_misuse_kind_and_size_has_the_outcome_its_mode_promises() {
    require("g++");
    let dir = Scratch::new("matrix");
    let exe = compile(
        dir.path(),
        "matrix",
        SOURCE,
        "g++",
        "cc",
        &["-O0", "-fno-builtin", "-w"],
    );
    let normal = observe(&exe, dir.path(), Some("0"));
    let debug = observe(&exe, dir.path(), Some("1"));
    let glibc: Vec<String> = observe(&exe, dir.path(), None)
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    let rows: Vec<(&str, usize, String, String)> = normal
        .into_iter()
        .zip(debug)
        .map(|(((kind, size), n), (_, d))| (kind, size, n, d))
        .collect();

    let n = rows.len();
    let n_c = rows.iter().filter(|r| caught(&r.2)).count();
    let d_c = rows.iter().filter(|r| caught(&r.3)).count();
    let g_c = glibc.iter().filter(|o| caught(o)).count();
    err_line(&format!(
        "misuse matrix: normal: caught {n_c} of {n}, debug: caught {d_c} of {n}"
    ));
    err_line(&format!(
        "misuse matrix: glibc (no preload, for comparison): caught {g_c} of {n}"
    ));

    let same = rows.len() == EXPECT.len()
        && rows
            .iter()
            .zip(EXPECT)
            .all(|(r, e)| (r.0, r.1, r.2.as_str(), r.3.as_str()) == *e);
    if !same || std::env::var_os("DMASLAB_MATRIX_PRINT").is_some() {
        err_line(&format!(
            "misuse matrix: observed table:\n{}",
            format_table(&rows)
        ));
        err_line(&format!(
            "misuse matrix: grouped (docs/hardening.md):\n{}",
            format_groups(&rows, &glibc)
        ));
    }
    if !same {
        let mut diff = String::new();
        for (i, r) in rows.iter().enumerate() {
            let want = EXPECT.get(i);
            let got = (r.0, r.1, r.2.as_str(), r.3.as_str());
            if want != Some(&got) {
                diff += &format!("  expected {want:?}\n  observed {got:?}\n");
            }
        }
        if EXPECT.len() > rows.len() {
            diff += &format!(
                "  {} expected rows beyond the cases\n",
                EXPECT.len() - rows.len()
            );
        }
        panic!("the misuse matrix differs from EXPECT (observed table above):\n{diff}");
    }
}

#[test]
fn report_kinds_are_the_text_before_the_address() {
    assert_eq!(report_kind("double free of 0x7f00"), "double free");
    assert_eq!(
        report_kind("use after free of 0x7f14 (kmalloc-128 object 0x7f00, offset 20; ...)"),
        "use after free"
    );
    assert_eq!(
        report_kind("corrupted free list at 0x7f00"),
        "corrupted free list"
    );
    assert_eq!(
        report_kind("out of memory in operator new (64 bytes)"),
        "out of memory in operator new"
    );
    assert!(caught("double free") && caught("segv") && caught("refused"));
    assert!(!caught("completes") && !caught("late use after free"));
}
