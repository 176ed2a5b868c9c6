//! [`PropagateRequestIdLayer`]: outgoing requests carry the id of the request being handled.

use std::task::{Context as TaskContext, Poll};

use http::{HeaderName, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestId;

/// For client stacks: sets `x-request-id` (configurable) on an outgoing request that does
/// not carry one, from the [request context](crate::context) or, failing that, from a
/// [`RequestId`] in the outgoing request's extensions.
///
/// ```
/// use tower::{Service, ServiceExt};
/// use tower_rampart::{context, request_id::{MakeRequestId, PropagateRequestIdLayer, UuidV7}};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), std::convert::Infallible> {
/// let mut client = tower::ServiceBuilder::new()
///     .layer(PropagateRequestIdLayer::new())
///     .service_fn(|req: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(req.headers()["x-request-id"].clone())
///     });
/// let id = UuidV7.make_request_id();
/// let sent = context::scope(context::Context::new().with_request_id(id.clone()), async {
///     client.ready().await?.call(http::Request::new(())).await
/// })
/// .await?;
/// assert_eq!(sent, id.as_str());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateRequestIdLayer {
    header: HeaderName,
}

impl Default for PropagateRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateRequestIdLayer {
    /// Sets `x-request-id`.
    ///
    /// See [`PropagateRequestIdLayer`] for an example.
    pub fn new() -> Self {
        Self {
            header: HeaderName::from_static("x-request-id"),
        }
    }

    /// The header to set. Default: `x-request-id`.
    ///
    /// ```
    /// # use tower_rampart::request_id::PropagateRequestIdLayer;
    /// let layer = PropagateRequestIdLayer::new().header(http::HeaderName::from_static("x-correlation-id"));
    /// # let _ = layer;
    /// ```
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }
}

impl<S> Layer<S> for PropagateRequestIdLayer {
    type Service = PropagateRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateRequestId {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service made by [`PropagateRequestIdLayer`].
///
/// See [`PropagateRequestIdLayer`] for an example.
#[derive(Clone, Debug)]
pub struct PropagateRequestId<S> {
    inner: S,
    header: HeaderName,
}

impl<S> PropagateRequestId<S> {
    crate::macros::inner_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !req.headers().contains_key(&self.header) {
            let id = RequestId::current().or_else(|| req.extensions().get::<RequestId>().cloned());
            if let Some(id) = id {
                req.headers_mut()
                    .insert(self.header.clone(), id.to_header_value());
            }
        }
        self.inner.call(req)
    }
}
