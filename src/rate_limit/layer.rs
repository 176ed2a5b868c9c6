//! [`RateLimitLayer`]: holds the limiter's shared state and hands it to every service.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::clock::{Clock, TokioClock};

use super::config::RateLimitBuilder;
use super::gcra::Quota;
use super::headers::NoHeaders;
use super::key::{Global, Partition, PerKey};
use super::limiter::{Limiter, Verdict};
use super::service::RateLimit;
use crate::error::RateLimited;

/// A token-bucket rate limiter as a Tower layer. See the [module docs](super).
///
/// Build it with [`per_second`](Self::per_second), [`per_minute`](Self::per_minute) or
/// [`with_period`](Self::with_period), then [`build`](RateLimitBuilder::build).
///
/// # Sharing
///
/// The limit lives in the layer value: every service it makes, on every route and
/// connection, and every clone of those, draws from the same buckets. Build a second layer
/// for a second, independent limit.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_rampart::{ServiceBuilderExt, rate_limit::{PeerIp, RateLimitLayer}};
///
/// let limit = RateLimitLayer::per_second(50).burst(20).with_key(PeerIp).build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .route("/other", get(|| async { "there" }))
///     .layer(tower::ServiceBuilder::new().rejection_response().layer(limit)); // one limit for both routes
/// # let _ = app;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub struct RateLimitLayer<P = Global, C = TokioClock, H = NoHeaders> {
    pub(super) limiter: Arc<Limiter<C>>,
    pub(super) partition: P,
    pub(super) headers: H,
}

/// A limiter with one bucket per key of `K`, the layer [`RateLimitBuilder::with_key`] builds.
///
/// ```
/// use tower_rampart::key::PeerIp;
/// use tower_rampart::rate_limit::{PerKeyRateLimitLayer, RateLimitLayer};
///
/// let per_client: PerKeyRateLimitLayer<PeerIp> = RateLimitLayer::per_second(50).with_key(PeerIp).build()?;
/// # let _ = per_client;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub type PerKeyRateLimitLayer<K, C = TokioClock, H = NoHeaders> = RateLimitLayer<PerKey<K>, C, H>;

// === impl RateLimitLayer ===

impl RateLimitLayer {
    /// `rate` requests per second; `burst` defaults to `rate`.
    ///
    /// With `.burst(20)` on `per_second(50)`: at t = 0 a full bucket admits 20 requests at
    /// once; after that one more every 20 ms.
    ///
    /// ```
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// let layer = RateLimitLayer::per_second(50).burst(20).build()?;
    /// assert_eq!(layer.quota().interval(), std::time::Duration::from_millis(20));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn per_second(rate: u32) -> RateLimitBuilder {
        RateLimitBuilder::new(rate, Duration::from_secs(1))
    }

    /// `rate` requests per minute; `burst` defaults to `rate`.
    ///
    /// ```
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// let layer = RateLimitLayer::per_minute(120).burst(10).build()?;
    /// assert_eq!(layer.quota().interval(), std::time::Duration::from_millis(500));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn per_minute(rate: u32) -> RateLimitBuilder {
        RateLimitBuilder::new(rate, Duration::from_secs(60))
    }

    /// `rate` requests per `period`; `burst` defaults to `rate`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// let layer = RateLimitLayer::with_period(1_000, Duration::from_secs(3600)).build()?;
    /// assert_eq!(layer.quota().interval(), Duration::from_millis(3600));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn with_period(rate: u32, period: Duration) -> RateLimitBuilder {
        RateLimitBuilder::new(rate, period)
    }
}

impl<P, C: Clock, H> RateLimitLayer<P, C, H> {
    pub(crate) fn from_parts(limiter: Arc<Limiter<C>>, partition: P, headers: H) -> Self {
        Self {
            limiter,
            partition,
            headers,
        }
    }

    /// The validated default quota.
    ///
    /// ```
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// assert_eq!(RateLimitLayer::per_second(7).build()?.quota().rate(), 7);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn quota(&self) -> Quota {
        self.limiter.quota
    }

    /// How long until `req` would be admitted (zero if now), without taking anything.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    /// use tower_rampart::{clock::ManualClock, rate_limit::RateLimitLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_rampart::BoxError> {
    /// let layer = RateLimitLayer::per_second(10).burst(1).with_clock(ManualClock::new()).build()?;
    /// let mut svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) }));
    /// assert_eq!(layer.time_until_ready(&1), Duration::ZERO);
    /// svc.ready().await?.call(1).await?;
    /// assert_eq!(layer.time_until_ready(&1), Duration::from_millis(100));
    /// # Ok(())
    /// # }
    /// ```
    pub fn time_until_ready<Req>(&self, req: &Req) -> Duration
    where
        P: Partition<Req>,
    {
        let now = self.limiter.now();
        self.limiter.time_until_ready(&self.partition, req, now)
    }

    /// The raw decision: admits `req` now (taking its tokens) or refuses it, without a
    /// service around it, like governor's `check`. Ignores the wait and shadow modes. Shares
    /// the buckets, counters and events of the layer's services.
    ///
    /// # Errors
    ///
    /// The [`RateLimited`] rejection the layer would have answered with.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::{clock::ManualClock, rate_limit::RateLimitLayer};
    ///
    /// let limiter = RateLimitLayer::per_second(2).burst(1).with_clock(ManualClock::new()).build()?;
    /// assert!(limiter.check(&()).is_ok());
    /// let refused = limiter.check(&()).unwrap_err();
    /// assert_eq!(refused.retry_after(), Duration::from_millis(500));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn check<Req>(&self, req: &Req) -> Result<(), RateLimited>
    where
        P: Partition<Req>,
    {
        let now = self.limiter.now();
        match self
            .limiter
            .check::<true, _, _>(&self.partition, req, now, false)
        {
            // The raw check ignores shadow mode: it never shadows.
            Verdict::Now(_) | Verdict::Shadowed(_) => {
                self.limiter.metrics.admitted();
                Ok(())
            }
            Verdict::Later { .. } => {
                self.limiter.metrics.delayed();
                Ok(())
            }
            Verdict::Reject(refusal) => Err(self.limiter.rejection(refusal)),
        }
    }

    /// How many requests this limiter has refused (or, in shadow mode, would have).
    ///
    /// ```
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// assert_eq!(RateLimitLayer::per_second(7).build()?.rejected_count(), 0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn rejected_count(&self) -> u64 {
        self.limiter.rejected()
    }

    /// How many keyed buckets are held now (at most `max_keys`).
    ///
    /// ```
    /// # use tower_rampart::rate_limit::{PeerIp, RateLimitLayer};
    /// assert_eq!(RateLimitLayer::per_second(7).with_key(PeerIp).build()?.key_count(), 0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn key_count(&self) -> u64 {
        self.limiter.store.key_count()
    }
}

impl<P: Clone, C, H: Clone> Clone for RateLimitLayer<P, C, H> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            partition: self.partition.clone(),
            headers: self.headers.clone(),
        }
    }
}

impl<P: fmt::Debug, C: fmt::Debug, H: fmt::Debug> fmt::Debug for RateLimitLayer<P, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quota", &self.limiter.quota)
            .field("mode", &self.limiter.mode)
            .field("policy", &self.limiter.policy)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl<S, P: Clone, C, H: Clone> Layer<S> for RateLimitLayer<P, C, H> {
    type Service = RateLimit<S, P, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_parts(
            inner,
            Arc::clone(&self.limiter),
            self.partition.clone(),
            self.headers.clone(),
        )
    }
}
