//! Deciding what a call's result says about the dependency's health.

use crate::BoxError;
use crate::answer::Answer;

use super::body::ClassifiedBody;
use super::future::Pending;

/// What one call's result counts as.
///
/// ```
/// use tower_rampart::circuit_breaker::Outcome;
///
/// assert_ne!(Outcome::Success, Outcome::Ignore);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency answered well.
    Success,
    /// The dependency failed: counts toward tripping the breaker.
    Failure,
    /// Says nothing about the dependency: counted in the metrics only. A half-open probe
    /// that ends ignored gives its slot back.
    Ignore,
}

/// Classifies a call's result as a success, a failure or neither.
///
/// The classifier sees the whole result, with the inner service's error already converted to
/// a [`BoxError`]. Closures `Fn(&Result<T, BoxError>) -> Outcome` implement it; the default is
/// [`HttpClassifier`], and [`ErrorsFail`] suits services whose responses are not HTTP.
/// Classifiers are cloned into every call's future: keep them small (a closure that captures
/// nothing, or `Copy` data).
///
/// A classifier may also decide later, when the response is only known once its body has
/// ended (a gRPC status in trailers): [`classify`](Self::classify) returns `None` and
/// [`respond`](Self::respond) hands the [`Pending`] call to the response it returns.
///
/// ```
/// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, Outcome};
/// use tower_rampart::BoxError;
///
/// // A job runner whose `Ok(false)` means "the backend refused".
/// let layer = CircuitBreakerLayer::builder()
///     .with_classifier(|result: &Result<bool, BoxError>| match result {
///         Ok(true) => Outcome::Success,
///         Ok(false) | Err(_) => Outcome::Failure,
///     })
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub trait Classify<T>: Clone + Send + Sync + 'static {
    /// What the breaker's callers get in place of `T`: `T` itself for classifiers that
    /// always decide at once.
    type Response;

    /// The outcome of one call, or `None` when only the end of the response can tell.
    fn classify(&self, result: &Result<T, BoxError>) -> Option<Outcome>;

    /// The result handed to the caller. `later` is `Some` exactly when
    /// [`classify`](Self::classify) returned `None`: finish it when the outcome is known
    /// ([`Pending::finish`]); dropped unfinished, the call counts as neutral.
    fn respond(
        &self,
        result: Result<T, BoxError>,
        later: Option<Pending>,
    ) -> Result<Self::Response, BoxError>;
}

impl<F, T> Classify<T> for F
where
    F: Fn(&Result<T, BoxError>) -> Outcome + Clone + Send + Sync + 'static,
{
    type Response = T;

    #[inline]
    fn classify(&self, result: &Result<T, BoxError>) -> Option<Outcome> {
        Some(self(result))
    }

    #[inline]
    fn respond(&self, result: Result<T, BoxError>, _: Option<Pending>) -> Result<T, BoxError> {
        result
    }
}

/// The default classifier, for `http::Response`s, HTTP and gRPC alike.
///
/// | result | outcome |
/// |---|---|
/// | 5xx response | failure |
/// | 429 response | ignore (configurable with [`too_many_requests`](Self::too_many_requests)) |
/// | any other response (2xx, 3xx, 4xx) | success: the dependency is up, the request was wrong |
/// | gRPC answer `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS` | failure |
/// | gRPC answer `RESOURCE_EXHAUSTED` | failure (configurable with [`resource_exhausted`](Self::resource_exhausted)) |
/// | gRPC answer `CANCELLED` | ignore |
/// | any other gRPC answer (`OK`, `NOT_FOUND`, `INVALID_ARGUMENT`, ...) | success |
/// | gRPC body that fails or ends without a `grpc-status` | failure |
/// | error that is a [`RateLimited`](crate::Rejection::RateLimited), [`CircuitOpen`](crate::Rejection::CircuitOpen) or [`Overloaded`](crate::Rejection::Overloaded) rejection (from a layer inside this one) | ignore |
/// | any other error (transport, timeout) | failure |
///
/// The adaptive load shedder reads answers through the same table, each row to its own end
/// (a 4xx says nothing about load; a 429 or a timeout says overload).
///
/// A gRPC answer (HTTP 200 with `content-type: application/grpc*`) carries its status in the
/// response headers when it is Trailers-Only (every refusal, most errors) and in the
/// trailers otherwise. The classifier reads the headers; when the status is not there, the
/// response body is wrapped in a [`ClassifiedBody`] that reads the trailers as they pass,
/// without buffering and without allocating, and the call counts when the body ends. A
/// body dropped before its end (the client went away) is neutral.
///
/// ```
/// use tower_rampart::circuit_breaker::{Classify, HttpClassifier, Outcome};
///
/// let classify = HttpClassifier::new();
/// let answer = |status: u16| {
///     let response = http::Response::builder().status(status).body(()).unwrap();
///     classify.classify(&Ok(response))
/// };
/// assert_eq!(answer(200), Some(Outcome::Success));
/// assert_eq!(answer(404), Some(Outcome::Success));
/// assert_eq!(answer(429), Some(Outcome::Ignore));
/// assert_eq!(answer(503), Some(Outcome::Failure));
/// assert_eq!(classify.classify(&Err::<http::Response<()>, _>("connection reset".into())), Some(Outcome::Failure));
/// let grpc = |status: &str| {
///     let answer = http::Response::builder()
///         .header("content-type", "application/grpc")
///         .header("grpc-status", status)
///         .body(())
///         .unwrap();
///     classify.classify(&Ok(answer))
/// };
/// assert_eq!(grpc("14"), Some(Outcome::Failure));
/// assert_eq!(grpc("1"), Some(Outcome::Ignore));
/// assert_eq!(grpc("5"), Some(Outcome::Success));
/// // No status in the headers: decided from the trailers when the body ends.
/// let streamed = http::Response::builder().header("content-type", "application/grpc").body(()).unwrap();
/// assert_eq!(classify.classify(&Ok(streamed)), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpClassifier {
    too_many_requests: Outcome,
    resource_exhausted: Outcome,
}

impl HttpClassifier {
    /// 5xx and errors fail, 429 is ignored, everything else succeeds.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::HttpClassifier;
    /// assert_eq!(HttpClassifier::new(), HttpClassifier::default());
    /// ```
    pub const fn new() -> Self {
        Self {
            too_many_requests: Outcome::Ignore,
            resource_exhausted: Outcome::Failure,
        }
    }

    /// What a `429 Too Many Requests` counts as. Default: [`Outcome::Ignore`], since a
    /// dependency that sheds load is up; choose [`Outcome::Failure`] to back off from it.
    ///
    /// ```
    /// use tower_rampart::circuit_breaker::{Classify, HttpClassifier, Outcome};
    ///
    /// let classify = HttpClassifier::new().too_many_requests(Outcome::Failure);
    /// let response = http::Response::builder().status(429).body(()).unwrap();
    /// assert_eq!(classify.classify(&Ok(response)), Some(Outcome::Failure));
    /// ```
    pub const fn too_many_requests(self, outcome: Outcome) -> Self {
        Self {
            too_many_requests: outcome,
            ..self
        }
    }

    /// What a gRPC `RESOURCE_EXHAUSTED` answer counts as. Default: [`Outcome::Failure`];
    /// choose [`Outcome::Ignore`] when the dependency's own rate limit should not open the
    /// breaker.
    ///
    /// ```
    /// use tower_rampart::circuit_breaker::{Classify, HttpClassifier, Outcome};
    ///
    /// let classify = HttpClassifier::new().resource_exhausted(Outcome::Ignore);
    /// let answer = http::Response::builder()
    ///     .header("content-type", "application/grpc")
    ///     .header("grpc-status", "8")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(classify.classify(&Ok(answer)), Some(Outcome::Ignore));
    /// ```
    pub const fn resource_exhausted(self, outcome: Outcome) -> Self {
        Self {
            resource_exhausted: outcome,
            ..self
        }
    }

    /// What an answer says about the dependency.
    #[inline]
    pub(crate) fn outcome(&self, answer: Answer) -> Outcome {
        match answer {
            Answer::Ok | Answer::Rejected => Outcome::Success,
            Answer::TooManyRequests => self.too_many_requests,
            Answer::ResourceExhausted => self.resource_exhausted,
            Answer::Unavailable | Answer::TimedOut | Answer::Failed => Outcome::Failure,
            Answer::Cancelled | Answer::Refused => Outcome::Ignore,
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Classify<http::Response<B>> for HttpClassifier {
    type Response = http::Response<ClassifiedBody<B>>;

    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, BoxError>) -> Option<Outcome> {
        // The breaker does not see the request. Trailers-Only carries a gRPC status in the
        // headers, any other answer in the trailers (`None` here).
        let answer = match result {
            Ok(response) => Answer::of_response_alone(response),
            Err(error) => Some(Answer::of_error(error)),
        };
        answer.map(|answer| self.outcome(answer))
    }

    #[inline]
    fn respond(
        &self,
        result: Result<http::Response<B>, BoxError>,
        later: Option<Pending>,
    ) -> Result<Self::Response, BoxError> {
        let pending = later.map(|call| (call, *self));
        result.map(|response| response.map(|body| ClassifiedBody::new(body, pending)))
    }
}

/// A classifier for any response type: every `Ok` succeeds, every error fails, except
/// rate-limit and open-circuit rejections from inner layers, which are ignored.
///
/// ```
/// use tower_rampart::circuit_breaker::{Classify, ErrorsFail, Outcome};
/// use tower_rampart::{BoxError, Rejection, error::CircuitOpen};
/// use std::time::Duration;
///
/// assert_eq!(ErrorsFail.classify(&Ok::<_, BoxError>(7)), Some(Outcome::Success));
/// assert_eq!(ErrorsFail.classify(&Err::<u8, BoxError>("down".into())), Some(Outcome::Failure));
/// let inner: BoxError = Rejection::from(CircuitOpen::new(Duration::from_secs(1))).into();
/// assert_eq!(ErrorsFail.classify(&Err::<u8, _>(inner)), Some(Outcome::Ignore));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorsFail;

impl<T> Classify<T> for ErrorsFail {
    type Response = T;

    #[inline]
    fn classify(&self, result: &Result<T, BoxError>) -> Option<Outcome> {
        Some(match result {
            Ok(_) => Outcome::Success,
            Err(error) => error_outcome(error),
        })
    }

    #[inline]
    fn respond(&self, result: Result<T, BoxError>, _: Option<Pending>) -> Result<T, BoxError> {
        result
    }
}

/// An error's outcome: what [`HttpClassifier`] makes of one, whatever its settings.
fn error_outcome(error: &BoxError) -> Outcome {
    HttpClassifier::new().outcome(Answer::of_error(error))
}
