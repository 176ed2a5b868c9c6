//! What a rejected call gets instead of the inner service's answer.

use std::fmt;
use std::future::{Ready, ready};

use tower_service::Service;

use crate::error::CircuitOpen;
pub use crate::oneshot::Oneshot;
use crate::{BoxError, Rejection};

/// Answers a call the breaker rejected.
///
/// [`Reject`] (the default) answers with a [`Rejection::CircuitOpen`] error; [`FallbackFn`]
/// with a value built by a closure; [`FallbackService`] by calling another service. Set one
/// with [`CircuitBreakerBuilder::fallback`](super::CircuitBreakerBuilder::fallback) or
/// [`fallback_service`](super::CircuitBreakerBuilder::fallback_service).
///
/// ```
/// use tower_rampart::circuit_breaker::{Fallback, Reject};
/// use tower_rampart::error::CircuitOpen;
/// use std::time::Duration;
///
/// # tokio_test::block_on(async {
/// let answer: Result<String, _> = Reject.fallback((), CircuitOpen::new(Duration::from_secs(2))).await;
/// assert_eq!(answer.unwrap_err().to_string(), "circuit open (retry after 2000 ms)");
/// # });
/// ```
pub trait Fallback<Req, T>: Clone + Send + Sync + 'static {
    /// The answer's future.
    type Future: Future<Output = Result<T, BoxError>>;

    /// Answers `req`, which the breaker rejected with `open`.
    fn fallback(&self, req: Req, open: CircuitOpen) -> Self::Future;
}

/// No fallback: a rejected call fails with [`Rejection::CircuitOpen`] (503 over HTTP).
///
/// See [`Fallback`] for an example.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reject;

impl<Req, T> Fallback<Req, T> for Reject {
    type Future = Ready<Result<T, BoxError>>;

    fn fallback(&self, _: Req, open: CircuitOpen) -> Self::Future {
        ready(Err(Box::new(Rejection::from(open))))
    }
}

/// A fallback value from a closure `Fn(Req, CircuitOpen) -> T`; made by
/// [`CircuitBreakerBuilder::fallback`](super::CircuitBreakerBuilder::fallback).
///
/// ```
/// use tower_rampart::circuit_breaker::{Fallback, FallbackFn};
/// use tower_rampart::error::CircuitOpen;
/// use std::time::Duration;
///
/// let cached = FallbackFn::new(|_req: (), _open: CircuitOpen| "cached price".to_owned());
/// # tokio_test::block_on(async {
/// let answer = cached.fallback((), CircuitOpen::new(Duration::ZERO)).await;
/// assert_eq!(answer.unwrap(), "cached price");
/// # });
/// ```
#[derive(Clone, Copy)]
pub struct FallbackFn<F>(F);

impl<F> FallbackFn<F> {
    /// Wraps the closure.
    ///
    /// See [`FallbackFn`] for an example.
    pub const fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F> fmt::Debug for FallbackFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackFn").finish_non_exhaustive()
    }
}

impl<F, Req, T> Fallback<Req, T> for FallbackFn<F>
where
    F: Fn(Req, CircuitOpen) -> T + Clone + Send + Sync + 'static,
{
    type Future = Ready<Result<T, BoxError>>;

    fn fallback(&self, req: Req, open: CircuitOpen) -> Self::Future {
        ready(Ok((self.0)(req, open)))
    }
}

/// A fallback service, called with the rejected request; made by
/// [`CircuitBreakerBuilder::fallback_service`](super::CircuitBreakerBuilder::fallback_service).
///
/// Each fallback call clones the service, waits until the clone is ready and calls it.
///
/// ```
/// use tower_rampart::circuit_breaker::{Fallback, FallbackService};
/// use tower_rampart::error::CircuitOpen;
/// use std::time::Duration;
///
/// let mirror = FallbackService::new(tower::service_fn(|req: u32| async move {
///     Ok::<_, std::convert::Infallible>(req * 2)
/// }));
/// # tokio_test::block_on(async {
/// assert_eq!(mirror.fallback(21, CircuitOpen::new(Duration::ZERO)).await.unwrap(), 42);
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FallbackService<S>(S);

impl<S> FallbackService<S> {
    /// Wraps the service.
    ///
    /// See [`FallbackService`] for an example.
    pub const fn new(service: S) -> Self {
        Self(service)
    }
}

impl<S, Req, T> Fallback<Req, T> for FallbackService<S>
where
    S: Service<Req, Response = T> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
{
    type Future = Oneshot<S, Req>;

    fn fallback(&self, req: Req, _: CircuitOpen) -> Self::Future {
        Oneshot::new(self.0.clone(), req)
    }
}
