//! [`RateLimitBuilder`]: every setting of a limiter, validated once by `build()`.

use std::borrow::Cow;
use std::time::Duration;

use crate::clock::{Clock, TokioClock};
use crate::error::ConfigError;
use std::sync::Arc;

use super::gcra::Quota;
use super::headers::{NoHeaders, RateLimitHeaders};
use super::key::{Global, PerKey, WithCost, WithQuota};
use super::layer::RateLimitLayer;
use super::limiter::{Limiter, MissingKey, Mode};
use super::wait::WaitingRateLimitLayer;

/// Default cap on keyed buckets.
const DEFAULT_MAX_KEYS: usize = 100_000;
/// Longest accepted policy name.
const MAX_POLICY_LEN: usize = 64;

/// The settings that do not change the builder's type.
#[derive(Clone, Debug)]
struct Settings {
    rate: u32,
    period: Duration,
    burst: Option<u32>,
    mode: Mode,
    max_wait: Duration,
    missing: MissingKey,
    max_keys: usize,
    policy: Cow<'static, str>,
}

/// Builds a [`RateLimitLayer`]; start from [`RateLimitLayer::per_second`],
/// [`per_minute`](RateLimitLayer::per_minute) or [`with_period`](RateLimitLayer::with_period).
///
/// Nothing is checked until [`build`](Self::build), which validates everything in one place.
///
/// ```
/// use tower_rampart::rate_limit::{PeerIp, RateLimitLayer};
///
/// let layer = RateLimitLayer::per_second(50)   // 50 requests per second...
///     .burst(20)                               // ...at most 20 at once
///     .with_key(PeerIp)                        // per client address
///     .max_keys(10_000)
///     .build()?;
/// assert_eq!(layer.quota().burst(), 20);
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct RateLimitBuilder<P = Global, C = TokioClock, H = NoHeaders, M = Refusing> {
    settings: Settings,
    partition: P,
    clock: C,
    headers: H,
    mode: M,
}

/// A builder mode: the built layer refuses at once when there is no capacity (servers). The
/// default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refusing;

/// A builder mode, set by [`RateLimitBuilder::wait`]: the built layer waits for capacity
/// (clients), as a [`WaitingRateLimitLayer`](super::WaitingRateLimitLayer).
#[derive(Clone, Copy, Debug, Default)]
pub struct Waiting;

/// The builder's mode after [`shared`](RateLimitBuilder::shared): buckets in a
/// [`RedisStore`](super::RedisStore), shared by every replica.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone, Debug)]
pub struct Shared {
    store: super::RedisStore,
    more: Vec<Quota>,
    lease: u32,
}

// === impl RateLimitBuilder ===

impl RateLimitBuilder {
    pub(crate) fn new(rate: u32, period: Duration) -> Self {
        Self {
            settings: Settings {
                rate,
                period,
                burst: None,
                mode: Mode::Reject,
                max_wait: Duration::ZERO,
                missing: MissingKey::Shared,
                max_keys: DEFAULT_MAX_KEYS,
                policy: Cow::Borrowed("default"),
            },
            partition: Global,
            clock: TokioClock,
            headers: NoHeaders,
            mode: Refusing,
        }
    }
}

impl<P, C, H, M> RateLimitBuilder<P, C, H, M> {
    /// How many requests may arrive at once on a full bucket. Default: the rate (a whole
    /// period's worth at once).
    ///
    /// ```
    /// # use tower_rampart::rate_limit::RateLimitLayer;
    /// assert_eq!(RateLimitLayer::per_second(50).burst(20).build()?.quota().burst(), 20);
    /// assert_eq!(RateLimitLayer::per_second(50).build()?.quota().burst(), 50);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn burst(mut self, burst: u32) -> Self {
        self.settings.burst = Some(burst);
        self
    }

    /// Limits each key separately, with the key from `key`: a [`KeyFn`](super::KeyFn) such
    /// as a closure, [`PeerIp`](super::PeerIp), [`ClientIp`](super::ClientIp) or
    /// [`HeaderKey`](super::HeaderKey). Default: one global limit.
    ///
    /// ```
    /// use tower_rampart::rate_limit::{HeaderKey, RateLimitLayer};
    ///
    /// let per_api_key = RateLimitLayer::per_minute(600)
    ///     .with_key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
    ///     .build()?;
    /// assert_eq!(per_api_key.key_count(), 0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn with_key<K>(self, key: K) -> RateLimitBuilder<PerKey<K>, C, H, M> {
        RateLimitBuilder {
            settings: self.settings,
            partition: PerKey(key),
            clock: self.clock,
            headers: self.headers,
            mode: self.mode,
        }
    }

    /// Charges each request `cost(&req)` tokens instead of 1. A cost of 0 is free; a cost
    /// above `burst` is charged `burst` (it waits for a full bucket and empties it).
    ///
    /// ```
    /// use tower_rampart::rate_limit::RateLimitLayer;
    ///
    /// // A budget of 1 MiB per second of request body, by Content-Length.
    /// let bytes = RateLimitLayer::per_second(1 << 20)
    ///     .cost(|req: &http::Request<()>| {
    ///         req.headers().get(http::header::CONTENT_LENGTH)
    ///             .and_then(|v| v.to_str().ok()?.parse().ok())
    ///             .unwrap_or(1)
    ///     })
    ///     .build()?;
    /// # let _ = bytes;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn cost<F>(self, cost: F) -> RateLimitBuilder<WithCost<P, F>, C, H, M> {
        RateLimitBuilder {
            settings: self.settings,
            partition: WithCost {
                inner: self.partition,
                cost,
            },
            clock: self.clock,
            headers: self.headers,
            mode: self.mode,
        }
    }

    /// Gives each new key the quota `quota(&req)` returns, such as a tier read from the API
    /// key. The quota is chosen when the key's bucket is created and kept while it lives.
    /// Default: the builder's quota for every key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::rate_limit::{HeaderKey, Quota, RateLimitLayer};
    ///
    /// let free = Quota::new(10, Duration::from_secs(1), 10)?;
    /// let paid = Quota::new(500, Duration::from_secs(1), 100)?;
    /// let layer = RateLimitLayer::per_second(10)
    ///     .with_key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
    ///     .quota_by(move |req: &http::Request<()>| {
    ///         let paid_key = req.headers().get("x-api-key").is_some_and(|k| k.as_bytes().starts_with(b"paid_"));
    ///         if paid_key { paid } else { free }
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn quota_by<F>(self, quota: F) -> RateLimitBuilder<WithQuota<P, F>, C, H, M> {
        RateLimitBuilder {
            settings: self.settings,
            partition: WithQuota {
                inner: self.partition,
                quota,
            },
            clock: self.clock,
            headers: self.headers,
            mode: self.mode,
        }
    }

    /// Reads time from `clock` instead of [`TokioClock`]. Waiting (in [`wait`](Self::wait)
    /// mode) always sleeps on tokio's timer.
    ///
    /// ```
    /// use tower_rampart::{clock::ManualClock, rate_limit::RateLimitLayer};
    ///
    /// let clock = ManualClock::new();
    /// let layer = RateLimitLayer::per_second(5).with_clock(clock.clone()).build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn with_clock<C2: Clock>(self, clock: C2) -> RateLimitBuilder<P, C2, H, M> {
        RateLimitBuilder {
            settings: self.settings,
            partition: self.partition,
            clock,
            headers: self.headers,
            mode: self.mode,
        }
    }

    /// Also sends `RateLimit-Policy` and `RateLimit` on **admitted** HTTP responses, so
    /// clients can pace themselves before they are refused. Costs two small allocations per
    /// admitted response (the header values). Default: only on 429s.
    ///
    /// ```
    /// use tower_rampart::rate_limit::RateLimitLayer;
    ///
    /// let layer = RateLimitLayer::per_second(50).advertise().build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn advertise(self) -> RateLimitBuilder<P, C, RateLimitHeaders, M> {
        RateLimitBuilder {
            settings: self.settings,
            partition: self.partition,
            clock: self.clock,
            headers: RateLimitHeaders::new(),
            mode: self.mode,
        }
    }

    /// What happens to requests from which no key can be extracted. Default:
    /// [`MissingKey::Shared`].
    ///
    /// ```
    /// use tower_rampart::rate_limit::{MissingKey, PeerIp, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::per_second(10).with_key(PeerIp).on_missing_key(MissingKey::Allow).build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn on_missing_key(mut self, missing: MissingKey) -> Self {
        self.settings.missing = missing;
        self
    }

    /// The most keyed buckets held at once. When all are in use, idle buckets (full again,
    /// so indistinguishable from absent) are swept, at most once per refill time (clamped to
    /// 100 ms..10 s); new keys that still find no room share the [`MissingKey::Shared`]
    /// bucket until a sweep frees some. Known keys keep their own limits throughout.
    /// Default: 100 000.
    ///
    /// ```
    /// use tower_rampart::rate_limit::{PeerIp, RateLimitLayer};
    ///
    /// assert!(RateLimitLayer::per_second(10).with_key(PeerIp).max_keys(0).build().is_err());
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.settings.max_keys = max_keys;
        self
    }

    /// The policy's name in the `RateLimit` header fields, logs and rejections: 1 to 64
    /// printable ASCII characters. Default: `"default"`.
    ///
    /// ```
    /// use tower_rampart::rate_limit::RateLimitLayer;
    ///
    /// assert!(RateLimitLayer::per_second(10).policy_name("per-ip").build().is_ok());
    /// assert_eq!(RateLimitLayer::per_second(10).policy_name("bad\nname").build().unwrap_err().field(), "policy_name");
    /// ```
    pub fn policy_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.policy = name.into();
        self
    }
}

impl<P, C, H, M> RateLimitBuilder<P, C, H, M> {
    /// Validates the settings and builds the limiter's shared state (see `build`).
    fn finish(self) -> Result<RateLimitLayer<P, C, H>, ConfigError>
    where
        C: Clock,
        H: super::headers::WithPolicy,
    {
        let s = self.settings;
        let quota = Quota::new(s.rate, s.period, s.burst.unwrap_or(s.rate))?;
        if s.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if matches!(s.mode, Mode::Wait(_)) && s.max_wait.is_zero() {
            return Err(ConfigError::new(
                "max_wait",
                "must be more than zero (without waiting, leave wait mode off)",
            ));
        }
        let mode = match s.mode {
            Mode::Wait(_) => Mode::Wait(
                u64::try_from(s.max_wait.as_nanos())
                    .map_err(|_| ConfigError::new("max_wait", "must be at most 584 years"))?,
            ),
            other => other,
        };
        let policy_ok = !s.policy.is_empty()
            && s.policy.len() <= MAX_POLICY_LEN
            && s.policy.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !policy_ok {
            return Err(ConfigError::new(
                "policy_name",
                "must be 1 to 64 printable ASCII characters",
            ));
        }
        let headers = self.headers.with_policy(&s.policy);
        let limiter = Limiter::new(
            quota,
            mode,
            s.missing,
            s.policy,
            s.max_keys as u64,
            self.clock,
        );
        Ok(RateLimitLayer::from_parts(
            Arc::new(limiter),
            self.partition,
            headers,
        ))
    }
}

impl<P, C, H> RateLimitBuilder<P, C, H, Refusing> {
    /// Wait mode, for clients: a request without capacity waits for its slot, up to
    /// `max_wait`, and is refused only when the wait would be longer. The slot is reserved
    /// at once, so waiters are served in arrival order; a cancelled waiter gives its slot back
    /// when no later request has reserved after it. `poll_ready` still never waits.
    ///
    /// The builder then builds a [`WaitingRateLimitLayer`](super::WaitingRateLimitLayer),
    /// whose services need their inner service to be `Clone` (a waiting call holds a ready
    /// clone). Unfit for axum routers: a server should answer 429 at once rather than hold
    /// connections. Default: refuse at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::rate_limit::RateLimitLayer;
    ///
    /// let client_side = RateLimitLayer::per_second(20).wait(Duration::from_secs(2)).build()?;
    /// assert!(RateLimitLayer::per_second(20).wait(Duration::ZERO).build().is_err());
    /// # let _ = client_side;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn wait(mut self, max_wait: Duration) -> RateLimitBuilder<P, C, H, Waiting> {
        self.settings.mode = Mode::Wait(0);
        self.settings.max_wait = max_wait;
        RateLimitBuilder {
            settings: self.settings,
            partition: self.partition,
            clock: self.clock,
            headers: self.headers,
            mode: Waiting,
        }
    }

    /// Shadow mode: decide as usual, but let refused requests through, logging them at
    /// DEBUG and counting them in [`RateLimitLayer::rejected_count`]. For trying a limit
    /// out in production. Default: off.
    ///
    /// ```
    /// use tower_rampart::rate_limit::RateLimitLayer;
    ///
    /// let trial = RateLimitLayer::per_second(100).shadow().build()?;
    /// # let _ = trial;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn shadow(mut self) -> Self {
        self.settings.mode = Mode::Shadow;
        self
    }

    /// Validates the settings and builds the limiter's shared state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero rate or burst, a zero or overflowing period, a rate
    /// finer than one token per nanosecond, `max_keys` of 0, a `max_wait` of zero or beyond 584 years,
    /// or a policy name that is empty, longer than 64 bytes or not printable ASCII.
    ///
    /// ```
    /// use tower_rampart::rate_limit::RateLimitLayer;
    ///
    /// assert_eq!(RateLimitLayer::per_second(0).build().unwrap_err().to_string(), "invalid `rate`: must be at least 1");
    /// assert_eq!(RateLimitLayer::per_second(5).burst(0).build().unwrap_err().field(), "burst");
    /// ```
    pub fn build(self) -> Result<RateLimitLayer<P, C, H>, ConfigError>
    where
        C: Clock,
        H: super::headers::WithPolicy,
    {
        self.finish()
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl<P, C, H> RateLimitBuilder<P, C, H, Refusing> {
    /// Keeps the buckets in `store`, shared by every replica using it, instead of in this
    /// process: the same quota, key, cost and policy name, decided by the same GCRA in
    /// Redis (see [`RedisStore`](super::RedisStore) for timeouts and the failure policy).
    /// Keys must be [`StableKey`](super::StableKey)s. With
    /// [`advertise`](Self::advertise), admitted responses carry the `RateLimit` fields of
    /// the bucket Redis decided on (or of the local fallback); admissions from a
    /// [lease](RateLimitBuilder::lease) carry none. Wait and shadow modes are not offered.
    ///
    /// ```no_run
    /// use tower_rampart::rate_limit::{PeerIp, RateLimitLayer, RedisStore};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder(redis::Client::open("redis://127.0.0.1:6379")?).build()?;
    /// let layer = RateLimitLayer::per_second(50).burst(20).with_key(PeerIp).shared(store).build()?;
    /// assert_eq!(layer.quota().burst(), 20);
    /// # Ok(())
    /// # }
    /// ```
    pub fn shared(self, store: super::RedisStore) -> RateLimitBuilder<P, C, H, Shared> {
        RateLimitBuilder {
            settings: self.settings,
            partition: self.partition,
            clock: self.clock,
            headers: self.headers,
            mode: Shared {
                store,
                more: Vec::new(),
                lease: 1,
            },
        }
    }
}

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl<P, C: Clock, H: super::headers::WithPolicy> RateLimitBuilder<P, C, H, Shared> {
    /// Adds a quota the same key must also fit, decided in the same call: a request is
    /// admitted only if every quota has room, and charged to all of them or to none (for
    /// example 10 per second and 10 000 per day). A refusal describes the quota that refused
    /// longest.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_rampart::rate_limit::{PeerIp, Quota, RateLimitLayer, RedisStore};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder(redis::Client::open("redis://127.0.0.1:6379")?).build()?;
    /// let daily = Quota::new(10_000, Duration::from_secs(86_400), 10_000)?;
    /// let layer = RateLimitLayer::per_second(10)
    ///     .with_key(PeerIp)
    ///     .shared(store)
    ///     .and_quota(daily)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn and_quota(mut self, quota: Quota) -> Self {
        self.mode.more.push(quota);
        self
    }

    /// Lease mode, for keys busy enough that a round trip per request costs too much (a
    /// global limit, a few large tenants): a request that asks Redis takes up to `tokens`
    /// at once, and this replica admits the next requests of that key from them without a
    /// round trip, until they are used or as long as they would take to refill. Default: 1
    /// (no lease).
    ///
    /// The bound changes: over any interval of length `t`, all replicas together admit at
    /// most `burst + rate · t + replicas · tokens`, since a replica may use tokens taken
    /// before the interval began. Tokens a replica takes and does not use are lost to the
    /// key for their refill time. Weighted requests (cost other than 1) never use leases,
    /// and a limiter with [`and_quota`](Self::and_quota) does not lease.
    ///
    /// ```no_run
    /// use tower_rampart::rate_limit::{RateLimitLayer, RedisStore};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder(redis::Client::open("redis://127.0.0.1:6379")?).build()?;
    /// // One limit for the whole fleet, 10 000 per second: a round trip per 20 requests.
    /// let layer = RateLimitLayer::per_second(10_000).shared(store).lease(20).build()?;
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn lease(mut self, tokens: u32) -> Self {
        self.mode.lease = tokens;
        self
    }

    /// Validates the settings and builds the shared limiter.
    ///
    /// # Errors
    ///
    /// As [`RateLimitBuilder::build`], for shadow mode (not offered by a shared limiter),
    /// and for a bucket (`burst · interval`) over 2^52 ns, about 52 days.
    ///
    /// See [`shared`](RateLimitBuilder::shared) for an example.
    pub fn build(self) -> Result<super::SharedRateLimitLayer<P, C, H>, ConfigError> {
        if matches!(self.settings.mode, Mode::Shadow) {
            return Err(ConfigError::new(
                "shadow",
                "is not offered by a shared limiter",
            ));
        }
        let store = self.mode.store.clone();
        let more = self.mode.more.clone();
        let lease = self.mode.lease;
        if lease == 0 || lease > 10_000 {
            return Err(ConfigError::new("lease", "must be 1 to 10 000 tokens"));
        }
        if lease > 1 && !more.is_empty() {
            return Err(ConfigError::new(
                "lease",
                "is not offered with several quotas (and_quota)",
            ));
        }
        let clock = self.clock.clone();
        let settings = self.settings.clone();
        let layer = RateLimitBuilder {
            settings: self.settings,
            partition: self.partition,
            clock: self.clock,
            headers: self.headers,
            mode: Refusing,
        }
        .finish()?;
        let quota = layer.limiter.quota;
        let too_big = |q: &Quota| {
            crate::clock::duration_nanos(q.refill_time()) > super::shared::MAX_TOLERANCE_NANOS
        };
        if too_big(&quota) || more.iter().any(too_big) {
            return Err(ConfigError::new(
                "burst",
                "burst times the token interval must be at most 52 days in a shared limiter",
            ));
        }
        let fallback = match store.inner.on_failure {
            super::OnStoreFailure::Local { share } => {
                let scaled = |n: u32| ((f64::from(n) * share).ceil() as u32).max(1);
                let local =
                    Quota::new(scaled(quota.rate()), quota.period(), scaled(quota.burst()))?;
                Some(Limiter::new(
                    local,
                    Mode::Reject,
                    settings.missing,
                    settings.policy,
                    settings.max_keys as u64,
                    clock,
                ))
            }
            super::OnStoreFailure::Allow | super::OnStoreFailure::Refuse => None,
        };
        if more.len() > 7 {
            return Err(ConfigError::new(
                "and_quota",
                "at most 8 quotas per shared limiter",
            ));
        }
        Ok(super::SharedRateLimitLayer::new(
            layer.limiter,
            more,
            lease,
            fallback,
            store,
            layer.partition,
            layer.headers,
        ))
    }
}

impl<P, C, H> RateLimitBuilder<P, C, H, Waiting> {
    /// Validates the settings and builds the waiting limiter's shared state.
    ///
    /// # Errors
    ///
    /// As [`RateLimitBuilder::build`], and for a `max_wait` of zero or beyond 584 years.
    ///
    /// See [`wait`](RateLimitBuilder::wait) for an example.
    pub fn build(self) -> Result<WaitingRateLimitLayer<P, C, H>, ConfigError>
    where
        C: Clock,
        H: super::headers::WithPolicy,
    {
        self.finish().map(WaitingRateLimitLayer::new)
    }
}
