//! The response future of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::BoxError;

use super::headers::private::Apply;
use super::limiter::{Limiter, Reservation};

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
    #[project = StateProj]
    enum State<F, S, Req> {
        Called { #[pin] future: F },
        Waiting { wait: Pin<Box<Wait<S, Req>>> },
        Rejected { error: Option<BoxError> },
    }
}

pin_project_lite::pin_project! {
    /// Resolves to the inner response, or fails with
    /// [`Rejection::RateLimited`](crate::Rejection::RateLimited).
    ///
    /// # Cancellation
    ///
    /// Dropping it while the inner call runs drops the inner future; the token it used stays
    /// spent (the request was admitted). Dropping it while it waits (wait mode) returns the
    /// reserved slot when no later request has reserved after it, otherwise the slot stays
    /// spent: the limiter may under-admit, never over-admit.
    pub struct ResponseFuture<F, S, Req, H, K> {
        #[pin]
        state: State<F, S, Req>,
        kept: K,
        headers: H,
    }
}

impl<F, S, Req, H, K> ResponseFuture<F, S, Req, H, K> {
    pub(crate) fn called(future: F, kept: K, headers: H) -> Self {
        Self {
            state: State::Called { future },
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
            state: State::Waiting { wait },
            kept,
            headers,
        }
    }

    pub(crate) fn rejected(error: BoxError, kept: K, headers: H) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
            kept,
            headers,
        }
    }
}

impl<F, S, Req, H, K> fmt::Debug for ResponseFuture<F, S, Req, H, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, S, Req, H, T, E> Future for ResponseFuture<F, S, Req, H, H::State>
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
                StateProj::Called { future } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    this.headers.apply(this.kept, &mut response);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Waiting { wait } => {
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
                    this.state.set(State::Called { future });
                }
                StateProj::Rejected { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
            }
        }
    }
}
