//! Deciding what a call's result says about the dependency's health.

use crate::{BoxError, Rejection};

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
    /// The outcome of one call.
    fn classify(&self, result: &Result<T, BoxError>) -> Outcome;
}

impl<F, T> Classify<T> for F
where
    F: Fn(&Result<T, BoxError>) -> Outcome + Clone + Send + Sync + 'static,
{
    fn classify(&self, result: &Result<T, BoxError>) -> Outcome {
        self(result)
    }
}

/// The default classifier, for `http::Response`s.
///
/// | result | outcome |
/// |---|---|
/// | 5xx response | failure |
/// | 429 response | ignore (configurable with [`too_many_requests`](Self::too_many_requests)) |
/// | any other response (2xx, 3xx, 4xx) | success: the dependency is up, the request was wrong |
/// | error that is a [`RateLimited`](Rejection::RateLimited) or [`CircuitOpen`](Rejection::CircuitOpen) rejection (from a layer inside this one) | ignore |
/// | any other error (transport, timeout) | failure |
///
/// ```
/// use tower_rampart::circuit_breaker::{Classify, HttpClassifier, Outcome};
///
/// let classify = HttpClassifier::new();
/// let answer = |status: u16| {
///     let response = http::Response::builder().status(status).body(()).unwrap();
///     classify.classify(&Ok(response))
/// };
/// assert_eq!(answer(200), Outcome::Success);
/// assert_eq!(answer(404), Outcome::Success);
/// assert_eq!(answer(429), Outcome::Ignore);
/// assert_eq!(answer(503), Outcome::Failure);
/// assert_eq!(classify.classify(&Err::<http::Response<()>, _>("connection reset".into())), Outcome::Failure);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpClassifier {
    too_many_requests: Outcome,
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
    /// assert_eq!(classify.classify(&Ok(response)), Outcome::Failure);
    /// ```
    pub const fn too_many_requests(self, outcome: Outcome) -> Self {
        Self {
            too_many_requests: outcome,
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> Classify<http::Response<B>> for HttpClassifier {
    fn classify(&self, result: &Result<http::Response<B>, BoxError>) -> Outcome {
        match result {
            Ok(response) if response.status().is_server_error() => Outcome::Failure,
            Ok(response) if response.status() == http::StatusCode::TOO_MANY_REQUESTS => {
                self.too_many_requests
            }
            Ok(_) => Outcome::Success,
            Err(error) => error_outcome(error),
        }
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
/// assert_eq!(ErrorsFail.classify(&Ok::<_, BoxError>(7)), Outcome::Success);
/// assert_eq!(ErrorsFail.classify(&Err::<u8, BoxError>("down".into())), Outcome::Failure);
/// let inner: BoxError = Rejection::from(CircuitOpen::new(Duration::from_secs(1))).into();
/// assert_eq!(ErrorsFail.classify(&Err::<u8, _>(inner)), Outcome::Ignore);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorsFail;

impl<T> Classify<T> for ErrorsFail {
    fn classify(&self, result: &Result<T, BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) => error_outcome(error),
        }
    }
}

fn error_outcome(error: &BoxError) -> Outcome {
    match Rejection::find(error.as_ref()) {
        Some(rejection) if rejection.is_refusal() => Outcome::Ignore,
        _ => Outcome::Failure,
    }
}
