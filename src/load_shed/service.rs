//! [`LoadShedLayer`], its builder, service, future and response body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{ConfigError, Overloaded, TimedOut};
use crate::sync::Arc;
use crate::{BoxError, Rejection};

use super::adaptive::{AdaptiveLimit, Controller, Signal};
use super::limit::{Gate, Permit, Priority};

/// What decides a request's [`Priority`]: a closure over the request, or
/// [`HeaderPriority`].
pub trait Prioritize<Req>: Clone + Send + Sync + 'static {
    /// The request's priority.
    fn priority(&self, req: &Req) -> Priority;
}

impl<Req, F> Prioritize<Req> for F
where
    F: Fn(&Req) -> Priority + Clone + Send + Sync + 'static,
{
    fn priority(&self, req: &Req) -> Priority {
        self(req)
    }
}

/// Every request is [`Priority::Normal`].
///
/// ```
/// use tower_rampart::load_shed::{Prioritize, Priority, AllNormal};
///
/// assert_eq!(AllNormal.priority(&()), Priority::Normal);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct AllNormal;

impl<Req> Prioritize<Req> for AllNormal {
    fn priority(&self, _: &Req) -> Priority {
        Priority::Normal
    }
}

/// The priority a request header names (`critical`, `normal`, `sheddable`), else normal.
///
/// Only trust it from callers you control (a gateway that sets it, your own services): a
/// client that may send it will call itself critical. Prefer deciding from what you know,
/// the route or the authenticated caller, with a closure.
///
/// ```
/// use tower_rampart::load_shed::{HeaderPriority, Prioritize, Priority};
///
/// let by_header = HeaderPriority::new(http::HeaderName::from_static("x-priority"));
/// let req = http::Request::builder().header("x-priority", "sheddable").body(()).unwrap();
/// assert_eq!(by_header.priority(&req), Priority::Sheddable);
/// ```
#[derive(Clone, Debug)]
pub struct HeaderPriority {
    name: http::HeaderName,
}

impl HeaderPriority {
    /// Reads the header `name`.
    ///
    /// See [`HeaderPriority`] for an example.
    pub fn new(name: http::HeaderName) -> Self {
        Self { name }
    }
}

impl<B> Prioritize<http::Request<B>> for HeaderPriority {
    fn priority(&self, req: &http::Request<B>) -> Priority {
        req.headers()
            .get(&self.name)
            .and_then(|v| Priority::from_header_value(v.as_bytes()))
            .unwrap_or_default()
    }
}

/// Refuses requests beyond a concurrency limit at once, instead of queueing them: a
/// service past its capacity answers what it can within its usual time, and 503 (gRPC
/// `UNAVAILABLE`) with a `Retry-After` for the rest, rather than making everyone wait.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower::ServiceBuilder;
/// use tower_rampart::{ServiceBuilderExt, load_shed::LoadShedLayer};
///
/// let shed = LoadShedLayer::builder().max_in_flight(64).build()?;
/// let app: Router = Router::new()
///     .route("/work", get(|| async { "done" }))
///     .layer(ServiceBuilder::new().rejection_response().layer(shed));
/// # let _ = app;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
///
/// # Sharing
///
/// One limit per built layer, shared by every clone and every `Layer::layer` call.
pub struct LoadShedLayer<Pr = AllNormal> {
    gate: Arc<Gate>,
    prioritize: Pr,
    retry_after: Duration,
    metrics: Arc<crate::metrics::LoadShed>,
}

impl<Pr: Clone> Clone for LoadShedLayer<Pr> {
    fn clone(&self) -> Self {
        Self {
            gate: Arc::clone(&self.gate),
            prioritize: self.prioritize.clone(),
            retry_after: self.retry_after,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<Pr: fmt::Debug> fmt::Debug for LoadShedLayer<Pr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedLayer")
            .field("limit", &self.gate.limit())
            .field("in_flight", &self.gate.in_flight())
            .field("prioritize", &self.prioritize)
            .finish_non_exhaustive()
    }
}

impl LoadShedLayer {
    /// A builder: 64 requests in flight, 10% of them kept for critical requests, sheddable
    /// ones allowed half of the rest.
    ///
    /// See [`LoadShedLayer`] for an example.
    pub fn builder() -> LoadShedBuilder {
        LoadShedBuilder {
            max_in_flight: 64,
            critical_share: 0.1,
            sheddable_share: 0.5,
            retry_after: Duration::from_secs(1),
            prioritize: AllNormal,
            name: "default",
            adaptive: None,
        }
    }
}

impl<Pr> LoadShedLayer<Pr> {
    /// Requests in flight now (admitted and not yet finished, their bodies included).
    ///
    /// ```
    /// # use tower_rampart::load_shed::LoadShedLayer;
    /// let layer = LoadShedLayer::builder().build()?;
    /// assert_eq!((layer.in_flight(), layer.limit()), (0, 64));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn in_flight(&self) -> u64 {
        self.gate.in_flight()
    }

    /// The concurrency limit.
    ///
    /// See [`in_flight`](Self::in_flight) for an example.
    pub fn limit(&self) -> u64 {
        self.gate.limit()
    }
}

/// Settings of a [`LoadShedLayer`], validated by [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct LoadShedBuilder<Pr = AllNormal> {
    max_in_flight: u64,
    critical_share: f64,
    sheddable_share: f64,
    retry_after: Duration,
    prioritize: Pr,
    name: &'static str,
    adaptive: Option<AdaptiveLimit>,
}

impl<Pr> LoadShedBuilder<Pr> {
    /// Moves the limit with the load instead of fixing it: see [`AdaptiveLimit`] for the
    /// rule. `max_in_flight` is then ignored; the limit starts at `AdaptiveLimit::initial`.
    ///
    /// Put timeouts inside the shedder (between it and the handler): a call an outer layer
    /// gives up on is dropped, and a dropped call says nothing, like a client that went away.
    ///
    /// An adaptive shedder also refuses at once, with
    /// [`Rejection::TimedOut`](crate::Rejection::TimedOut) (504), a call whose
    /// [deadline](crate::context) is nearer than what calls take now (the last window's
    /// median): admitted, it would only time out after taking a slot.
    ///
    /// ```
    /// use tower_rampart::load_shed::{AdaptiveLimit, LoadShedLayer};
    ///
    /// let layer = LoadShedLayer::builder().adaptive(AdaptiveLimit::new().initial(8)).build()?;
    /// assert_eq!(layer.limit(), 8);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn adaptive(mut self, adaptive: AdaptiveLimit) -> Self {
        self.adaptive = Some(adaptive);
        self
    }

    /// Requests in flight at most. Default: 64.
    ///
    /// See [`LoadShedLayer`] for an example.
    pub fn max_in_flight(mut self, limit: u64) -> Self {
        self.max_in_flight = limit;
        self
    }

    /// The share of the limit only critical requests may use (0 to 0.9). Default: 0.1.
    ///
    /// ```
    /// # use tower_rampart::load_shed::LoadShedLayer;
    /// let layer = LoadShedLayer::builder().max_in_flight(100).critical_share(0.25).build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn critical_share(mut self, share: f64) -> Self {
        self.critical_share = share;
        self
    }

    /// The share of what normal requests may use that sheddable ones may (more than 0, at
    /// most 1). Default: 0.5: sheddable requests are refused once half of the normal
    /// capacity is in use.
    ///
    /// ```
    /// # use tower_rampart::load_shed::LoadShedLayer;
    /// let layer = LoadShedLayer::builder().sheddable_share(0.3).build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn sheddable_share(mut self, share: f64) -> Self {
        self.sheddable_share = share;
        self
    }

    /// The `Retry-After` of a refusal (gRPC: `grpc-retry-pushback-ms`). Default: 1 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::load_shed::LoadShedLayer;
    /// let layer = LoadShedLayer::builder().retry_after(Duration::from_millis(200)).build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// The name in metrics and events. Default: `default`.
    ///
    /// ```
    /// # use tower_rampart::load_shed::LoadShedLayer;
    /// let layer = LoadShedLayer::builder().name("work").build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Decides each request's priority with `prioritize`: a closure
    /// `Fn(&Req) -> Priority`, or [`HeaderPriority`].
    ///
    /// ```
    /// use tower_rampart::load_shed::{LoadShedLayer, Priority};
    ///
    /// let layer = LoadShedLayer::builder()
    ///     .prioritize(|req: &http::Request<()>| match req.uri().path() {
    ///         "/health" | "/pay" => Priority::Critical,
    ///         "/recommendations" => Priority::Sheddable,
    ///         _ => Priority::Normal,
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn prioritize<Pr2>(self, prioritize: Pr2) -> LoadShedBuilder<Pr2> {
        LoadShedBuilder {
            max_in_flight: self.max_in_flight,
            critical_share: self.critical_share,
            sheddable_share: self.sheddable_share,
            retry_after: self.retry_after,
            prioritize,
            name: self.name,
            adaptive: self.adaptive,
        }
    }

    /// Validates the settings and builds the layer's shared limit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a limit of 0, shares out of range, or a zero `retry_after`.
    ///
    /// ```
    /// # use tower_rampart::load_shed::LoadShedLayer;
    /// assert_eq!(LoadShedLayer::builder().max_in_flight(0).build().unwrap_err().field(), "max_in_flight");
    /// ```
    pub fn build(self) -> Result<LoadShedLayer<Pr>, ConfigError> {
        if self.max_in_flight == 0 {
            return Err(ConfigError::new("max_in_flight", "must be at least 1"));
        }
        if !(0.0..=0.9).contains(&self.critical_share) {
            return Err(ConfigError::new("critical_share", "must be 0 to 0.9"));
        }
        if !(self.sheddable_share > 0.0 && self.sheddable_share <= 1.0) {
            return Err(ConfigError::new(
                "sheddable_share",
                "must be more than 0 and at most 1",
            ));
        }
        if self.retry_after.is_zero() {
            return Err(ConfigError::new("retry_after", "must be more than zero"));
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate()?;
        }
        let permille = |share: f64| (share * 1_000.0).round() as u64;
        let limit = self.adaptive.map_or(self.max_in_flight, |a| a.initial);
        let mut gate = Gate::new(
            limit,
            permille(self.critical_share),
            permille(self.sheddable_share),
        );
        gate.controller = self.adaptive.map(Controller::new);
        gate.name = self.name;
        Ok(LoadShedLayer {
            gate: Arc::new(gate),
            prioritize: self.prioritize,
            retry_after: self.retry_after,
            metrics: Arc::new(crate::metrics::LoadShed::new(self.name)),
        })
    }
}

impl<S, Pr: Clone> Layer<S> for LoadShedLayer<Pr> {
    type Service = LoadShed<S, Pr>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`LoadShedLayer`].
///
/// Decides in `call`: a free slot calls the inner service, which keeps the slot until the
/// response body has ended (or the call fails or is dropped); no free slot answers
/// [`Rejection::Overloaded`] at once. `poll_ready` only forwards to the inner service.
pub struct LoadShed<S, Pr = AllNormal> {
    inner: S,
    layer: LoadShedLayer<Pr>,
}

impl<S: Clone, Pr: Clone> Clone for LoadShed<S, Pr> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, Pr: fmt::Debug> fmt::Debug for LoadShed<S, Pr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShed")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, Pr> LoadShed<S, Pr> {
    crate::macros::inner_accessors!();
}

impl<S, B, ResBody, Pr> Service<http::Request<B>> for LoadShed<S, Pr>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    Pr: Prioritize<http::Request<B>>,
{
    type Response = http::Response<PermitBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let priority = self.layer.prioritize.priority(&req);
        if let Some(too_late) = self.layer.too_late(priority) {
            return too_late;
        }
        match Gate::try_acquire(&self.layer.gate, priority) {
            // Built in place (not through `admit`): the inner future is written once.
            Some(permit) => ResponseFuture {
                kind: Kind::Called {
                    start: self.layer.start_timing(),
                    future: self.inner.call(req),
                    permit: Some(permit),
                },
            },
            None => self.layer.shed(priority),
        }
    }
}

impl<Pr> LoadShedLayer<Pr> {
    /// The layer's slots.
    #[inline]
    pub(super) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// An adaptive shedder's refusal of a call whose deadline is nearer than what calls
    /// take now: admitted, it would only time out.
    #[inline]
    pub(super) fn too_late<F>(&self, priority: Priority) -> Option<ResponseFuture<F>> {
        let controller = self.gate.controller.as_ref()?;
        let typical = controller.typical()?;
        let left = crate::context::current_deadline()?.remaining();
        if left >= typical {
            return None;
        }
        self.metrics.too_late(priority);
        tracing::debug!(
            load_shed.priority = priority.as_str(),
            load_shed.left_ms = left.as_millis() as u64,
            load_shed.typical_ms = typical.as_millis() as u64,
            "request refused: its deadline is nearer than a typical call"
        );
        Some(ResponseFuture {
            kind: Kind::TooLate {
                rejection: Some(TimedOut::new(left)),
            },
        })
    }

    /// The call `call` makes, holding `permit`, timed when the limit adapts.
    #[inline]
    pub(super) fn admit<F>(&self, permit: Permit, call: impl FnOnce(()) -> F) -> ResponseFuture<F> {
        ResponseFuture {
            kind: Kind::Called {
                start: self.start_timing(),
                future: call(()),
                permit: Some(permit),
            },
        }
    }

    /// When an adaptive limit times an admitted call, its start: one clock read at each end.
    #[inline]
    fn start_timing(&self) -> Option<tokio::time::Instant> {
        self.gate.controller.as_ref().map(|controller| {
            controller.admitted(self.gate.in_flight());
            tokio::time::Instant::now()
        })
    }

    /// The refusal of a call of `priority` that found no slot.
    #[cold]
    pub(super) fn shed<F>(&self, priority: Priority) -> ResponseFuture<F> {
        self.metrics.shed(priority);
        let limit = self.gate.limit();
        tracing::debug!(
            load_shed.priority = priority.as_str(),
            load_shed.limit = limit,
            "request shed"
        );
        ResponseFuture {
            kind: Kind::Shed {
                rejection: Some(Overloaded::new(self.retry_after, limit)),
            },
        }
    }

    /// The priority `prioritize` gives `req`.
    #[inline]
    pub(super) fn priority_of<Req>(&self, req: &Req) -> Priority
    where
        Pr: Prioritize<Req>,
    {
        self.prioritize.priority(req)
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`LoadShed`] call: the inner call holding its slot, or a refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F, permit: Option<Permit>, start: Option<tokio::time::Instant> },
        Shed { rejection: Option<Overloaded> },
        TooLate { rejection: Option<TimedOut> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Called { .. } => "called",
            Kind::Shed { .. } => "shed",
            Kind::TooLate { .. } => "too late",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<PermitBody<B>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                start,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                // A gRPC answer without its status in the headers is judged at its trailers.
                let mut deferred = None;
                if let (Some(permit), Some(start)) = (permit.as_ref(), *start) {
                    let end = tokio::time::Instant::now();
                    let latency =
                        crate::clock::duration_nanos(end.saturating_duration_since(start));
                    match signal_of(&result, latency) {
                        Some(signal) => adapt(&permit.gate, signal, end),
                        None => deferred = Some(start),
                    }
                }
                let response = result?;
                // The slot goes with the body; a failed call has given it back already.
                let permit = permit.take();
                Poll::Ready(Ok(response.map(|body| PermitBody {
                    inner: body,
                    permit,
                    deferred,
                })))
            }
            KindProj::Shed { rejection } => {
                let rejection = rejection
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(Rejection::from(rejection))))
            }
            KindProj::TooLate { rejection } => {
                let rejection = rejection
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(Rejection::from(rejection))))
            }
        }
    }
}

/// Reports a completed call of an adaptive shedder, admitted at `start`, and moves the
/// limit when it closes a window.
fn adapt(gate: &Gate, signal: Signal, end: tokio::time::Instant) {
    let Some(controller) = &gate.controller else {
        return;
    };
    if let Some(closed) = controller.complete(signal, end) {
        let before = gate.limit();
        gate.set_limit(closed.limit);
        let window = closed.window;
        crate::metrics::load_shed_window(
            gate.name,
            closed.limit,
            window.max_in_flight,
            window.p90,
            closed.state.baseline,
        );
        if closed.limit != before {
            tracing::debug!(
                load_shed.name = gate.name,
                load_shed.limit = closed.limit,
                load_shed.previous = before,
                load_shed.p90_ms = window.p90 as f64 / 1e6,
                load_shed.baseline_ms = closed.state.baseline / 1e6,
                load_shed.overloads = window.overloads,
                load_shed.slow_start = closed.state.slow_start,
                "load shedder limit changed"
            );
        }
        if closed.overload_began {
            tracing::info!(
                load_shed.name = gate.name,
                load_shed.limit = closed.limit,
                load_shed.p90_ms = window.p90 as f64 / 1e6,
                load_shed.baseline_ms = closed.state.baseline / 1e6,
                load_shed.overloads = window.overloads,
                "load shedder sees overload; lowering its limit"
            );
        } else if closed.overload_ended {
            tracing::info!(
                load_shed.name = gate.name,
                load_shed.limit = closed.limit,
                "load shedder no longer sees overload"
            );
        }
    }
}

/// What a completed call says about load (see [`AdaptiveLimit`]); `None` for a gRPC answer
/// whose status will come in its trailers.
fn signal_of<B>(result: &Result<http::Response<B>, BoxError>, latency: u64) -> Option<Signal> {
    Some(match result {
        Ok(response) => {
            let status = response.status().as_u16();
            if matches!(status, 429 | 503 | 504) {
                return Some(Signal::Overload);
            }
            if status == 200 && crate::grpc::is_grpc(response.headers()) {
                // Trailers-Only (a refusal, an error) carries the status in the headers.
                let value = crate::grpc::status_value(response.headers())?;
                return Some(grpc_signal(crate::grpc::parse_status(value), latency));
            }
            if response.status().is_client_error() || response.status().is_server_error() {
                Signal::Neutral
            } else {
                Signal::Latency(latency)
            }
        }
        Err(err) => match Rejection::find(err.as_ref()) {
            Some(
                Rejection::TimedOut(_)
                | Rejection::RateLimited(_)
                | Rejection::Overloaded(_)
                | Rejection::CircuitOpen(_),
            ) => Signal::Overload,
            _ => Signal::Neutral,
        },
    })
}

/// What a gRPC status says about load: `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED` and
/// `UNAVAILABLE` are overload, `OK` a latency sample, anything else nothing.
fn grpc_signal(code: Option<u8>, latency: u64) -> Signal {
    use crate::grpc::code;
    match code {
        Some(0) => Signal::Latency(latency),
        Some(code::DEADLINE_EXCEEDED | code::RESOURCE_EXHAUSTED | code::UNAVAILABLE) => {
            Signal::Overload
        }
        _ => Signal::Neutral,
    }
}

pin_project_lite::pin_project! {
    /// The body of an admitted response: the inner body, holding the request's slot until
    /// it ends (or is dropped), so a streamed answer counts for as long as it streams.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower::{Layer, ServiceExt, service_fn};
    /// use tower_rampart::load_shed::LoadShedLayer;
    ///
    /// # tokio_test::block_on(async {
    /// let layer = LoadShedLayer::builder().max_in_flight(1).build()?;
    /// let svc = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
    /// }));
    /// let response = svc.clone().oneshot(http::Request::new(())).await?;
    /// assert_eq!(layer.in_flight(), 1, "the body still streams");
    /// assert_eq!(response.into_body().collect().await?.to_bytes(), "hi");
    /// assert_eq!(layer.in_flight(), 0);
    /// # Ok::<(), tower_rampart::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
        // When a gRPC call whose status is in the trailers was admitted (adaptive limit).
        deferred: Option<tokio::time::Instant>,
    }
}

impl<B: fmt::Debug> fmt::Debug for PermitBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitBody")
            .field("inner", &self.inner)
            .field("holds_slot", &self.permit.is_some())
            .finish()
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(start) = *this.deferred {
            // The call's status: in the trailers, or none (an error, or a body that ended
            // without one), which says nothing about load.
            let ended = match &frame {
                Some(Ok(frame)) => frame.trailers_ref().map(|trailers| {
                    let end = tokio::time::Instant::now();
                    let latency =
                        crate::clock::duration_nanos(end.saturating_duration_since(start));
                    (
                        grpc_signal(crate::grpc::status_code(trailers), latency),
                        end,
                    )
                }),
                Some(Err(_)) | None => Some((Signal::Neutral, tokio::time::Instant::now())),
            };
            if let (Some((signal, end)), Some(permit)) = (ended, this.permit.as_ref()) {
                *this.deferred = None;
                adapt(&permit.gate, signal, end);
            }
        }
        if frame.is_none() || this.inner.is_end_stream() {
            this.permit.take();
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

/// A rejection answered outside the load shedder holds no slot.
impl<B: crate::http::ResponseBody> crate::http::ResponseBody for PermitBody<B> {
    fn from_bytes(bytes: bytes::Bytes) -> Self {
        Self {
            inner: B::from_bytes(bytes),
            permit: None,
            deferred: None,
        }
    }

    fn empty() -> Self {
        Self {
            inner: B::empty(),
            permit: None,
            deferred: None,
        }
    }
}
