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
    #[inline(always)]
    fn finish(&mut self, outcome: Outcome) {
        if let Some(lane) = self.lane.take() {
            lane.core
                .record(lane.index, self.ticket, outcome, || lane.now());
        }
    }
}

impl<C: Clock> Guard<C> {
    /// Hands the claim over to a [`Pending`] call, for an outcome known later.
    #[inline]
    fn defer(&mut self) -> Option<Pending> {
        let lane = self.lane.take()?;
        Some(Pending {
            call: Some((erase(lane), self.ticket)),
        })
    }
}

/// What a deferred call needs of its lane, without the lane's clock type.
trait Finish: Send + Sync {
    fn record(&self, ticket: Ticket, outcome: Outcome);
    fn release(&self, ticket: Ticket);
}

impl<C: Clock> Finish for Lane<C> {
    fn record(&self, ticket: Ticket, outcome: Outcome) {
        self.core.record(self.index, ticket, outcome, || self.now());
    }

    fn release(&self, ticket: Ticket) {
        self.core.release(ticket);
    }
}

/// A lane behind its trait: the same allocation, only the pointer changes type.
#[cfg(not(all(test, tower_rampart_loom)))]
fn erase<C: Clock>(lane: Arc<Lane<C>>) -> std::sync::Arc<dyn Finish> {
    lane
}

/// loom's `Arc` cannot be unsized: under loom only, the lane is wrapped once more.
#[cfg(all(test, tower_rampart_loom))]
fn erase<C: Clock>(lane: Arc<Lane<C>>) -> std::sync::Arc<dyn Finish> {
    struct Held<C>(Arc<Lane<C>>);
    impl<C: Clock> Finish for Held<C> {
        fn record(&self, ticket: Ticket, outcome: Outcome) {
            self.0.record(ticket, outcome);
        }
        fn release(&self, ticket: Ticket) {
            self.0.release(ticket);
        }
    }
    std::sync::Arc::new(Held(lane))
}

/// A call whose outcome is known only later, such as a gRPC call whose status arrives in
/// the trailers: [`finish`](Self::finish) it then. Dropped unfinished, the call is neutral
/// (as if cancelled): nothing is counted and a half-open probe slot is given back.
///
/// Handed to [`Classify::respond`] when [`Classify::classify`] returned `None`.
pub struct Pending {
    call: Option<(std::sync::Arc<dyn Finish>, Ticket)>,
}

impl Pending {
    /// Counts the call as `outcome`.
    pub fn finish(mut self, outcome: Outcome) {
        if let Some((lane, ticket)) = self.call.take() {
            lane.record(ticket, outcome);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((lane, ticket)) = self.call.take() {
            lane.release(ticket);
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("finished", &self.call.is_none())
            .finish()
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
        Fallback { #[pin] future: G, classifier: Cl },
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

    pub(crate) fn fallback(future: G, classifier: Cl) -> Self {
        Self {
            kind: Kind::Fallback { future, classifier },
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
    type Output = Result<Cl::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                guard,
                classifier,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                let later = match classifier.classify(&result) {
                    Some(outcome) => {
                        guard.finish(outcome);
                        None
                    }
                    None => guard.defer(),
                };
                Poll::Ready(classifier.respond(result, later))
            }
            // The fallback's answer takes the same shape, with nothing left to count.
            KindProj::Fallback { future, classifier } => {
                Poll::Ready(classifier.respond(ready!(future.poll(cx)), None))
            }
        }
    }
}
