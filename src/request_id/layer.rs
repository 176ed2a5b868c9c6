//! [`SetRequestIdLayer`]: accept or generate the id, scope it, record it, echo it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::{HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use crate::context;

use super::make::{MakeRequestId, UuidV7};
use crate::context::{RequestId, Rules};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives every request an id: the caller's if it is valid, else a fresh one. The id goes
/// into the request header, the [request context](crate::context) (and, if asked for, the
/// request's extensions), a tracing span with a `request_id` field around the inner call, and every response.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower::ServiceBuilder;
/// use tower_rampart::ServiceBuilderExt;
/// use tower_rampart::request_id::{RequestId, SetRequestIdLayer};
///
/// async fn handler() -> String {
///     // Anywhere inside the request, however deep: `RequestId::current()`. With the `axum`
///     // feature, handlers can also take `id: RequestId` as an extractor.
///     let id = RequestId::current();
///     format!("handling {}", id.map(|id| id.to_string()).unwrap_or_default())
/// }
///
/// let app: Router = Router::new().route("/", get(handler)).layer(
///     ServiceBuilder::new()
///         .layer(SetRequestIdLayer::new())   // outermost: it also tags the rejections below
///         .rejection_response(),
/// );
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct SetRequestIdLayer<M = UuidV7> {
    header: HeaderName,
    rules: Rules,
    make: M,
    traceparent: bool,
    extension: bool,
    metrics: crate::metrics::RequestIds,
}

impl SetRequestIdLayer {
    /// Reads and echoes `x-request-id`, keeps ids of up to 128 letters, digits and `-_.:~`,
    /// and generates [`UuidV7`]s.
    ///
    /// See [`SetRequestIdLayer`] for an example.
    pub fn new() -> Self {
        Self {
            header: X_REQUEST_ID.clone(),
            rules: Rules::default(),
            make: UuidV7,
            traceparent: false,
            extension: false,
            metrics: crate::metrics::RequestIds::new(),
        }
    }
}

impl Default for SetRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> SetRequestIdLayer<M> {
    /// The header to read and echo. Default: `x-request-id`.
    ///
    /// ```
    /// # use tower_rampart::request_id::SetRequestIdLayer;
    /// let layer = SetRequestIdLayer::new().header(http::HeaderName::from_static("x-correlation-id"));
    /// # let _ = layer;
    /// ```
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// What an incoming id must be to be kept. Default: [`Rules::default`].
    ///
    /// See [`Rules`] for an example.
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// Takes the trace-id of a valid W3C `traceparent` as the id when the request has no
    /// valid id header (`traceparent` itself is left as it is). Default: off.
    ///
    /// Valid means as W3C Trace Context level 1 says: lowercase hex, version not `ff`,
    /// version `00` exactly 55 bytes (a later version may add fields after a `-`), trace-id
    /// and parent-id not all zero, and one `traceparent` header only. Anything else is
    /// ignored and a new id is generated.
    ///
    /// ```
    /// # use tower_rampart::request_id::SetRequestIdLayer;
    /// let layer = SetRequestIdLayer::new().from_traceparent(true);
    /// # let _ = layer;
    /// ```
    pub fn from_traceparent(mut self, enabled: bool) -> Self {
        self.traceparent = enabled;
        self
    }

    /// Also inserts the [`RequestId`] into the request's extensions, for code that reads
    /// them outside the request's scope. Default: off.
    ///
    /// Handlers need no extension: the id is in the [request context](crate::context)
    /// ([`RequestId::current`]) while the inner service runs, and with the `axum` feature
    /// `RequestId` is an extractor that reads the extension or the context. The extension
    /// costs one to three allocations per request (the extensions map and its table, when
    /// the request has none yet, and the boxed value).
    ///
    /// ```
    /// use tower::{Layer, Service, ServiceExt};
    /// use tower_rampart::request_id::{RequestId, SetRequestIdLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let svc = SetRequestIdLayer::new().request_extension(true).layer(tower::service_fn(
    ///     |req: http::Request<()>| async move {
    ///         let id = req.extensions().get::<RequestId>().cloned();
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(id.is_some()))
    ///     },
    /// ));
    /// assert!(*svc.oneshot(http::Request::new(())).await.unwrap().body());
    /// # }
    /// ```
    pub fn request_extension(mut self, enabled: bool) -> Self {
        self.extension = enabled;
        self
    }

    /// Generates ids with `make`. Default: [`UuidV7`].
    ///
    /// ```
    /// # use tower_rampart::request_id::{Counter, SetRequestIdLayer};
    /// let layer = SetRequestIdLayer::new().with_generator(Counter::new());
    /// # let _ = layer;
    /// ```
    pub fn with_generator<M2: MakeRequestId>(self, make: M2) -> SetRequestIdLayer<M2> {
        SetRequestIdLayer {
            header: self.header,
            rules: self.rules,
            make,
            traceparent: self.traceparent,
            extension: self.extension,
            metrics: self.metrics,
        }
    }
}

impl<S, M: Clone> Layer<S> for SetRequestIdLayer<M> {
    type Service = SetRequestId<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SetRequestIdLayer`].
///
/// See [`SetRequestIdLayer`] for an example.
#[derive(Clone, Debug)]
pub struct SetRequestId<S, M = UuidV7> {
    inner: S,
    layer: SetRequestIdLayer<M>,
}

impl<S, M> SetRequestId<S, M> {
    crate::macros::inner_accessors!();
}

impl<S, M, B, R> Service<Request<B>> for SetRequestId<S, M>
where
    S: Service<Request<B>, Response = Response<R>>,
    M: MakeRequestId,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let layer = &self.layer;
        let kept = req.headers().get(&layer.header).and_then(|value| {
            let id = RequestId::from_header_value(value, &layer.rules);
            if id.is_none() {
                layer.metrics.rejected();
                tracing::debug!(
                    request_id.rejected_len = value.len(),
                    "replacing an invalid incoming request id"
                );
            } else {
                layer.metrics.accepted();
            }
            id
        });
        let id = kept.unwrap_or_else(|| {
            let from_trace = layer
                .traceparent
                .then(|| super::traceparent::trace_id(req.headers()))
                .flatten();
            let id = match from_trace {
                Some(trace) => {
                    layer.metrics.traceparent();
                    RequestId::from_safe(trace)
                }
                None => {
                    layer.metrics.generated();
                    layer.make.make_request_id()
                }
            };
            req.headers_mut()
                .insert(&layer.header, id.to_header_value());
            id
        });
        if layer.extension {
            req.extensions_mut().insert(id.clone());
        }
        // Checked first: with tracing's `log` feature on (axum's default) and no subscriber, a
        // disabled span still costs its hand-off to `log`, about 280 instructions.
        let span = if tracing::enabled!(tracing::Level::INFO) {
            tracing::info_span!("request", request_id = %id)
        } else {
            Span::none()
        };
        let mut slot = Some(id);
        let inner = {
            let _span = span.enter();
            let _scope = context::enter(&mut slot);
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            span,
            id: slot,
            header: Some(layer.header.clone()),
        }
    }
}

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
