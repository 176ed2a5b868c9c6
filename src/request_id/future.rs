//! The response future of [`SetRequestId`](super::SetRequestId).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::{HeaderName, Response};
use tracing::Span;

use crate::context;
use crate::context::RequestId;

pin_project_lite::pin_project! {
    /// The inner call, polled in the request's span and scope; sets the id on the response.
    /// (One future for both, rather than `Instrumented` inside `Scoped`: one projection and
    /// one move fewer per poll.)
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        // The id, put in scope around each poll, then moved onto the response.
        id: Option<RequestId>,
        header: Option<HeaderName>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, span: Span, id: Option<RequestId>, header: HeaderName) -> Self {
        Self {
            inner,
            span,
            id,
            header: Some(header),
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

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = {
            let _span = this.span.enter();
            let _scope = context::enter(this.id);
            this.inner.poll(cx)
        };
        let mut response = ready!(answer)?;
        // The scope is left: the id is back in place, to be moved onto the response.
        if let (Some(name), Some(id)) = (this.header.take(), this.id.take()) {
            response.headers_mut().insert(name, id.into_header_value());
        }
        Poll::Ready(Ok(response))
    }
}
