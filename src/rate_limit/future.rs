//! The response future of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::BoxError;

use super::headers::private::Apply;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
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
    /// spent (the request was admitted).
    pub struct ResponseFuture<F, H, K> {
        #[pin]
        state: State<F>,
        kept: K,
        headers: H,
    }
}

impl<F, H, K> ResponseFuture<F, H, K> {
    pub(crate) fn called(future: F, kept: K, headers: H) -> Self {
        Self {
            state: State::Called { future },
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

impl<F, H, K> fmt::Debug for ResponseFuture<F, H, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, H, T, E> Future for ResponseFuture<F, H, H::State>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    H: Apply<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Called { future } => {
                let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                this.headers.apply(this.kept, &mut response);
                Poll::Ready(Ok(response))
            }
            StateProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
