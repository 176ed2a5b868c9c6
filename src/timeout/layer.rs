//! [`TimeoutLayer`], its limit ([`Limit`]) and what it reads from callers ([`Inbound`]).

use std::fmt;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::inbound::{DEFAULT_BUDGET_HEADER, inbound_budget};
use super::service::Timeout;
use crate::ConfigError;
use crate::context::Deadline;

/// A request's time limit: a fixed [`Duration`], or a closure `Fn(&Req) -> Duration` for
/// per-route budgets.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::timeout::{Limit, TimeoutLayer};
///
/// let reports_get_longer = |req: &http::Request<()>| {
///     if req.uri().path().starts_with("/reports") { Duration::from_secs(30) } else { Duration::from_secs(2) }
/// };
/// let req = http::Request::get("/reports/q3").body(()).unwrap();
/// assert_eq!(reports_get_longer.limit(&req), Duration::from_secs(30));
/// let layer = TimeoutLayer::per_request(reports_get_longer);
/// # let _ = layer;
/// ```
pub trait Limit<Req>: Clone + Send + Sync + 'static {
    /// The limit for `req`.
    fn limit(&self, req: &Req) -> Duration;
}

impl<Req> Limit<Req> for Duration {
    fn limit(&self, _: &Req) -> Duration {
        *self
    }
}

impl<F, Req> Limit<Req> for F
where
    F: Fn(&Req) -> Duration + Clone + Send + Sync + 'static,
{
    fn limit(&self, req: &Req) -> Duration {
        self(req)
    }
}

/// Where a [`TimeoutLayer`] reads the caller's budget and puts the [`Deadline`]: [`HttpInbound`]
/// (the default) or [`NoInbound`]. Sealed.
pub trait Inbound<Req>: private::Inbound<Req> {}

impl<Req, I: private::Inbound<Req>> Inbound<Req> for I {}

pub(crate) mod private {
    use super::*;

    pub trait Inbound<Req>: Clone + Send + Sync + 'static {
        /// The budget the caller sent, if any.
        fn budget(&self, req: &Req) -> Option<Duration>;
        /// Makes `deadline` visible on the request itself.
        fn attach(&self, req: &mut Req, deadline: Deadline);
    }
}

/// Reads `grpc-timeout` and a plain milliseconds header (default `x-request-timeout-ms`)
/// from `http::Request`s, and puts the [`Deadline`] in the request's extensions if asked
/// ([`TimeoutLayer::request_extension`]).
///
/// See [`TimeoutLayer::budget_header`] and [`TimeoutLayer::grpc_timeout`].
#[derive(Clone, Debug)]
pub struct HttpInbound {
    grpc: bool,
    header: Option<HeaderName>,
    extension: bool,
}

impl Default for HttpInbound {
    fn default() -> Self {
        Self {
            grpc: true,
            header: Some(DEFAULT_BUDGET_HEADER.clone()),
            extension: false,
        }
    }
}

impl HttpInbound {
    /// The budget a caller sent in `headers`: the smaller of a valid `grpc-timeout` and a
    /// valid budget header; malformed values are ignored (with a DEBUG event).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::timeout::HttpInbound;
    ///
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("grpc-timeout", "250m".parse().unwrap());
    /// headers.insert("x-request-timeout-ms", "900".parse().unwrap());
    /// // A gRPC budget ends 1 ms early, so that this answer comes before the server's own.
    /// assert_eq!(HttpInbound::default().budget(&headers), Some(Duration::from_millis(249)));
    /// headers.insert("grpc-timeout", "soon".parse().unwrap());
    /// assert_eq!(HttpInbound::default().budget(&headers), Some(Duration::from_millis(900)));
    /// ```
    pub fn budget(&self, headers: &http::HeaderMap) -> Option<Duration> {
        inbound_budget(headers, self.grpc, self.header.as_ref())
    }
}

impl<B> private::Inbound<http::Request<B>> for HttpInbound {
    #[inline]
    fn budget(&self, req: &http::Request<B>) -> Option<Duration> {
        HttpInbound::budget(self, req.headers())
    }

    #[inline]
    fn attach(&self, req: &mut http::Request<B>, deadline: Deadline) {
        if self.extension {
            req.extensions_mut().insert(deadline);
        }
    }
}

/// Reads nothing from the request: for services whose requests are not HTTP, and for edges
/// that must not let callers choose their budget. The deadline is still in the
/// [request context](crate::context).
///
/// See [`TimeoutLayer::ignore_inbound`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInbound;

impl<Req> private::Inbound<Req> for NoInbound {
    #[inline]
    fn budget(&self, _: &Req) -> Option<Duration> {
        None
    }

    #[inline]
    fn attach(&self, _: &mut Req, _: Deadline) {}
}

/// Gives every request a deadline: the earliest of its [`Limit`], the budget its caller sent
/// and any deadline already in scope. When it passes, the inner future is dropped and the
/// call fails with [`Rejection::TimedOut`](crate::Rejection::TimedOut) (504 over HTTP).
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use tower::ServiceBuilder;
/// use tower_rampart::{ServiceBuilderExt, timeout::TimeoutLayer};
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "fast" }))
///     .layer(ServiceBuilder::new().rejection_response().layer(TimeoutLayer::new(Duration::from_secs(2))?));
/// # let _ = app;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TimeoutLayer<L = Duration, I = HttpInbound> {
    limit: L,
    inbound: I,
}

impl<L: fmt::Debug, I: fmt::Debug> fmt::Debug for TimeoutLayer<L, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("limit", &self.limit)
            .field("inbound", &self.inbound)
            .finish()
    }
}

impl TimeoutLayer {
    /// A layer with a fixed `limit` that also honours the caller's `grpc-timeout` and
    /// `x-request-timeout-ms` headers.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `limit` is zero: every request would fail at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::timeout::TimeoutLayer;
    ///
    /// let layer = TimeoutLayer::new(Duration::from_secs(2))?;
    /// assert_eq!(TimeoutLayer::new(Duration::ZERO).unwrap_err().field(), "limit");
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn new(limit: Duration) -> Result<Self, ConfigError> {
        if limit.is_zero() {
            return Err(ConfigError::new("limit", "must be more than zero"));
        }
        Ok(Self::per_request(limit))
    }
}

impl<L> TimeoutLayer<L> {
    /// A layer whose limit comes from `limit`, a closure over the request (per-route
    /// budgets) or a [`Duration`]; it also honours the caller's budget headers.
    ///
    /// A limit of zero for a request fails that request at once, as a spent budget does.
    ///
    /// See [`Limit`] for an example.
    pub fn per_request(limit: L) -> Self {
        Self {
            limit,
            inbound: HttpInbound::default(),
        }
    }

    /// Reads the plain budget (whole milliseconds) from `name` instead of
    /// `x-request-timeout-ms`. Default: `x-request-timeout-ms`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::timeout::TimeoutLayer;
    /// let layer = TimeoutLayer::new(Duration::from_secs(2))?
    ///     .budget_header(http::HeaderName::from_static("x-envoy-expected-rq-timeout-ms"));
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn budget_header(mut self, name: HeaderName) -> Self {
        self.inbound.header = Some(name);
        self
    }

    /// Whether to read `grpc-timeout`. Default: `true`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::timeout::TimeoutLayer;
    /// let layer = TimeoutLayer::new(Duration::from_secs(2))?.grpc_timeout(false);
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn grpc_timeout(mut self, read: bool) -> Self {
        self.inbound.grpc = read;
        self
    }

    /// Also puts the [`Deadline`] in the request's extensions (axum's `Extension<Deadline>`,
    /// hyper's `req.extensions()`), for code that reads them outside the request's scope.
    /// Default: off.
    ///
    /// Handlers need no extension: the deadline is in the [request context](crate::context)
    /// ([`Deadline::current`]) while the inner service runs, and with the `axum` feature
    /// `Deadline` is an extractor that reads the extension or the context. The extension
    /// costs one to three heap allocations per request (`http::Extensions` boxes its map and
    /// its values), which is most of this layer's cost when the response is ready at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::{Layer, ServiceExt};
    /// use tower_rampart::timeout::{Deadline, TimeoutLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let layer = TimeoutLayer::new(Duration::from_secs(2)).unwrap().request_extension(true);
    /// let svc = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
    ///     let left = req.extensions().get::<Deadline>().map(Deadline::remaining);
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(left))
    /// }));
    /// let left = svc.oneshot(http::Request::new(())).await.unwrap().into_body();
    /// assert_eq!(left, Some(Duration::from_secs(2)));
    /// # }
    /// ```
    pub fn request_extension(mut self, insert: bool) -> Self {
        self.inbound.extension = insert;
        self
    }

    /// Reads no budget from callers (and works with any request type, not only HTTP).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use tower::{Service, ServiceExt};
    /// use tower_rampart::timeout::TimeoutLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_rampart::BoxError> {
    /// let mut svc = tower::ServiceBuilder::new()
    ///     .layer(TimeoutLayer::new(Duration::from_secs(1))?.ignore_inbound())
    ///     .service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n + 1) });
    /// assert_eq!(svc.ready().await?.call(1).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn ignore_inbound(self) -> TimeoutLayer<L, NoInbound> {
        TimeoutLayer {
            limit: self.limit,
            inbound: NoInbound,
        }
    }
}

impl<S, L: Clone, I: Clone> Layer<S> for TimeoutLayer<L, I> {
    type Service = Timeout<S, L, I>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.limit.clone(), self.inbound.clone())
    }
}
