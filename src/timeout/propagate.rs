//! [`PropagateDeadlineLayer`]: outbound calls carry what remains of the request's budget.

use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::HeaderName;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;

use super::future::{ResponseFuture, Side};
use super::inbound::{DEFAULT_BUDGET_HEADER, GRPC_TIMEOUT, grpc_timeout_value, millis_value};
use crate::context::Deadline;

/// The least budget worth sending: below it the call fails locally.
const MIN_BUDGET: Duration = Duration::from_millis(1);

/// For client stacks (a hyper-util client, a `reqwest`-like service): each outgoing request
/// carries the remaining budget of the request being handled, and is held to it.
///
/// The deadline comes from the [request context](crate::context) (set by a
/// [`TimeoutLayer`](super::TimeoutLayer) upstream in the same task), else from a [`Deadline`]
/// in the outgoing request's extensions. With one, the layer:
///
/// 1. subtracts the safety margin (default 5 ms: the time the answer needs to travel back);
/// 2. fails at once with [`Rejection::TimedOut`](crate::Rejection::TimedOut), **without
///    sending**, if less than a millisecond is left (the next hop could do nothing with it);
/// 3. otherwise sets `grpc-timeout` and `x-request-timeout-ms` to what is left (both rounded
///    down; the plain header is capped at 10 digits, about 115 days, so this crate's own
///    inbound parser reads back whatever it writes) and fails the call locally when that runs
///    out.
///
/// Without a deadline, requests pass untouched and untimed.
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceExt};
/// use tower_rampart::{context, timeout::{Deadline, PropagateDeadlineLayer}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower_rampart::BoxError> {
/// let mut client = tower::ServiceBuilder::new()
///     .layer(PropagateDeadlineLayer::new())
///     .service_fn(|req: http::Request<()>| async move {
///         // What the next service would see:
///         Ok::<_, std::convert::Infallible>(req.headers()["x-request-timeout-ms"].clone())
///     });
/// let ctx = context::Context::new().with_deadline(Deadline::after(Duration::from_millis(300)));
/// let sent = context::scope(ctx, async {
///     client.ready().await?.call(http::Request::new(())).await
/// })
/// .await?;
/// assert_eq!(sent, "295"); // 300 ms minus the 5 ms margin
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateDeadlineLayer {
    margin: Duration,
    header: Option<HeaderName>,
    grpc: bool,
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateDeadlineLayer {
    /// Sends `grpc-timeout` and `x-request-timeout-ms`, keeping a 5 ms margin.
    ///
    /// See [`PropagateDeadlineLayer`] for an example.
    pub fn new() -> Self {
        Self {
            margin: Duration::from_millis(5),
            header: Some(DEFAULT_BUDGET_HEADER.clone()),
            grpc: true,
        }
    }

    /// Time kept back from the budget sent and enforced. Default: 5 ms.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::timeout::PropagateDeadlineLayer;
    /// let layer = PropagateDeadlineLayer::new().margin(Duration::from_millis(20));
    /// # let _ = layer;
    /// ```
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Sends the plain budget in `name` instead of `x-request-timeout-ms`, or in no plain
    /// header with `None`. Default: `x-request-timeout-ms`.
    ///
    /// ```
    /// # use tower_rampart::timeout::PropagateDeadlineLayer;
    /// let layer = PropagateDeadlineLayer::new().budget_header(None);
    /// # let _ = layer;
    /// ```
    pub fn budget_header(mut self, name: Option<HeaderName>) -> Self {
        self.header = name;
        self
    }

    /// Whether to send `grpc-timeout`. Default: `true`.
    ///
    /// ```
    /// # use tower_rampart::timeout::PropagateDeadlineLayer;
    /// let layer = PropagateDeadlineLayer::new().grpc_timeout(false);
    /// # let _ = layer;
    /// ```
    pub fn grpc_timeout(mut self, send: bool) -> Self {
        self.grpc = send;
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`PropagateDeadlineLayer`].
///
/// See [`PropagateDeadlineLayer`] for an example.
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
    layer: PropagateDeadlineLayer,
}

impl<S> PropagateDeadline<S> {
    crate::macros::inner_accessors!();
}

impl<S, B> Service<http::Request<B>> for PropagateDeadline<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let deadline = crate::context::current_deadline()
            .or_else(|| req.extensions().get::<Deadline>().copied());
        let Some(deadline) = deadline else {
            return ResponseFuture::running(
                self.inner.call(req),
                None,
                Duration::ZERO,
                Side::Client,
            );
        };
        let now = Instant::now();
        let left = deadline
            .instant()
            .saturating_duration_since(now)
            .saturating_sub(self.layer.margin);
        // Under a millisecond the plain header would say 0 and the next hop would answer
        // 504 without running: fail here, without a network round trip.
        if left < MIN_BUDGET {
            tracing::debug!("request budget spent; outbound call not sent");
            return ResponseFuture::expired(left, Side::Client);
        }
        let headers = req.headers_mut();
        if self.layer.grpc {
            headers.insert(&GRPC_TIMEOUT, grpc_timeout_value(left));
        }
        if let Some(name) = &self.layer.header {
            headers.insert(name, millis_value(left));
        }
        ResponseFuture::running(self.inner.call(req), Some(now + left), left, Side::Client)
    }
}
