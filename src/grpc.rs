//! gRPC: refusals a gRPC client understands, and what a gRPC answer says about its server.
//!
//! An HTTP/2 request whose `content-type` is `application/grpc` (or `application/grpc+proto`,
//! ...) is refused the gRPC way by [`RejectionResponseLayer`](crate::http::RejectionResponseLayer):
//! HTTP 200, `content-type: application/grpc`, `grpc-status` and a percent-encoded
//! `grpc-message`, all in one Trailers-Only response with an empty body. Every other request
//! keeps its HTTP answer. Nothing to configure: the same layer serves axum routes, tonic
//! routes hosted in an axum `Router`, and a `tonic::transport::Server`.
//!
//! | rejection | HTTP | gRPC code | metadata |
//! |---|---|---|---|
//! | [`RateLimited`](crate::Rejection::RateLimited) | 429 | `RESOURCE_EXHAUSTED` (8) | `grpc-retry-pushback-ms` |
//! | [`CircuitOpen`](crate::Rejection::CircuitOpen) | 503 | `UNAVAILABLE` (14) | `grpc-retry-pushback-ms` |
//! | [`TimedOut`](crate::Rejection::TimedOut) | 504 | `DEADLINE_EXCEEDED` (4) | |
//! | [`PartFailed`](crate::Rejection::PartFailed) | 502 | `UNAVAILABLE` (14), naming the part | |
//! | [`Overloaded`](crate::Rejection::Overloaded) | 503 | `UNAVAILABLE` (14) | `grpc-retry-pushback-ms` |
//! | any other error | 500 | `INTERNAL` (13), the error's text never sent | |
//!
//! `grpc-retry-pushback-ms` is the wait in whole milliseconds, rounded up: what gRPC clients
//! with a retry policy honour (gRFC A6). [`retry_pushback`] reads it back. Override a code
//! per kind with `RejectionResponseLayer::grpc_code` (feature `grpc`).
//!
//! With the `grpc` feature, a [`Rejection`] also carries the matching
//! `tonic::Status` in its [`source`](std::error::Error::source) chain, which is where tonic
//! looks: the layers on a tonic `Channel` fail calls with the right `tonic::Status` (an open
//! breaker is `UNAVAILABLE` with the pushback, not `Unknown`), and a tonic server whose stack
//! has no response layer still answers refusals with their code.
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderMap;
//! use tower_rampart::grpc::retry_pushback;
//!
//! let mut metadata = HeaderMap::new();
//! metadata.insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
//! assert_eq!(retry_pushback(&metadata), Some(Duration::from_millis(1500)));
//! ```

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{Rejection, RejectionKind};

/// The `grpc-retry-pushback-ms` metadata key: how long the server asks the client to wait
/// before retrying, in milliseconds.
///
/// ```
/// assert_eq!(tower_rampart::grpc::GRPC_RETRY_PUSHBACK_MS.as_str(), "grpc-retry-pushback-ms");
/// ```
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub(crate) const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// gRPC status codes this crate answers or reads, by number.
pub(crate) mod code {
    #[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
    pub(crate) const CANCELLED: u8 = 1;
    #[cfg(any(feature = "circuit-breaker", feature = "load-shed", feature = "grpc"))]
    pub(crate) const UNKNOWN: u8 = 2;
    pub(crate) const DEADLINE_EXCEEDED: u8 = 4;
    pub(crate) const RESOURCE_EXHAUSTED: u8 = 8;
    pub(crate) const INTERNAL: u8 = 13;
    pub(crate) const UNAVAILABLE: u8 = 14;
    #[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
    pub(crate) const DATA_LOSS: u8 = 15;
    /// The largest code gRPC defines (`UNAUTHENTICATED`).
    #[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
    pub(crate) const MAX: u8 = 16;
}

/// Whether `headers` say the message is gRPC: a `content-type` of `application/grpc`,
/// alone or followed by `+format` or `;parameters`.
#[inline]
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    let content_type = if headers.keys_len() <= 8 {
        headers
            .iter()
            .find(|(name, _)| *name == http::header::CONTENT_TYPE)
            .map(|(_, value)| value)
    } else {
        headers.get(http::header::CONTENT_TYPE)
    };
    content_type
        .map(HeaderValue::as_bytes)
        .and_then(|value| value.strip_prefix(PREFIX))
        .is_some_and(|rest| matches!(rest.first(), None | Some(b'+' | b';')))
}

/// The default gRPC code of each kind of rejection.
pub(crate) const fn default_code(kind: RejectionKind) -> u8 {
    match kind {
        RejectionKind::CircuitOpen | RejectionKind::PartFailed | RejectionKind::Overloaded => {
            code::UNAVAILABLE
        }
        RejectionKind::RateLimited => code::RESOURCE_EXHAUSTED,
        RejectionKind::TimedOut => code::DEADLINE_EXCEEDED,
    }
}

/// A wait in whole milliseconds, rounded up: a client told less retries too early.
pub(crate) fn pushback_millis(wait: Duration) -> u64 {
    let millis = wait.as_millis();
    let rounded = if wait.subsec_nanos() % 1_000_000 == 0 {
        millis
    } else {
        millis + 1
    };
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// The wait a server asked for in `grpc-retry-pushback-ms`, from response headers, trailers
/// or a `tonic::Status`'s metadata (`status.metadata().as_ref()`). `None` when absent or not
/// a plain non-negative integer (gRPC's "do not retry" is a negative value).
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_rampart::grpc::retry_pushback;
///
/// let mut trailers = HeaderMap::new();
/// assert_eq!(retry_pushback(&trailers), None);
/// trailers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
/// assert_eq!(retry_pushback(&trailers), None);
/// ```
pub fn retry_pushback(headers: &HeaderMap) -> Option<Duration> {
    let digits = headers.get(GRPC_RETRY_PUSHBACK_MS)?.as_bytes();
    crate::http::parse_digits(digits, 19).map(Duration::from_millis)
}

/// The `grpc-status` in `headers`, if it is a number gRPC defines.
#[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
pub(crate) fn status_code(headers: &HeaderMap) -> Option<u8> {
    parse_status(status_value(headers)?)
}

/// The `grpc-status` value in `headers`. The few names of a gRPC answer's headers or
/// trailers are compared in one pass: hashing a custom name costs more than comparing it.
#[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
#[inline]
pub(crate) fn status_value(headers: &HeaderMap) -> Option<&HeaderValue> {
    const SCAN_UP_TO: usize = 8;
    if headers.keys_len() > SCAN_UP_TO {
        return headers.get(GRPC_STATUS);
    }
    headers
        .iter()
        .find(|(name, _)| name.as_str().len() == 11 && *name == GRPC_STATUS)
        .map(|(_, value)| value)
}

/// A `grpc-status` value, if it is a number gRPC defines.
#[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
pub(crate) fn parse_status(value: &HeaderValue) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'0'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'9'] if d - b'0' + 10 <= code::MAX => Some(d - b'0' + 10),
        _ => None,
    }
}

/// `message` encoded for `grpc-message`: bytes outside printable ASCII, and `%`, become
/// `%XX` (the gRPC over HTTP/2 specification's percent-encoding).
pub(crate) fn encode_message(message: &str) -> HeaderValue {
    let plain = |b: u8| (b' '..=b'~').contains(&b) && b != b'%';
    if message.bytes().all(plain) {
        if let Ok(value) = HeaderValue::from_str(message) {
            return value;
        }
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(message.len() * 3);
    for b in message.bytes() {
        if plain(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    HeaderValue::from_bytes(&out).expect("percent-encoded text is a valid header value")
}

/// Writes the gRPC status of `rejection` (with `code`) into `headers`: `grpc-status`,
/// `grpc-message` and, for a refusal, `grpc-retry-pushback-ms`.
pub(crate) fn write_status(rejection: &Rejection, code: u8, headers: &mut HeaderMap) {
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    headers.insert(GRPC_MESSAGE, encode_message(&rejection.to_string()));
    if let Some(wait) = rejection.retry_after() {
        headers.insert(
            GRPC_RETRY_PUSHBACK_MS,
            HeaderValue::from(pushback_millis(wait)),
        );
    }
}

#[cfg(feature = "grpc")]
pub(crate) use tonic_status::StatusCell;

#[cfg(feature = "grpc")]
mod tonic_status {
    use std::error::Error as StdError;
    use std::fmt;
    use std::sync::{Arc, OnceLock};

    use super::*;

    /// A rejection's `tonic::Status`, built the first time tonic (or anyone walking the
    /// error's sources) asks for it: nothing is built for a refusal no gRPC caller sees.
    #[derive(Default)]
    pub(crate) struct StatusCell(OnceLock<Box<tonic::Status>>);

    impl StatusCell {
        pub(crate) const fn new() -> Self {
            Self(OnceLock::new())
        }

        /// The status for a rejection of `kind` (waiting `retry_after`, described by
        /// `message`, caused by `cause`), built on first use, as an error source.
        pub(crate) fn source(
            &self,
            kind: RejectionKind,
            retry_after: Option<Duration>,
            message: &dyn fmt::Display,
            cause: Option<Arc<dyn StdError + Send + Sync + 'static>>,
        ) -> &(dyn StdError + 'static) {
            &**self.0.get_or_init(|| {
                let mut status = status_for(kind, retry_after, message.to_string());
                if let Some(cause) = cause {
                    status.set_source(cause);
                }
                Box::new(status)
            })
        }
    }

    impl Clone for StatusCell {
        // A clone builds its own status when asked: `tonic::Status` is not `Clone`.
        fn clone(&self) -> Self {
            Self::new()
        }
    }

    impl fmt::Debug for StatusCell {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("StatusCell")
        }
    }

    impl PartialEq for StatusCell {
        // Derived from the rejection's data: two equal rejections have equal statuses.
        fn eq(&self, _: &Self) -> bool {
            true
        }
    }

    impl Eq for StatusCell {}

    /// The `tonic::Status` for a rejection of `kind`, with its default code.
    fn status_for(
        kind: RejectionKind,
        retry_after: Option<Duration>,
        message: String,
    ) -> tonic::Status {
        let code = tonic::Code::from_i32(i32::from(default_code(kind)));
        let mut metadata = HeaderMap::new();
        if let Some(wait) = retry_after {
            metadata.insert(
                GRPC_RETRY_PUSHBACK_MS,
                HeaderValue::from(pushback_millis(wait)),
            );
        }
        tonic::Status::with_metadata(
            code,
            message,
            tonic::metadata::MetadataMap::from_headers(metadata),
        )
    }

    /// A rejection as the `tonic::Status` a gRPC handler returns: its default code, its
    /// message and, for a refusal, `grpc-retry-pushback-ms` in the metadata.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::{Rejection, error::RateLimited};
    ///
    /// let status = tonic::Status::from(Rejection::from(RateLimited::new(Duration::from_millis(250))));
    /// assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    /// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
    /// ```
    impl From<Rejection> for tonic::Status {
        fn from(rejection: Rejection) -> Self {
            let mut status = status_for(
                rejection.kind(),
                rejection.retry_after(),
                rejection.to_string(),
            );
            if let Rejection::PartFailed(failed) = &rejection {
                status.set_source(Arc::clone(&failed.cause));
            }
            status
        }
    }

    /// tonic's body, for rejection responses on a `tonic::transport::Server`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body as _;
    /// use tower_rampart::http::ResponseBody;
    ///
    /// assert!(<tonic::body::Body as ResponseBody>::empty().is_end_stream());
    /// let json = <tonic::body::Body as ResponseBody>::from_bytes(Bytes::from_static(b"{}"));
    /// assert_eq!(json.size_hint().exact(), Some(2));
    /// ```
    impl crate::http::ResponseBody for tonic::body::Body {
        fn from_bytes(bytes: bytes::Bytes) -> Self {
            tonic::body::Body::new(http_body_util::Full::new(bytes))
        }

        fn empty() -> Self {
            tonic::body::Body::empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_grpc(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("application/grpc;charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/grpcx"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("deadline elapsed"), "deadline elapsed");
        assert_eq!(encode_message("100% done"), "100%25 done");
        assert_eq!(encode_message("café\n"), "caf%C3%A9%0A");
    }

    #[test]
    fn pushback_rounds_up_to_whole_milliseconds() {
        assert_eq!(pushback_millis(Duration::from_micros(1)), 1);
        assert_eq!(pushback_millis(Duration::from_millis(20)), 20);
        assert_eq!(pushback_millis(Duration::from_micros(20_001)), 21);
    }

    #[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
    #[test]
    fn status_codes_are_read_strictly() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_STATUS, HeaderValue::from_static(value));
            status_code(&headers)
        };
        assert_eq!(with("0"), Some(0));
        assert_eq!(with("14"), Some(code::UNAVAILABLE));
        assert_eq!(with("16"), Some(16));
        assert_eq!(with("17"), None);
        assert_eq!(with("014"), None);
        assert_eq!(with(" 4"), None);
        assert_eq!(status_code(&HeaderMap::new()), None);
    }

    #[test]
    fn pushback_is_read_back() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static(value));
            retry_pushback(&headers)
        };
        assert_eq!(with("0"), Some(Duration::ZERO));
        assert_eq!(with("99999999999999999999"), None);
        assert_eq!(with("12a"), None);
    }
}
