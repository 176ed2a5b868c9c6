//! The response future of [`HttpMetrics`](super::HttpMetrics).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use tokio::time::Instant;

use super::{Handles, OUTCOMES};

pin_project_lite::pin_project! {
    /// The inner call; records its outcome and duration when it completes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        handles: Arc<Handles>,
        slot: usize,
        started: Instant,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, handles: Arc<Handles>, slot: usize, started: Instant) -> Self {
        Self {
            inner,
            handles,
            slot,
            started,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let outcome = match &result {
            Ok(response) => usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1,
            Err(_) => OUTCOMES.len() - 1,
        };
        let (requests, durations) = this.handles.at(*this.slot + outcome);
        requests.increment(1);
        durations.record(this.started.elapsed().as_secs_f64());
        Poll::Ready(result)
    }
}
