//! Graceful-degradation fan-out: call several services at once and answer with what arrived.
//!
//! This module will hold a builder of named parts, each a Tower service with its own
//! timeout, marked essential or optional, run concurrently in the caller's task under an
//! overall deadline (clamped to the propagated request deadline). The outcome is a typed
//! partial result; an essential part failing cancels the rest and yields
//! [`Rejection::PartFailed`](crate::Rejection::PartFailed), `502 Bad Gateway` over HTTP.
//!
//! # Cancellation
//!
//! Parts still running when the outcome is decided are dropped at once; a dropped part is
//! neutral to any circuit breaker around it.
