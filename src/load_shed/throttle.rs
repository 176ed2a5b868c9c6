//! [`AdaptiveThrottleLayer`]: the client-side throttle of Google's SRE book, for outbound
//! stacks.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::clock::{Clock, TokioClock};
use crate::error::{ConfigError, Overloaded};
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::{BoxError, Rejection};

/// Buckets the window is counted in.
const BUCKETS: usize = 12;

/// One bucket of the window: which bucket of time it counts, and its counts.
#[derive(Debug)]
struct Bucket {
    /// The bucket's index in time (`now / bucket_length`), `u64::MAX` when unused.
    stamp: AtomicU64,
    requests: AtomicU64,
    accepts: AtomicU64,
}

/// Requests and accepts over the window, counted without a lock.
#[derive(Debug)]
struct Counts<C> {
    buckets: [Bucket; BUCKETS],
    bucket_nanos: u64,
    clock: C,
    epoch: tokio::time::Instant,
}

impl<C: Clock> Counts<C> {
    fn now(&self) -> u64 {
        self.clock.nanos_since(self.epoch)
    }

    /// The bucket for `now`, emptied first if it last counted an older stretch of time.
    fn bucket(&self, now: u64) -> &Bucket {
        let index = now / self.bucket_nanos;
        let bucket = &self.buckets[(index % BUCKETS as u64) as usize];
        let stamp = bucket.stamp.load(Ordering::Acquire);
        if stamp != index
            && bucket
                .stamp
                .compare_exchange(stamp, index, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Counts landing between the swap and these stores are lost: a few calls in a
            // window of thousands, which the probability does not notice.
            bucket.requests.store(0, Ordering::Relaxed);
            bucket.accepts.store(0, Ordering::Relaxed);
        }
        bucket
    }

    /// Requests and accepts in the window ending at `now`.
    fn totals(&self, now: u64) -> (u64, u64) {
        let index = now / self.bucket_nanos;
        let oldest = index.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=index).contains(&b.stamp.load(Ordering::Acquire)))
            .fold((0, 0), |(r, a), b| {
                (
                    r + b.requests.load(Ordering::Relaxed),
                    a + b.accepts.load(Ordering::Relaxed),
                )
            })
    }
}

/// A fast random number in `[0, 1)`, from a per-thread xorshift: no lock, no dependency.
fn uniform() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            // Each thread starts at its own point of one Weyl sequence, mixed with its stack
            // address: distinct per thread, no clock, no lock.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let local = 0u8;
            let start = NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
                ^ (std::ptr::addr_of!(local) as u64).rotate_left(29);
            start | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The SRE book's client-side throttle, for outbound stacks: when the service called keeps
/// refusing, refuse locally first, so that the refusals cost it nothing.
///
/// Over a window (default 1 minute) the layer counts `requests` (everything the caller
/// asked, locally refused ones included) and `accepts` (calls the service answered without
/// refusing: not 429, 503, gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, not an error). Each
/// call is refused locally with probability `max(0, (requests − K · accepts) / (requests +
/// 1))`, at most [`max_probability`](AdaptiveThrottleBuilder::max_probability) (default
/// 0.9, so a service that recovers is still asked), with `K` (default 2) the number of
/// requests allowed per accept. A local refusal is
/// [`Rejection::Overloaded`](crate::Rejection::Overloaded) with a limit of 0.
///
/// A gentler companion to a circuit breaker: the breaker stops all calls to a dependency
/// that fails; the throttle sends fewer calls to one that is overloaded, in proportion.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_rampart::load_shed::AdaptiveThrottleLayer;
///
/// let throttle = AdaptiveThrottleLayer::builder().k(2.0).build()?;
/// let client = ServiceBuilder::new()
///     .layer(throttle)
///     .service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) });
/// # let _ = client;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub struct AdaptiveThrottleLayer<C = TokioClock> {
    counts: Arc<Counts<C>>,
    k: f64,
    max_probability: f64,
}

impl<C> Clone for AdaptiveThrottleLayer<C> {
    fn clone(&self) -> Self {
        Self {
            counts: Arc::clone(&self.counts),
            k: self.k,
            max_probability: self.max_probability,
        }
    }
}

impl<C> fmt::Debug for AdaptiveThrottleLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottleLayer")
            .field("k", &self.k)
            .field("max_probability", &self.max_probability)
            .finish_non_exhaustive()
    }
}

impl AdaptiveThrottleLayer {
    /// A builder: `K = 2`, a window of 1 minute, refusing at most 90% of calls.
    ///
    /// See [`AdaptiveThrottleLayer`] for an example.
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(60),
            max_probability: 0.9,
            clock: TokioClock,
        }
    }
}

impl<C: Clock> AdaptiveThrottleLayer<C> {
    /// The probability a call is refused locally now.
    ///
    /// ```
    /// # use tower_rampart::load_shed::AdaptiveThrottleLayer;
    /// let throttle = AdaptiveThrottleLayer::builder().build()?;
    /// assert_eq!(throttle.rejection_probability(), 0.0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn rejection_probability(&self) -> f64 {
        let (requests, accepts) = self.counts.totals(self.counts.now());
        self.probability(requests, accepts)
    }

    fn probability(&self, requests: u64, accepts: u64) -> f64 {
        let requests = requests as f64;
        ((requests - self.k * accepts as f64) / (requests + 1.0)).clamp(0.0, self.max_probability)
    }
}

/// Settings of an [`AdaptiveThrottleLayer`], validated by [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct AdaptiveThrottleBuilder<C = TokioClock> {
    k: f64,
    window: Duration,
    max_probability: f64,
    clock: C,
}

impl<C> AdaptiveThrottleBuilder<C> {
    /// Requests allowed per accept before refusing locally (1 to 10). Default: 2. Lower is
    /// stricter: 1.1 refuses as soon as a tenth of the calls are refused.
    ///
    /// See [`AdaptiveThrottleLayer`] for an example.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The window counted (1 s to 1 hour). Default: 1 minute.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::load_shed::AdaptiveThrottleLayer;
    /// let throttle = AdaptiveThrottleLayer::builder().window(Duration::from_secs(10)).build()?;
    /// # let _ = throttle;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The highest probability of a local refusal (0 to 1; below 1, a recovered service
    /// is still asked and seen to recover). Default: 0.9.
    ///
    /// ```
    /// # use tower_rampart::load_shed::AdaptiveThrottleLayer;
    /// let throttle = AdaptiveThrottleLayer::builder().max_probability(0.5).build()?;
    /// # let _ = throttle;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn max_probability(mut self, probability: f64) -> Self {
        self.max_probability = probability;
        self
    }

    /// Reads time from `clock` instead of tokio's.
    ///
    /// ```
    /// # use tower_rampart::{clock::ManualClock, load_shed::AdaptiveThrottleLayer};
    /// let throttle = AdaptiveThrottleLayer::builder().with_clock(ManualClock::new()).build()?;
    /// # let _ = throttle;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn with_clock<C2: Clock>(self, clock: C2) -> AdaptiveThrottleBuilder<C2> {
        AdaptiveThrottleBuilder {
            k: self.k,
            window: self.window,
            max_probability: self.max_probability,
            clock,
        }
    }

    /// Validates the settings and builds the layer's shared counts.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `k`, the window or the probability out of range.
    ///
    /// ```
    /// # use tower_rampart::load_shed::AdaptiveThrottleLayer;
    /// assert_eq!(AdaptiveThrottleLayer::builder().k(0.5).build().unwrap_err().field(), "k");
    /// ```
    pub fn build(self) -> Result<AdaptiveThrottleLayer<C>, ConfigError>
    where
        C: Clock,
    {
        if !(1.0..=10.0).contains(&self.k) {
            return Err(ConfigError::new("k", "must be 1 to 10"));
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(3_600) {
            return Err(ConfigError::new("window", "must be 1 s to 1 hour"));
        }
        if !(0.0..=1.0).contains(&self.max_probability) {
            return Err(ConfigError::new("max_probability", "must be 0 to 1"));
        }
        let epoch = self.clock.epoch();
        Ok(AdaptiveThrottleLayer {
            counts: Arc::new(Counts {
                buckets: std::array::from_fn(|_| Bucket {
                    stamp: AtomicU64::new(u64::MAX),
                    requests: AtomicU64::new(0),
                    accepts: AtomicU64::new(0),
                }),
                bucket_nanos: crate::clock::duration_nanos(self.window) / BUCKETS as u64,
                clock: self.clock,
                epoch,
            }),
            k: self.k,
            max_probability: self.max_probability,
        })
    }
}

impl<S, C: Clock> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveThrottle {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AdaptiveThrottleLayer`].
pub struct AdaptiveThrottle<S, C = TokioClock> {
    inner: S,
    layer: AdaptiveThrottleLayer<C>,
}

impl<S: Clone, C> Clone for AdaptiveThrottle<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveThrottle<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveThrottle")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, C> AdaptiveThrottle<S, C> {
    crate::macros::inner_accessors!();
}

impl<S, B, ResBody, C> Service<http::Request<B>> for AdaptiveThrottle<S, C>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    C: Clock,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let counts = &self.layer.counts;
        let now = counts.now();
        let (requests, accepts) = counts.totals(now);
        let p = self.layer.probability(requests, accepts);
        counts.bucket(now).requests.fetch_add(1, Ordering::Relaxed);
        if p > 0.0 && uniform() < p {
            tracing::debug!(
                throttle.probability = p,
                "request throttled locally: the service keeps refusing"
            );
            return ThrottleFuture {
                kind: ThrottleKind::Refused {
                    rejection: Some(Overloaded::new(Duration::from_secs(1), 0)),
                },
            };
        }
        ThrottleFuture {
            kind: ThrottleKind::Called {
                future: self.inner.call(req),
                counts: Some(Arc::clone(counts)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`AdaptiveThrottle`] call: the call, counted as accepted or not when
    /// it ends, or a local refusal.
    pub struct ThrottleFuture<F, C> {
        #[pin]
        kind: ThrottleKind<F, C>,
    }
}

pin_project_lite::pin_project! {
    #[project = ThrottleProj]
    enum ThrottleKind<F, C> {
        Called { #[pin] future: F, counts: Option<Arc<Counts<C>>> },
        Refused { rejection: Option<Overloaded> },
    }
}

impl<F, C> fmt::Debug for ThrottleFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            ThrottleKind::Called { .. } => "called",
            ThrottleKind::Refused { .. } => "refused",
        };
        f.debug_struct("ThrottleFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E, C> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    C: Clock,
{
    type Output = Result<http::Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ThrottleProj::Called { future, counts } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(counts) = counts.take() {
                    if result.as_ref().is_ok_and(accepted) {
                        let now = counts.now();
                        counts.bucket(now).accepts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Poll::Ready(result)
            }
            ThrottleProj::Refused { rejection } => {
                let rejection = rejection
                    .take()
                    .expect("ThrottleFuture polled after completion");
                Poll::Ready(Err(Box::new(Rejection::from(rejection))))
            }
        }
    }
}

/// Whether the service accepted the call: anything but a refusal, read through the table
/// the breaker and the load shedder use. A gRPC answer whose status comes in the trailers
/// was accepted: refusals are answered Trailers-Only.
fn accepted<B>(response: &http::Response<B>) -> bool {
    !matches!(
        crate::answer::Answer::of_response_alone(response),
        Some(
            crate::answer::Answer::TooManyRequests
                | crate::answer::Answer::ResourceExhausted
                | crate::answer::Answer::Unavailable
        )
    )
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_probability_follows_the_book() {
        let throttle = AdaptiveThrottleLayer::builder().build().unwrap();
        assert_eq!(throttle.probability(0, 0), 0.0);
        assert_eq!(
            throttle.probability(100, 50),
            0.0,
            "K accepts cover K requests"
        );
        assert!((throttle.probability(100, 25) - 50.0 / 101.0).abs() < 1e-9);
        assert_eq!(throttle.probability(1_000, 0), 0.9, "capped");
    }

    #[test]
    fn only_refusals_are_not_accepts() {
        let http =
            |status: u16| accepted(&http::Response::builder().status(status).body(()).unwrap());
        assert_eq!(
            [200, 404, 500, 504, 429, 503].map(http),
            [true, true, true, true, false, false],
            "a failure was still accepted; only refusals were not"
        );
        let grpc = |status: Option<&str>| {
            let mut answer = http::Response::builder().header("content-type", "application/grpc");
            if let Some(status) = status {
                answer = answer.header("grpc-status", status);
            }
            accepted(&answer.body(()).unwrap())
        };
        assert_eq!(
            [
                Some("0"),
                Some("5"),
                Some("13"),
                None,
                Some("8"),
                Some("14")
            ]
            .map(grpc),
            [true, true, true, true, false, false]
        );
    }

    #[test]
    fn uniform_numbers_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..10_000).map(|_| uniform()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let below_half = draws.iter().filter(|x| **x < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }
}
