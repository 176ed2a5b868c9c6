//! The trace-id of a W3C Trace Context (level 1) `traceparent` header, strictly validated.
//!
//! `version "-" trace-id "-" parent-id "-" trace-flags`, all lowercase hex:
//! - version: 2 digits, never `ff`; version `00` is exactly 55 bytes, a later version may
//!   carry more only after a `-` (the specification's forward-compatibility rule);
//! - trace-id: 32 digits, not all zero; parent-id: 16 digits, not all zero; flags: 2 digits;
//! - exactly one `traceparent` header: two are invalid.
//!
//! An invalid header is ignored, never adopted.

use http::{HeaderMap, HeaderName};

pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Length of a version-00 `traceparent`.
const LEN: usize = 55;

/// The trace-id of the request's one valid `traceparent`.
pub(crate) fn trace_id(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(value.as_bytes())
}

/// The trace-id of a `traceparent` value, if the value is valid.
fn parse(bytes: &[u8]) -> Option<&[u8]> {
    let head = bytes.get(..LEN)?;
    let (version, trace, parent, flags) = (&head[0..2], &head[3..35], &head[36..52], &head[53..55]);
    let dashes = head[2] == b'-' && head[35] == b'-' && head[52] == b'-';
    let length_ok = match version {
        b"00" => bytes.len() == LEN,
        _ => bytes.len() == LEN || bytes[LEN] == b'-',
    };
    let valid = dashes
        && length_ok
        && version != b"ff"
        && [version, trace, parent, flags]
            .iter()
            .all(|f| f.iter().all(is_lower_hex))
        && !all_zero(trace)
        && !all_zero(parent);
    valid.then_some(trace)
}

fn is_lower_hex(b: &u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(b)
}

fn all_zero(field: &[u8]) -> bool {
    field.iter().all(|b| *b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn id(value: &str) -> Option<&str> {
        parse(value.as_bytes()).map(|t| std::str::from_utf8(t).unwrap())
    }

    #[test]
    fn a_valid_header_gives_its_trace_id() {
        assert_eq!(id(VALID), Some(TRACE));
        // A later version may carry more fields after a dash.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds";
        assert_eq!(id(future), Some(TRACE));
        assert_eq!(id(&VALID.replacen("00", "01", 1)), Some(TRACE));
    }

    /// Regression: only the length, the dashes and the trace-id's hex were checked.
    #[test]
    fn every_rule_of_the_specification_is_enforced() {
        let cases = [
            ("version ff", VALID.replacen("00", "ff", 1)),
            ("version 00 with more", format!("{VALID}-extra")),
            (
                "later version, more without a dash",
                VALID.replacen("00", "01", 1) + "x",
            ),
            ("uppercase trace-id", VALID.replace("4bf9", "4BF9")),
            ("uppercase version", VALID.replacen("00", "0A", 1)),
            (
                "zero trace-id",
                format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            ),
            ("zero parent-id", format!("00-{TRACE}-0000000000000000-01")),
            ("flags not hex", format!("00-{TRACE}-00f067aa0ba902b7-0g")),
            (
                "parent-id not hex",
                format!("00-{TRACE}-00f067aa0ba902bz-01"),
            ),
            ("version not hex", VALID.replacen("00", "0-", 1)),
            ("short", VALID[..54].to_owned()),
            ("misplaced dash", VALID.replacen('-', "_", 1)),
        ];
        for (what, value) in cases {
            assert_eq!(id(&value), None, "{what}: {value}");
        }
    }

    #[test]
    fn two_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.append(&TRACEPARENT, VALID.parse().unwrap());
        assert_eq!(trace_id(&headers), Some(TRACE.as_bytes()));
        headers.append(&TRACEPARENT, VALID.parse().unwrap());
        assert_eq!(trace_id(&headers), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = parse(&bytes);
        }
    }
}
