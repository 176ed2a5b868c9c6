//! Budgets sent by callers: `grpc-timeout` and a plain milliseconds header, read and written.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::http::parse_digits;

/// `grpc-timeout`: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC
/// over HTTP/2 specification defines it.
pub(crate) static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The default plain budget header: the remaining time in whole milliseconds.
pub(crate) static DEFAULT_BUDGET_HEADER: HeaderName =
    HeaderName::from_static("x-request-timeout-ms");

/// Longest plain milliseconds value accepted: 10 digits (about 115 days).
const MAX_MILLIS_DIGITS: usize = 10;

/// Largest plain milliseconds value, the most [`millis_value`] writes.
const MAX_MILLIS: u64 = 9_999_999_999;

/// Parses a `grpc-timeout` value; `None` if it is not exactly 1 to 8 ASCII digits and a unit.
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    let amount = parse_digits(digits, 8)?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3_600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// How much sooner than a caller's `grpc-timeout` the deadline falls.
///
/// A gRPC server enforces the same header itself (tonic cancels the call with `CANCELLED`
/// "Timeout expired"), from a clock read a little before this layer's. One millisecond
/// earlier, this layer's `DEADLINE_EXCEEDED` is the answer the caller gets, with the
/// request id and metrics that go with it, whenever less than a millisecond passes between
/// the server reading the header and this layer being called.
pub(crate) const GRPC_MARGIN: Duration = Duration::from_millis(1);

/// A `grpc-timeout` value as a budget: [`GRPC_MARGIN`] shorter than the caller sent.
fn parse_grpc_budget(value: &[u8]) -> Option<Duration> {
    parse_grpc_timeout(value).map(|timeout| timeout.saturating_sub(GRPC_MARGIN))
}

/// Parses a plain milliseconds value: 1 to 10 ASCII digits, nothing else.
pub(crate) fn parse_millis(value: &[u8]) -> Option<Duration> {
    parse_digits(value, MAX_MILLIS_DIGITS).map(Duration::from_millis)
}

/// The `grpc-timeout` value for `budget`, in the finest unit that fits in 8 digits, rounded
/// down (a callee must not believe it has more time than it has).
pub(crate) fn grpc_timeout_value(budget: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = budget.as_nanos();
    let (amount, unit) = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ]
    .into_iter()
    .map(|(scale, unit)| (nanos / scale, unit))
    .find(|(amount, _)| *amount <= MAX)
    .unwrap_or((MAX, b'H'));
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(amount).as_bytes();
    let mut text = [0u8; 9];
    text[..digits.len()].copy_from_slice(digits);
    let len = digits.len();
    text[len] = unit;
    HeaderValue::from_bytes(&text[..=len])
        .expect("digits and a unit letter are a valid header value")
}

/// The plain milliseconds value for `budget`, rounded down and capped at what
/// [`parse_millis`] reads back (10 digits): a budget of more than 115 days is sent as 115 days.
pub(crate) fn millis_value(budget: Duration) -> HeaderValue {
    let millis = u64::try_from(budget.as_millis()).map_or(MAX_MILLIS, |ms| ms.min(MAX_MILLIS));
    HeaderValue::from(millis)
}

/// The budget a caller sent in `headers`: the smaller of a valid `grpc-timeout` (if `grpc`)
/// and a valid `budget_header`. Invalid values are ignored with a DEBUG event.
pub(crate) fn inbound_budget(
    headers: &HeaderMap,
    grpc: bool,
    budget_header: Option<&HeaderName>,
) -> Option<Duration> {
    if headers.is_empty() {
        return None;
    }
    // Few headers: one pass comparing names is cheaper than hashing each name looked up
    // (two hashed lookups cost more than scanning a dozen entries).
    if headers.keys_len() <= SCAN_UP_TO {
        let (mut grpc_value, mut plain_value) = (None, None);
        let grpc_name = GRPC_TIMEOUT.as_str();
        let plain_name = budget_header.map_or("", HeaderName::as_str);
        for (name, value) in headers {
            // Lengths first: most names differ in length from both.
            let name = name.as_str();
            if name.len() == grpc_name.len() && grpc && grpc_value.is_none() && name == grpc_name {
                grpc_value = Some(value);
            } else if name.len() == plain_name.len() && plain_value.is_none() && name == plain_name
            {
                plain_value = Some(value);
            }
        }
        let grpc = grpc_value.and_then(|v| parsed(&GRPC_TIMEOUT, v, parse_grpc_budget));
        let plain = budget_header
            .zip(plain_value)
            .and_then(|(name, v)| parsed(name, v, parse_millis));
        return earliest(grpc, plain);
    }
    let grpc = if grpc {
        read(headers, &GRPC_TIMEOUT, parse_grpc_budget)
    } else {
        None
    };
    let plain = budget_header.and_then(|name| read(headers, name, parse_millis));
    earliest(grpc, plain)
}

/// Header names at most, for which [`inbound_budget`] scans instead of looking up.
const SCAN_UP_TO: usize = 16;

/// The earlier of two budgets, either of which may be missing.
#[inline]
fn earliest(grpc: Option<Duration>, plain: Option<Duration>) -> Option<Duration> {
    match (grpc, plain) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `parse` applied to `value`, the value of `name`; a malformed value is ignored with a DEBUG
/// event.
#[inline]
fn parsed(
    name: &HeaderName,
    value: &HeaderValue,
    parse: impl FnOnce(&[u8]) -> Option<Duration>,
) -> Option<Duration> {
    let parsed = parse(value.as_bytes());
    if parsed.is_none() {
        malformed(name, value);
    }
    parsed
}

/// `parse` applied to the value of `name`, if present; a malformed value is ignored with a
/// DEBUG event. Generic over `parse` so that each parser is inlined.
#[inline]
fn read(
    headers: &HeaderMap,
    name: &HeaderName,
    parse: impl FnOnce(&[u8]) -> Option<Duration>,
) -> Option<Duration> {
    parsed(name, headers.get(name)?, parse)
}

#[cold]
fn malformed(name: &HeaderName, value: &HeaderValue) {
    tracing::debug!(
        timeout.header = %name,
        timeout.value = %crate::untrusted::Untrusted(value.as_bytes()),
        "ignoring a malformed inbound budget"
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let parse = |s: &str| parse_grpc_timeout(s.as_bytes());
        assert_eq!(parse("1H"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [
            "",
            "m",
            "100",
            "100x",
            "123456789m",
            "-1m",
            "1.5S",
            " 1S",
            "1s",
            "٣S",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scanning_few_headers_and_looking_up_many_agree() {
        for filler in [0, 3, 40] {
            let mut headers = HeaderMap::new();
            for i in 0..filler {
                headers.insert(
                    HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_static("1"),
                );
            }
            headers.insert(&GRPC_TIMEOUT, HeaderValue::from_static("300m"));
            headers.insert(&DEFAULT_BUDGET_HEADER, HeaderValue::from_static("200"));
            let both = inbound_budget(&headers, true, Some(&DEFAULT_BUDGET_HEADER));
            assert_eq!(both, Some(Duration::from_millis(200)), "{filler} fillers");
            let grpc_only = inbound_budget(&headers, true, None);
            assert_eq!(
                grpc_only,
                Some(Duration::from_millis(299)),
                "{filler} fillers: a gRPC budget ends 1 ms early"
            );
            let plain_only = inbound_budget(&headers, false, Some(&DEFAULT_BUDGET_HEADER));
            assert_eq!(
                plain_only,
                Some(Duration::from_millis(200)),
                "{filler} fillers"
            );
        }
    }

    #[test]
    fn plain_millis() {
        assert_eq!(parse_millis(b"300"), Some(Duration::from_millis(300)));
        assert_eq!(parse_millis(b"0"), Some(Duration::ZERO));
        for bad in [&b""[..], b"12345678901", b"+3", b"3 ", b"3ms", b"-1"] {
            assert_eq!(parse_millis(bad), None);
        }
    }

    #[test]
    fn outbound_grpc_values_fit_and_round_down() {
        let value = |d: Duration| grpc_timeout_value(d).to_str().unwrap().to_owned();
        assert_eq!(value(Duration::from_nanos(1_500)), "1500n");
        assert_eq!(value(Duration::from_millis(250)), "250000u");
        assert_eq!(value(Duration::from_secs(300)), "300000m");
        assert_eq!(value(Duration::from_secs(3 * 86_400)), "259200S");
        assert_eq!(value(Duration::ZERO), "0n");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = parse_grpc_timeout(&bytes);
            let _ = parse_millis(&bytes);
        }

        #[test]
        fn grpc_round_trip_never_grows(nanos in 0u64..u64::MAX / 2) {
            let budget = Duration::from_nanos(nanos);
            let value = grpc_timeout_value(budget);
            let parsed = parse_grpc_timeout(value.as_bytes()).unwrap();
            prop_assert!(parsed <= budget);
            // Rounding down loses less than one unit of the chosen scale: under 1/10^5 of
            // the budget, since the finer scale (at most 1 000 times finer) overflowed 8 digits.
            prop_assert!(budget - parsed <= budget / 50_000 + Duration::from_nanos(1));
        }

        /// Regression: budgets over 115 days were written with 11 or more digits, which the
        /// inbound parser refuses, so the next hop ran with no deadline at all.
        #[test]
        fn what_is_written_is_read_back(nanos in any::<u64>()) {
            let budget = Duration::from_nanos(nanos);
            let plain = millis_value(budget);
            let parsed = parse_millis(plain.as_bytes());
            prop_assert!(parsed.is_some(), "{:?} not read back", plain);
            prop_assert!(parsed.unwrap() <= budget);
            let grpc = grpc_timeout_value(budget);
            prop_assert!(parse_grpc_timeout(grpc.as_bytes()).is_some());
        }

        #[test]
        fn millis_round_trip(ms in 0u64..10_000_000_000) {
            prop_assert_eq!(parse_millis(ms.to_string().as_bytes()), Some(Duration::from_millis(ms)));
        }
    }
}
