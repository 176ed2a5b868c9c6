//! Graceful-degradation fan-out: call several services at once and answer with what arrived.
//!
//! A [`FanOut`] is a list of named [`Part`]s, each a Tower service with a mapping from the
//! incoming request to its own, marked essential or optional, with its own timeout and an
//! optional [`PartFallback`] value. [`FanOut::call`] starts them all and joins them in place, in
//! the caller's task (no `tokio::spawn`, no boxing), under an overall deadline that is
//! clamped to the request's [`Deadline`](crate::timeout::Deadline) when one is in scope;
//! each part's timeout is clamped to what remains of it.
//!
//! The answer is an [`Answers`]: each part's typed [`PartResult`] (`Ok`, `Fallback`,
//! `TimedOut`, `Rejected` when its circuit breaker or rate limiter failed it fast, `Failed`),
//! and a report per part, readable by name, with the list of degraded parts. An essential
//! part that fails (with no fallback) ends the fan-out at once with
//! `Rejection::PartFailed`, `502 Bad Gateway` over HTTP,
//! naming the part; when there is no essential part and no part answered, the caller gets
//! the first part's error the same way rather than an empty success.
//!
//! The product page of a shop: the core data is essential, reviews and related products are
//! optional, with 300 ms each, all under a 1 s cap.
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use axum::{Router, body::Body, extract::Path, routing::get};
//! use tower::ServiceExt;
//! use tower_rampart::{Rejection, fan_out::{FanOut, Part}};
//!
//! let core = tower::service_fn(|id: u64| async move {
//!     Ok::<_, std::convert::Infallible>(format!(r#"{{"id":{id},"name":"kettle"}}"#))
//! });
//! let reviews = tower::service_fn(|_: u64| async {
//!     tokio::time::sleep(Duration::from_secs(2)).await; // far too slow
//!     Ok::<_, std::convert::Infallible>(r#"["great"]"#.to_string())
//! });
//! let related = tower::service_fn(|_: u64| async {
//!     Ok::<_, std::convert::Infallible>("[3,9]".to_string())
//! });
//!
//! let page = FanOut::builder(Duration::from_secs(1))
//!     .part(Part::essential("core", core))
//!     .part(Part::optional("reviews", reviews).timeout(Duration::from_millis(300)))
//!     .part(Part::optional("related", related).timeout(Duration::from_millis(300)))
//!     .build()
//!     .unwrap();
//!
//! let app: Router = Router::new().route(
//!     "/product/{id}",
//!     get(move |Path(id): Path<u64>| {
//!         let page = page.clone();
//!         async move {
//!             let outcome = page.call(&id).await?; // a 502 naming `core` if it fails
//!             let (core, reviews, related) = outcome.parts();
//!             let mut fields = vec![("product", core.value().unwrap().as_str())];
//!             fields.extend(reviews.value().map(|r| ("reviews", r.as_str())));
//!             fields.extend(related.value().map(|r| ("related", r.as_str())));
//!             Ok::<_, Rejection>(outcome.json_response::<Body>(&fields))
//!         }
//!     }),
//! );
//!
//! let started = tokio::time::Instant::now();
//! let request = http::Request::get("/product/7").body(Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(started.elapsed(), Duration::from_millis(300)); // the reviews' budget, not 2 s
//! assert_eq!(response.headers()["x-degraded"], "reviews");
//! let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//! assert_eq!(
//!     body,
//!     r#"{"product":{"id":7,"name":"kettle"},"related":[3,9],"degraded":["reviews"]}"#
//! );
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! # Cancellation
//!
//! Parts still running when the outcome is decided are dropped at once: when an essential
//! part fails, the others are dropped inside the same poll. A dropped part is neutral to a
//! [circuit breaker](crate::circuit_breaker) around it: it counts neither as a success nor
//! as a failure.
//!
//! # Context
//!
//! Each part is polled with its own deadline in the [request context](crate::context) (the
//! earlier of its timeout and the overall deadline), so a
//! [`PropagateDeadlineLayer`](crate::timeout::PropagateDeadlineLayer) in its stack sends the
//! part's budget, not the request's. The request id in scope stays visible. Each part runs
//! in a DEBUG `fan_out.part` span with `part` and `essential` fields, and each degraded
//! part emits a DEBUG event.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use crate::{ConfigError, Rejection, context};

mod join;
mod outcome;
mod part;

// The joined futures and the part tuple's machinery appear in `FanOut`'s signatures but are
// not for naming: they are left unexported.
use join::PartList;
pub use join::Parts;
#[cfg(feature = "http")]
pub use outcome::DEGRADED;
pub use outcome::{Answers, MAX_PARTS, PartReport, PartResult, Status};
pub use part::{Cloned, MapRequest, NoFallback, Part, PartFallback};

/// Calls its [`Part`]s concurrently and answers with what arrived. Cheap to clone (it
/// clones its parts' services); `call` takes `&self`, so one `FanOut` in an axum state
/// serves every request.
///
/// Built by [`FanOut::builder`]; see the [module docs](self) for the product-page example.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::fan_out::{FanOut, Part};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let double = tower::service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) });
/// let square = tower::service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * n) });
/// let fan = FanOut::builder(Duration::from_secs(1))
///     .part(Part::essential("double", double))
///     .part(Part::optional("square", square))
///     .build()
///     .unwrap();
/// let (d, s) = fan.call(&5).await.unwrap().into_parts();
/// assert_eq!((d.into_value(), s.into_value()), (Some(10), Some(25)));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct FanOut<P> {
    overall: Duration,
    parts: P,
}

impl FanOut<()> {
    /// A builder for a fan-out whose parts all finish within `overall` (or the request's
    /// deadline, if that comes first).
    ///
    /// See [`FanOut`] for an example.
    pub fn builder(overall: Duration) -> FanOutBuilder<()> {
        FanOutBuilder { overall, parts: () }
    }
}

impl<P> FanOut<P> {
    /// Starts every part for `req` and joins them. Reads the clock once, and the request's
    /// deadline from the context in scope *when it is called* (as it is in a handler behind a
    /// [`TimeoutLayer`](crate::timeout::TimeoutLayer)); no part is polled before the returned
    /// future is.
    ///
    /// See [`FanOut`] for an example.
    pub fn call<Req>(&self, req: &Req) -> P::Future
    where
        P: Parts<Req>,
    {
        let now = Instant::now();
        let mut overall = self.overall;
        if let Some(request) = context::current_deadline() {
            overall = overall.min(request.instant().saturating_duration_since(now));
        }
        join::private::Parts::start(&self.parts, req, now, overall)
    }
}

/// A `FanOut` is a service too (always ready), for use in a Tower stack.
impl<P, Req> Service<Req> for FanOut<P>
where
    P: Parts<Req>,
{
    type Response = Answers<P::Output>;
    type Error = Rejection;
    type Future = P::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        FanOut::call(self, &req)
    }
}

/// Builds a [`FanOut`], part by part; [`build`](Self::build) checks the whole.
///
/// See [`FanOut`] for an example.
#[derive(Clone, Debug)]
pub struct FanOutBuilder<P> {
    overall: Duration,
    parts: P,
}

impl<P: PartList> FanOutBuilder<P> {
    /// Adds `part` (at most [`MAX_PARTS`]); results come back in the order parts are added.
    ///
    /// See [`FanOut`] for an example.
    pub fn part<S, M, F>(
        self,
        part: Part<S, M, F>,
    ) -> FanOutBuilder<<P as join::private::PartList>::With<Part<S, M, F>>> {
        FanOutBuilder {
            overall: self.overall,
            parts: join::private::PartList::with(self.parts, part),
        }
    }

    /// The fan-out.
    ///
    /// # Errors
    /// A [`ConfigError`] if there is no part, if the overall limit or a part's timeout is
    /// zero, or if two parts share a name or a name is empty.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::fan_out::{FanOut, Part};
    ///
    /// let svc = tower::service_fn(|_: ()| async { Ok::<_, std::convert::Infallible>(()) });
    /// let twice = FanOut::builder(Duration::from_secs(1))
    ///     .part(Part::essential("a", svc))
    ///     .part(Part::optional("a", svc));
    /// let err = twice.build().unwrap_err();
    /// assert_eq!((err.field(), err.part()), ("part", Some("a")));
    /// let instant = FanOut::builder(Duration::ZERO).part(Part::essential("a", svc));
    /// assert_eq!(instant.build().unwrap_err().field(), "overall");
    /// ```
    pub fn build(self) -> Result<FanOut<P>, ConfigError> {
        if self.overall.is_zero() {
            return Err(ConfigError::new("overall", "must be more than zero"));
        }
        let parts = join::private::PartList::describe(&self.parts);
        if parts.is_empty() {
            return Err(ConfigError::new(
                "part",
                "a fan-out needs at least one part",
            ));
        }
        let mut names = HashSet::new();
        for (name, timeout) in parts {
            let named = |err: ConfigError| err.of_part(std::borrow::Cow::Borrowed(name));
            if name.is_empty() {
                return Err(ConfigError::new("part", "part names must be non-empty"));
            }
            if !names.insert(name) {
                return Err(named(ConfigError::new(
                    "part",
                    "part names must be distinct",
                )));
            }
            if timeout.is_some_and(|t| t.is_zero()) {
                return Err(named(ConfigError::new("timeout", "must be more than zero")));
            }
        }
        Ok(FanOut {
            overall: self.overall,
            parts: self.parts,
        })
    }
}
