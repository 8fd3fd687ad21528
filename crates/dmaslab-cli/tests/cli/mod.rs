//! What the CLI tests share: running the `dmaslab` binary with some standard input.

use std::io::{ErrorKind, Write as _};
use std::process::{Command, Output, Stdio};

/// Runs `dmaslab ARGS` with `stdin` as its standard input and returns its output.
pub fn dmaslab(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmaslab"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dmaslab");
    // A command that rejects its arguments exits before reading its input:
    // the pipe closing under the write is then the expected outcome.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().unwrap()
}

/// A stream's bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Exit 2, empty stdout, exactly one stderr line, which contains `want`.
pub fn assert_rejected(out: &Output, want: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stdout, "", "nothing may be half-printed");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.ends_with('\n') && stderr.contains(want),
        "{stderr:?} should contain {want:?}"
    );
}
