//! Request IDs: accept a valid incoming id or generate one, record it, echo it, carry it on.
//!
//! [`SetRequestIdLayer`] reads `x-request-id` (configurable) and keeps it only if it is 1 to
//! 128 bytes of letters, digits and `-_.:~` ([`Rules`]); otherwise it generates one
//! ([`UuidV7`] by default, see [`MakeRequestId`] for the others and their cost) and emits a
//! DEBUG event with the rejected value's length, never the value. The id goes into the
//! request header, the [request context](crate::context) ([`RequestId::current`], or the
//! `RequestId` extractor with the `axum` feature), the request's extensions if asked for
//! ([`SetRequestIdLayer::request_extension`]), a
//! `request` span with a `request_id` field around the inner call (so every event inside
//! carries it), and every response. [`PropagateRequestIdLayer`] sets it on outgoing calls;
//! [`context::spawn`](crate::context::spawn) carries it into spawned tasks.
//!
//! # Ordering
//!
//! Place it outermost: outside [`RejectionResponseLayer`](crate::http::RejectionResponseLayer),
//! so that the 429, 503, 504 and 502 answers of the other layers carry the id too, and
//! outside tower-http's `TraceLayer`, so that its span is a child of the `request` span and
//! its events carry `request_id`.
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(SetRequestIdLayer::new())     // 1. id, span, context, echo
//!     .layer(TraceLayer::new_for_http())   // 2. the app's trace span, inside ours
//!     .rejection_response()                // 3. rejections become responses (echoed by 1)
//!     .deadline(..).layer(..)       // 4. the other rampart layers
//! ```
//!
//! # Sharing
//!
//! The layers hold configuration only. The [`Counter`] generator's sequence is shared by the
//! whole process.

pub mod future;
mod layer;
mod make;
mod propagate;
mod service;
mod traceparent;

pub use crate::context::{MAX_LEN, RequestId, Rules};
pub use future::ResponseFuture;
pub use layer::SetRequestIdLayer;
pub use make::{Counter, MakeRequestId, UuidV4, UuidV7};
pub use propagate::{PropagateRequestId, PropagateRequestIdLayer};
pub use service::SetRequestId;
