//! The rejection model shared by every layer, and the builders' [`ConfigError`].
//!
//! A layer that says "no" produces one [`Rejection`]: data, not text. It travels as a
//! [`BoxError`] through the rest of the stack (so layers compose with any other Tower
//! middleware), and is found again with [`Rejection::find`], which walks the error's
//! [`source`](std::error::Error::source) chain, so it still works behind wrappers such as
//! tower's `Buffer`. After that one lookup the `match` is exhaustive inside this crate and
//! `#[non_exhaustive]` outside it.
//!
//! HTTP users rarely touch this module: [`RejectionResponseLayer`](crate::http::RejectionResponseLayer)
//! turns every rejection into the same status, headers and body.
//!
//! ```
//! use std::time::Duration;
//! use tower_rampart::{BoxError, Rejection};
//!
//! fn describe(err: &BoxError) -> String {
//!     match Rejection::find(err.as_ref()) {
//!         Some(Rejection::RateLimited(r)) => format!("slow down for {:?}", r.retry_after()),
//!         Some(Rejection::CircuitOpen(c)) => format!("backend down for {:?}", c.retry_after()),
//!         Some(other) => other.to_string(),
//!         None => "a real failure".to_owned(),
//!     }
//! }
//!
//! let err: BoxError = Rejection::from(tower_rampart::error::TimedOut::new(Duration::from_millis(300))).into();
//! assert_eq!(describe(&err), "deadline elapsed after 300 ms");
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The error type of every layer that can reject: a boxed, thread-safe error.
///
/// Inner errors are converted with `Into<BoxError>`; rejections are boxed [`Rejection`]s.
///
/// ```
/// use tower_rampart::BoxError;
///
/// let err: BoxError = "upstream refused".into();
/// assert_eq!(err.to_string(), "upstream refused");
/// ```
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a layer refused a request, with the data a caller needs to react.
///
/// Each variant wraps a struct with accessors; the HTTP mapping lives in
/// [`crate::http`] (feature `http`):
///
/// | variant | HTTP |
/// |---|---|
/// | [`CircuitOpen`](Rejection::CircuitOpen) | 503 + `Retry-After` + `Cache-Control: no-store` |
/// | [`RateLimited`](Rejection::RateLimited) | 429 + `Retry-After` + `RateLimit-Policy` + `RateLimit` |
/// | [`TimedOut`](Rejection::TimedOut) | 504 |
/// | [`PartFailed`](Rejection::PartFailed) | 502 |
/// | [`Overloaded`](Rejection::Overloaded) | 503 + `Retry-After` |
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::{Rejection, error::CircuitOpen};
///
/// let rejection = Rejection::from(CircuitOpen::new(Duration::from_secs(10)));
/// assert!(matches!(rejection, Rejection::CircuitOpen(ref c) if c.retry_after() == Duration::from_secs(10)));
/// assert_eq!(rejection.to_string(), "circuit open (retry after 10000 ms)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// A circuit breaker is open (or its half-open probes are all taken).
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// A rate limiter has no capacity for this request now.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The request's deadline passed before a response head arrived.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
    /// An essential part of a fan-out failed, so the whole request fails.
    #[error(transparent)]
    PartFailed(#[from] PartFailed),
    /// A load shedder refused the request: the service is at its concurrency limit.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
}

/// Which kind of [`Rejection`] a value is, without its data: what the response layer's
/// per-kind overrides are keyed by.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::{Rejection, RejectionKind, error::TimedOut};
///
/// assert_eq!(Rejection::from(TimedOut::new(Duration::ZERO)).kind(), RejectionKind::TimedOut);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// [`Rejection::CircuitOpen`].
    CircuitOpen,
    /// [`Rejection::RateLimited`].
    RateLimited,
    /// [`Rejection::TimedOut`].
    TimedOut,
    /// [`Rejection::PartFailed`].
    PartFailed,
    /// [`Rejection::Overloaded`].
    Overloaded,
}

#[cfg_attr(not(feature = "http"), allow(dead_code))]
impl RejectionKind {
    /// Every kind, in declaration order.
    pub(crate) const ALL: [Self; 5] = [
        Self::CircuitOpen,
        Self::RateLimited,
        Self::TimedOut,
        Self::PartFailed,
        Self::Overloaded,
    ];

    /// The kind's position in [`ALL`](Self::ALL).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

// === impl Rejection ===

impl Rejection {
    /// Which kind of rejection this is.
    ///
    /// See [`RejectionKind`] for an example.
    pub const fn kind(&self) -> RejectionKind {
        match self {
            Rejection::CircuitOpen(_) => RejectionKind::CircuitOpen,
            Rejection::RateLimited(_) => RejectionKind::RateLimited,
            Rejection::TimedOut(_) => RejectionKind::TimedOut,
            Rejection::PartFailed(_) => RejectionKind::PartFailed,
            Rejection::Overloaded(_) => RejectionKind::Overloaded,
        }
    }

    /// Finds a `Rejection` in `err` or anywhere in its [`source`](StdError::source) chain.
    ///
    /// Works through any wrapper that reports its cause as `source()`, such as tower's
    /// `Buffer` (`ServiceError`) or an application error type.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::{BoxError, Rejection, error::TimedOut};
    ///
    /// #[derive(Debug)]
    /// struct Wrapped(BoxError);
    /// impl std::fmt::Display for Wrapped {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("call failed") }
    /// }
    /// impl std::error::Error for Wrapped {
    ///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(self.0.as_ref()) }
    /// }
    ///
    /// let inner: BoxError = Rejection::from(TimedOut::new(Duration::from_secs(1))).into();
    /// let outer: BoxError = Box::new(Wrapped(inner));
    /// assert!(matches!(Rejection::find(outer.as_ref()), Some(Rejection::TimedOut(_))));
    /// assert!(Rejection::find(&std::fmt::Error).is_none());
    /// ```
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Rejection> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(rejection) = e.downcast_ref::<Rejection>() {
                return Some(rejection);
            }
            current = e.source();
        }
        None
    }

    /// A stable, machine-readable name for the kind of rejection, in snake case.
    ///
    /// Used as the `error` field of the HTTP bodies and suitable as a metrics label.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::{Rejection, error::RateLimited};
    ///
    /// assert_eq!(Rejection::from(RateLimited::new(Duration::ZERO)).code(), "rate_limited");
    /// ```
    pub const fn code(&self) -> &'static str {
        match self {
            Rejection::CircuitOpen(_) => "circuit_open",
            Rejection::RateLimited(_) => "rate_limited",
            Rejection::TimedOut(_) => "timed_out",
            Rejection::PartFailed(_) => "part_failed",
            Rejection::Overloaded(_) => "overloaded",
        }
    }

    /// Whether the call was refused before any work was done, by a rate limiter or an open
    /// breaker: a judgement on the caller's pace or on a dependency, not a failure of the
    /// call itself. Breakers ignore such outcomes and fan-outs report the part as rejected.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::{Rejection, error::{CircuitOpen, RateLimited, TimedOut}};
    ///
    /// assert!(Rejection::from(RateLimited::new(Duration::ZERO)).is_refusal());
    /// assert!(Rejection::from(CircuitOpen::new(Duration::ZERO)).is_refusal());
    /// assert!(!Rejection::from(TimedOut::new(Duration::ZERO)).is_refusal());
    /// ```
    pub const fn is_refusal(&self) -> bool {
        matches!(
            self,
            Rejection::RateLimited(_) | Rejection::CircuitOpen(_) | Rejection::Overloaded(_)
        )
    }

    /// How long the caller should wait before trying again, when the rejection says so.
    ///
    /// `Some` for [`CircuitOpen`](Rejection::CircuitOpen) and
    /// [`RateLimited`](Rejection::RateLimited); `None` otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::{Rejection, error::{CircuitOpen, TimedOut}};
    ///
    /// let open = Rejection::from(CircuitOpen::new(Duration::from_secs(4)));
    /// assert_eq!(open.retry_after(), Some(Duration::from_secs(4)));
    /// assert_eq!(Rejection::from(TimedOut::new(Duration::from_secs(1))).retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejection::CircuitOpen(c) => Some(c.retry_after()),
            Rejection::RateLimited(r) => Some(r.retry_after()),
            Rejection::Overloaded(o) => Some(o.retry_after()),
            Rejection::TimedOut(_) | Rejection::PartFailed(_) => None,
        }
    }
}

/// A circuit breaker refused the call without sending it.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::error::CircuitOpen;
///
/// let open = CircuitOpen::new(Duration::from_millis(1500));
/// assert_eq!(open.retry_after(), Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Duration,
    #[cfg(feature = "grpc")]
    status: crate::grpc::StatusCell,
}

// === impl CircuitOpen ===

impl CircuitOpen {
    /// A rejection that expects the circuit to admit a probe after `retry_after`.
    ///
    /// Layers build these; the constructor is public so that tests and custom layers can
    /// produce the same HTTP answer.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::CircuitOpen;
    /// assert_eq!(CircuitOpen::new(Duration::ZERO).retry_after(), Duration::ZERO);
    /// ```
    pub const fn new(retry_after: Duration) -> Self {
        Self {
            retry_after,
            #[cfg(feature = "grpc")]
            status: crate::grpc::StatusCell::new(),
        }
    }

    /// The remaining open time: when the breaker will next admit a probe.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::CircuitOpen;
    /// assert_eq!(CircuitOpen::new(Duration::from_secs(3)).retry_after().as_secs(), 3);
    /// ```
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit open (retry after {} ms)",
            self.retry_after.as_millis()
        )
    }
}

impl StdError for CircuitOpen {
    /// With the `grpc` feature: the `tonic::Status` for this rejection.
    #[cfg(feature = "grpc")]
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.status.source(
            RejectionKind::CircuitOpen,
            Some(self.retry_after),
            self,
            None,
        ))
    }
}

/// A rate limiter had no capacity for the request.
///
/// Besides the wait, it carries the limiter's state in the terms of the IETF
/// `RateLimit`/`RateLimit-Policy` header fields: the policy's quota and window, the quota
/// remaining, and the time until the quota is whole again.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::error::RateLimited;
///
/// let limited = RateLimited::new(Duration::from_millis(20))
///     .with_quota("per-ip", 20, Duration::from_millis(400))
///     .with_remaining(0, Duration::from_millis(400));
/// assert_eq!(limited.policy(), "per-ip");
/// assert_eq!(limited.limit(), 20);
/// assert_eq!(limited.reset(), Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
    policy: Cow<'static, str>,
    limit: u64,
    window: Duration,
    remaining: u64,
    reset: Duration,
    #[cfg(feature = "grpc")]
    status: crate::grpc::StatusCell,
}

// === impl RateLimited ===

impl RateLimited {
    /// A rejection that expects capacity after `retry_after`.
    ///
    /// Until [`with_quota`](Self::with_quota) and [`with_remaining`](Self::with_remaining) say
    /// otherwise, the policy is `"default"`, the quota 0 over no window, nothing remains and
    /// the reset equals `retry_after`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// let limited = RateLimited::new(Duration::from_secs(2));
    /// assert_eq!((limited.policy(), limited.remaining(), limited.reset()), ("default", 0, Duration::from_secs(2)));
    /// ```
    pub const fn new(retry_after: Duration) -> Self {
        Self {
            retry_after,
            policy: Cow::Borrowed("default"),
            limit: 0,
            window: Duration::ZERO,
            remaining: 0,
            reset: retry_after,
            #[cfg(feature = "grpc")]
            status: crate::grpc::StatusCell::new(),
        }
    }

    /// Names the policy and states its quota: `limit` units per `window`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// let limited = RateLimited::new(Duration::from_secs(1)).with_quota("api", 100, Duration::from_secs(60));
    /// assert_eq!((limited.limit(), limited.window()), (100, Duration::from_secs(60)));
    /// ```
    pub fn with_quota(
        mut self,
        policy: impl Into<Cow<'static, str>>,
        limit: u64,
        window: Duration,
    ) -> Self {
        self.policy = policy.into();
        self.limit = limit;
        self.window = window;
        self
    }

    /// States what is left of the quota now, and how long until one more unit is there
    /// (`reset`; zero when the quota is whole).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// let limited = RateLimited::new(Duration::from_secs(1)).with_remaining(0, Duration::from_secs(5));
    /// assert_eq!(limited.reset(), Duration::from_secs(5));
    /// ```
    pub const fn with_remaining(mut self, remaining: u64, reset: Duration) -> Self {
        self.remaining = remaining;
        self.reset = reset;
        self
    }

    /// How long until the request would be admitted.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// assert_eq!(RateLimited::new(Duration::from_millis(5)).retry_after(), Duration::from_millis(5));
    /// ```
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The policy's name, as sent in the `RateLimit` header fields. Default: `"default"`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// assert_eq!(RateLimited::new(Duration::ZERO).policy(), "default");
    /// ```
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The quota: how many units the policy allows per [`window`](Self::window).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// assert_eq!(RateLimited::new(Duration::ZERO).with_quota("p", 7, Duration::from_secs(1)).limit(), 7);
    /// ```
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The window the quota applies to.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// let limited = RateLimited::new(Duration::ZERO).with_quota("p", 7, Duration::from_secs(9));
    /// assert_eq!(limited.window(), Duration::from_secs(9));
    /// ```
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// Units of the quota left now (0 when the request was refused for lack of capacity).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// assert_eq!(RateLimited::new(Duration::ZERO).with_remaining(3, Duration::ZERO).remaining(), 3);
    /// ```
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long until one more unit of the quota is available (the `t` of the `RateLimit`
    /// field): for a refusal of one unit, the same as [`retry_after`](Self::retry_after).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::RateLimited;
    /// assert_eq!(RateLimited::new(Duration::from_secs(4)).reset(), Duration::from_secs(4));
    /// ```
    pub const fn reset(&self) -> Duration {
        self.reset
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited (retry after {} ms)",
            self.retry_after.as_millis()
        )
    }
}

impl StdError for RateLimited {
    /// With the `grpc` feature: the `tonic::Status` for this rejection.
    #[cfg(feature = "grpc")]
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.status.source(
            RejectionKind::RateLimited,
            Some(self.retry_after),
            self,
            None,
        ))
    }
}

/// The request's deadline passed before the response head arrived.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::error::TimedOut;
///
/// let timed_out = TimedOut::new(Duration::from_millis(300));
/// assert_eq!(timed_out.after(), Duration::from_millis(300));
/// assert_eq!(timed_out.to_string(), "deadline elapsed after 300 ms");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    after: Duration,
    #[cfg(feature = "grpc")]
    status: crate::grpc::StatusCell,
}

// === impl TimedOut ===

impl TimedOut {
    /// A rejection for a request whose budget of `after` ran out.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::TimedOut;
    /// assert_eq!(TimedOut::new(Duration::from_secs(1)).after(), Duration::from_secs(1));
    /// ```
    pub const fn new(after: Duration) -> Self {
        Self {
            after,
            #[cfg(feature = "grpc")]
            status: crate::grpc::StatusCell::new(),
        }
    }

    /// The budget the request had: the earlier of the configured limit and the inbound
    /// deadline, measured from when the layer was called.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::error::TimedOut;
    /// assert_eq!(TimedOut::new(Duration::from_millis(5)).after().as_millis(), 5);
    /// ```
    pub const fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline elapsed after {} ms", self.after.as_millis())
    }
}

impl StdError for TimedOut {
    /// With the `grpc` feature: the `tonic::Status` for this rejection.
    #[cfg(feature = "grpc")]
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(
            self.status
                .source(RejectionKind::TimedOut, None, self, None),
        )
    }
}

/// An essential part of a fan-out failed; its cause is [`cause`](Self::cause), and the
/// end of its [`source`](StdError::source) chain (with the `grpc` feature, the
/// `tonic::Status` for the rejection comes first).
///
/// ```
/// use tower_rampart::error::PartFailed;
///
/// let failed = PartFailed::new("core", "connection refused");
/// assert_eq!(failed.part(), "core");
/// assert_eq!(failed.to_string(), "essential part `core` failed");
/// assert_eq!(failed.cause().to_string(), "connection refused");
/// ```
#[derive(Debug, Clone)]
pub struct PartFailed {
    part: Cow<'static, str>,
    pub(crate) cause: Arc<dyn StdError + Send + Sync + 'static>,
    #[cfg(feature = "grpc")]
    status: crate::grpc::StatusCell,
}

// === impl PartFailed ===

impl PartFailed {
    /// A rejection naming the failed `part` and keeping its `cause`.
    ///
    /// ```
    /// # use tower_rampart::error::PartFailed;
    /// assert_eq!(PartFailed::new("reviews", "boom").part(), "reviews");
    /// ```
    pub fn new(part: impl Into<Cow<'static, str>>, cause: impl Into<crate::BoxError>) -> Self {
        Self {
            part: part.into(),
            cause: Arc::from(cause.into()),
            #[cfg(feature = "grpc")]
            status: crate::grpc::StatusCell::new(),
        }
    }

    /// The name the part was given in the fan-out builder.
    ///
    /// ```
    /// # use tower_rampart::error::PartFailed;
    /// assert_eq!(PartFailed::new("core", "x").part(), "core");
    /// ```
    pub fn part(&self) -> &str {
        &self.part
    }

    /// The part's own error (which may itself be a [`Rejection`], such as an open circuit).
    ///
    /// ```
    /// # use tower_rampart::error::PartFailed;
    /// assert_eq!(PartFailed::new("core", "refused").cause().to_string(), "refused");
    /// ```
    pub fn cause(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.cause
    }
}

impl fmt::Display for PartFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "essential part `{}` failed", self.part)
    }
}

impl StdError for PartFailed {
    /// The part's error; with the `grpc` feature, the `tonic::Status` for this rejection,
    /// whose own source is the part's error.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        #[cfg(feature = "grpc")]
        return Some(self.status.source(
            RejectionKind::PartFailed,
            None,
            self,
            Some(Arc::clone(&self.cause)),
        ));
        #[cfg(not(feature = "grpc"))]
        Some(&*self.cause)
    }
}

/// A load shedder refused the request: as many requests as the service can take are in
/// flight. Sent as 503 with `Retry-After` over HTTP, `UNAVAILABLE` with
/// `grpc-retry-pushback-ms` over gRPC.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::error::Overloaded;
///
/// let shed = Overloaded::new(Duration::from_millis(40), 12);
/// assert_eq!(shed.retry_after(), Duration::from_millis(40));
/// assert_eq!(shed.limit(), 12);
/// assert_eq!(shed.to_string(), "overloaded (limit 12, retry after 40 ms)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overloaded {
    retry_after: Duration,
    limit: u64,
    #[cfg(feature = "grpc")]
    status: crate::grpc::StatusCell,
}

// === impl Overloaded ===

impl Overloaded {
    /// A refusal at a concurrency limit of `limit`, suggesting a retry after `retry_after`.
    ///
    /// See [`Overloaded`] for an example.
    pub const fn new(retry_after: Duration, limit: u64) -> Self {
        Self {
            retry_after,
            limit,
            #[cfg(feature = "grpc")]
            status: crate::grpc::StatusCell::new(),
        }
    }

    /// When a retry has a chance: about one typical request's time.
    ///
    /// See [`Overloaded`] for an example.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The concurrency limit the request met.
    ///
    /// See [`Overloaded`] for an example.
    pub const fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "overloaded (limit {}, retry after {} ms)",
            self.limit,
            self.retry_after.as_millis()
        )
    }
}

impl StdError for Overloaded {
    /// With the `grpc` feature: the `tonic::Status` for this rejection.
    #[cfg(feature = "grpc")]
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.status.source(
            RejectionKind::Overloaded,
            Some(self.retry_after),
            self,
            None,
        ))
    }
}

/// A configuration that `build()` refused, naming the field and the rule it broke.
///
/// Every builder in this crate validates in one place and returns this error instead of
/// panicking or silently falling back to "unlimited".
///
/// ```
/// use tower_rampart::ConfigError;
///
/// fn report(err: &ConfigError) -> String {
///     format!("{} (field {})", err, err.field())
/// }
/// # let _ = report;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    rule: &'static str,
    part: Option<Cow<'static, str>>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`", self.field)?;
        if let Some(part) = &self.part {
            write!(f, " of part `{part}`")?;
        }
        write!(f, ": {}", self.rule)
    }
}

impl StdError for ConfigError {}

// === impl ConfigError ===

impl ConfigError {
    // Constructed by the layers' builders; a build with none of them uses only the type.
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) const fn new(field: &'static str, rule: &'static str) -> Self {
        Self {
            field,
            rule,
            part: None,
        }
    }

    /// The same error, said of the fan-out part `part`.
    #[cfg(feature = "fan-out")]
    pub(crate) fn of_part(mut self, part: Cow<'static, str>) -> Self {
        self.part = Some(part);
        self
    }

    /// The fan-out part whose setting is at fault, when it is one part's.
    ///
    /// ```
    /// # #[cfg(feature = "fan-out")] {
    /// use std::time::Duration;
    /// use tower_rampart::fan_out::{FanOut, Part};
    ///
    /// let svc = tower::service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) });
    /// let err = FanOut::builder(Duration::from_secs(1))
    ///     .part(Part::essential("core", svc).timeout(Duration::ZERO))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.part(), Some("core"));
    /// assert_eq!(err.to_string(), "invalid `timeout` of part `core`: must be more than zero");
    /// # }
    /// ```
    pub fn part(&self) -> Option<&str> {
        self.part.as_deref()
    }

    /// The builder field at fault, as named by its setter.
    ///
    /// ```
    /// # use tower_rampart::ConfigError;
    /// fn field_of(err: &ConfigError) -> &'static str { err.field() }
    /// # let _ = field_of;
    /// ```
    pub const fn field(&self) -> &'static str {
        self.field
    }

    /// The rule the value broke, in lowercase words.
    ///
    /// ```
    /// # use tower_rampart::ConfigError;
    /// fn rule_of(err: &ConfigError) -> &'static str { err.rule() }
    /// # let _ = rule_of;
    /// ```
    pub const fn rule(&self) -> &'static str {
        self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layered(BoxError);

    impl fmt::Display for Layered {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("layered")
        }
    }

    impl StdError for Layered {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.0.as_ref())
        }
    }

    fn boxed(r: impl Into<Rejection>) -> BoxError {
        Box::new(r.into())
    }

    #[test]
    fn find_sees_a_directly_boxed_rejection() {
        let err = boxed(CircuitOpen::new(Duration::from_secs(1)));
        assert!(matches!(
            Rejection::find(err.as_ref()),
            Some(Rejection::CircuitOpen(_))
        ));
    }

    #[test]
    fn find_walks_a_deep_source_chain() {
        let err: BoxError = Box::new(Layered(Box::new(Layered(boxed(RateLimited::new(
            Duration::from_millis(3),
        ))))));
        let found = Rejection::find(err.as_ref()).expect("rejection in chain");
        assert_eq!(found.retry_after(), Some(Duration::from_millis(3)));
    }

    #[test]
    fn find_returns_none_for_foreign_errors() {
        let err: BoxError = Box::new(Layered("io".into()));
        assert!(Rejection::find(err.as_ref()).is_none());
    }

    #[test]
    fn find_stops_at_the_outermost_rejection() {
        // A fan-out part that was itself rejected: the outer PartFailed wins.
        let inner = boxed(CircuitOpen::new(Duration::from_secs(2)));
        let err = boxed(PartFailed::new("core", inner));
        assert!(matches!(
            Rejection::find(err.as_ref()),
            Some(Rejection::PartFailed(p)) if p.part() == "core"
        ));
        // ...and the breaker's rejection is still reachable through its cause.
        let Some(Rejection::PartFailed(p)) = Rejection::find(err.as_ref()) else {
            unreachable!()
        };
        assert!(matches!(
            Rejection::find(p.cause()),
            Some(Rejection::CircuitOpen(_))
        ));
    }

    #[test]
    fn display_is_lowercase_without_period_or_repeated_source() {
        let all = [
            Rejection::from(CircuitOpen::new(Duration::from_millis(1))),
            Rejection::from(RateLimited::new(Duration::from_millis(2))),
            Rejection::from(TimedOut::new(Duration::from_millis(3))),
            Rejection::from(PartFailed::new("core", "refused")),
        ];
        for r in &all {
            let text = r.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            assert!(!text.contains("refused"), "{text}");
        }
    }

    #[test]
    fn part_failed_source_chain_ends_in_its_cause() {
        let r = Rejection::from(PartFailed::new("core", "refused"));
        let mut last: &(dyn StdError + 'static) = r.source().expect("a source");
        while let Some(next) = last.source() {
            last = next;
        }
        assert_eq!(last.to_string(), "refused");
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn every_rejection_carries_its_tonic_status() {
        let cases = [
            (
                Rejection::from(CircuitOpen::new(Duration::from_millis(1_500))),
                tonic::Code::Unavailable,
                Some("1500"),
            ),
            (
                Rejection::from(RateLimited::new(Duration::from_micros(20_001))),
                tonic::Code::ResourceExhausted,
                Some("21"),
            ),
            (
                Rejection::from(TimedOut::new(Duration::from_secs(1))),
                tonic::Code::DeadlineExceeded,
                None,
            ),
            (
                Rejection::from(PartFailed::new("core", "refused")),
                tonic::Code::Unavailable,
                None,
            ),
        ];
        for (rejection, code, pushback) in cases {
            let boxed: crate::BoxError = Box::new(rejection.clone());
            // What tonic does with a service's error on a client `Channel`.
            let status = tonic::Status::from_error(boxed);
            assert_eq!(status.code(), code, "{rejection}");
            assert_eq!(status.message(), rejection.to_string());
            let got = status
                .metadata()
                .get("grpc-retry-pushback-ms")
                .map(|v| v.to_str().unwrap());
            assert_eq!(got, pushback, "{rejection}");
            // And the rejection is still found behind it.
            let source = status.source().expect("the rejection");
            assert_eq!(
                Rejection::find(source).map(Rejection::kind),
                Some(rejection.kind())
            );
        }
    }

    #[test]
    fn config_error_names_field_and_rule() {
        let err = ConfigError::new("burst", "must be at least 1");
        assert_eq!(err.field(), "burst");
        assert_eq!(err.rule(), "must be at least 1");
        assert_eq!(err.to_string(), "invalid `burst`: must be at least 1");
    }
}
