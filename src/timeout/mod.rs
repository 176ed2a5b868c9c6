//! Timeout with deadline propagation: one budget from the edge to the last downstream call.
//!
//! [`TimeoutLayer`] gives each request a deadline: the earliest of its configured limit, the
//! budget its caller sent (`grpc-timeout`, or whole milliseconds in `x-request-timeout-ms`),
//! and any deadline already in scope. The [`Deadline`] goes into the
//! [request context](crate::context) around the inner call, so handler code can ask how much
//! time is left ([`Deadline::current`], or the `Deadline` extractor with the `axum` feature),
//! and, if asked for ([`TimeoutLayer::request_extension`]), into the request's extensions. [`PropagateDeadlineLayer`], on the client stack, sends what remains to the next
//! service and holds the outbound call to it. When a deadline passes, the caller gets
//! [`Rejection::TimedOut`](crate::Rejection::TimedOut): `504 Gateway Timeout` over HTTP.
//!
//! ```text
//!  client ──► edge (TimeoutLayer 300 ms) ──► handler ──► PropagateDeadlineLayer ──► service B (TimeoutLayer 2 s)
//!              deadline = now + 300 ms         │          x-request-timeout-ms: 240   deadline = min(2 s, 240 ms)
//!                                              │          grpc-timeout: 240000u       │
//!              504 at 300 ms if B is slow ◄────┴── local timer: 240 ms ◄──────────────┘ 504 at 240 ms
//! ```
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower::ServiceBuilder;
//! use tower_rampart::{ServiceBuilderExt, timeout::{Deadline, TimeoutLayer}};
//!
//! async fn handler() -> String {
//!     let left = Deadline::current().map(|d| d.remaining()).unwrap_or_default();
//!     format!("{} ms left", left.as_millis())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     .layer(ServiceBuilder::new().rejection_response().layer(TimeoutLayer::new(Duration::from_secs(2))?));
//! # let _ = app;
//! # Ok::<(), tower_rampart::ConfigError>(())
//! ```
//!
//! # What is covered
//!
//! From `call` until the inner service returns its response (for HTTP, the response head).
//! Streaming the body afterwards is not covered: bound it with a body timeout (for example
//! `tower_http::timeout::ResponseBodyTimeoutLayer`) or with the deadline itself inside the
//! handler. The inner future is polled before the timer, so a response that is ready wins
//! even at the deadline, and a call that answers on its first poll never arms a timer.
//!
//! # Inbound budgets
//!
//! `grpc-timeout` is read in its exact format: 1 to 8 ASCII digits and a unit (`H`, `M`,
//! `S`, `m`, `u`, `n`). The plain header holds 1 to 10 ASCII digits of milliseconds. Anything
//! else is ignored with a DEBUG event, never a 400. A caller's budget can only shorten the
//! configured limit, never extend it; a budget of 0 fails at once without calling the
//! handler. [`TimeoutLayer::ignore_inbound`] turns this off (and accepts any request type).
//!
//! # Sharing
//!
//! The layers hold configuration only; every deadline belongs to its request.
//!
//! # Ordering
//!
//! Put `TimeoutLayer` outside the rate limiter and the handler, inside the request-id layer
//! and [`RejectionResponseLayer`](crate::http::RejectionResponseLayer). Nested timeout layers
//! compose: the earliest deadline wins.
//!
//! # Cancellation
//!
//! On expiry the call fails and the inner future is dropped with the response future, which
//! cancels everything it was awaiting (outbound calls included). Work spawned with
//! `tokio::spawn` is not cancelled and leaves the context; use
//! [`context::spawn`](crate::context::spawn) to carry the deadline into it.
//!
//! # Differences from tower and tower-http
//!
//! tower's `Timeout` arms a timer on every call and returns a `BoxError` that axum needs a
//! `HandleErrorLayer` for; tower-http's answers `408 Request Timeout`, which browsers treat as
//! the connection being closed. Neither reads a caller's budget nor passes one on.

pub mod future;
mod inbound;
mod layer;
mod propagate;
mod service;

pub use crate::context::Deadline;
pub use layer::{HttpInbound, Inbound, Limit, NoInbound, TimeoutLayer};
pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};
pub use service::Timeout;
