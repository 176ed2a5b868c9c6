//! The single mapping from a [`Rejection`] to an HTTP response, and the layer that applies it.
//!
//! Every rampart layer rejects with the same [`Rejection`] value; this module is the only
//! place that turns one into a status, headers and a body, so every 429, 503, 504 and 502
//! of a service looks the same:
//!
//! | rejection | status | headers | default body |
//! |---|---|---|---|
//! | [`RateLimited`](Rejection::RateLimited) | 429 | `Retry-After`, `RateLimit-Policy`, `RateLimit` | `{"error":"rate_limited","retry_after_s":3}` |
//! | [`CircuitOpen`](Rejection::CircuitOpen) | 503 | `Retry-After`, `Cache-Control: no-store` | `{"error":"circuit_open","retry_after_s":10}` |
//! | [`TimedOut`](Rejection::TimedOut) | 504 | | `{"error":"timed_out"}` |
//! | [`PartFailed`](Rejection::PartFailed) | 502 | | `{"error":"part_failed","part":"core"}` |
//! | [`Overloaded`](Rejection::Overloaded) | 503 | `Retry-After` | `{"error":"overloaded","retry_after_s":1}` |
//! | any other error | 500 | | `{"error":"internal"}` (the error is logged once at ERROR, never sent) |
//!
//! HTTP/2 requests whose `content-type` is `application/grpc*` are refused the gRPC way instead: HTTP
//! 200 with `grpc-status` in one Trailers-Only response (see [`crate::grpc`] for the codes).
//!
//! `Retry-After` is in whole seconds, rounded **up**, and at least 1 (see
//! [`retry_after_secs`]): a client told "0" retries at once and is refused again. The
//! `RateLimit` fields follow draft-ietf-httpapi-ratelimit-headers (`"policy";q=…;w=…` and
//! `"policy";r=…;t=…`).
//!
//! # Using it with axum
//!
//! Put [`RejectionResponseLayer`] outside the rampart layers. The stack's error type becomes
//! [`Infallible`], which is what `Router::layer` requires, so there is no `HandleErrorLayer`
//! to write and no `Buffer` to add:
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_rampart::http::RejectionResponseLayer;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(RejectionResponseLayer::new())
//!             // rampart layers go here, e.g. .layer(RateLimitLayer::per_second(50).build()?)
//!     );
//! # let _ = app;
//! ```
//!
//! With the `axum` feature, [`Rejection`] also implements `IntoResponse`, so a handler can
//! return `Result<T, Rejection>`.

use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, RateLimited, Rejection, RejectionKind};
use crate::grpc;

/// The `RateLimit-Policy` header field (draft-ietf-httpapi-ratelimit-headers).
///
/// ```
/// assert_eq!(tower_rampart::http::RATELIMIT_POLICY.as_str(), "ratelimit-policy");
/// ```
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit` header field (draft-ietf-httpapi-ratelimit-headers).
///
/// ```
/// assert_eq!(tower_rampart::http::RATELIMIT.as_str(), "ratelimit");
/// ```
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// A wait as a `Retry-After` value: whole seconds, rounded up, at least 1.
///
/// Rounding down would tell a client to come back before capacity exists; 0 would make it
/// retry at once.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::http::retry_after_secs;
///
/// assert_eq!(retry_after_secs(Duration::ZERO), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
/// assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(1010)), 2);
/// ```
pub const fn retry_after_secs(wait: Duration) -> u64 {
    let secs = ceil_secs(wait);
    if secs == 0 { 1 } else { secs }
}

/// A header value of 1 to `max` ASCII digits (`max` at most 19, which a `u64` always
/// holds), nothing else: the one decimal parser of the header values this crate reads.
pub(crate) fn parse_digits(digits: &[u8], max: usize) -> Option<u64> {
    debug_assert!(max <= 19, "20 digits may not fit a u64");
    if digits.is_empty() || digits.len() > max {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Whole seconds, rounded up (0 stays 0).
const fn ceil_secs(d: Duration) -> u64 {
    let whole = d.as_secs();
    if d.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    }
}

// === impl Rejection (HTTP) ===

impl Rejection {
    /// The status code this rejection maps to by default: 503, 429, 504, 502 or 503
    /// ([`RejectionResponseLayer::status`] overrides it per kind).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use tower_rampart::{Rejection, error::{CircuitOpen, PartFailed, RateLimited, TimedOut}};
    ///
    /// assert_eq!(Rejection::from(CircuitOpen::new(Duration::ZERO)).status(), StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(Rejection::from(RateLimited::new(Duration::ZERO)).status(), StatusCode::TOO_MANY_REQUESTS);
    /// assert_eq!(Rejection::from(TimedOut::new(Duration::ZERO)).status(), StatusCode::GATEWAY_TIMEOUT);
    /// assert_eq!(Rejection::from(PartFailed::new("core", "x")).status(), StatusCode::BAD_GATEWAY);
    /// ```
    pub const fn status(&self) -> StatusCode {
        match self {
            Rejection::CircuitOpen(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            Rejection::PartFailed(_) => StatusCode::BAD_GATEWAY,
            Rejection::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Writes the headers this rejection implies (`Retry-After`, `Cache-Control`,
    /// `RateLimit-Policy`, `RateLimit`) into `headers`, replacing any already there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderMap;
    /// use tower_rampart::{Rejection, error::CircuitOpen};
    ///
    /// let mut headers = HeaderMap::new();
    /// Rejection::from(CircuitOpen::new(Duration::from_millis(9_100))).write_headers(&mut headers);
    /// assert_eq!(headers["retry-after"], "10");
    /// assert_eq!(headers["cache-control"], "no-store");
    /// ```
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if let Some(wait) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
        }
        match self {
            Rejection::CircuitOpen(_) => {
                headers.insert(CACHE_CONTROL, NO_STORE);
            }
            Rejection::RateLimited(limited) => {
                write_rate_limit_headers(limited, headers);
            }
            Rejection::TimedOut(_) | Rejection::PartFailed(_) | Rejection::Overloaded(_) => {}
        }
    }
}

/// Writes `RateLimit-Policy` and `RateLimit` for `limited` into `headers`.
///
/// Rate limiters also call this on admitted responses when asked to advertise their state.
/// How a token bucket of `rate` per `period` with room for `burst` is told to clients:
///
/// | field | value | meaning for a client |
/// |---|---|---|
/// | `w` | `period` in whole seconds, rounded up, at least 1 | the window |
/// | `q` | `rate` scaled to `w`, rounded down | send at most `q` per `w`, spread out |
/// | `r` | whole tokens in the bucket now | send at most `r` at once, now |
/// | `t` | seconds until one more token, rounded up; 0 when the bucket is full | when `r` grows |
///
/// On a refusal `t` never exceeds `Retry-After`. Worked example, `per_second(50).burst(20)`:
/// a full bucket advertises `q=50;w=1` and `r=20;t=0`; after 20 requests at once, `r=0;t=1`
/// (the next token is 20 ms away, rounded up to a whole second). A client that sends
/// at most `r` at once, and after that one request every `w/q` (20 ms) or waits `t` when
/// `r` is 0, is never refused. The burst is not a quota of its own: only `r` tells it.
/// Header fields are left out, never malformed, when the policy name cannot be sent.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_rampart::{error::RateLimited, http::write_rate_limit_headers};
///
/// let limited = RateLimited::new(Duration::from_millis(20))
///     .with_quota("per-ip", 50, Duration::from_secs(1))
///     .with_remaining(0, Duration::from_millis(20));
/// let mut headers = HeaderMap::new();
/// write_rate_limit_headers(&limited, &mut headers);
/// assert_eq!(headers["ratelimit-policy"], r#""per-ip";q=50;w=1"#);
/// assert_eq!(headers["ratelimit"], r#""per-ip";r=0;t=1"#);
/// ```
pub fn write_rate_limit_headers(limited: &RateLimited, headers: &mut HeaderMap) {
    // `t` is about the next unit and `Retry-After` about this request: never say more.
    let next = limited.reset().min(limited.retry_after());
    write_rate_limit_fields(
        headers,
        limited.policy(),
        limited.limit(),
        limited.window(),
        limited.remaining(),
        next,
    );
}

/// [`write_rate_limit_headers`] from raw parts, for limiters advertising on admitted
/// responses without building a [`RateLimited`]: `limit` units per `period`, `remaining`
/// now, one more in `next`.
pub(crate) fn write_rate_limit_fields(
    headers: &mut HeaderMap,
    policy: &str,
    limit: u64,
    period: Duration,
    remaining: u64,
    next: Duration,
) {
    let window = ceil_secs(period).max(1);
    // `limit` per `period` is `limit * window / period` per `window`, rounded down so that
    // a client spreading `q` requests over `w` never outpaces the bucket.
    let quota = match period.as_nanos() {
        0 => limit,
        nanos => {
            let scaled = u128::from(limit) * u128::from(window) * 1_000_000_000 / nanos;
            u64::try_from(scaled).unwrap_or(u64::MAX)
        }
    };
    // By hand into exact-size buffers: under a flood, building 429s is the hot path, and
    // `format!` through `Display` cost most of it.
    let quota = field(policy, b";q=", quota, b";w=", window);
    let state = field(policy, b";r=", remaining, b";t=", ceil_secs(next));
    if let (Ok(quota), Ok(state)) = (
        HeaderValue::from_maybe_shared(quota),
        HeaderValue::from_maybe_shared(state),
    ) {
        headers.insert(RATELIMIT_POLICY, quota);
        headers.insert(RATELIMIT, state);
    }
}

/// `"policy"<k1><v1><k2><v2>`: a structured-field string (RFC 8941 §3.3.3, `"` and `\`
/// escaped, anything outside printable ASCII dropped so the header stays valid) followed by
/// two integer parameters.
fn field(policy: &str, k1: &[u8], v1: u64, k2: &[u8], v2: u64) -> Bytes {
    let (mut n1, mut n2) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (v1, v2) = (n1.format(v1).as_bytes(), n2.format(v2).as_bytes());
    let mut out =
        Vec::with_capacity(policy.len() * 2 + 2 + k1.len() + v1.len() + k2.len() + v2.len());
    out.push(b'"');
    let plain = |b: &u8| (b' '..=b'~').contains(b) && *b != b'"' && *b != b'\\';
    if policy.bytes().all(|b| plain(&b)) {
        // The usual policy name: copied as it is, not byte by byte.
        out.extend_from_slice(policy.as_bytes());
    } else {
        for &b in policy
            .as_bytes()
            .iter()
            .filter(|b| (b' '..=b'~').contains(b))
        {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out.push(b'"');
    for part in [k1, v1, k2, v2] {
        out.extend_from_slice(part);
    }
    Bytes::from(out)
}

/// A JSON object written field by field: the crate's one JSON writer, for rejection bodies,
/// fan-out pages and the extractors' 500s. Keys and strings are escaped per RFC 8259.
pub(crate) struct JsonObject {
    out: String,
}

impl JsonObject {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity);
        out.push('{');
        Self { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        push_json_string(&mut self.out, key);
        self.out.push(':');
    }

    /// `"key":"value"`, the value escaped.
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_json_string(&mut self.out, value);
        self
    }

    /// `"key":n`.
    pub(crate) fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// `"key":json`, where `json` is already a JSON value.
    #[cfg(feature = "fan-out")]
    pub(crate) fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.out.push_str(json);
        self
    }

    /// `"key":["a","b"]`.
    #[cfg(feature = "fan-out")]
    pub(crate) fn strs<'a>(
        &mut self,
        key: &str,
        items: impl Iterator<Item = &'a str>,
    ) -> &mut Self {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_json_string(&mut self.out, item);
        }
        self.out.push(']');
        self
    }

    pub(crate) fn finish(&mut self) -> Bytes {
        self.out.push('}');
        Bytes::from(std::mem::take(&mut self.out))
    }
}

/// `text` as a JSON string literal, escaped per RFC 8259, appended to `out`. Text that
/// needs no escape (the usual case) is copied in one go.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(text);
    } else {
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Renders the body of a rejection response.
///
/// The mapping sets status and rejection headers first; the body builder then writes the bytes
/// and may add headers of its own (at least `Content-Type`). Implemented by [`JsonBody`] (the
/// default) and by any `Fn(&Rejection, &mut HeaderMap) -> Bytes + Clone + Send + Sync`.
/// Builders are cloned into every response future, so keep them cheap to clone (wrap large
/// state in an `Arc`).
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
/// use tower_rampart::{Rejection, http::RejectionResponseLayer};
///
/// let plain = |rejection: &Rejection, headers: &mut HeaderMap| {
///     headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
///     Bytes::from(rejection.to_string())
/// };
/// let layer = RejectionResponseLayer::new().with_body(plain);
/// # let _ = layer;
/// ```
pub trait RejectionBody: Clone + Send + Sync + 'static {
    /// Returns the body for `rejection`, adding any headers it needs to `headers`.
    fn render(&self, rejection: &Rejection, headers: &mut HeaderMap) -> Bytes;
}

impl<F> RejectionBody for F
where
    F: Fn(&Rejection, &mut HeaderMap) -> Bytes + Clone + Send + Sync + 'static,
{
    fn render(&self, rejection: &Rejection, headers: &mut HeaderMap) -> Bytes {
        self(rejection, headers)
    }
}

/// The default body: a small JSON object with `Content-Type: application/json`.
///
/// `error` is [`Rejection::code`]; `retry_after_s` (the same number as `Retry-After`) is
/// present when the client should wait; `part` names a failed fan-out part; `request_id` is
/// the request's id when a `SetRequestIdLayer` sits outside (feature `request-id`).
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_rampart::{Rejection, error::RateLimited, http::{JsonBody, RejectionBody}};
///
/// let mut headers = HeaderMap::new();
/// let body = JsonBody.render(&Rejection::from(RateLimited::new(Duration::from_millis(2500))), &mut headers);
/// assert_eq!(body, r#"{"error":"rate_limited","retry_after_s":3}"#);
/// assert_eq!(headers["content-type"], "application/json");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonBody;

impl RejectionBody for JsonBody {
    fn render(&self, rejection: &Rejection, headers: &mut HeaderMap) -> Bytes {
        headers.insert(CONTENT_TYPE, APPLICATION_JSON);
        let mut json = JsonObject::with_capacity(64);
        json.str("error", rejection.code());
        if let Some(wait) = rejection.retry_after() {
            json.num("retry_after_s", retry_after_secs(wait));
        }
        if let Rejection::PartFailed(failed) = rejection {
            json.str("part", failed.part());
        }
        // Rendered inside the request's scope when a `SetRequestIdLayer` sits outside.
        #[cfg(feature = "request-id")]
        if let Some(id) = crate::context::RequestId::current() {
            json.str("request_id", id.as_str());
        }
        json.finish()
    }
}

/// A response body type that rejection responses can be written into: JSON bytes for an
/// HTTP refusal, nothing for a gRPC one.
///
/// Implemented for axum's body, tonic's body (feature `grpc`),
/// `http_body_util::Full<Bytes>`, `UnsyncBoxBody<Bytes, E>`, `BoxBody<Bytes, E>`, `Bytes`
/// and `Vec<u8>`; implement it for a body type of your own.
///
/// ```
/// use bytes::Bytes;
/// use tower_rampart::http::ResponseBody;
///
/// struct Text(Bytes);
/// impl ResponseBody for Text {
///     fn from_bytes(bytes: Bytes) -> Self { Text(bytes) }
/// }
/// assert!(Text::empty().0.is_empty());
/// ```
pub trait ResponseBody: Sized {
    /// A body holding `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;

    /// An empty body. Default: `from_bytes` of no bytes.
    fn empty() -> Self {
        Self::from_bytes(Bytes::new())
    }
}

impl ResponseBody for Bytes {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes
    }
}

impl ResponseBody for Vec<u8> {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes.into()
    }
}

impl ResponseBody for http_body_util::Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        http_body_util::Full::new(bytes)
    }
}

impl<E: 'static> ResponseBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt as _;
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

impl<E: 'static> ResponseBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt as _;
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed()
    }
}

impl ResponseBody for axum_core::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes.into()
    }

    fn empty() -> Self {
        axum_core::body::Body::empty()
    }
}

/// The response for `rejection`: its status, its headers, and the body from `body`.
///
/// ```
/// use std::time::Duration;
/// use http::Response;
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower_rampart::{Rejection, error::TimedOut, http::{JsonBody, rejection_response}};
///
/// let rejection = Rejection::from(TimedOut::new(Duration::from_secs(1)));
/// let response: Response<Full<Bytes>> = rejection_response(&rejection, &JsonBody);
/// assert_eq!(response.status(), 504);
/// ```
pub fn rejection_response<B, M>(rejection: &Rejection, body: &M) -> Response<B>
where
    B: ResponseBody,
    M: RejectionBody,
{
    respond(rejection, body, &Statuses::default())
}

/// The gRPC answer for `rejection`: HTTP 200, `content-type: application/grpc`,
/// `grpc-status`, `grpc-message` and, for a refusal, `grpc-retry-pushback-ms`, with an empty
/// body (a Trailers-Only response). See [`crate::grpc`] for the codes.
///
/// ```
/// use std::time::Duration;
/// use http::Response;
/// use tower_rampart::{Rejection, error::CircuitOpen, http::grpc_rejection_response};
///
/// let rejection = Rejection::from(CircuitOpen::new(Duration::from_millis(2500)));
/// let response: Response<bytes::Bytes> = grpc_rejection_response(&rejection);
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "14");
/// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "2500");
/// ```
pub fn grpc_rejection_response<B: ResponseBody>(rejection: &Rejection) -> Response<B> {
    respond_grpc(rejection, &Statuses::default())
}

/// Statuses and gRPC codes chosen per [`RejectionKind`] instead of the default table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Statuses {
    http: [Option<StatusCode>; RejectionKind::ALL.len()],
    grpc: [Option<u8>; RejectionKind::ALL.len()],
}

impl Statuses {
    const DEFAULT: Self = Self {
        http: [None; RejectionKind::ALL.len()],
        grpc: [None; RejectionKind::ALL.len()],
    };

    fn of(&self, rejection: &Rejection) -> StatusCode {
        self.http[rejection.kind().index()].unwrap_or_else(|| rejection.status())
    }

    fn grpc_of(&self, rejection: &Rejection) -> u8 {
        let kind = rejection.kind();
        self.grpc[kind.index()].unwrap_or_else(|| grpc::default_code(kind))
    }
}

/// How a layer answers: its body builder and its status overrides.
#[derive(Clone, Copy, Debug, Default)]
struct Mapping<M> {
    body: M,
    statuses: Statuses,
}

/// The one place a rejection becomes a response.
fn respond<B, M>(rejection: &Rejection, body: &M, statuses: &Statuses) -> Response<B>
where
    B: ResponseBody,
    M: RejectionBody,
{
    // Room for the rejection's headers and a content type: no regrowth.
    let mut headers = HeaderMap::with_capacity(6);
    rejection.write_headers(&mut headers);
    let bytes = body.render(rejection, &mut headers);
    let mut response = Response::new(B::from_bytes(bytes));
    *response.status_mut() = statuses.of(rejection);
    *response.headers_mut() = headers;
    response
}

/// The one place a rejection becomes a gRPC answer: Trailers-Only, empty body.
fn respond_grpc<B: ResponseBody>(rejection: &Rejection, statuses: &Statuses) -> Response<B> {
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(CONTENT_TYPE, grpc::APPLICATION_GRPC);
    grpc::write_status(rejection, statuses.grpc_of(rejection), &mut headers);
    let mut response = Response::new(B::empty());
    *response.headers_mut() = headers;
    response
}

/// The answer to an error: the rejection's response if `err` holds a [`Rejection`], otherwise
/// an opaque 500 with the error logged once at ERROR.
fn error_response<B, M>(err: BoxError, mapping: &Mapping<M>, grpc: bool) -> Response<B>
where
    B: ResponseBody,
    M: RejectionBody,
{
    if let Some(rejection) = Rejection::find(err.as_ref()) {
        return if grpc {
            respond_grpc(rejection, &mapping.statuses)
        } else {
            respond(rejection, &mapping.body, &mapping.statuses)
        };
    }
    // The message may quote what a client sent (a parse error, a path): bounded, escaped.
    let message = err.to_string();
    tracing::error!(
        error = %crate::untrusted::Untrusted::up_to(message.as_bytes(), 512),
        "unhandled service error, answering 500 (INTERNAL over gRPC)"
    );
    if grpc {
        let mut response = Response::new(B::empty());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, grpc::APPLICATION_GRPC);
        headers.insert(
            grpc::GRPC_STATUS,
            HeaderValue::from(u16::from(grpc::code::INTERNAL)),
        );
        headers.insert(
            grpc::GRPC_MESSAGE,
            HeaderValue::from_static("internal error"),
        );
        return response;
    }
    let mut response = Response::new(B::from_bytes(Bytes::from_static(
        br#"{"error":"internal"}"#,
    )));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// Turns every error of the wrapped stack into a response, so the stack is `Infallible`.
///
/// Rejections get the mapping in the [module docs](self); any other error becomes an opaque
/// 500 (logged once at ERROR, never echoed to the client). Place it outside the rampart layers.
/// Bodies come from a [`RejectionBody`], [`JsonBody`] by default.
///
/// # Sharing
///
/// The layer holds only the body builder and the status overrides; each service clones
/// them. There is no other state.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_rampart::{BoxError, Rejection, error::RateLimited, http::RejectionResponseLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let refuse = service_fn(|_req: Request<()>| async {
///     Err::<Response<Full<Bytes>>, BoxError>(Rejection::from(RateLimited::new(Duration::from_millis(200))).into())
/// });
/// let svc = ServiceBuilder::new().layer(RejectionResponseLayer::new()).service(refuse);
/// let response = svc.oneshot(Request::new(())).await.unwrap(); // Err is Infallible
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "1");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RejectionResponseLayer<M = JsonBody> {
    mapping: Mapping<M>,
}

// === impl RejectionResponseLayer ===

impl RejectionResponseLayer {
    /// A layer with the default [`JsonBody`].
    ///
    /// ```
    /// # use tower_rampart::http::RejectionResponseLayer;
    /// let layer = RejectionResponseLayer::new();
    /// # let _ = layer;
    /// ```
    pub const fn new() -> Self {
        Self {
            mapping: Mapping {
                body: JsonBody,
                statuses: Statuses::DEFAULT,
            },
        }
    }
}

impl<M: RejectionBody> RejectionResponseLayer<M> {
    /// Replaces the body builder. Status and rejection headers stay those of the mapping.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use tower_rampart::{Rejection, http::RejectionResponseLayer};
    ///
    /// let empty = RejectionResponseLayer::new().with_body(|_: &Rejection, _: &mut HeaderMap| Bytes::new());
    /// # let _ = empty;
    /// ```
    pub fn with_body<N: RejectionBody>(self, body: N) -> RejectionResponseLayer<N> {
        RejectionResponseLayer {
            mapping: Mapping {
                body,
                statuses: self.mapping.statuses,
            },
        }
    }

    /// Answers rejections of `kind` with `status` instead of the default (for example 503
    /// instead of 504 for [`TimedOut`](RejectionKind::TimedOut), behind a load balancer that
    /// retries 503s). Headers and body stay the mapping's. Default: the table in the
    /// [module docs](self).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{Request, Response, StatusCode};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_rampart::{BoxError, Rejection, RejectionKind, error::TimedOut, http::RejectionResponseLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let late = service_fn(|_: Request<()>| async {
    ///     Err::<Response<http_body_util::Full<bytes::Bytes>>, BoxError>(Rejection::from(TimedOut::new(Duration::from_secs(1))).into())
    /// });
    /// let svc = ServiceBuilder::new()
    ///     .layer(RejectionResponseLayer::new().status(RejectionKind::TimedOut, StatusCode::SERVICE_UNAVAILABLE))
    ///     .service(late);
    /// assert_eq!(svc.oneshot(Request::new(())).await.unwrap().status(), 503);
    /// # }
    /// ```
    pub fn status(mut self, kind: RejectionKind, status: StatusCode) -> Self {
        self.mapping.statuses.http[kind.index()] = Some(status);
        self
    }

    /// Answers gRPC requests refused with `kind` with `code` instead of the default (see
    /// [`crate::grpc`]), for example `Unavailable` instead of `ResourceExhausted` for
    /// [`RateLimited`](RejectionKind::RateLimited), for clients that retry only the former.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    /// use tower_rampart::{BoxError, Rejection, RejectionKind, error::RateLimited, http::RejectionResponseLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let refuse = service_fn(|_: Request<()>| async {
    ///     Err::<Response<bytes::Bytes>, BoxError>(Rejection::from(RateLimited::new(Duration::from_secs(1))).into())
    /// });
    /// let svc = ServiceBuilder::new()
    ///     .layer(RejectionResponseLayer::new().grpc_code(RejectionKind::RateLimited, tonic::Code::Unavailable))
    ///     .service(refuse);
    /// let request = Request::builder()
    ///     .version(http::Version::HTTP_2)
    ///     .header("content-type", "application/grpc")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(svc.oneshot(request).await.unwrap().headers()["grpc-status"], "14");
    /// # }
    /// ```
    #[cfg(feature = "grpc")]
    #[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
    pub fn grpc_code(mut self, kind: RejectionKind, code: tonic::Code) -> Self {
        // Codes are 0 to 16; anything else tonic could hold is answered as UNKNOWN.
        let code = u8::try_from(code as i32).unwrap_or(grpc::code::UNKNOWN);
        self.mapping.statuses.grpc[kind.index()] = Some(code);
        self
    }
}

impl<S, M: RejectionBody> Layer<S> for RejectionResponseLayer<M> {
    type Service = RejectionResponse<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        RejectionResponse {
            inner,
            mapping: self.mapping.clone(),
            ready_error: None,
        }
    }
}

/// The service made by [`RejectionResponseLayer`].
///
/// An error from the inner service's `poll_ready` is kept and answered (as a response) by the
/// next `call`, because an `Infallible` service cannot report it any other way.
///
/// ```
/// use tower::{Layer, service_fn};
/// use tower_rampart::{BoxError, http::{RejectionResponse, RejectionResponseLayer}};
///
/// let inner = service_fn(|_: http::Request<()>| async { Ok::<_, BoxError>(http::Response::new(String::new())) });
/// let svc: RejectionResponse<_> = RejectionResponseLayer::new().layer(inner);
/// let _inner = svc.into_inner();
/// ```
pub struct RejectionResponse<S, M = JsonBody> {
    inner: S,
    mapping: Mapping<M>,
    ready_error: Option<BoxError>,
}

// === impl RejectionResponse ===

impl<S, M> RejectionResponse<S, M> {
    crate::macros::inner_accessors!();
}

impl<S: Clone, M: Clone> Clone for RejectionResponse<S, M> {
    // By hand: a kept readiness error belongs to this instance, not to its clones.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            mapping: self.mapping.clone(),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug, M: fmt::Debug> fmt::Debug for RejectionResponse<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectionResponse")
            .field("inner", &self.inner)
            .field("body", &self.mapping.body)
            .field("statuses", &self.mapping.statuses)
            .field("ready_error", &self.ready_error)
            .finish()
    }
}

impl<S, ReqBody, B, M> Service<http::Request<ReqBody>> for RejectionResponse<S, M>
where
    S: Service<http::Request<ReqBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: ResponseBody,
    M: RejectionBody,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = future::ResponseFuture<S::Future, B, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none() {
            if let Err(err) = ready!(self.inner.poll_ready(cx)) {
                self.ready_error = Some(err.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // gRPC runs over HTTP/2 only: an HTTP/1 request costs one comparison.
        let grpc = req.version() == http::Version::HTTP_2 && grpc::is_grpc(req.headers());
        match self.ready_error.take() {
            Some(err) => future::ResponseFuture::answered(error_response(err, &self.mapping, grpc)),
            None => {
                future::ResponseFuture::called(self.inner.call(req), self.mapping.clone(), grpc)
            }
        }
    }
}

pub mod future {
    //! The response future of [`super::RejectionResponse`].

    use super::*;

    pin_project_lite::pin_project! {
        /// Resolves to the inner response, or to the response for the inner error.
        ///
        /// Never fails: its error type is [`Infallible`].
        pub struct ResponseFuture<F, B, M> {
            #[pin]
            kind: Kind<F, B, M>,
        }
    }

    pin_project_lite::pin_project! {
        #[project = KindProj]
        enum Kind<F, B, M> {
            Called { #[pin] future: F, mapping: Mapping<M>, grpc: bool },
            Answered { response: Option<Response<B>> },
        }
    }

    impl<F, B, M> ResponseFuture<F, B, M> {
        pub(super) fn called(future: F, mapping: Mapping<M>, grpc: bool) -> Self {
            Self {
                kind: Kind::Called {
                    future,
                    mapping,
                    grpc,
                },
            }
        }

        pub(super) fn answered(response: Response<B>) -> Self {
            Self {
                kind: Kind::Answered {
                    response: Some(response),
                },
            }
        }
    }

    impl<F, B, M> fmt::Debug for ResponseFuture<F, B, M> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let state = match self.kind {
                Kind::Called { .. } => "called",
                Kind::Answered { .. } => "answered",
            };
            f.debug_struct("ResponseFuture")
                .field("state", &state)
                .finish()
        }
    }

    impl<F, E, B, M> Future for ResponseFuture<F, B, M>
    where
        F: Future<Output = Result<Response<B>, E>>,
        E: Into<BoxError>,
        B: ResponseBody,
        M: RejectionBody,
    {
        type Output = Result<Response<B>, Infallible>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project().kind.project() {
                KindProj::Called {
                    future,
                    mapping,
                    grpc,
                } => Poll::Ready(Ok(match ready!(future.poll(cx)) {
                    Ok(response) => response,
                    Err(err) => error_response(err.into(), mapping, *grpc),
                })),
                KindProj::Answered { response } => Poll::Ready(Ok(response
                    .take()
                    .expect("ResponseFuture polled after completion"))),
            }
        }
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl axum_core::response::IntoResponse for Rejection {
    /// The same response as [`RejectionResponseLayer`] with [`JsonBody`] gives.
    fn into_response(self) -> axum_core::response::Response {
        rejection_response(&self, &JsonBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_only_where_needed() {
        let escaped = |text: &str| {
            let mut out = String::new();
            push_json_string(&mut out, text);
            out
        };
        assert_eq!(escaped("reviews"), r#""reviews""#);
        assert_eq!(escaped("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(escaped("tab\there\n"), r#""tab\u0009here\u000a""#);
        assert_eq!(escaped("café"), "\"café\"");
    }
}
