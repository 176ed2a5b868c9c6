//! [`CircuitBreaker`]: the service made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::BoxError;
use crate::error::CircuitOpen;
use crate::sync::Arc;

use super::breaker::{Select, Single, private};
use super::classify::{Classify, HttpClassifier};
use super::fallback::{Fallback, Reject};
use super::future::{Guard, ResponseFuture};
use super::state::Admission;

/// A service guarded by a circuit breaker.
///
/// `call` decides at once: a closed breaker (or a free half-open probe slot) calls the inner
/// service; otherwise the call is answered by the fallback, by default a
/// [`Rejection::CircuitOpen`](crate::Rejection::CircuitOpen) error. `poll_ready` only forwards
/// to the inner service.
///
/// ```
/// use tower::{Service, ServiceExt};
/// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, ErrorsFail};
/// use tower_rampart::Rejection;
///
/// # tokio_test::block_on(async {
/// let layer = CircuitBreakerLayer::builder()
///     .failure_threshold(2)
///     .with_classifier(ErrorsFail)
///     .build()?;
/// let mut svc = tower::ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_: ()| async { Err::<(), _>("backend down") });
/// for _ in 0..2 {
///     assert_eq!(svc.ready().await?.call(()).await.unwrap_err().to_string(), "backend down");
/// }
/// let rejected = svc.ready().await?.call(()).await.unwrap_err();
/// assert!(matches!(Rejection::find(rejected.as_ref()), Some(Rejection::CircuitOpen(_))));
/// # Ok::<(), tower_rampart::BoxError>(())
/// # }).unwrap();
/// ```
pub struct CircuitBreaker<S, K = Single, Cl = HttpClassifier, F = Reject> {
    inner: S,
    select: K,
    classifier: Cl,
    fallback: F,
}

// === impl CircuitBreaker ===

impl<S, K, Cl, F> CircuitBreaker<S, K, Cl, F> {
    pub(crate) fn from_parts(inner: S, select: K, classifier: Cl, fallback: F) -> Self {
        Self {
            inner,
            select,
            classifier,
            fallback,
        }
    }

    crate::macros::inner_accessors!();
}

impl<S: Clone, K: Clone, Cl: Clone, F: Clone> Clone for CircuitBreaker<S, K, Cl, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            select: self.select.clone(),
            classifier: self.classifier.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, Cl: fmt::Debug, F> fmt::Debug for CircuitBreaker<S, K, Cl, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("select", &self.select)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, Req, K, Cl, F> Service<Req> for CircuitBreaker<S, K, Cl, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Select<Req>,
    Cl: Classify<S::Response>,
    F: Fallback<Req, S::Response>,
{
    type Response = Cl::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, F::Future, Cl, <K as private::Select<Req>>::Clock>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let admission = private::Select::with_lane(&self.select, &req, |lane| {
            let core = &lane.core;
            let start = core.needs_start().then(|| lane.now());
            match core.admit(lane.index, start, || lane.now()) {
                Admission::Admit(ticket) => Ok(Guard::new(Arc::clone(lane), ticket)),
                Admission::Reject { retry_after } => {
                    tracing::debug!(
                        breaker.name = %core.name(),
                        breaker.key = core.key(),
                        breaker.retry_after_ms = retry_after / 1_000_000,
                        "circuit breaker rejected a call"
                    );
                    Err(CircuitOpen::new(Duration::from_nanos(retry_after)))
                }
            }
        });
        match admission {
            Ok(guard) => {
                ResponseFuture::called(self.inner.call(req), guard, self.classifier.clone())
            }
            Err(open) => {
                ResponseFuture::fallback(self.fallback.fallback(req, open), self.classifier.clone())
            }
        }
    }
}
