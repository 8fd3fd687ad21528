//! The `key=value` fields of an event body, in the order the event's print format gives them,
//! and the number formats ftrace prints (`%zu`, `%llx`, `%p`, `__print_array`).

use crate::error::{quoted, ParseError};

/// Finds `keys` (in order) in `body` and returns their values. A value runs to the next key
/// found, so values with spaces (`call_site=ext4_foo+0x1c/0x40 [ext4]`) stay whole. Keys
/// marked optional may be absent (their value is then `""`); a missing required key is an
/// error naming it.
pub(crate) fn extract<'a, const N: usize>(
    body: &'a str,
    keys: [(&'static str, bool); N],
    line: usize,
) -> Result<[&'a str; N], ParseError> {
    let mut starts = [usize::MAX; N];
    let mut key_at = [usize::MAX; N];
    let mut cursor = 0;
    for (i, (key, required)) in keys.iter().enumerate() {
        match find_key(body, key, cursor) {
            Some(at) => {
                key_at[i] = at;
                starts[i] = at + key.len() + 1;
                cursor = starts[i];
            }
            None if *required => {
                return Err(ParseError::new(line, key, "missing"));
            }
            None => {}
        }
    }
    let mut out = [""; N];
    for i in 0..N {
        if starts[i] == usize::MAX {
            continue;
        }
        let end = key_at[i + 1..]
            .iter()
            .copied()
            .find(|&a| a != usize::MAX)
            .unwrap_or(body.len());
        out[i] = body[starts[i]..end].trim();
    }
    Ok(out)
}

/// Position of `key=` at or after `from`, at the start of `body` or after a space.
fn find_key(body: &str, key: &str, from: usize) -> Option<usize> {
    let b = body.as_bytes();
    let mut at = from;
    while let Some(i) = body.get(at..)?.find(key) {
        let k = at + i;
        let boundary = k == 0 || b[k - 1] == b' ' || b[k - 1] == b'\t';
        if boundary && b.get(k + key.len()) == Some(&b'=') {
            return Some(k);
        }
        at = k + 1;
    }
    None
}

/// A decimal count (`%zu`, `%d` of a non-negative field).
pub(crate) fn dec(s: &str, field: &'static str, line: usize) -> Result<u64, ParseError> {
    if s.is_empty() {
        return Err(ParseError::new(line, field, "empty"));
    }
    s.parse()
        .map_err(|_| ParseError::new(line, field, format!("not a number: {}", quoted(s))))
}

/// A hexadecimal number, with or without `0x` (`%llx`, trace-cmd's `0x...`).
pub(crate) fn hex(s: &str, field: &'static str, line: usize) -> Result<u64, ParseError> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || digits.len() > 16 {
        return Err(ParseError::new(
            line,
            field,
            format!("not a hex number: {}", quoted(s)),
        ));
    }
    u64::from_str_radix(digits, 16)
        .map_err(|_| ParseError::new(line, field, format!("not a hex number: {}", quoted(s))))
}

/// A `%p` pointer: hex (real or hashed), `(nil)` / `(null)` for NULL.
pub(crate) fn ptr(s: &str, field: &'static str, line: usize) -> Result<u64, ParseError> {
    match s {
        "(nil)" | "(null)" => Ok(0),
        _ => hex(s, field, line),
    }
}

/// `__print_array` output, `{0x1000,0x2000}`, appended to `out`; returns how many.
pub(crate) fn array(
    s: &str,
    field: &'static str,
    line: usize,
    out: &mut Vec<u64>,
) -> Result<usize, ParseError> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| {
            ParseError::new(
                line,
                field,
                format!("expected `{{0x..,..}}`: {}", quoted(s)),
            )
        })?;
    if inner.trim().is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for item in inner.split(',') {
        out.push(hex(item.trim(), field, line)?);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_run_to_the_next_key() {
        let body = "call_site=ext4_foo+0x1c/0x40 [ext4] ptr=ffff8881 bytes_req=5";
        let [site, p, req] = extract(
            body,
            [("call_site", true), ("ptr", true), ("bytes_req", true)],
            1,
        )
        .unwrap();
        assert_eq!(site, "ext4_foo+0x1c/0x40 [ext4]");
        assert_eq!(p, "ffff8881");
        assert_eq!(req, "5");
    }

    #[test]
    fn missing_and_optional_keys() {
        let e = extract(
            "call_site=a ptr=1",
            [("call_site", true), ("bytes_req", true)],
            7,
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "line 7: field `bytes_req`: missing"
        );
        let [a, b] = extract("a=1", [("a", true), ("b", false)], 1).unwrap();
        assert_eq!((a, b), ("1", ""));
        // `xptr=` is not `ptr=`.
        assert!(extract("xptr=1", [("ptr", true)], 1).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(hex("0xff", "f", 1), Ok(255));
        assert_eq!(hex("ffff888100e71000", "f", 1), Ok(0xffff888100e71000));
        assert!(hex("", "f", 1).is_err());
        assert!(hex("12345678901234567", "f", 1).is_err());
        assert_eq!(ptr("(nil)", "ptr", 1), Ok(0));
        assert!(dec("-1", "n", 1).is_err());
        let mut v = Vec::new();
        assert_eq!(array("{0x10,0x20}", "a", 1, &mut v), Ok(2));
        assert_eq!(v, [16, 32]);
        assert_eq!(array("{}", "a", 1, &mut v), Ok(0));
        assert!(array("0x10", "a", 1, &mut v).is_err());
    }
}
