//! Composable [Tower] layers that keep axum, hyper and tonic services alive when their
//! dependencies are not: a **circuit breaker**, a **token-bucket rate limiter**, a **timeout
//! with deadline propagation**, a **graceful-degradation fan-out** and **request-ID
//! propagation**.
//!
//! Every layer decides in `call` (never hoarding capacity in `poll_ready`), shares one state
//! across all its clones, needs no `Buffer`, allocates nothing on its admitted path, and
//! reports refusals as one [`Rejection`] value that [`http::RejectionResponseLayer`] turns into
//! the same status, headers and body everywhere, so an axum `Router` needs no hand-written
//! `HandleErrorLayer`.
//!
#![cfg_attr(
    all(
        feature = "circuit-breaker",
        feature = "rate-limit",
        feature = "timeout",
        feature = "request-id",
        feature = "axum"
    ),
    doc = include_str!("../docs/quick-start.md")
)]
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
//! | `load-shed` | no | [`load_shed`]: a concurrency limit that refuses instead of queueing, with priorities |
//! | `grpc` | no | tonic integration: `tonic::Status` for every [`Rejection`], tonic's body in rejection responses, gRPC code overrides (the gRPC refusals themselves need only `http`: see [`grpc`]) |
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
//! | [`Rejection::Overloaded`] | 503 | `Retry-After` |
//! | any other error | 500 | none; the error is logged once, never sent |
//!
//! gRPC requests get gRPC answers instead (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`,
//! `DEADLINE_EXCEEDED`, `INTERNAL`): see [`grpc`].
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

#[cfg(any(feature = "circuit-breaker", feature = "load-shed"))]
mod answer;
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
pub mod grpc;
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
#[cfg(feature = "load-shed")]
#[cfg_attr(docsrs, doc(cfg(feature = "load-shed")))]
pub mod load_shed;
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
#[cfg(all(doctest, feature = "full"))]
pub struct ReadmeDoctests;
