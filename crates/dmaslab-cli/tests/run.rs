//! `dmaslab run` end to end: it exits with the command's status (128 + the signal number for a
//! signal, as shells do), under one policy and under `--compare`; `--policy` with `--compare`
//! restricts the comparison and is never ignored.

#[path = "../../dmaslab-preload/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

/// `dmaslab run ARGS -- sh -c SCRIPT` with the library built from the current source.
fn run(args: &[&str], script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmaslab"))
        .arg("run")
        .args(args)
        .args(["--", "sh", "-c", script])
        .env("DMASLAB_LIB", common::lib_path())
        .output()
        .expect("run dmaslab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The policy letters of the rows of a `--compare` table.
fn compared(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (first, second) = (words.next()?, words.next()?);
            // Not the closing `A vs C: ...` lines.
            (["A", "B", "C"].contains(&first) && second != "vs").then(|| first.to_string())
        })
        .collect()
}

#[test]
fn exits_with_the_commands_status() {
    for (args, script, want) in [
        (&[][..], "exit 0", 0),
        (&[][..], "exit 3", 3),
        (&["--policy", "A"][..], "exit 42", 42),
        (&[][..], "kill -TERM $$", 128 + 15),
        (&[][..], "kill -KILL $$", 128 + 9),
        (&["--compare"][..], "exit 5", 5),
        (&["--compare"][..], "kill -TERM $$", 128 + 15),
    ] {
        let out = run(args, script);
        assert_eq!(
            out.status.code(),
            Some(want),
            "run {args:?} -- sh -c {script:?}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        if want == 0 {
            assert_eq!(stderr, "");
        } else {
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
            assert!(stderr.starts_with("dmaslab: the command "), "{stderr:?}");
        }
    }
}

#[test]
fn compare_runs_the_policies_given_and_only_those() {
    let out = run(&["--compare"], "exit 0");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(compared(&out), ["A", "B", "C"]);

    let out = run(&["--compare", "--policy", "C,A"], "exit 0");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(compared(&out), ["A", "C"], "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("A vs C: "));

    let out = run(&["--compare", "--policy", "B", "--policy", "A"], "exit 0");
    assert_eq!(compared(&out), ["A", "B"], "{}", text(&out.stdout));
}

#[test]
fn a_policy_that_cannot_be_honoured_is_an_error() {
    for args in [
        &["--compare", "--policy", "A"][..],
        &["--compare", "--policy", "A,A"][..],
        &["--policy", "A,C"][..],
    ] {
        let out = run(args, "echo ran");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{args:?}: the command must not run");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("dmaslab: --"), "{args:?}: {stderr:?}");
    }
}

/// The README's "what A costs" program: the seed's objects as C mallocs cost pages under A.
#[test]
fn the_seed_workload_in_c_costs_pages_under_policy_a() {
    let dir = common::Scratch::new("small-objects");
    let exe = common::compile_c(
        dir.path(),
        "small_objects",
        include_str!("../../../examples/c/small_objects.c"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dmaslab"))
        .args(["run", "--compare", "--policy", "A,C", "--"])
        .arg(&exe)
        .env("DMASLAB_LIB", common::lib_path())
        .output()
        .expect("run dmaslab");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("190243 objects, checksum "), "{stdout}");
    // policy, exit, wall s, pages held, slab pages, ...
    let pages = |policy: &str, column: usize| -> u64 {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(policy) && !l.contains(" vs "))
            .unwrap_or_else(|| panic!("no row for {policy}: {stdout}"));
        row.split_whitespace().nth(column).unwrap().parse().unwrap()
    };
    let (held_a, held_c) = (pages("A", 3), pages("C", 3));
    let (slab_a, slab_c) = (pages("A", 4), pages("C", 4));
    // The seed's figures (README, `dmaslab report`): about 1893 slab pages under C and 1261
    // more under A with 64-byte lines.
    assert!(
        slab_a > slab_c + 1000,
        "slab pages A {slab_a}, C {slab_c}: {stdout}"
    );
    assert!(
        held_a > held_c,
        "pages held A {held_a}, C {held_c}: {stdout}"
    );
}
