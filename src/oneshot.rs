//! [`Oneshot`]: one call to a service, readiness first.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tower_service::Service;

use crate::BoxError;

pin_project_lite::pin_project! {
    /// One call to a service: wait for it to be ready, then call it. Used for a circuit
    /// breaker's fallback service and for each part of a fan-out.
    pub struct Oneshot<S: Service<Req>, Req> {
        #[pin]
        state: OneshotState<S, Req>,
    }
}

pin_project_lite::pin_project! {
    #[project = OneshotProj]
    enum OneshotState<S: Service<Req>, Req> {
        Ready { service: S, req: Option<Req> },
        Called { #[pin] future: S::Future },
    }
}

impl<S: Service<Req>, Req> Oneshot<S, Req> {
    pub(crate) fn new(service: S, req: Req) -> Self {
        Self {
            state: OneshotState::Ready {
                service,
                req: Some(req),
            },
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for Oneshot<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Oneshot").finish_non_exhaustive()
    }
}

impl<S, Req> Future for Oneshot<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                OneshotProj::Ready { service, req } => {
                    ready!(service.poll_ready(cx)).map_err(Into::into)?;
                    let req = req.take().expect("Oneshot polled after completion");
                    let future = service.call(req);
                    state.set(OneshotState::Called { future });
                }
                OneshotProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}
