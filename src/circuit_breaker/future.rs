//! [`ResponseFuture`]: the future of a [`CircuitBreaker`](super::CircuitBreaker) call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::BoxError;
use crate::clock::Clock;
use crate::sync::Arc;

use super::breaker::Lane;
use super::classify::{Classify, Outcome};
use super::state::Ticket;

/// An admitted call's claim on its breaker. Dropped before the call completes, it is
/// neutral: a half-open probe gives its slot back, nothing is counted.
pub(crate) struct Guard<C> {
    /// Taken when the call completes; still here on drop means the call was abandoned.
    lane: Option<Arc<Lane<C>>>,
    ticket: Ticket,
}

impl<C> Guard<C> {
    #[inline]
    pub(crate) fn new(lane: Arc<Lane<C>>, ticket: Ticket) -> Self {
        Self {
            lane: Some(lane),
            ticket,
        }
    }
}

impl<C: Clock> Guard<C> {
    #[inline]
    fn finish(&mut self, outcome: Outcome) {
        if let Some(lane) = self.lane.take() {
            lane.core
                .record(lane.index, self.ticket, outcome, || lane.now());
        }
    }
}

impl<C> Drop for Guard<C> {
    #[inline]
    fn drop(&mut self) {
        if let Some(lane) = &self.lane {
            lane.core.release(self.ticket);
        }
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, G, Cl, C> {
        Called { #[pin] future: F, guard: Guard<C>, classifier: Cl },
        Fallback { #[pin] future: G },
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`CircuitBreaker`](super::CircuitBreaker) call: the inner call with its
    /// claim on the breaker, or the fallback of a rejected call. Nothing is boxed.
    pub struct ResponseFuture<F, G, Cl, C> {
        #[pin]
        kind: Kind<F, G, Cl, C>,
    }
}

impl<F, G, Cl, C> ResponseFuture<F, G, Cl, C> {
    pub(crate) fn called(future: F, guard: Guard<C>, classifier: Cl) -> Self {
        Self {
            kind: Kind::Called {
                future,
                guard,
                classifier,
            },
        }
    }

    pub(crate) fn fallback(future: G) -> Self {
        Self {
            kind: Kind::Fallback { future },
        }
    }
}

impl<F, G, Cl, C> fmt::Debug for ResponseFuture<F, G, Cl, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Fallback { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, G, Cl, C, T, E> Future for ResponseFuture<F, G, Cl, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    G: Future<Output = Result<T, BoxError>>,
    Cl: Classify<T>,
    C: Clock,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                guard,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                guard.finish(classifier.classify(&result));
                Poll::Ready(result)
            }
            KindProj::Fallback { future } => future.poll(cx),
        }
    }
}
