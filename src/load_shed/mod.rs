//! Load shedding: refuse what a service cannot take now, at once, instead of queueing it.
//!
//! A rate limit caps what one client may ask; it does not protect a service whose capacity
//! drops (a slow database, a noisy neighbour, a deploy). Then requests queue, latency climbs
//! past every caller's deadline, and goodput collapses while the CPU is busy. A
//! [`LoadShedLayer`] holds the service to a number of requests in flight and answers the
//! rest [`Rejection::Overloaded`](crate::Rejection::Overloaded) (503 with `Retry-After`,
//! gRPC `UNAVAILABLE` with `grpc-retry-pushback-ms`) without calling it.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_rampart::{ServiceBuilderExt, load_shed::{HeaderPriority, LoadShedLayer}};
//!
//! let shed = LoadShedLayer::builder()
//!     .name("work")
//!     .max_in_flight(32)
//!     .critical_share(0.2) // 6 of the 32 slots are for critical requests only
//!     .prioritize(HeaderPriority::new(http::HeaderName::from_static("x-priority")))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/work", get(|| async { "done" }))
//!     .layer(ServiceBuilder::new().rejection_response().layer(shed));
//! # let _ = app;
//! # Ok::<(), tower_rampart::ConfigError>(())
//! ```
//!
//! [`AdaptiveLimit`] moves the limit with the load (it finds the capacity, follows it when
//! it drops, and refuses calls whose deadline is too near to be met);
//! [`AdaptiveThrottleLayer`] is its client-side companion, refusing locally when the
//! service called keeps refusing.
//!
//! # Compared with tower's `ConcurrencyLimit` and `LoadShed`
//!
//! tower's `ConcurrencyLimit` waits in `poll_ready` for a slot (queueing, which is what
//! overload must not do) and frees it when the response head is ready, so a streamed body
//! is not counted; its `LoadShed` refuses only when the inner service is not ready. Here
//! the decision is one compare-and-swap in `call`, the slot is held until the response body
//! ends (or the call is dropped), and priorities decide who is refused first.
//!
//! # Priorities
//!
//! With a limit `L` and the default shares, a critical request is admitted while fewer than
//! `L` are in flight, a normal one while fewer than `L − ⌈0.1·L⌉`, a sheddable one while fewer
//! than half of that; each cap is at least 1. So under overload sheddable requests go first,
//! and a share of the limit stays free for critical ones.
//!
//! # Where it goes
//!
//! Outside the handlers it protects and inside the response mapping, as in the example; on a
//! route or a group of routes that share one scarce resource (the database pool behind
//! them), not necessarily around a whole app. Put per-client rate limits outside it, so that
//! one client's flood is refused as rate limited before it takes slots.
//!
//! # Sharing
//!
//! One limit per built layer, shared by every clone and every `Layer::layer` call.

mod adaptive;
mod limit;
mod mode;
mod queue;
mod service;
mod throttle;

pub use adaptive::AdaptiveLimit;
pub use limit::Priority;
pub use mode::{Adaptive, Fixed, Mode};
pub use queue::{QueueFuture, QueueingLoadShed, QueueingLoadShedLayer};
pub use service::{
    AllNormal, HeaderPriority, LoadShed, LoadShedBuilder, LoadShedLayer, PermitBody, Prioritize,
    ResponseFuture,
};
pub use throttle::{
    AdaptiveThrottle, AdaptiveThrottleBuilder, AdaptiveThrottleLayer, ThrottleFuture,
};
