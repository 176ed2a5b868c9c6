//! What a fan-out returns: each part's [`PartResult`], and an [`Answers`] that reports them
//! by name.

use std::fmt;

use crate::BoxError;

/// The most parts one fan-out can have.
pub const MAX_PARTS: usize = 8;

/// How one part ended.
///
/// ```
/// use tower_rampart::fan_out::PartResult;
///
/// let ok: PartResult<u32> = PartResult::Ok(7);
/// assert_eq!(ok.value(), Some(&7));
/// assert!(!ok.is_degraded());
/// let late: PartResult<u32> = PartResult::TimedOut;
/// assert_eq!(late.value(), None);
/// assert!(late.is_degraded());
/// ```
#[derive(Debug)]
pub enum PartResult<T> {
    /// The part answered.
    Ok(T),
    /// The part did not answer, and its [`PartFallback`](super::PartFallback) stood in.
    Fallback(T),
    /// The part ran out of time: its own timeout or the fan-out's overall deadline.
    TimedOut,
    /// The part's circuit breaker was open or its rate limiter said no: it failed fast.
    Rejected(BoxError),
    /// The part's service failed.
    Failed(BoxError),
}

impl<T> PartResult<T> {
    /// The part's value, or its fallback's.
    ///
    /// See [`PartResult`] for an example.
    pub fn value(&self) -> Option<&T> {
        match self {
            PartResult::Ok(value) | PartResult::Fallback(value) => Some(value),
            _ => None,
        }
    }

    /// The part's value, or its fallback's, by value.
    ///
    /// ```
    /// # use tower_rampart::fan_out::PartResult;
    /// assert_eq!(PartResult::Fallback(vec![1]).into_value(), Some(vec![1]));
    /// ```
    pub fn into_value(self) -> Option<T> {
        match self {
            PartResult::Ok(value) | PartResult::Fallback(value) => Some(value),
            _ => None,
        }
    }

    /// Whether the part did not answer (a fallback counts as degraded).
    ///
    /// See [`PartResult`] for an example.
    pub fn is_degraded(&self) -> bool {
        !matches!(self, PartResult::Ok(_))
    }

    /// The part's error, when it was rejected or failed.
    ///
    /// ```
    /// # use tower_rampart::fan_out::PartResult;
    /// let failed: PartResult<()> = PartResult::Failed("refused".into());
    /// assert_eq!(failed.error().unwrap().to_string(), "refused");
    /// ```
    pub fn error(&self) -> Option<&BoxError> {
        match self {
            PartResult::Rejected(err) | PartResult::Failed(err) => Some(err),
            _ => None,
        }
    }
}

/// What happened to a part's call, for reports, logs and headers.
///
/// ```
/// use tower_rampart::fan_out::Status;
///
/// assert_eq!(Status::TimedOut.as_str(), "timed_out");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// It answered.
    Ok,
    /// It ran out of time.
    TimedOut,
    /// Its breaker or limiter rejected it.
    Rejected,
    /// Its service failed.
    Failed,
    /// It was still running when an essential part failed, and was dropped.
    Cancelled,
}

impl Status {
    /// A stable lowercase name: `ok`, `timed_out`, `rejected`, `failed`, `cancelled`.
    ///
    /// See [`Status`] for an example.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::TimedOut => "timed_out",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One part's line in an [`Answers`]: its name, whether it is essential, what happened to
/// its call, and whether its fallback stood in.
///
/// See [`Answers`] for an example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartReport {
    name: &'static str,
    essential: bool,
    status: Status,
    fallback: bool,
}

impl PartReport {
    pub(super) const EMPTY: Self = Self::new("", false, Status::Ok, false);

    pub(super) const fn new(
        name: &'static str,
        essential: bool,
        status: Status,
        fallback: bool,
    ) -> Self {
        Self {
            name,
            essential,
            status,
            fallback,
        }
    }

    /// The part's name.
    ///
    /// See [`Answers`] for an example.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the part is essential.
    ///
    /// See [`Answers`] for an example.
    pub const fn is_essential(&self) -> bool {
        self.essential
    }

    /// What happened to the part's call.
    ///
    /// See [`Answers`] for an example.
    pub const fn status(&self) -> Status {
        self.status
    }

    /// Whether the part's fallback value stands in for its answer.
    ///
    /// See [`Answers`] for an example.
    pub const fn used_fallback(&self) -> bool {
        self.fallback
    }

    /// Whether the part did not answer.
    ///
    /// See [`Answers`] for an example.
    pub const fn is_degraded(&self) -> bool {
        !matches!(self.status, Status::Ok)
    }
}

/// A fan-out's result: each part's [`PartResult`], typed, in the order the parts were added
/// (`parts`), and a report per part that can be read by name.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::fan_out::{FanOut, Part, PartResult, Status};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let core = tower::service_fn(|id: u64| async move { Ok::<_, std::convert::Infallible>(id * 10) });
/// let flaky = tower::service_fn(|_: u64| async { Err::<u64, _>("down") });
/// let page = FanOut::builder(Duration::from_secs(1))
///     .part(Part::essential("core", core))
///     .part(Part::optional("related", flaky))
///     .build()
///     .unwrap();
/// let outcome = page.call(&4).await.unwrap();
/// let (core, related) = outcome.parts();
/// assert_eq!(core.value(), Some(&40));
/// assert!(matches!(related, PartResult::Failed(_)));
/// let report = outcome.report("related").unwrap();
/// assert_eq!((report.status(), report.is_essential()), (Status::Failed, false));
/// let degraded: Vec<_> = outcome.degraded().map(|r| r.name()).collect();
/// assert_eq!(degraded, ["related"]);
/// # }
/// ```
pub struct Answers<T> {
    parts: T,
    reports: [PartReport; MAX_PARTS],
    len: usize,
}

impl<T> Answers<T> {
    pub(super) fn new(parts: T, reports: [PartReport; MAX_PARTS], len: usize) -> Self {
        Self {
            parts,
            reports,
            len,
        }
    }

    /// Each part's result, in the order the parts were added.
    ///
    /// See [`Answers`] for an example.
    pub fn parts(&self) -> &T {
        &self.parts
    }

    /// Each part's result, by value.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::fan_out::{FanOut, Part};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let echo = tower::service_fn(|s: String| async move { Ok::<_, std::convert::Infallible>(s) });
    /// let fan = FanOut::builder(Duration::from_secs(1)).part(Part::essential("echo", echo)).build().unwrap();
    /// let (echoed,) = fan.call(&"hi".to_string()).await.unwrap().into_parts();
    /// assert_eq!(echoed.into_value().as_deref(), Some("hi"));
    /// # }
    /// ```
    pub fn into_parts(self) -> T {
        self.parts
    }

    /// Every part's report, in the order the parts were added.
    ///
    /// See [`Answers`] for an example.
    pub fn reports(&self) -> &[PartReport] {
        &self.reports[..self.len]
    }

    /// The report of the part called `name`.
    ///
    /// See [`Answers`] for an example.
    pub fn report(&self, name: &str) -> Option<&PartReport> {
        self.reports().iter().find(|r| r.name == name)
    }

    /// The reports of the parts that did not answer.
    ///
    /// See [`Answers`] for an example.
    pub fn degraded(&self) -> impl Iterator<Item = &PartReport> {
        self.reports().iter().filter(|r| r.is_degraded())
    }

    /// Whether any part did not answer.
    ///
    /// See [`Answers`] for an example.
    pub fn is_degraded(&self) -> bool {
        self.degraded().next().is_some()
    }
}

impl<T: fmt::Debug> fmt::Debug for Answers<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answers")
            .field("parts", &self.parts)
            .field("reports", &self.reports())
            .finish()
    }
}

#[cfg(feature = "http")]
mod http_helpers {
    use http::{HeaderName, HeaderValue, Response, header};

    use super::Answers;
    use crate::http::JsonObject;

    /// The header naming the degraded parts of a fan-out answer: `x-degraded: reviews,related`.
    pub static DEGRADED: HeaderName = HeaderName::from_static("x-degraded");

    impl<T> Answers<T> {
        /// The degraded parts' names, comma-separated, for the [`DEGRADED`] header; `None` when
        /// every part answered. Names that are not valid header text are left out.
        ///
        /// ```
        /// # use std::time::Duration;
        /// # use tower_rampart::fan_out::{FanOut, Part};
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let down = tower::service_fn(|_: ()| async { Err::<(), _>("down") });
        /// let fan = FanOut::builder(Duration::from_secs(1))
        ///     .part(Part::optional("a", down.clone()))
        ///     .part(Part::optional("b", down).fallback(|| ()))
        ///     .build()
        ///     .unwrap();
        /// let outcome = fan.call(&()).await.unwrap();
        /// assert_eq!(outcome.degraded_header().unwrap(), "a,b");
        /// # }
        /// ```
        pub fn degraded_header(&self) -> Option<HeaderValue> {
            let mut names = String::new();
            for report in self.degraded() {
                if !names.is_empty() {
                    names.push(',');
                }
                names.push_str(report.name());
            }
            (!names.is_empty())
                .then(|| HeaderValue::from_str(&names).ok())
                .flatten()
        }

        /// A `200` JSON answer: the given `fields` (each a name and a value that is already
        /// JSON, for example from `serde_json::to_string`), then `"degraded"`, the list of
        /// degraded parts; with the [`DEGRADED`] header when some part is degraded.
        ///
        /// ```
        /// # use std::time::Duration;
        /// # use tower_rampart::fan_out::{FanOut, Part};
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() {
        /// let core = tower::service_fn(|id: u64| async move { Ok::<_, std::convert::Infallible>(id) });
        /// let down = tower::service_fn(|_: u64| async { Err::<u64, _>("down") });
        /// let fan = FanOut::builder(Duration::from_secs(1))
        ///     .part(Part::essential("core", core))
        ///     .part(Part::optional("reviews", down))
        ///     .build()
        ///     .unwrap();
        /// let outcome = fan.call(&7).await.unwrap();
        /// let id = outcome.parts().0.value().unwrap().to_string();
        /// let response: http::Response<bytes::Bytes> = outcome.json_response(&[("id", &id)]);
        /// assert_eq!(response.headers()["x-degraded"], "reviews");
        /// assert_eq!(response.body(), r#"{"id":7,"degraded":["reviews"]}"#);
        /// # }
        /// ```
        pub fn json_response<B: crate::http::ResponseBody>(
            &self,
            fields: &[(&str, &str)],
        ) -> Response<B> {
            let mut json = JsonObject::with_capacity(64);
            for (name, value) in fields {
                json.raw(name, value);
            }
            json.strs("degraded", self.degraded().map(|report| report.name()));
            let mut response = Response::new(B::from_bytes(json.finish()));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(degraded) = self.degraded_header() {
                headers.insert(DEGRADED.clone(), degraded);
            }
            response
        }
    }
}

#[cfg(feature = "http")]
pub use http_helpers::DEGRADED;
