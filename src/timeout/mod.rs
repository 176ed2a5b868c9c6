//! Timeout with deadline propagation: one budget from the edge to the last downstream call.
//!
//! This module will hold the server-side timeout layer and its client-side propagation
//! layer. The effective deadline of a request is the earlier of the configured limit and the
//! budget the caller sent (`grpc-timeout`, or a plain milliseconds header). The deadline is
//! stored in the request's extensions and in the request context, and outgoing calls send
//! what remains of it. When it passes, the inner future is dropped and the caller gets
//! [`Rejection::TimedOut`](crate::Rejection::TimedOut), `504 Gateway Timeout` over HTTP.
//!
//! # Cancellation
//!
//! On expiry the inner future is dropped, which cancels everything it was awaiting. The
//! inner future is polled before the timer, so a response that is ready wins.
