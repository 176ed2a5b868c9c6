//! [`RateLimit`]: the service made by [`RateLimitLayer`](super::RateLimitLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::clock::{Clock, TokioClock};
use crate::{BoxError, Rejection};

use super::future::ResponseFuture;
use super::headers::{NoHeaders, ResponseHeaders, private::Apply};
use super::key::{Global, Partition};
use super::limiter::{Limiter, Verdict};

/// A service that admits requests only while its limiter has capacity.
///
/// Decides in [`call`](Service::call): a refused request gets a ready future that fails
/// with [`Rejection::RateLimited`](crate::Rejection::RateLimited) (a 429 through
/// [`RejectionResponseLayer`](crate::http::RejectionResponseLayer)) without reaching the
/// inner service. [`poll_ready`](Service::poll_ready) only forwards to the inner service.
///
/// ```
/// use std::convert::Infallible;
/// use tower::{Layer, Service, ServiceExt, service_fn};
/// use tower_rampart::{Rejection, rate_limit::RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_rampart::BoxError> {
/// let layer = RateLimitLayer::per_second(1).build()?;
/// let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, Infallible>(n * 2) }));
/// assert_eq!(svc.ready().await?.call(21).await?, 42);
/// let refused = svc.ready().await?.call(21).await.unwrap_err();
/// assert!(matches!(Rejection::find(refused.as_ref()), Some(Rejection::RateLimited(_))));
/// # Ok(())
/// # }
/// ```
pub struct RateLimit<S, P = Global, C = TokioClock, H = NoHeaders> {
    pub(super) inner: S,
    pub(super) limiter: Arc<Limiter<C>>,
    pub(super) partition: P,
    pub(super) headers: H,
}

// === impl RateLimit ===

impl<S, P, C, H> RateLimit<S, P, C, H> {
    pub(crate) fn from_parts(inner: S, limiter: Arc<Limiter<C>>, partition: P, headers: H) -> Self {
        Self {
            inner,
            limiter,
            partition,
            headers,
        }
    }

    crate::macros::inner_accessors!();
}

impl<S: Clone, P: Clone, C, H: Clone> Clone for RateLimit<S, P, C, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            partition: self.partition.clone(),
            headers: self.headers.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug, C, H> fmt::Debug for RateLimit<S, P, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("quota", &self.limiter.quota)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl<S, Req, P, C, H> Service<Req> for RateLimit<S, P, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: Partition<Req>,
    C: Clock,
    H: ResponseHeaders<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, H, <H as Apply<S::Response>>::State>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = self.limiter.now();
        let with_state = <H as Apply<S::Response>>::ACTIVE;
        match self
            .limiter
            .check::<false, _, _>(&self.partition, &req, now, with_state)
        {
            Verdict::Now(state) => {
                self.limiter.metrics.admitted();
                ResponseFuture::called(self.inner.call(req), H::keep(state), self.headers.clone())
            }
            // A refusing limiter is never in wait mode (the builder's type sees to it), so a
            // later slot never comes; were it to, calling now is the safe answer.
            Verdict::Shadowed(state) | Verdict::Later { state, .. } => {
                ResponseFuture::called(self.inner.call(req), H::keep(state), self.headers.clone())
            }
            Verdict::Reject(refusal) => {
                let rejection = Rejection::from(self.limiter.rejection(refusal));
                ResponseFuture::rejected(Box::new(rejection), H::keep(None), self.headers.clone())
            }
        }
    }
}
