//! [`HttpMetricsLayer`]: requests and their durations, by method and status class.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use ::metrics::{Counter, Histogram, counter, histogram};
use http::{Method, Request, Response};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// The methods with a label of their own; any other is `other`.
const METHODS: [(Method, &str); 9] = [
    (Method::GET, "GET"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::DELETE, "DELETE"),
    (Method::PATCH, "PATCH"),
    (Method::HEAD, "HEAD"),
    (Method::OPTIONS, "OPTIONS"),
    (Method::CONNECT, "CONNECT"),
    (Method::TRACE, "TRACE"),
];
/// Status classes, then `error` for a call that ended in an error instead of a response.
const OUTCOMES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// One counter and one histogram per (method, outcome), each pair registered the first time
/// a request of that method ends with that outcome: `/metrics` shows what was seen, at most
/// 60 pairs, and no zeros for what never happened.
#[derive(Debug)]
struct Handles {
    slots: Box<[OnceLock<(Counter, Histogram)>]>,
}

impl Handles {
    fn new() -> Self {
        Self {
            slots: (0..(METHODS.len() + 1) * OUTCOMES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn slot(method: &Method) -> usize {
        METHODS
            .iter()
            .position(|(m, _)| m == method)
            .unwrap_or(METHODS.len())
            * OUTCOMES.len()
    }

    /// The pair at `index`, registered with the installed recorder on first use.
    fn at(&self, index: usize) -> &(Counter, Histogram) {
        self.slots[index].get_or_init(|| {
            let method = METHODS
                .get(index / OUTCOMES.len())
                .map_or("other", |(_, name)| *name);
            let outcome = OUTCOMES[index % OUTCOMES.len()];
            (
                counter!("rampart_http_requests_total", "method" => method, "status" => outcome),
                histogram!("rampart_http_request_duration_seconds", "method" => method, "status" => outcome),
            )
        })
    }
}

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
        HttpMetrics {
            inner,
            handles: Arc::clone(&self.handles),
        }
    }
}

/// The service made by [`HttpMetricsLayer`].
///
/// See [`HttpMetricsLayer`] for an example.
#[derive(Clone, Debug)]
pub struct HttpMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
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
        ResponseFuture {
            inner: self.inner.call(req),
            handles: Arc::clone(&self.handles),
            slot,
            started: Instant::now(),
        }
    }
}

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
