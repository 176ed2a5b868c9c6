//! [`HttpMetrics`]: the service made by [`HttpMetricsLayer`](super::HttpMetricsLayer).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::Handles;
use super::future::ResponseFuture;

/// The service made by [`HttpMetricsLayer`](super::HttpMetricsLayer).
///
/// See [`HttpMetricsLayer`](super::HttpMetricsLayer) for an example.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S> HttpMetrics<S> {
    pub(super) fn new(inner: S, handles: Arc<Handles>) -> Self {
        Self { inner, handles }
    }

    crate::macros::inner_accessors!();
}

impl<S, B, R> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let slot = Handles::slot(req.method());
        ResponseFuture::new(
            self.inner.call(req),
            Arc::clone(&self.handles),
            slot,
            Instant::now(),
        )
    }
}
