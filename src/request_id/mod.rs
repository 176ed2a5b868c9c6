//! Request IDs: accept a valid incoming id or generate one, record it, echo it, carry it on.
//!
//! This module will hold the server layer that reads `x-request-id` (configurable), keeps
//! it only if it is 1 to 128 bytes of a safe charset, otherwise generates one (UUID v7 by
//! default), stores it in the request's extensions and the request context, records it on
//! the current span as `request_id`, and echoes it on every response, rejections included.
//! Its client layer sets the header on outgoing requests from the request context.
//!
//! # Ordering
//!
//! Place it outermost: before (outside) the application's trace layer, so the span sees
//! the id, and outside every layer that can reject, so their responses carry it too.
