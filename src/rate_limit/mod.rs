//! Token-bucket rate limiting that holds on a real axum `Router`.
//!
//! This module will hold `RateLimitLayer`: a bucket of `burst` tokens refilled at `rate`
//! per period, decided by GCRA on one atomic word, shared by every clone and every route.
//! A request without capacity is refused at once with
//! [`Rejection::RateLimited`](crate::Rejection::RateLimited), `429 Too Many Requests` with
//! `Retry-After` and the `RateLimit` header fields over HTTP.
//!
//! # Sharing
//!
//! One limit per layer value, built by `build()`, shared by every clone and every
//! `Layer::layer` call.
