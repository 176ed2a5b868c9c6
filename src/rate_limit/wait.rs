//! Wait mode, for clients: [`WaitingRateLimitLayer`] and its service and future. A service
//! of its own, so that the servers' [`RateLimit`](super::RateLimit) needs no `Clone` inner
//! service and its future stays small.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::clock::{Clock, TokioClock};
use crate::{BoxError, Rejection};

use super::gcra::Quota;
use super::headers::{NoHeaders, ResponseHeaders, private::Apply};
use super::key::{Global, Partition};
use super::layer::RateLimitLayer;
use super::limiter::{Limiter, Reservation, Verdict};
use super::service::RateLimit;

/// Gives a wait-mode reservation back unless the request got to run.
pub(crate) trait Refund: Send + Sync {
    fn refund(&self, reservation: &Reservation);
}

impl<C: crate::clock::Clock> Refund for Limiter<C> {
    fn refund(&self, reservation: &Reservation) {
        Limiter::refund(self, reservation);
    }
}

/// Held by a waiting request; dropping it before the wait ends returns the slot.
pub(crate) struct RefundGuard {
    limiter: Arc<dyn Refund>,
    reservation: Option<Reservation>,
}

impl RefundGuard {
    pub(crate) fn new(limiter: Arc<dyn Refund>, reservation: Reservation) -> Self {
        Self {
            limiter,
            reservation: Some(reservation),
        }
    }

    /// The request is about to run: the slot is spent.
    fn disarm(&mut self) {
        self.reservation = None;
    }
}

impl Drop for RefundGuard {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            self.limiter.refund(&reservation);
        }
    }
}

impl fmt::Debug for RefundGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefundGuard")
            .field("armed", &self.reservation.is_some())
            .finish()
    }
}

// What a waiting request holds. Boxed, so that the common, non-waiting future stays small:
// a `Sleep` is larger than everything else in it together.
pin_project_lite::pin_project! {
    struct Wait<S, Req> {
        #[pin]
        sleep: Sleep,
        service: Option<S>,
        request: Option<Req>,
        guard: RefundGuard,
    }
}

pin_project_lite::pin_project! {
    #[project = WaitStateProj]
    enum WaitState<F, S, Req> {
        Called { #[pin] future: F },
        Waiting { wait: Pin<Box<Wait<S, Req>>> },
        Rejected { error: Option<BoxError> },
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`WaitingRateLimit`]: waits for its reserved slot, then calls;
    /// or fails with [`Rejection::RateLimited`](crate::Rejection::RateLimited) when the wait
    /// would be longer than `max_wait`.
    ///
    /// # Cancellation
    ///
    /// Dropping it while the inner call runs drops the inner future; the token it used stays
    /// spent (the request was admitted). Dropping it while it waits (wait mode) returns the
    /// reserved slot when no later request has reserved after it, otherwise the slot stays
    /// spent: the limiter may under-admit, never over-admit.
    pub struct WaitFuture<F, S, Req, H, K> {
        #[pin]
        state: WaitState<F, S, Req>,
        kept: K,
        headers: H,
    }
}

impl<F, S, Req, H, K> WaitFuture<F, S, Req, H, K> {
    pub(crate) fn called(future: F, kept: K, headers: H) -> Self {
        Self {
            state: WaitState::Called { future },
            kept,
            headers,
        }
    }

    /// # Panics
    ///
    /// Outside a tokio runtime with its timer enabled, as `tokio::time::sleep_until` does.
    pub(crate) fn waiting(
        until: Instant,
        service: S,
        request: Req,
        guard: RefundGuard,
        kept: K,
        headers: H,
    ) -> Self {
        let wait = Box::pin(Wait {
            sleep: tokio::time::sleep_until(until),
            service: Some(service),
            request: Some(request),
            guard,
        });
        Self {
            state: WaitState::Waiting { wait },
            kept,
            headers,
        }
    }

    pub(crate) fn rejected(error: BoxError, kept: K, headers: H) -> Self {
        Self {
            state: WaitState::Rejected { error: Some(error) },
            kept,
            headers,
        }
    }
}

impl<F, S, Req, H, K> fmt::Debug for WaitFuture<F, S, Req, H, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            WaitState::Called { .. } => "called",
            WaitState::Waiting { .. } => "waiting",
            WaitState::Rejected { .. } => "rejected",
        };
        f.debug_struct("WaitFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, S, Req, H, T, E> Future for WaitFuture<F, S, Req, H, H::State>
where
    S: Service<Req, Future = F, Response = T, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    H: Apply<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                WaitStateProj::Called { future } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    this.headers.apply(this.kept, &mut response);
                    return Poll::Ready(Ok(response));
                }
                WaitStateProj::Waiting { wait } => {
                    let wait = wait.as_mut().project();
                    ready!(wait.sleep.poll(cx));
                    wait.guard.disarm();
                    let (Some(mut service), Some(request)) =
                        (wait.service.take(), wait.request.take())
                    else {
                        unreachable!(
                            "a waiting future holds its service and request until it calls"
                        );
                    };
                    let future = service.call(request);
                    this.state.set(WaitState::Called { future });
                }
                WaitStateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("WaitFuture polled after completion")));
                }
            }
        }
    }
}

/// A token-bucket rate limiter that waits for capacity instead of refusing at once, for
/// client stacks: made by [`RateLimitBuilder::wait`](super::RateLimitBuilder::wait).
///
/// A request without capacity reserves the next slot and waits for it, up to `max_wait`;
/// longer waits are refused with [`Rejection::RateLimited`]. Waiters are served in
/// arrival order, and one cancelled before its slot gives the slot back (see
/// [`WaitFuture`]'s cancellation). `poll_ready` never waits for capacity.
///
/// # Sharing
///
/// As [`RateLimitLayer`]: one state for every service, clone and `layer` call.
///
/// ```
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_rampart::rate_limit::RateLimitLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower_rampart::BoxError> {
/// let layer = RateLimitLayer::per_second(10).burst(1).wait(Duration::from_secs(1)).build()?;
/// let svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) }));
/// let started = tokio::time::Instant::now();
/// svc.clone().oneshot(1).await?;
/// svc.oneshot(2).await?; // waits for the next token instead of failing
/// assert_eq!(started.elapsed(), Duration::from_millis(100));
/// # Ok(())
/// # }
/// ```
pub struct WaitingRateLimitLayer<P = Global, C = TokioClock, H = NoHeaders> {
    limits: RateLimitLayer<P, C, H>,
}

// === impl WaitingRateLimitLayer ===

impl<P, C, H> WaitingRateLimitLayer<P, C, H> {
    pub(crate) fn new(limits: RateLimitLayer<P, C, H>) -> Self {
        Self { limits }
    }
}

impl<P, C: Clock, H> WaitingRateLimitLayer<P, C, H> {
    /// The default quota (keys created by `quota_by` may have their own).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// let layer = RateLimitLayer::per_second(5).wait(Duration::from_secs(1)).build()?;
    /// assert_eq!(layer.quota().rate(), 5);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn quota(&self) -> Quota {
        self.limits.quota()
    }

    /// How long until `req` would be admitted without waiting, without taking a token: for
    /// a client that wants to decide before it calls.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_rampart::ConfigError> {
    /// let layer = RateLimitLayer::per_second(5).wait(Duration::from_secs(1)).build()?;
    /// assert_eq!(layer.time_until_ready(&()), Duration::ZERO);
    /// # Ok(())
    /// # }
    /// ```
    pub fn time_until_ready<Req>(&self, req: &Req) -> Duration
    where
        P: Partition<Req>,
    {
        self.limits.time_until_ready(req)
    }

    /// How many requests this limiter has refused (waits longer than `max_wait`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// let layer = RateLimitLayer::per_second(5).wait(Duration::from_secs(1)).build()?;
    /// assert_eq!(layer.rejected_count(), 0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn rejected_count(&self) -> u64 {
        self.limits.rejected_count()
    }
}

impl<P: Clone, C, H: Clone> Clone for WaitingRateLimitLayer<P, C, H> {
    fn clone(&self) -> Self {
        Self {
            limits: self.limits.clone(),
        }
    }
}

impl<P: fmt::Debug, C: fmt::Debug, H: fmt::Debug> fmt::Debug for WaitingRateLimitLayer<P, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WaitingRateLimitLayer")
            .field(&self.limits)
            .finish()
    }
}

impl<S, P: Clone, C, H: Clone> Layer<S> for WaitingRateLimitLayer<P, C, H> {
    type Service = WaitingRateLimit<S, P, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        WaitingRateLimit {
            limit: self.limits.layer(inner),
        }
    }
}

/// The service made by [`WaitingRateLimitLayer`].
///
/// See [`WaitingRateLimitLayer`] for an example.
pub struct WaitingRateLimit<S, P = Global, C = TokioClock, H = NoHeaders> {
    // The refusing service's parts; only `call` differs.
    limit: RateLimit<S, P, C, H>,
}

impl<S, P, C, H> WaitingRateLimit<S, P, C, H> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        self.limit.get_ref()
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.limit.get_mut()
    }

    /// Unwraps the service (the limit's state lives on in the layer and in other clones).
    pub fn into_inner(self) -> S {
        self.limit.into_inner()
    }
}

impl<S: Clone, P: Clone, C, H: Clone> Clone for WaitingRateLimit<S, P, C, H> {
    fn clone(&self) -> Self {
        Self {
            limit: self.limit.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug, C, H> fmt::Debug for WaitingRateLimit<S, P, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WaitingRateLimit")
            .field(&self.limit)
            .finish()
    }
}

impl<S, Req, P, C, H> Service<Req> for WaitingRateLimit<S, P, C, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: Partition<Req>,
    C: Clock,
    H: ResponseHeaders<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = WaitFuture<S::Future, S, Req, H, <H as Apply<S::Response>>::State>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.limit.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = self.limit.limiter.now();
        let with_state = <H as Apply<S::Response>>::ACTIVE;
        match self
            .limit
            .limiter
            .check::<false, _, _>(&self.limit.partition, &req, now, with_state)
        {
            Verdict::Now(state) | Verdict::Shadowed(state) => {
                self.limit.limiter.metrics.admitted();
                WaitFuture::called(
                    self.limit.inner.call(req),
                    H::keep(state),
                    self.limit.headers.clone(),
                )
            }
            Verdict::Later {
                wait_nanos,
                reservation,
                state,
            } => {
                self.limit.limiter.metrics.delayed();
                // The ready service goes into the future; this one keeps an unpolled clone.
                let clone = self.limit.inner.clone();
                let ready = std::mem::replace(&mut self.limit.inner, clone);
                let guard = RefundGuard::new(Arc::clone(&self.limit.limiter) as _, reservation);
                WaitFuture::waiting(
                    self.limit
                        .limiter
                        .instant_at(now.saturating_add(wait_nanos)),
                    ready,
                    req,
                    guard,
                    H::keep(state),
                    self.limit.headers.clone(),
                )
            }
            Verdict::Reject(refusal) => {
                let rejection = Rejection::from(self.limit.limiter.rejection(refusal));
                WaitFuture::rejected(
                    Box::new(rejection),
                    H::keep(None),
                    self.limit.headers.clone(),
                )
            }
        }
    }
}
