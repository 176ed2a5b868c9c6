//! Composable [Tower] layers that keep axum and hyper services alive when their dependencies
//! are not: a **circuit breaker**, a **token-bucket rate limiter**, a **timeout with deadline
//! propagation**, a **graceful-degradation fan-out** and **request-ID propagation**.
//!
//! Every layer decides in `call` (never hoarding capacity in `poll_ready`), shares one state
//! across all its clones, needs no `Buffer`, allocates nothing on its admitted path, and
//! reports refusals as one [`Rejection`] value that [`http::RejectionResponseLayer`] turns into
//! the same status, headers and body everywhere, so an axum `Router` needs no hand-written
//! `HandleErrorLayer`.
//!
//! # Quick start
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::{get, post}};
//! use tower::ServiceBuilder;
//! use tower_rampart::ServiceBuilderExt;
//! use tower_rampart::circuit_breaker::CircuitBreakerLayer;
//! use tower_rampart::key::PeerIp;
//! use tower_rampart::rate_limit::RateLimitLayer;
//! use tower_rampart::request_id::SetRequestIdLayer;
//! use tower_rampart::timeout::TimeoutLayer;
//!
//! # async fn pay() -> &'static str { "paid" }
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A breaker guards one dependency, never the whole app: here the route that calls it.
//! let payments = ServiceBuilder::new()
//!     .rejection_response()
//!     .circuit_breaker(CircuitBreakerLayer::builder().name("payments").build()?); // 5xx x5 -> 503
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/pay", post(pay).layer(payments))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(SetRequestIdLayer::new()) // outermost: x-request-id on every response
//!             .rejection_response() // rejections -> 429/503/504/502, stack is Infallible
//!             .deadline(TimeoutLayer::new(std::time::Duration::from_secs(2))?) // -> 504
//!             .token_bucket(RateLimitLayer::per_second(50).burst(20).with_key(PeerIp).build()?),
//!     );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // `PeerIp` needs `ConnectInfo`: plain `axum::serve(listener, app)` gives no peer address.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `circuit-breaker` | yes | [`circuit_breaker`], and [`key`] |
//! | `rate-limit` | yes | [`rate_limit`], and [`key`] |
//! | `timeout` | yes | [`timeout`] and the request [`context`] |
//! | `fan-out` | yes | [`fan_out`] (turns on `timeout`) |
//! | `request-id` | yes | [`request_id`] |
//! | `http` | yes | [`http`]: the rejection → response mapping and [`http::RejectionResponseLayer`] |
//! | `axum` | yes | `PeerIp` reading axum's `ConnectInfo`; `IntoResponse` for [`Rejection`]; the `Deadline` and `RequestId` extractors |
//! | `quanta` | no | `clock::QuantaClock`, time from the CPU's counter |
//! | `metrics` | no | [`metrics`]: every layer's series through the `metrics` facade |
//! | `full` | no | all of the above |
//!
//! # Rejections and HTTP statuses
//!
//! | rejection | status | headers |
//! |---|---|---|
//! | [`Rejection::RateLimited`] | 429 | `Retry-After` (seconds, rounded up, ≥ 1), `RateLimit-Policy`, `RateLimit` |
//! | [`Rejection::CircuitOpen`] | 503 | `Retry-After` (remaining open time), `Cache-Control: no-store` |
//! | [`Rejection::TimedOut`] | 504 | |
//! | [`Rejection::PartFailed`] | 502 | |
//! | any other error | 500 | none; the error is logged once, never sent |
//!
//! # Time
//!
//! Layers read time through a [`clock::Clock`]. The default follows tokio's clock, so
//! `#[tokio::test(start_paused = true)]` and `tokio::time::advance` drive every layer
//! deterministically.
//!
//! # MSRV
//!
//! Rust 1.85 (edition 2024).
//!
//! [Tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(any(feature = "timeout", feature = "request-id"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "timeout", feature = "request-id"))))]
pub mod context;
#[cfg(any(feature = "rate-limit", feature = "circuit-breaker"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "rate-limit", feature = "circuit-breaker")))
)]
pub mod key;
mod macros;
#[cfg(any(feature = "circuit-breaker", feature = "fan-out"))]
mod oneshot;
mod sync;
#[cfg(any(feature = "timeout", feature = "http"))]
mod untrusted;

pub mod builder;
pub mod clock;
pub mod error;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub mod metrics;

#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub mod circuit_breaker;
#[cfg(feature = "fan-out")]
#[cfg_attr(docsrs, doc(cfg(feature = "fan-out")))]
pub mod fan_out;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "request-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
pub mod request_id;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub mod timeout;

pub use builder::ServiceBuilderExt;
pub use error::{BoxError, ConfigError, Rejection, RejectionKind};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
