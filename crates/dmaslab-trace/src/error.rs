//! The one error a trace can have: a line that does not parse, named by line number and field.

use std::fmt;

/// A malformed line: `line N: field `F`: what is wrong`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the input.
    pub line: usize,
    /// The field that is missing or malformed (`timestamp`, `ptr`, `bytes_req`, ...).
    pub field: &'static str,
    /// What is wrong with it, with the offending text (escaped, so the message stays one line).
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, field: &'static str, message: impl Into<String>) -> Self {
        ParseError {
            line,
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: field `{}`: {}",
            self.line, self.field, self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// `s` quoted and escaped for a one-line message, cut after 40 characters.
pub(crate) fn quoted(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    format!("\"{out}\"")
}
