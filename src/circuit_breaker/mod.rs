//! Circuit breaker: stop calling a dependency that keeps failing, and probe it back to health.
//!
//! [`CircuitBreakerLayer`] watches the outcome of every call. While calls succeed it stays
//! closed; when a trip policy fires it opens and rejects calls at once, without touching the
//! dependency; after the open time it lets a fixed number of probes through and closes again
//! if they all succeed. Put it on the client side of a dependency (one breaker per upstream
//! host with [`UpstreamHost`]), or on a server route that calls a fragile backend.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_rampart::circuit_breaker::CircuitBreakerLayer;
//! use tower_rampart::ServiceBuilderExt;
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("ledger")
//!     .failure_threshold(5)                 // 5 failures (5xx or errors) in a row...
//!     .failure_rate(50.0)                   // ...or half of the last 100 calls
//!     .open_for(Duration::from_secs(10))    // then reject for 10 s, 20 s, 40 s... up to 5 min
//!     .build()?;
//! let health = breaker.handle();            // for a /health endpoint or metrics
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "home" }))
//!     // Only the route that calls the ledger: the other routes never see its 503s.
//!     .route("/pay", get(|| async { "paid" }).layer(ServiceBuilder::new().rejection_response().layer(breaker)));
//! assert_eq!(health.state().as_str(), "closed");
//! # let _ = app;
//! # Ok::<(), tower_rampart::ConfigError>(())
//! ```
//!
//! # Where it goes
//!
//! On what calls one dependency: an outbound client stack (keyed per host with
//! [`UpstreamHost`]) or the one route that calls it. **Not around a whole app:** the breaker
//! cannot tell which route failed, so five 500s from one buggy handler would turn every
//! route into 503 for the open time (30 s by default, then 60 s, ...), a self-inflicted
//! outage.
//!
//! # States
//!
//! ```text
//!                 trip policy fires                  open time over: the next call
//!   ┌────────┐  (consecutive failures, ┌──────┐     becomes the first probe       ┌───────────┐
//!   │ Closed │─ failure rate, slow ───►│ Open │──────────────────────────────────►│ Half-open │
//!   └────────┘  call rate)             └──────┘                                   └───────────┘
//!       ▲                                  ▲   a probe fails, is slow, or the          │
//!       │                                  └── probes outlive probe_timeout ◄──────────┤
//!       │                                      (open time × backoff, + jitter)         │
//!       └──────────────────────────────────────────────────────────────────────────────┘
//!                          all `half_open_probes` probes succeed (backoff reset)
//!
//!   Through the handle, from any state:  force_open() ──► ForcedOpen (rejects everything)
//!                                        force_closed() ─► Disabled (passes and counts)
//!                                        reset() ────────► Closed (windows cleared)
//! ```
//!
//! Open → half-open happens on the first call after the open time: there is no timer and no
//! background task. Every transition is one compare-and-swap on one atomic word, so exactly
//! one thread makes it; it emits one tracing event (WARN `"circuit opened"`, INFO
//! `"circuit half-open"`, INFO `"circuit closed"`) and calls the `on_state_change` callback.
//!
//! # A worked timeline
//!
//! Defaults (`failure_threshold(5)`, `open_for(30 s)`, `backoff(2)`, 1 probe):
//!
//! | time | event | state | the caller gets |
//! |---|---|---|---|
//! | 0–2 s | 5 calls answer 503 | closed → **open** at the 5th | the 503s |
//! | 12 s | a call | open | `CircuitOpen`, retry after 18 s (HTTP: 503, `Retry-After: 18`) |
//! | 32 s | a call | **half-open**: it is the probe | the upstream's answer |
//! | 32.1 s | another call while the probe runs | half-open | `CircuitOpen` |
//! | 32.5 s | the probe answers 503 | **open** for 60 s (backoff) | the 503 |
//! | 92.5 s | a call, answers 200 | half-open → **closed** | the 200; backoff back to 30 s |
//!
//! # Trip policies
//!
//! Any combination; each is checked after a failure (or slow call), never after a success.
//!
//! - **Consecutive failures** ([`failure_threshold`](CircuitBreakerBuilder::failure_threshold),
//!   default 5): a success resets the run.
//! - **Failure rate** ([`failure_rate`](CircuitBreakerBuilder::failure_rate)) and **slow-call
//!   rate** ([`slow_call_rate`](CircuitBreakerBuilder::slow_call_rate)) over a window: the last
//!   N calls ([`count_window`](CircuitBreakerBuilder::count_window), a true ring, default 100)
//!   or the last T of time in buckets ([`time_window`](CircuitBreakerBuilder::time_window)).
//!   Nothing trips before [`minimum_calls`](CircuitBreakerBuilder::minimum_calls) (default 20)
//!   are in the window.
//!
//! What counts as a failure is up to the [`Classify`] in use: [`HttpClassifier`] by default
//! (5xx and transport errors fail, 4xx succeed, 429 is ignored; gRPC answers by their
//! `grpc-status`, read from the headers or the trailers).
//!
//! # Sharing
//!
//! One breaker per layer value, built by `build()`, shared by every clone and every
//! `Layer::layer` call (every route, every connection). [`CircuitBreakerLayer::handle`] reads
//! and controls that same breaker. A keyed layer ([`with_key`](CircuitBreakerBuilder::with_key))
//! shares one bounded registry of breakers instead.
//!
//! # Ordering
//!
//! Put [`RejectionResponseLayer`](crate::http::RejectionResponseLayer) (or
//! `ServiceBuilderExt::rejection_response`) outside the breaker so that axum gets a 503 rather
//! than an error. On a client stack, put the breaker outside a per-attempt timeout, so that
//! timeouts count as failures, and inside any retry layer, so that retries see the
//! rejection.
//!
//! # Cancellation
//!
//! A call whose future is dropped before it completes (client gone, a fan-out part no longer
//! needed, an outer timeout) is neutral: it counts as neither success nor failure, and a
//! half-open probe slot it held is given back. A probe that never completes and is never
//! dropped is covered by [`probe_timeout`](CircuitBreakerBuilder::probe_timeout).
//!
//! # Cost
//!
//! The closed path takes no lock and allocates nothing. With the default policy it reads the
//! clock never, writes one per-thread counter and touches the shared state only to read it;
//! count windows add one shared `fetch_add` and one byte swap, time windows one CAS on a
//! per-thread bucket. Slow-call detection reads the clock when a call starts and when it
//! ends. Each call's future holds a reference to one of the breaker's per-thread lanes, so
//! threads do not contend on one reference count.
//!
//! # Differences from other breakers
//!
//! - failsafe takes a mutex per call and lets every call through in half-open; this breaker
//!   takes none and admits exactly `half_open_probes`.
//! - tower-resilience locks a tokio mutex twice and boxes the future on every call; its
//!   count window accumulates. Here the window is a ring and nothing is boxed.
//! - Resilience4j's `automaticTransitionFromOpenToHalfOpen` uses a timer thread; here the
//!   transition is made by the next call.

mod body;
mod breaker;
mod classify;
mod config;
mod events;
mod fallback;
mod layer;
mod service;
mod state;
mod transition;
mod window;

pub mod future;

pub use crate::key::KeyFn;
pub use crate::key::UpstreamHost;
pub use body::ClassifiedBody;
pub use breaker::{PerKey, Select, Single};
pub use classify::{Classify, ErrorsFail, HttpClassifier, Outcome};
pub use config::CircuitBreakerBuilder;
pub use events::Transition;
pub use fallback::{Fallback, FallbackFn, FallbackService, Oneshot, Reject};
pub use future::Pending;
pub use layer::{CircuitBreakerHandle, CircuitBreakerLayer, PerKeyCircuitBreakerLayer};
pub use service::CircuitBreaker;
pub use state::{CircuitState, Counts};
