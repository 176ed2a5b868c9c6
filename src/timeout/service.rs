//! [`Timeout`]: the service made by [`TimeoutLayer`](super::TimeoutLayer).

use std::task::{Context as TaskContext, Poll};

use tokio::time::Instant;
use tower_service::Service;

use crate::BoxError;
use crate::context;

use super::future::{ResponseFuture, Side};
use super::layer::{HttpInbound, Inbound, Limit, private};
use crate::context::Deadline;

/// A service whose calls must finish by their deadline.
///
/// `call` computes the deadline (the earliest of the limit, the caller's budget and any
/// deadline already in scope), puts it in the request and the request context, and calls the
/// inner service inside that context. A budget already spent fails at once without calling
/// the inner service.
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceExt};
/// use tower_rampart::{Rejection, timeout::TimeoutLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut svc = tower::ServiceBuilder::new()
///     .layer(TimeoutLayer::new(Duration::from_millis(300)).unwrap().ignore_inbound())
///     .service_fn(|_: ()| async {
///         tokio::time::sleep(Duration::from_secs(5)).await;
///         Ok::<_, std::convert::Infallible>("too late")
///     });
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(matches!(Rejection::find(err.as_ref()), Some(Rejection::TimedOut(t)) if t.after() == Duration::from_millis(300)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Timeout<S, L = std::time::Duration, I = HttpInbound> {
    inner: S,
    limit: L,
    inbound: I,
}

// === impl Timeout ===

impl<S, L, I> Timeout<S, L, I> {
    pub(crate) fn new(inner: S, limit: L, inbound: I) -> Self {
        Self {
            inner,
            limit,
            inbound,
        }
    }

    crate::macros::inner_accessors!();
}

impl<S, Req, L, I> Service<Req> for Timeout<S, L, I>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    L: Limit<Req>,
    I: Inbound<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<context::Scoped<S::Future, Option<Deadline>>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let now = Instant::now();
        let mut budget = self.limit.limit(&req);
        if let Some(sent) = private::Inbound::budget(&self.inbound, &req) {
            budget = budget.min(sent);
        }
        let mut deadline = Deadline::starting(now, budget);
        if let Some(earlier) = context::current_deadline().filter(|d| *d < deadline) {
            deadline = earlier;
            budget = earlier.instant().saturating_duration_since(now);
        }
        if budget.is_zero() {
            return ResponseFuture::expired(budget, Side::Server);
        }
        private::Inbound::attach(&self.inbound, &mut req, deadline);
        let mut slot = Some(deadline);
        let inner = {
            let _scope = context::enter(&mut slot);
            self.inner.call(req)
        };
        ResponseFuture::running(
            context::scoped(slot, inner),
            Some(deadline.instant()),
            budget,
            Side::Server,
        )
    }
}
