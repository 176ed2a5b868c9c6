//! Circuit breaker: stop calling a dependency that keeps failing, and probe it back to health.
//!
//! This module will hold `CircuitBreakerLayer`, built with `CircuitBreakerLayer::builder()`
//! and validated by `build()`. The breaker is closed while calls succeed; a trip policy
//! (consecutive failures, failure rate over a count or time window, slow-call rate) opens it;
//! after the open time it admits exactly `half_open_probes` calls, closing again if they
//! succeed. While open it rejects at once with
//! [`Rejection::CircuitOpen`](crate::Rejection::CircuitOpen), which HTTP users see as
//! `503 Service Unavailable` with `Retry-After` set to the remaining open time.
//!
//! # Sharing
//!
//! One breaker state per layer value, built by `build()`, shared by every clone and every
//! `Layer::layer` call.
//!
//! # Cancellation
//!
//! A call whose future is dropped before it completes is neutral: neither success nor
//! failure, and a half-open probe slot it held is returned.

mod breaker;
mod classify;
mod config;
mod fallback;
mod layer;
mod service;
mod state;
mod window;

pub mod future;

pub use crate::key::KeyFn;
pub use breaker::{Keyed, Select, Single, UpstreamHost};
pub use classify::{Classify, ErrorsFail, HttpClassifier, Outcome};
pub use config::{ByKey, CircuitBreakerBuilder};
pub use fallback::{Fallback, FallbackFn, FallbackService, Oneshot, Reject};
pub use layer::{CircuitBreakerHandle, CircuitBreakerLayer};
pub use service::CircuitBreaker;
pub use state::{CircuitState, Metrics, Transition};
