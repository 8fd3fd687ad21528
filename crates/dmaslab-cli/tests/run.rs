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
