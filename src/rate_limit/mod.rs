//! Token-bucket rate limiting that holds on a real axum `Router`.
//!
//! A bucket holds `burst` tokens and gains one every `period / rate`; each request takes one
//! (or its [`cost`](RateLimitBuilder::cost)). A request that finds too few is refused at
//! once with [`Rejection::RateLimited`](crate::Rejection::RateLimited): over HTTP, through
//! [`RejectionResponseLayer`](crate::http::RejectionResponseLayer), `429 Too Many Requests`
//! with `Retry-After` (whole seconds, rounded up, at least 1) and the IETF
//! `RateLimit-Policy` / `RateLimit` fields.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_rampart::{ServiceBuilderExt, rate_limit::{ClientIp, RateLimitLayer}};
//!
//! let per_client = RateLimitLayer::per_second(50)
//!     .burst(20)
//!     .with_key(ClientIp::new().trust_proxies(["10.0.0.0/8".parse().unwrap()]))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ServiceBuilder::new().rejection_response().layer(per_client));
//! # let _ = app;
//! # Ok::<(), tower_rampart::ConfigError>(())
//! ```
//!
//! # Timeline
//!
//! `per_second(50).burst(20)`, one client sending as fast as it can:
//!
//! | time | admitted | why |
//! |---|---|---|
//! | t = 0 | 20 at once | the bucket starts full |
//! | t = 0, 21st | refused, `Retry-After: 1` | wait is 20 ms, rounded up to whole seconds |
//! | t = 20 ms | 1 | one token every 20 ms |
//! | t = 40 ms, 60 ms, … | 1 each | the sustained rate, 50/s |
//! | idle 400 ms | | the bucket is full again: 20 at once |
//!
//! Over any interval of length `t` at most `burst + rate · t` requests are admitted, to the
//! request: the interval between tokens is rounded **up** to the nanosecond.
//!
//! # How it decides
//!
//! GCRA (the "virtual scheduling" form of a token bucket) on one `AtomicU64` per bucket,
//! updated with a compare-and-swap loop: no mutex, no background task, one clock read per
//! request, no allocation on the admitted path. Keyed limiters hash the key once and find the
//! bucket in a lock-free map ([`papaya`]).
//!
//! # Modes
//!
//! - **Reject** (default, for servers): refuse at once.
//! - **Wait** ([`RateLimitBuilder::wait`], for clients): reserve the next slot and wait for it,
//!   up to a maximum, on tokio's timer. Unfit for axum routers.
//! - **Shadow** ([`RateLimitBuilder::shadow`]): let everything through, log and count what
//!   would have been refused.
//!
//! # Keys
//!
//! [`RateLimitBuilder::with_key`] takes a [`KeyFn`]: a closure or [`PeerIp`], [`ClientIp`]
//! (trusted-proxy aware: `X-Forwarded-For` or `Forwarded`, walked right to left), or
//! [`HeaderKey`]. [`MissingKey`] says what happens when there is no key. At most
//! [`max_keys`](RateLimitBuilder::max_keys) buckets are kept; idle ones are swept inside normal
//! calls, never by a task of yours. [`quota_by`](RateLimitBuilder::quota_by) sets a quota per
//! class of key.
//!
//! # Sharing
//!
//! The state is created by [`build`](RateLimitBuilder::build) and lives in the layer: every
//! `Layer::layer` call (every route, every connection) and every clone shares it. This is what
//! tower's `RateLimit` does not do: it is not `Clone`, and behind a `Buffer` on an axum router
//! each connection can end up with its own budget.
//!
//! # Ordering
//!
//! Place it inside [`RejectionResponseLayer`](crate::http::RejectionResponseLayer) and inside
//! the request-id and timeout layers, so its 429s carry the request id and are counted by
//! the outer layers, and before the handler.
//!
//! # Cancellation
//!
//! An admitted request's token stays spent if its future is dropped. A waiting request
//! (wait mode) that is dropped gives its reservation back when no later reservation was made
//! after it, otherwise the slot stays spent: the limiter may under-admit, never over-admit.
//!
//! # Tracing
//!
//! DEBUG `request rate limited` per refusal (`rate_limit.policy`, `rate_limit.key_hash`,
//! `rate_limit.retry_after_ms`, `rate_limit.shadow`); INFO `rate limiter started rejecting`
//! and `rate limiter stopped rejecting` once per episode (it ends after a quiet period of
//! one `period`, at least 1 s); WARN once if a request has no key.
//!
//! # Differences from `tower::limit::RateLimit`
//!
//! tower's limiter is a fixed window that makes `poll_ready` wait, is not `Clone` (so axum
//! needs a `Buffer`), and reports nothing to the client. This one decides in `call`, is
//! `Clone` with shared state, refuses with a typed 429 and `Retry-After`, can be keyed and
//! weighted, and waits only in the opt-in wait mode.

mod config;
mod gcra;
mod headers;
mod key;
mod layer;
mod limiter;
mod service;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod shared;
mod store;
mod wait;

pub mod future;

pub use crate::key::{ClientIp, ForwardedHeader, HeaderKey, PeerIp};
#[cfg(feature = "redis")]
pub use config::Shared;
pub use config::{RateLimitBuilder, Refusing, Waiting};
pub use gcra::Quota;
pub use headers::{NoHeaders, RateLimitHeaders, ResponseHeaders, WithPolicy};
pub use key::{Global, KeyFn, Partition, PerKey, WithCost, WithQuota};
pub use layer::{PerKeyRateLimitLayer, RateLimitLayer};
pub use limiter::MissingKey;
pub use service::RateLimit;
#[cfg(feature = "redis")]
pub use shared::{
    OnStoreFailure, RedisStore, RedisStoreBuilder, SharedFuture, SharedPartition, SharedRateLimit,
    SharedRateLimitLayer, StableKey,
};
pub use wait::{WaitFuture, WaitingRateLimit, WaitingRateLimitLayer};
