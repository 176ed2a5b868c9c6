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

use super::adaptive::{AdaptiveLimit, Controller};
use super::limit::{Gate, Permit, Priority};
use super::mode::{Adaptive, Fixed, Mode};

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
///
/// # Type parameters
///
/// `Pr` decides priorities ([`Prioritize`]); `M` is [`Fixed`] or [`Adaptive`], as the builder
/// chose.
pub struct LoadShedLayer<Pr = AllNormal, M = Fixed> {
    gate: Arc<Gate>,
    prioritize: Pr,
    retry_after: Duration,
    metrics: Arc<crate::metrics::LoadShed>,
    mode: M,
}

impl<Pr: Clone, M: Copy> Clone for LoadShedLayer<Pr, M> {
    fn clone(&self) -> Self {
        Self {
            gate: Arc::clone(&self.gate),
            prioritize: self.prioritize.clone(),
            retry_after: self.retry_after,
            metrics: Arc::clone(&self.metrics),
            mode: self.mode,
        }
    }
}

impl<Pr: fmt::Debug, M> fmt::Debug for LoadShedLayer<Pr, M> {
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
            max_in_flight: None,
            critical_share: 0.1,
            sheddable_share: 0.5,
            retry_after: Duration::from_secs(1),
            prioritize: AllNormal,
            name: "default",
            adaptive: None,
            mode: Fixed,
        }
    }
}

impl<Pr, M> LoadShedLayer<Pr, M> {
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
pub struct LoadShedBuilder<Pr = AllNormal, M = Fixed> {
    /// `None`: the default, 64.
    max_in_flight: Option<u64>,
    critical_share: f64,
    sheddable_share: f64,
    retry_after: Duration,
    prioritize: Pr,
    name: &'static str,
    adaptive: Option<AdaptiveLimit>,
    mode: M,
}

impl<Pr> LoadShedBuilder<Pr, Fixed> {
    /// Moves the limit with the load instead of fixing it: see [`AdaptiveLimit`] for the
    /// rule. The limit starts at `AdaptiveLimit::initial` and moves between its `min` and
    /// `max`; [`max_in_flight`](Self::max_in_flight) does not apply (setting both is a
    /// [`ConfigError`] at `build()`).
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
    pub fn adaptive(self, adaptive: AdaptiveLimit) -> LoadShedBuilder<Pr, Adaptive> {
        LoadShedBuilder {
            max_in_flight: self.max_in_flight,
            critical_share: self.critical_share,
            sheddable_share: self.sheddable_share,
            retry_after: self.retry_after,
            prioritize: self.prioritize,
            name: self.name,
            adaptive: Some(adaptive),
            mode: Adaptive,
        }
    }

    /// Requests in flight at most. Default: 64.
    ///
    /// See [`LoadShedLayer`] for an example.
    pub fn max_in_flight(mut self, limit: u64) -> Self {
        self.max_in_flight = Some(limit);
        self
    }
}

impl<Pr, M: Mode> LoadShedBuilder<Pr, M> {
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
    pub fn prioritize<Pr2>(self, prioritize: Pr2) -> LoadShedBuilder<Pr2, M> {
        LoadShedBuilder {
            max_in_flight: self.max_in_flight,
            critical_share: self.critical_share,
            sheddable_share: self.sheddable_share,
            retry_after: self.retry_after,
            prioritize,
            name: self.name,
            adaptive: self.adaptive,
            mode: self.mode,
        }
    }

    /// Validates the settings and builds the layer's shared limit.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a limit of 0, shares out of range, a zero `retry_after`, an
    /// [`AdaptiveLimit`] out of range, or both a `max_in_flight` and an adaptive limit.
    ///
    /// ```
    /// use tower_rampart::load_shed::{AdaptiveLimit, LoadShedLayer};
    ///
    /// assert_eq!(LoadShedLayer::builder().max_in_flight(0).build().unwrap_err().field(), "max_in_flight");
    /// let both = LoadShedLayer::builder().max_in_flight(64).adaptive(AdaptiveLimit::new());
    /// assert_eq!(both.build().unwrap_err().field(), "max_in_flight");
    /// ```
    pub fn build(self) -> Result<LoadShedLayer<Pr, M>, ConfigError> {
        let limit = match (&self.adaptive, self.max_in_flight) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "max_in_flight",
                    "an adaptive limit moves between AdaptiveLimit::min and max: set those",
                ));
            }
            (Some(adaptive), None) => adaptive.initial,
            (None, Some(0)) => {
                return Err(ConfigError::new("max_in_flight", "must be at least 1"));
            }
            (None, limit) => limit.unwrap_or(64),
        };
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
        let mut gate = Gate::new(
            limit,
            permille(self.critical_share),
            permille(self.sheddable_share),
        );
        gate.controller = self
            .adaptive
            .map(|adaptive| Controller::new(adaptive, self.name));
        gate.name = self.name;
        Ok(LoadShedLayer {
            gate: Arc::new(gate),
            prioritize: self.prioritize,
            retry_after: self.retry_after,
            metrics: Arc::new(crate::metrics::LoadShed::new(self.name)),
            mode: self.mode,
        })
    }
}

impl<S, Pr: Clone, M: Copy> Layer<S> for LoadShedLayer<Pr, M> {
    type Service = LoadShed<S, Pr, M>;

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
pub struct LoadShed<S, Pr = AllNormal, M = Fixed> {
    inner: S,
    layer: LoadShedLayer<Pr, M>,
}

impl<S: Clone, Pr: Clone, M: Copy> Clone for LoadShed<S, Pr, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, Pr: fmt::Debug, M> fmt::Debug for LoadShed<S, Pr, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShed")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, Pr, M> LoadShed<S, Pr, M> {
    crate::macros::inner_accessors!();
}

impl<S, B, ResBody, Pr, M> Service<http::Request<B>> for LoadShed<S, Pr, M>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    Pr: Prioritize<http::Request<B>>,
    M: Mode,
{
    type Response = http::Response<PermitBody<ResBody, M>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, M>;

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
                    start: M::start(&self.layer.gate, &req),
                    future: self.inner.call(req),
                    permit: Some(permit),
                },
            },
            None => self.layer.shed(priority),
        }
    }
}

impl<Pr, M: Mode> LoadShedLayer<Pr, M> {
    /// The layer's slots.
    #[inline]
    pub(super) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// An adaptive shedder's refusal of a call whose deadline is nearer than what calls
    /// take now: admitted, it would only time out.
    #[inline]
    pub(super) fn too_late<F>(&self, priority: Priority) -> Option<ResponseFuture<F, M>> {
        let (left, typical) = M::too_late(&self.gate)?;
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
    pub(super) fn admit<F, B>(
        &self,
        permit: Permit,
        req: http::Request<B>,
        call: impl FnOnce(http::Request<B>) -> F,
    ) -> ResponseFuture<F, M> {
        ResponseFuture {
            kind: Kind::Called {
                start: M::start(&self.gate, &req),
                future: call(req),
                permit: Some(permit),
            },
        }
    }

    /// The refusal of a call of `priority` that found no slot.
    #[cold]
    pub(super) fn shed<F>(&self, priority: Priority) -> ResponseFuture<F, M> {
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
    pub struct ResponseFuture<F, M: Mode = Fixed> {
        #[pin]
        kind: Kind<F, M>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, M: Mode> {
        Called { #[pin] future: F, permit: Option<Permit>, start: M::Start },
        Shed { rejection: Option<Overloaded> },
        TooLate { rejection: Option<TimedOut> },
    }
}

impl<F, M: Mode> fmt::Debug for ResponseFuture<F, M> {
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

impl<F, B, E, M> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    M: Mode,
{
    type Output = Result<http::Response<PermitBody<B, M>>, BoxError>;

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
                let deferred = match permit.as_ref() {
                    Some(permit) => M::answered(&permit.gate, *start, &result),
                    None => M::NOTHING,
                };
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
    pub struct PermitBody<B, M: Mode = Fixed> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
        // When a gRPC call whose status is in the trailers was admitted (adaptive limit).
        deferred: M::Deferred,
    }
}

impl<B: fmt::Debug, M: Mode> fmt::Debug for PermitBody<B, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PermitBody")
            .field("inner", &self.inner)
            .field("holds_slot", &self.permit.is_some())
            .finish()
    }
}

impl<B: Body, M: Mode> Body for PermitBody<B, M> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(permit) = this.permit.as_ref() {
            M::frame(&permit.gate, this.deferred, frame.as_ref());
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
impl<B: crate::http::ResponseBody, M: Mode> crate::http::ResponseBody for PermitBody<B, M> {
    fn from_bytes(bytes: bytes::Bytes) -> Self {
        Self {
            inner: B::from_bytes(bytes),
            permit: None,
            deferred: M::NOTHING,
        }
    }

    fn empty() -> Self {
        Self {
            inner: B::empty(),
            permit: None,
            deferred: M::NOTHING,
        }
    }
}
