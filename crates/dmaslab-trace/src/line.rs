//! One line of ftrace text: the `task-pid [cpu] flags timestamp: event: body` prefix as the
//! kernel's `trace` / `trace_pipe` files print it, and as `trace-cmd report` does (optional
//! `instance:` in front, no flags column, padded event names), plus comment and lost-event lines.

use crate::error::{quoted, ParseError};

/// What a line holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// Blank, a `#` comment, or `trace-cmd report`'s `cpus=N` header.
    Skip,
    /// `CPU:N [LOST M EVENTS]` (kernel) or `CPU:N [M EVENTS DROPPED]` (trace-cmd); `None` when
    /// the count is not printed.
    Lost(Option<u64>),
    /// An event: its timestamp in nanoseconds, its name and the rest of the line.
    Event {
        ts: u64,
        name: &'a str,
        body: &'a str,
    },
}

/// Splits line `n` (1-based, for errors).
pub(crate) fn split(text: &str, n: usize) -> Result<Line<'_>, ParseError> {
    let t = text.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with("cpus=") {
        return Ok(Line::Skip);
    }
    let mut first_err = None;
    let mut from = 0;
    while let Some(i) = t[from..].find('[') {
        let open = from + i;
        from = open + 1;
        let Some(close) = cpu_bracket(t, open) else {
            continue;
        };
        match after_cpu(&t[close + 1..], n) {
            Ok(line) => return Ok(line),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(lost) = lost_line(t) {
        return Ok(Line::Lost(lost));
    }
    Err(first_err.unwrap_or_else(|| {
        ParseError::new(n, "cpu", format!("no `[CPU]` column in {}", quoted(t)))
    }))
}

/// The index of the `]` closing a `[digits]` that opens at `open`.
fn cpu_bracket(t: &str, open: usize) -> Option<usize> {
    let rest = &t.as_bytes()[open + 1..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    (digits > 0 && rest.get(digits) == Some(&b']')).then_some(open + 1 + digits)
}

/// Parses `[flags] timestamp: name: body` after the CPU column.
fn after_cpu(s: &str, n: usize) -> Result<Line<'_>, ParseError> {
    let s = s.trim_start();
    let (tok, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    // The flags column (`.....`, `d..2.`) is there in the kernel's layout, not in trace-cmd's.
    let (ts_tok, rest) = if tok.ends_with(':') {
        (tok, rest)
    } else {
        let rest = rest.trim_start();
        rest.split_once(char::is_whitespace).unwrap_or((rest, ""))
    };
    let Some(ts_text) = ts_tok.strip_suffix(':') else {
        return Err(ParseError::new(
            n,
            "timestamp",
            format!("expected `SECONDS.FRACTION:`, found {}", quoted(ts_tok)),
        ));
    };
    let ts = timestamp(ts_text).ok_or_else(|| {
        ParseError::new(n, "timestamp", format!("not a number: {}", quoted(ts_text)))
    })?;
    let rest = rest.trim_start();
    let Some((name, body)) = rest.split_once(':') else {
        return Err(ParseError::new(
            n,
            "event",
            format!("no `name:` after the timestamp in {}", quoted(rest)),
        ));
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ParseError::new(
            n,
            "event",
            format!("not an event name: {}", quoted(name)),
        ));
    }
    Ok(Line::Event {
        ts,
        name,
        body: body.trim(),
    })
}

/// `SECONDS.FRACTION` (up to 9 fraction digits) in nanoseconds; a plain integer (counter
/// clocks) is taken as nanoseconds.
fn timestamp(s: &str) -> Option<u64> {
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    if sec.is_empty() || !sec.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let sec: u64 = sec.parse().ok()?;
    if !s.contains('.') {
        return Some(sec);
    }
    let f: u64 = frac.parse().ok()?;
    let scale = 10u64.pow(9 - frac.len() as u32);
    sec.checked_mul(1_000_000_000)?.checked_add(f * scale)
}

/// `CPU:1 [LOST 1234 EVENTS]`, `CPU:1 [LOST EVENTS]`, `CPU:1 [1234 EVENTS DROPPED]`,
/// `CPU:1 [EVENTS DROPPED]`, possibly after a trace-cmd `instance:` prefix.
fn lost_line(t: &str) -> Option<Option<u64>> {
    let at = t.find("CPU:")?;
    let rest = &t[at + 4..];
    let open = rest.find('[')?;
    let inner = rest[open + 1..].strip_suffix(']')?;
    let count = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    if let Some(mid) = inner
        .strip_prefix("LOST")
        .and_then(|s| s.strip_suffix("EVENTS"))
    {
        return count(mid);
    }
    inner.strip_suffix("EVENTS DROPPED").and_then(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_scale_to_nanoseconds() {
        assert_eq!(timestamp("564.759370"), Some(564_759_370_000));
        assert_eq!(timestamp("1.000000001"), Some(1_000_000_001));
        assert_eq!(timestamp("42"), Some(42));
        assert_eq!(timestamp("1."), None);
        assert_eq!(timestamp("1.2.3"), None);
        assert_eq!(timestamp("x.5"), None);
    }

    #[test]
    fn lost_lines_of_both_layouts() {
        assert_eq!(
            split("CPU:1 [LOST 1234 EVENTS]", 1),
            Ok(Line::Lost(Some(1234)))
        );
        assert_eq!(split("CPU:0 [LOST EVENTS]", 1), Ok(Line::Lost(None)));
        assert_eq!(
            split("dmaslab-1: CPU:1 [EVENTS DROPPED]", 1),
            Ok(Line::Lost(None))
        );
        assert_eq!(
            split("CPU:1 [7 EVENTS DROPPED]", 1),
            Ok(Line::Lost(Some(7)))
        );
    }

    #[test]
    fn a_task_name_with_brackets_and_spaces() {
        let l = "  Web [1] Content-77   [001] d..2.   10.5: kfree: call_site=x+0x1/0x2 ptr=0";
        assert_eq!(
            split(l, 3),
            Ok(Line::Event {
                ts: 10_500_000_000,
                name: "kfree",
                body: "call_site=x+0x1/0x2 ptr=0"
            })
        );
    }

    #[test]
    fn truncated_prefixes_name_the_field() {
        let e = split("  dd-1   [000] .....   564.75", 9).unwrap_err();
        assert_eq!((e.line, e.field), (9, "timestamp"));
        let e = split("  dd-1   [000] .....   564.75: ", 9).unwrap_err();
        assert_eq!(e.field, "event");
        assert_eq!(split("garbage", 2).unwrap_err().field, "cpu");
    }
}
