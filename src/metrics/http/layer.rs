//! [`HttpMetricsLayer`]: registers nothing up front; holds the handles every service shares.

use std::sync::Arc;

use tower_layer::Layer;

use super::Handles;
use super::service::HttpMetrics;

/// Counts requests and times them to their response head, by method and status class:
/// `rampart_http_requests_total` and `rampart_http_request_duration_seconds`, labels
/// `method` (the nine standard methods, else `other`) and `status` (`2xx`…`5xx`, or
/// `error`). Place it right inside the request id, outside the rejection mapping, so that
/// it sees the 429, 503 and 504 answers the other layers produce.
///
/// A series is registered the first time a method and status class is seen, so `/metrics`
/// lists only what happened (at most 60 series per metric). Install the recorder before the
/// first request. It reads the clock twice per request (at the call and at the response head), the price of
/// a duration.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower::ServiceBuilder;
/// use tower_rampart::ServiceBuilderExt;
/// use tower_rampart::metrics::HttpMetricsLayer;
/// use tower_rampart::request_id::SetRequestIdLayer;
///
/// let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(
///     ServiceBuilder::new()
///         .layer(SetRequestIdLayer::new())
///         .layer(HttpMetricsLayer::new())
///         .rejection_response(),
/// );
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    handles: Arc<Handles>,
}

impl HttpMetricsLayer {
    /// A layer whose series are registered, with the installed recorder, as they are first seen.
    ///
    /// See [`HttpMetricsLayer`] for an example.
    pub fn new() -> Self {
        Self {
            handles: Arc::new(Handles::new()),
        }
    }
}

impl Default for HttpMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics::new(inner, Arc::clone(&self.handles))
    }
}
