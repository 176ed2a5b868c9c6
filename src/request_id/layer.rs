//! [`SetRequestIdLayer`]: accept or generate the id, scope it, record it, echo it.

use http::HeaderName;
use tower_layer::Layer;

use super::make::{MakeRequestId, UuidV7};
use super::service::SetRequestId;
use crate::context::Rules;

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
    pub(super) header: HeaderName,
    pub(super) rules: Rules,
    pub(super) make: M,
    pub(super) traceparent: bool,
    pub(super) extension: bool,
    pub(super) metrics: crate::metrics::RequestIds,
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

    /// Also inserts the [`RequestId`](crate::context::RequestId) into the request's extensions, for code that reads
    /// them outside the request's scope. Default: off.
    ///
    /// Handlers need no extension: the id is in the [request context](crate::context)
    /// ([`RequestId::current`](crate::context::RequestId::current)) while the inner service runs, and with the `axum` feature
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
