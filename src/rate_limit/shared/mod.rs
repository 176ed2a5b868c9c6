//! One limit across replicas: the same GCRA, decided in Redis (feature `redis`).
//!
//! [`RateLimitBuilder::shared`](super::RateLimitBuilder::shared) turns a limiter into one
//! whose buckets live in Redis, so that a limit of 50/s on 8 replicas is 50/s, not 400/s:
//!
//! ```no_run
//! use tower_rampart::rate_limit::{OnStoreFailure, PeerIp, RateLimitLayer, RedisStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::builder(redis::Client::open("redis://127.0.0.1:6379")?)
//!     .prefix("shop")
//!     .on_failure(OnStoreFailure::Local { share: 1.0 })
//!     .build()?;
//! let layer = RateLimitLayer::per_second(50)
//!     .burst(20)
//!     .policy_name("per-ip")
//!     .with_key(PeerIp)
//!     .shared(store)
//!     .build()?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Exactness
//!
//! Each decision is one Lua script over one integer key per bucket (the theoretical arrival
//! time), computed with Redis's own clock (`TIME`), so replicas' clocks do not matter. The
//! arithmetic is the in-memory limiter's, to the nanosecond: over any interval of length
//! `t`, all replicas together admit at most `burst + rate · t`, and a refusal carries the
//! same `Retry-After`, `RateLimit` fields and [`RateLimited`](crate::error::RateLimited)
//! data as the in-memory limiter would for the same history. Buckets are limited to
//! `burst · interval` ≤ 2^52 ns (about 52 days), where Lua's numbers stay exact.
//!
//! # Cost
//!
//! One round trip per decision: `EVALSHA` with the script's SHA1 computed when the store is
//! built, and `EVAL` once more when Redis lost the script (a restart, `SCRIPT FLUSH`, a
//! failover). A key Redis refused until `T` is refused locally until `T`, without a round
//! trip: no replica can make capacity appear sooner, so this never admits what Redis would
//! refuse. For very busy keys, [`lease`](super::RateLimitBuilder::lease) takes several
//! tokens per round trip, with the bound it states. The connection is redis-rs's `ConnectionManager`: multiplexed, and re-established
//! in the background when it drops.
//!
//! # When Redis is slow or gone
//!
//! Every call has its own timeout ([`timeout`](RedisStoreBuilder::timeout), default 5 ms,
//! and never more than the request's remaining [deadline](crate::context) minus 1 ms). A
//! circuit breaker (this crate's own, named `rate_limit_store`) opens after
//! [`breaker`](RedisStoreBuilder::breaker) consecutive failures (default 3) and, while it is
//! open (default 1 s, then probing), no request waits for Redis at all. What a request gets
//! then is the store's [`OnStoreFailure`]:
//!
//! | policy | while Redis is unreachable | over-admission |
//! |---|---|---|
//! | [`Local { share }`](OnStoreFailure::Local) (default, share 1.0) | each replica limits alone, at `share` of the quota | up to replicas × share × the quota |
//! | [`Allow`](OnStoreFailure::Allow) | every request is admitted | unbounded |
//! | [`Refuse`](OnStoreFailure::Refuse) | every request is refused (429, `Retry-After` = the breaker's open time) | none; all is refused |
//!
//! Every decision is counted in `rampart_rate_limit_decisions_total` with its `source`
//! (`redis`, `local_cache`, `fallback`), and logged at DEBUG with it.
//!
//! # Keys
//!
//! A bucket is named `{prefix}:{policy:key}:{quota}`: the part in braces is a Redis Cluster
//! hash tag, so one client's quotas live in one slot. The key is written by its
//! [`StableKey`] impl, the same on every replica (never the in-memory limiter's per-process
//! seeded hash). Keys of more than 64 bytes, or with bytes outside printable ASCII, are
//! stored as their SipHash-2-4 under the store's secret
//! ([`hash_keys`](RedisStoreBuilder::hash_keys) hashes every key, for keys that must not
//! appear in Redis).

mod key;
mod script;
mod service;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::circuit_breaker::{CircuitBreakerLayer, ErrorsFail};
use crate::error::ConfigError;

pub use key::StableKey;
pub use service::{SharedFuture, SharedPartition, SharedRateLimit, SharedRateLimitLayer};

pub(crate) use key::Naming;
pub(crate) use script::{MAX_TOLERANCE_NANOS, Script};

/// What a shared limiter does with a request when Redis cannot decide it (an error, a
/// timeout, or the store's breaker open).
///
/// See the [module docs](self) for the table.
///
/// ```
/// use tower_rampart::rate_limit::OnStoreFailure;
///
/// assert_eq!(OnStoreFailure::default(), OnStoreFailure::Local { share: 1.0 });
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnStoreFailure {
    /// Admit every request (fail open).
    Allow,
    /// Refuse every request (fail closed).
    Refuse,
    /// Limit each replica alone, with an in-memory limiter keeping `share` of the quota
    /// (more than 0, at most 1): its rate and burst times `share`, rounded up to at least 1.
    /// With `n` replicas, a share of `1.0 / n` keeps the whole fleet near the quota.
    Local {
        /// The part of the quota each replica keeps.
        share: f64,
    },
}

impl Default for OnStoreFailure {
    fn default() -> Self {
        Self::Local { share: 1.0 }
    }
}

/// Where a limiter's buckets live when they are shared: a Redis server (or a Redis Cluster
/// endpoint), with its timeout, breaker and failure policy.
///
/// Cloning is cheap; clones share the connection. See the [module docs](self).
///
/// ```no_run
/// use std::time::Duration;
/// use tower_rampart::rate_limit::{OnStoreFailure, RedisStore};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder(redis::Client::open("redis://127.0.0.1:6379")?)
///     .timeout(Duration::from_millis(3))
///     .on_failure(OnStoreFailure::Refuse)
///     .build()?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub(crate) conn: ConnectionManager,
    pub(crate) script: Script,
    pub(crate) naming: Naming,
    pub(crate) timeout: Duration,
    pub(crate) on_failure: OnStoreFailure,
    pub(crate) breaker: CircuitBreakerLayer<crate::circuit_breaker::Single, ErrorsFail>,
    pub(crate) open_for: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.naming.prefix)
            .field("timeout", &self.inner.timeout)
            .field("on_failure", &self.inner.on_failure)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for a store on `client`'s server.
    ///
    /// See [`RedisStore`] for an example.
    pub fn builder(client: redis::Client) -> RedisStoreBuilder {
        RedisStoreBuilder {
            client,
            prefix: "rampart".to_owned(),
            timeout: Duration::from_millis(5),
            on_failure: OnStoreFailure::default(),
            failures: 3,
            open_for: Duration::from_secs(1),
            secret: None,
        }
    }
}

/// Settings of a [`RedisStore`], validated by [`build`](Self::build).
#[derive(Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct RedisStoreBuilder {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    on_failure: OnStoreFailure,
    failures: u32,
    open_for: Duration,
    secret: Option<[u8; 16]>,
}

impl RedisStoreBuilder {
    /// The first part of every key. Default: `rampart`. 1 to 32 printable ASCII characters,
    /// no braces.
    ///
    /// See [`RedisStore`] for an example.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one decision may wait for Redis. Default: 5 ms. A request's remaining
    /// deadline minus 1 ms bounds it further.
    ///
    /// See [`RedisStore`] for an example.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What requests get while Redis cannot decide. Default:
    /// [`OnStoreFailure::Local`] with the whole quota.
    ///
    /// See [`RedisStore`] for an example.
    pub fn on_failure(mut self, policy: OnStoreFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// The store's breaker: open after `failures` failed calls in a row, for `open_for`
    /// (then a probe). Default: 3 and 1 s.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = tower_rampart::rate_limit::RedisStore::builder(redis::Client::open("redis://127.0.0.1")?)
    ///     .breaker(5, Duration::from_millis(500))
    ///     .build()?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.failures = failures;
        self.open_for = open_for;
        self
    }

    /// Stores every key as its keyed hash (SipHash-2-4 under `secret`, the same on every
    /// replica), for keys that must not appear in Redis as they are. Without it, only long
    /// or unprintable keys are hashed, under a fixed secret.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = tower_rampart::rate_limit::RedisStore::builder(redis::Client::open("redis://127.0.0.1")?)
    ///     .hash_keys(*b"0123456789abcdef")
    ///     .build()?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn hash_keys(mut self, secret: [u8; 16]) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Validates the settings and makes the store. The connection is made on first use
    /// (and remade in the background when it drops), so a server can start while Redis is
    /// down: its failure policy applies meanwhile.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad prefix, a timeout of zero or over a minute, zero
    /// failures or a zero open time, a share outside (0, 1], or a client redis-rs refuses.
    ///
    /// ```
    /// use tower_rampart::rate_limit::{OnStoreFailure, RedisStore};
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    /// let err = RedisStore::builder(client).on_failure(OnStoreFailure::Local { share: 0.0 }).build().unwrap_err();
    /// assert_eq!(err.field(), "on_failure");
    /// ```
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b) && b != b'{' && b != b'}');
        if !prefix_ok {
            return Err(ConfigError::new(
                "prefix",
                "must be 1 to 32 printable ASCII characters without braces",
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "timeout",
                "must be more than zero and at most a minute",
            ));
        }
        if let OnStoreFailure::Local { share } = self.on_failure {
            if !(share > 0.0 && share <= 1.0) {
                return Err(ConfigError::new(
                    "on_failure",
                    "a local share must be more than 0 and at most 1",
                ));
            }
        }
        let breaker = CircuitBreakerLayer::builder()
            .name("rate_limit_store")
            .failure_threshold(self.failures)
            .open_for(self.open_for)
            .backoff(1)
            .with_classifier(ErrorsFail)
            .build()?;
        // Our own timeout bounds each call; redis-rs's only bounds the connection attempt.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(self.client, config).map_err(|_| {
            ConfigError::new("client", "redis-rs could not make a connection manager")
        })?;
        Ok(RedisStore {
            inner: Arc::new(StoreInner {
                conn,
                script: Script::new(),
                naming: Naming {
                    prefix: self.prefix,
                    hash_all: self.secret.is_some(),
                    secret: self.secret.unwrap_or(*b"tower-rampart-v1"),
                },
                timeout: self.timeout,
                on_failure: self.on_failure,
                breaker,
                open_for: self.open_for,
            }),
        })
    }
}
