//! [`ClassifiedBody`]: a response body that tells the breaker how a gRPC call ended.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};

use crate::answer::Answer;

use super::classify::HttpClassifier;
use super::future::Pending;

pin_project_lite::pin_project! {
    /// The body of a response that passed a breaker using [`HttpClassifier`]: the inner
    /// body, frame for frame.
    ///
    /// For a gRPC answer whose status was not in its headers, it also holds the call's
    /// claim on the breaker and reads `grpc-status` from the trailers as they pass: the call
    /// counts when the body ends (a failure if it fails or ends without a status), and is
    /// neutral if the body is dropped first. Nothing is buffered or allocated. For any other
    /// response the call was counted already and the body is passed through untouched.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower::{Service, ServiceExt};
    /// use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    ///
    /// # tokio_test::block_on(async {
    /// let layer = CircuitBreakerLayer::builder().build()?;
    /// let mut svc = tower::ServiceBuilder::new().layer(layer).service_fn(|_: ()| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
    /// });
    /// let response = svc.ready().await?.call(()).await?;
    /// assert_eq!(response.into_body().collect().await?.to_bytes(), "hi");
    /// # Ok::<(), tower_rampart::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub struct ClassifiedBody<B> {
        #[pin]
        inner: B,
        // The call still to count, with what its status means.
        pending: Option<(Pending, HttpClassifier)>,
    }
}

impl<B> ClassifiedBody<B> {
    pub(crate) fn new(inner: B, pending: Option<(Pending, HttpClassifier)>) -> Self {
        Self { inner, pending }
    }

    /// The inner body.
    ///
    /// See [`ClassifiedBody`] for an example of the wrapper itself.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ClassifiedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if this.pending.is_some() {
            // `Some(code)` once the call has ended: trailers (with or without a valid
            // status), an error, or the end of a body that never sent its status.
            let ended = match &frame {
                Some(Ok(frame)) => frame.trailers_ref().map(crate::grpc::status_code),
                Some(Err(_)) | None => Some(None),
            };
            if let Some(code) = ended {
                if let Some((call, classifier)) = this.pending.take() {
                    call.finish(classifier.outcome(Answer::of_grpc(code)));
                }
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for ClassifiedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifiedBody")
            .field("inner", &self.inner)
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

/// A rejection answered outside the breaker has nothing left to count.
impl<B: crate::http::ResponseBody> crate::http::ResponseBody for ClassifiedBody<B> {
    fn from_bytes(bytes: bytes::Bytes) -> Self {
        Self::new(B::from_bytes(bytes), None)
    }

    fn empty() -> Self {
        Self::new(B::empty(), None)
    }
}
