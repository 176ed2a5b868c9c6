//! Keys of keyed layers: the [`KeyFn`] trait shared by the rate limiter and the circuit
//! breaker, and the built-in extractors.
//!
//! | extractor | key | for |
//! |---|---|---|
//! | [`PeerIp`] | the TCP peer's address, IPv6 per /64 | servers reached directly |
//! | [`ClientIp`] | the client behind trusted proxies, IPv6 per /64 | servers behind a load balancer |
//! | [`HeaderKey`] | a header's value (an API key, a tenant) | authenticated APIs |
//! | [`UpstreamHost`] | the request's `host:port` | client stacks, one breaker per backend |
//! | a closure `Fn(&Req) -> Option<K>` | anything `Hash` | everything else |
//!
//! Keyed layers keep a 64-bit keyed hash of each key, never the key itself, so a key that
//! borrows from the request costs no allocation per request and a long key costs no memory.
//! Each keyed layer holds at most `max_keys` keys; idle ones are evicted a little at a time
//! inside normal calls, with no background task.
//!
//! # Which feature and which serve call
//!
//! [`PeerIp`] (and [`ClientIp`], which starts from the peer) reads the peer address from
//! axum's `ConnectInfo<SocketAddr>`, which needs this crate's `axum` feature (on by default)
//! and `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`, or
//! from a `SocketAddr` request extension that a hyper server inserts itself. Without one of
//! them no request has a key: the layer logs an ERROR once, counts
//! `rampart_rate_limit_missing_key_total`, and applies its
//! [`MissingKey`](crate::rate_limit::MissingKey) policy.

use std::hash::{BuildHasher, Hash, Hasher};

mod header;
mod ip;
pub(crate) mod map;

pub use header::{HeaderKey, MAX_AUTHORITY_LEN, UpstreamHost};
pub use ip::{ClientIp, ForwardedHeader, PeerIp};

/// Extracts the key of a request: the client of a rate limiter, the backend of a circuit breaker.
///
/// Implemented for closures `Fn(&Req) -> Option<K>` with `K: Hash`, and by [`PeerIp`],
/// [`ClientIp`], [`HeaderKey`] and [`UpstreamHost`] for `http::Request`s. The key may borrow
/// from the request.
///
/// ```
/// use tower_rampart::key::KeyFn;
///
/// // Limit per tenant, read from the request itself.
/// struct Job { tenant: u32 }
/// let tenant = |job: &Job| Some(job.tenant);
/// assert_eq!(tenant.key(&Job { tenant: 7 }), Some(7));
/// # #[cfg(feature = "rate-limit")] {
/// let layer = tower_rampart::rate_limit::RateLimitLayer::per_second(10)
///     .with_key(tenant)
///     .build()?;
/// # let _ = layer;
/// # }
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub trait KeyFn<Req>: Clone + Send + Sync + 'static {
    /// The key; only its hash is kept.
    type Key<'r>: Hash
    where
        Req: 'r;

    /// The key of `req`, or `None` when it has none.
    fn key<'r>(&self, req: &'r Req) -> Option<Self::Key<'r>>;
}

impl<F, Req, K> KeyFn<Req> for F
where
    F: Fn(&Req) -> Option<K> + Clone + Send + Sync + 'static,
    K: Hash,
{
    type Key<'r>
        = K
    where
        Req: 'r;

    fn key(&self, req: &Req) -> Option<K> {
        self(req)
    }
}

/// Key hashes are already uniform 64-bit values: the map uses them as they are.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

#[derive(Debug)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are stored; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
