//! [`ResponseFuture`]: the future of a [`Timeout`](super::Timeout) or
//! [`PropagateDeadline`](super::PropagateDeadline) call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::TimedOut;
use crate::{BoxError, Rejection};

pin_project_lite::pin_project! {
    #[project = TimerProj]
    enum Timer {
        // Not armed yet: the inner future has not been pending.
        Idle { deadline: Instant },
        Armed { #[pin] sleep: Sleep },
        // No deadline at all (outbound call outside any deadline scope).
        Never,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Running { #[pin] inner: F, #[pin] timer: Timer },
        Expired,
    }
}

pin_project_lite::pin_project! {
    /// The inner call raced against the deadline, with the timer inline (nothing boxed).
    ///
    /// The inner future is polled first, so a response that is ready wins even if the
    /// deadline has passed, and a call answered on its first poll never arms a timer.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        // The budget the call was given.
        budget: Duration,
        side: Side,
    }
}

/// Which layer made the future: the server's timeout or the client's propagation (a metric
/// label).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    Server,
    Client,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn running(
        inner: F,
        deadline: Option<Instant>,
        budget: Duration,
        side: Side,
    ) -> Self {
        let timer = match deadline {
            Some(deadline) => Timer::Idle { deadline },
            None => Timer::Never,
        };
        Self {
            kind: Kind::Running { inner, timer },
            budget,
            side,
        }
    }

    /// A call whose budget was spent before it started: it fails without being made.
    pub(crate) fn expired(budget: Duration, side: Side) -> Self {
        crate::metrics::timeout_budget_spent(side.as_str());
        Self {
            kind: Kind::Expired,
            budget,
            side,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// The error of a call whose `budget` ran out (also used by the fan-out's parts).
/// A deadline that passed during the call: counted, and its rejection.
#[cold]
#[inline(never)]
fn expired(side: Side, budget: Duration) -> BoxError {
    crate::metrics::timeout_expired(side.as_str());
    timed_out(budget)
}

pub(crate) fn timed_out(budget: Duration) -> BoxError {
    tracing::debug!(
        timeout.after_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
        "deadline elapsed"
    );
    Box::new(Rejection::from(TimedOut::new(budget)))
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Running { inner, mut timer } => {
                // A deadline that has fired wins over an inner future that would end now
                // for the same reason: a tonic `Channel` inside a client stack holds the
                // call to the `grpc-timeout` sent, fires in the same timer tick and would
                // answer `CANCELLED` where this layer answers `DEADLINE_EXCEEDED`.
                if let TimerProj::Armed { sleep } = timer.as_mut().project() {
                    if sleep.is_elapsed() {
                        return Poll::Ready(Err(expired(*this.side, *this.budget)));
                    }
                }
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                if let TimerProj::Idle { deadline } = timer.as_mut().project() {
                    let sleep = tokio::time::sleep_until(*deadline);
                    timer.set(Timer::Armed { sleep });
                }
                match timer.project() {
                    TimerProj::Armed { sleep } => {
                        ready!(sleep.poll(cx));
                        Poll::Ready(Err(expired(*this.side, *this.budget)))
                    }
                    TimerProj::Never | TimerProj::Idle { .. } => Poll::Pending,
                }
            }
            KindProj::Expired => Poll::Ready(Err(timed_out(*this.budget))),
        }
    }
}
