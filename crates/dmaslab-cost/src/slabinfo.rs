//! Parser for `/proc/slabinfo` version 2.1 text.
//!
//! Accepted forms, one cache per line:
//!
//! ```text
//! slabinfo - version: 2.1
//! # name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
//! kmalloc-64 54406 62912 64 64 1 : tunables 0 0 0 : slabdata 983 983 0
//! kmalloc-96 11527 15792 96 42 1 : slabdata 376 376 0
//! ```
//!
//! The version line is optional (the seed quotes rows without it), but when present it must be the
//! first non-blank line and say 2.1. Lines starting with `#` are comments. The `: tunables ...`
//! part is optional; the `: slabdata ...` part is required. Any deviation is a [`ParseError`]
//! naming the line (1-based) and the field.

use std::fmt;

/// The version line a kernel prints first.
const VERSION_PREFIX: &str = "slabinfo - version:";
/// The only version understood.
const VERSION: &str = "2.1";

/// One cache's line of slabinfo.
///
/// # Invariants
/// `objsize`, `objperslab` and `pagesperslab` are at least 1 (the parser rejects 0), so dividing
/// by them is safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlabRow {
    /// 1-based line number in the input.
    pub line: usize,
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u64,
    pub objperslab: u64,
    pub pagesperslab: u64,
    pub active_slabs: u64,
    pub num_slabs: u64,
}

/// A parsed slabinfo file: its rows in input order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlabInfo {
    pub rows: Vec<SlabRow>,
}

/// What was wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The version line names another version (or none).
    BadVersion(String),
    /// A version line that is not the first non-blank line.
    MisplacedVersion,
    /// The line ended before this field.
    Missing,
    /// Not a decimal number.
    NotANumber(String),
    /// A number with a minus sign; counts cannot be negative.
    Negative(String),
    /// A number too large for 64 bits.
    TooLarge(String),
    /// Zero where at least 1 is required (objsize, objperslab, pagesperslab).
    Zero,
    /// A fixed word (`:`, `tunables`, `slabdata`) was expected.
    Expected(&'static str, String),
    /// Text after the last field.
    Trailing(String),
}

/// A malformed input: the 1-based line, the field and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub field: &'static str,
    pub kind: ErrorKind,
}

/// Shortens what the input had, so an error message stays one short line.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(24).flat_map(char::escape_debug).collect();
    if s.chars().count() > 24 {
        out.push_str("...");
    }
    out
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: field `{}`: ", self.line, self.field)?;
        match &self.kind {
            ErrorKind::BadVersion(v) => write!(
                f,
                "unsupported slabinfo version \"{}\" (need {VERSION})",
                shown(v)
            ),
            ErrorKind::MisplacedVersion => write!(f, "version line must be the first line"),
            ErrorKind::Missing => write!(f, "missing (line too short)"),
            ErrorKind::NotANumber(s) => write!(f, "not a number: \"{}\"", shown(s)),
            ErrorKind::Negative(s) => write!(f, "negative count: \"{}\"", shown(s)),
            ErrorKind::TooLarge(s) => write!(f, "number too large: \"{}\"", shown(s)),
            ErrorKind::Zero => write!(f, "must be at least 1, found 0"),
            ErrorKind::Expected(want, got) => {
                write!(f, "expected \"{want}\", found \"{}\"", shown(got))
            }
            ErrorKind::Trailing(s) => {
                write!(f, "unexpected text after the last field: \"{}\"", shown(s))
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads the fields of one row, remembering the line for errors.
struct Fields<'a> {
    line: usize,
    tokens: std::str::SplitWhitespace<'a>,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &'static str, kind: ErrorKind) -> ParseError {
        ParseError {
            line: self.line,
            field,
            kind,
        }
    }

    fn next(&mut self, field: &'static str) -> Result<&'a str, ParseError> {
        self.tokens
            .next()
            .ok_or_else(|| self.err(field, ErrorKind::Missing))
    }

    fn word(&mut self, field: &'static str, want: &'static str) -> Result<(), ParseError> {
        let got = self.next(field)?;
        if got == want {
            Ok(())
        } else {
            Err(self.err(field, ErrorKind::Expected(want, got.to_string())))
        }
    }

    fn number(&mut self, field: &'static str) -> Result<u64, ParseError> {
        let tok = self.next(field)?;
        if !tok.bytes().all(|b| b.is_ascii_digit()) {
            let digits = tok.strip_prefix('-').unwrap_or("");
            let kind = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                ErrorKind::Negative(tok.to_string())
            } else {
                ErrorKind::NotANumber(tok.to_string())
            };
            return Err(self.err(field, kind));
        }
        tok.parse::<u64>()
            .map_err(|_| self.err(field, ErrorKind::TooLarge(tok.to_string())))
    }

    fn positive(&mut self, field: &'static str) -> Result<u64, ParseError> {
        match self.number(field)? {
            0 => Err(self.err(field, ErrorKind::Zero)),
            n => Ok(n),
        }
    }
}

/// Parses one cache row (a non-blank, non-comment, non-version line).
fn parse_row(line: usize, text: &str) -> Result<SlabRow, ParseError> {
    let mut f = Fields {
        line,
        tokens: text.split_whitespace(),
    };
    let name = f.next("name")?.to_string();
    let active_objs = f.number("active_objs")?;
    let num_objs = f.number("num_objs")?;
    let objsize = f.positive("objsize")?;
    let objperslab = f.positive("objperslab")?;
    let pagesperslab = f.positive("pagesperslab")?;
    f.word("slabdata", ":")?;
    match f.next("slabdata")? {
        "slabdata" => {}
        "tunables" => {
            f.number("limit")?;
            f.number("batchcount")?;
            f.number("sharedfactor")?;
            f.word("slabdata", ":")?;
            f.word("slabdata", "slabdata")?;
        }
        other => {
            return Err(f.err(
                "slabdata",
                ErrorKind::Expected("slabdata", other.to_string()),
            ))
        }
    }
    let active_slabs = f.number("active_slabs")?;
    let num_slabs = f.number("num_slabs")?;
    f.number("sharedavail")?;
    if let Some(extra) = f.tokens.next() {
        return Err(f.err("sharedavail", ErrorKind::Trailing(extra.to_string())));
    }
    Ok(SlabRow {
        line,
        name,
        active_objs,
        num_objs,
        objsize,
        objperslab,
        pagesperslab,
        active_slabs,
        num_slabs,
    })
}

/// Parses slabinfo version 2.1 text (with or without header and tunables columns).
pub fn parse(text: &str) -> Result<SlabInfo, ParseError> {
    let mut rows = Vec::new();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(version) = trimmed.strip_prefix(VERSION_PREFIX) {
            if seen_content {
                return Err(ParseError {
                    line,
                    field: "version",
                    kind: ErrorKind::MisplacedVersion,
                });
            }
            let version = version.trim();
            if version != VERSION {
                return Err(ParseError {
                    line,
                    field: "version",
                    kind: ErrorKind::BadVersion(version.to_string()),
                });
            }
            seen_content = true;
            continue;
        }
        seen_content = true;
        if trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with("slabinfo") {
            // A version line in some other shape ("slabinfo - version 2.1", "slabinfo: 2.0").
            return Err(ParseError {
                line,
                field: "version",
                kind: ErrorKind::BadVersion(trimmed.to_string()),
            });
        }
        rows.push(parse_row(line, trimmed)?);
    }
    Ok(SlabInfo { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParseError {
        parse(text).expect_err("input should be rejected")
    }

    #[test]
    fn both_row_forms_parse_to_the_same_numbers() {
        let seed = parse("kmalloc-96 11527 15792 96 42 1 : slabdata 376 376 0\n").unwrap();
        let full = parse(
            "slabinfo - version: 2.1\n\
             # name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
             kmalloc-96  11527  15792   96   42    1 : tunables    0    0    0 : slabdata    376    376      0\n",
        )
        .unwrap();
        let want = SlabRow {
            line: 1,
            name: "kmalloc-96".into(),
            active_objs: 11527,
            num_objs: 15792,
            objsize: 96,
            objperslab: 42,
            pagesperslab: 1,
            active_slabs: 376,
            num_slabs: 376,
        };
        assert_eq!(seed.rows, vec![want.clone()]);
        assert_eq!(full.rows, vec![SlabRow { line: 3, ..want }]);
    }

    #[test]
    fn empty_and_header_only_inputs_have_no_rows() {
        assert!(parse("").unwrap().rows.is_empty());
        assert!(parse("\n\n").unwrap().rows.is_empty());
        assert!(parse("slabinfo - version: 2.1\n# name ...\n")
            .unwrap()
            .rows
            .is_empty());
    }

    #[test]
    fn wrong_version_is_rejected() {
        let e = err("slabinfo - version: 2.0\nkmalloc-8 1 1 8 512 1 : slabdata 1 1 0\n");
        assert_eq!((e.line, e.field), (1, "version"));
        assert_eq!(e.kind, ErrorKind::BadVersion("2.0".into()));
        assert_eq!(
            e.to_string(),
            "line 1: field `version`: unsupported slabinfo version \"2.0\" (need 2.1)"
        );
        let e = err("\nslabinfo version 2.1\n");
        assert_eq!((e.line, e.field), (2, "version"));
        let e = err("kmalloc-8 1 1 8 512 1 : slabdata 1 1 0\nslabinfo - version: 2.1\n");
        assert_eq!(
            (e.line, e.field, e.kind),
            (2, "version", ErrorKind::MisplacedVersion)
        );
    }

    #[test]
    fn short_rows_name_the_first_missing_field() {
        let cases = [
            ("kmalloc-8", "active_objs"),
            ("kmalloc-8 1 1 8 512", "pagesperslab"),
            ("kmalloc-8 1 1 8 512 1", "slabdata"),
            ("kmalloc-8 1 1 8 512 1 :", "slabdata"),
            ("kmalloc-8 1 1 8 512 1 : tunables 0 0", "sharedfactor"),
            (
                "kmalloc-8 1 1 8 512 1 : tunables 0 0 0 : slabdata 1",
                "num_slabs",
            ),
            ("kmalloc-8 1 1 8 512 1 : slabdata 1 1", "sharedavail"),
        ];
        for (row, field) in cases {
            let e = err(&format!("slabinfo - version: 2.1\n{row}\n"));
            assert_eq!(
                (e.line, e.field, &e.kind),
                (2, field, &ErrorKind::Missing),
                "{row}"
            );
        }
        assert_eq!(
            err("kmalloc-8 1 1 8 512 1 : slabdata 1 1 0\nkmalloc-16 1 1\n").to_string(),
            "line 2: field `objsize`: missing (line too short)"
        );
    }

    #[test]
    fn non_numbers_negatives_and_zeros_are_rejected() {
        let e = err("kmalloc-8 1 x1 8 512 1 : slabdata 1 1 0");
        assert_eq!(
            (e.line, e.field, e.kind),
            (1, "num_objs", ErrorKind::NotANumber("x1".into()))
        );
        let e = err("kmalloc-8 -3 1 8 512 1 : slabdata 1 1 0");
        assert_eq!(
            (e.field, &e.kind),
            ("active_objs", &ErrorKind::Negative("-3".into()))
        );
        assert_eq!(
            e.to_string(),
            "line 1: field `active_objs`: negative count: \"-3\""
        );
        let e = err("kmalloc-8 1 1 8 512 1 : slabdata 1 -1 0");
        assert_eq!(
            (e.field, e.kind),
            ("num_slabs", ErrorKind::Negative("-1".into()))
        );
        let e = err("kmalloc-8 1 1 8 0 1 : slabdata 1 1 0");
        assert_eq!((e.field, &e.kind), ("objperslab", &ErrorKind::Zero));
        assert_eq!(
            e.to_string(),
            "line 1: field `objperslab`: must be at least 1, found 0"
        );
        assert_eq!(
            err("kmalloc-8 1 1 8 512 0 : slabdata 1 1 0").field,
            "pagesperslab"
        );
        assert_eq!(
            err("kmalloc-8 1 1 0 512 1 : slabdata 1 1 0").field,
            "objsize"
        );
        assert_eq!(
            err("kmalloc-8 1 1 8 512 1 : tunables 0 -0x 0 : slabdata 1 1 0").field,
            "batchcount"
        );
        let e = err("kmalloc-8 1 99999999999999999999999 8 512 1 : slabdata 1 1 0");
        assert!(matches!(e.kind, ErrorKind::TooLarge(_)), "{e}");
        assert_eq!(
            err("kmalloc-8 1 1.5 8 512 1 : slabdata 1 1 0").field,
            "num_objs"
        );
        assert_eq!(
            err("kmalloc-8 1 +1 8 512 1 : slabdata 1 1 0").field,
            "num_objs"
        );
    }

    #[test]
    fn misplaced_words_and_trailing_text_are_rejected() {
        let e = err("kmalloc-8 1 1 8 512 1 ; slabdata 1 1 0");
        assert_eq!(
            (e.field, e.kind),
            ("slabdata", ErrorKind::Expected(":", ";".into()))
        );
        assert_eq!(
            err("kmalloc-8 1 1 8 512 1 : slabinfo 1 1 0").field,
            "slabdata"
        );
        assert_eq!(
            err("kmalloc-8 1 1 8 512 1 : tunables 0 0 0 : tunables 1 1 0").field,
            "slabdata"
        );
        let e = err("kmalloc-8 1 1 8 512 1 : slabdata 1 1 0 7");
        assert_eq!(
            (e.field, e.kind),
            ("sharedavail", ErrorKind::Trailing("7".into()))
        );
    }

    #[test]
    fn error_messages_are_one_short_line() {
        let long = format!(
            "kmalloc-8 1 {}\n{} 8 512 1 : slabdata 1 1 0",
            "y".repeat(500),
            "z"
        );
        let msg = err(&long).to_string();
        assert!(!msg.contains('\n') && msg.len() < 120, "{msg}");
        let msg = err("kmalloc-8 1 a\u{7}\r\u{1b}b 8 512 1 : slabdata 1 1 0").to_string();
        assert!(!msg.contains(['\n', '\r', '\u{1b}']), "{msg}");
    }
}
