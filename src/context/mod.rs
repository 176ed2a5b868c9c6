//! The request context: what travels with a request through the handler, its fan-out parts
//! and every outbound call, in a task-local scope.
//!
//! It carries the request's [`RequestId`], set by
//! [`SetRequestIdLayer`](crate::request_id::SetRequestIdLayer), and its
//! [`Deadline`], set by
//! [`TimeoutLayer`](crate::timeout::TimeoutLayer); the outbound layers
//! ([`PropagateRequestIdLayer`](crate::request_id::PropagateRequestIdLayer),
//! [`PropagateDeadlineLayer`](crate::timeout::PropagateDeadlineLayer)) read them. Work
//! moved to another task with `tokio::spawn` leaves the scope: carry it with [`spawn`].
//!
//! ```
//! # #[cfg(feature = "timeout")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use tower_rampart::{context, timeout::Deadline};
//!
//! let deadline = Deadline::after(Duration::from_secs(2));
//! let left = context::scope(context::Context::new().with_deadline(deadline), async {
//!     // Anywhere below, however deep: how much time is left?
//!     Deadline::current().map(|d| d.remaining())
//! })
//! .await;
//! assert_eq!(left, Some(Duration::from_secs(2)));
//! assert!(Deadline::current().is_none()); // outside the scope
//! # }
//! # #[cfg(not(feature = "timeout"))]
//! # fn main() {}
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{self, Poll};

#[cfg(feature = "timeout")]
mod deadline;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "request-id")]
mod request_id;

#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub use deadline::Deadline;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::NotInScope;
#[cfg(feature = "request-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
pub use request_id::{MAX_LEN, RequestId, Rules};

std::thread_local! {
    // What is in scope for the task being polled on this thread: one slot per value, so a
    // layer entering its scope swaps only its own slot (16 bytes for a deadline, 32 for an
    // id), whatever else the context holds.
    #[cfg(feature = "timeout")]
    static DEADLINE: Cell<Option<Deadline>> = const { Cell::new(None) };
    #[cfg(feature = "request-id")]
    static REQUEST_ID: Cell<Option<RequestId>> = const { Cell::new(None) };
}

/// The deadline in scope, read without touching anything else.
#[cfg(feature = "timeout")]
#[inline]
pub(crate) fn current_deadline() -> Option<Deadline> {
    DEADLINE.with(Cell::get)
}

/// The request id in scope (a reference-count increment, no copy of the id).
#[cfg(feature = "request-id")]
#[inline]
pub(crate) fn current_request_id() -> Option<RequestId> {
    REQUEST_ID.with(|slot| {
        let id = slot.take();
        let copy = id.clone();
        slot.set(id);
        copy
    })
}

/// What a [`Scoped`] future puts in scope while it is polled: a whole [`Context`], or the one
/// slot a layer sets (`Option<Deadline>`, `Option<RequestId>`). Sealed.
pub trait Slot: private::Slot {}

impl<T: private::Slot> Slot for T {}

mod private {
    pub trait Slot {
        /// Swaps this value with the one in scope on this thread. Entering a scope is one
        /// swap and leaving it another, so nothing is cloned on the way in or out.
        fn swap(&mut self);
    }
}

#[cfg(feature = "timeout")]
impl private::Slot for Option<Deadline> {
    #[inline]
    fn swap(&mut self) {
        DEADLINE.with(|slot| *self = slot.replace(*self));
    }
}

#[cfg(feature = "request-id")]
impl private::Slot for Option<RequestId> {
    #[inline]
    fn swap(&mut self) {
        REQUEST_ID.with(|slot| *self = slot.replace(self.take()));
    }
}

impl private::Slot for Context {
    #[inline]
    fn swap(&mut self) {
        #[cfg(feature = "timeout")]
        private::Slot::swap(&mut self.deadline);
        #[cfg(feature = "request-id")]
        private::Slot::swap(&mut self.request_id);
    }
}

/// Holds a value in scope for as long as it lives, then swaps back what was there (also
/// when the code in scope panics).
struct Entered<'a, V: Slot>(&'a mut V);

impl<'a, V: Slot> Entered<'a, V> {
    #[inline]
    fn new(value: &'a mut V) -> Self {
        value.swap();
        Self(value)
    }
}

impl<V: Slot> Drop for Entered<'_, V> {
    #[inline]
    fn drop(&mut self) {
        self.0.swap();
    }
}

/// The values in scope for one request: its deadline and its id. Cheap to clone (the id is
/// reference-counted).
///
/// ```
/// # #[cfg(feature = "timeout")]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use tower_rampart::{context::Context, timeout::Deadline};
///
/// let ctx = Context::new().with_deadline(Deadline::after(Duration::from_secs(1)));
/// assert!(ctx.deadline().is_some());
/// assert!(Context::new().deadline().is_none());
/// # }
/// # #[cfg(not(feature = "timeout"))]
/// # fn main() {}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    #[cfg(feature = "timeout")]
    deadline: Option<Deadline>,
    #[cfg(feature = "request-id")]
    request_id: Option<RequestId>,
}

impl Context {
    /// An empty context.
    ///
    /// See [`Context`] for an example.
    pub const fn new() -> Self {
        Self {
            #[cfg(feature = "timeout")]
            deadline: None,
            #[cfg(feature = "request-id")]
            request_id: None,
        }
    }

    /// The context in scope now, or an empty one outside any scope.
    ///
    /// ```
    /// # use tower_rampart::context::Context;
    /// assert_eq!(Context::current(), Context::new());
    /// ```
    #[inline]
    pub fn current() -> Self {
        Self {
            #[cfg(feature = "timeout")]
            deadline: current_deadline(),
            #[cfg(feature = "request-id")]
            request_id: current_request_id(),
        }
    }

    /// The request's id, if a [`SetRequestIdLayer`](crate::request_id::SetRequestIdLayer) set
    /// one.
    ///
    /// ```
    /// use tower_rampart::{context::Context, request_id::{MakeRequestId, UuidV7}};
    ///
    /// let id = UuidV7.make_request_id();
    /// assert_eq!(Context::new().with_request_id(id.clone()).request_id(), Some(&id));
    /// ```
    #[cfg(feature = "request-id")]
    #[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
    pub const fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// This context with `id` as the request id.
    ///
    /// See [`request_id`](Self::request_id) for an example.
    #[cfg(feature = "request-id")]
    #[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
    #[must_use]
    pub fn with_request_id(mut self, id: RequestId) -> Self {
        self.request_id = Some(id);
        self
    }

    /// The request's deadline, if it has one.
    ///
    /// See [`Context`] for an example.
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    pub const fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// This context with `deadline`, kept only if it is earlier than the one already set: an
    /// inner scope can shorten the budget, never extend it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::{context::Context, timeout::Deadline};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let short = Deadline::after(Duration::from_secs(1));
    /// let long = Deadline::after(Duration::from_secs(5));
    /// assert_eq!(Context::new().with_deadline(short).with_deadline(long).deadline(), Some(short));
    /// # }
    /// ```
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    #[must_use]
    pub fn with_deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(match self.deadline {
            Some(current) => current.min(deadline),
            None => deadline,
        });
        self
    }
}

/// Runs `fut` with `ctx` in scope: `ctx` is the current context while `fut` is being polled.
///
/// See the [module docs](self) for an example.
pub fn scope<F: Future>(ctx: Context, fut: F) -> Scoped<F> {
    Scoped {
        value: ctx,
        inner: fut,
    }
}

/// Runs `fut` with `value` in scope (one slot, for the timeout and the fan-out).
#[cfg(feature = "timeout")]
#[inline]
pub(crate) fn scoped<V: Slot, F>(value: V, fut: F) -> Scoped<F, V> {
    Scoped { value, inner: fut }
}

/// Puts `value` in scope until the guard is dropped (for the synchronous part of a call);
/// `value` is back in place then. A guard rather than a closure, so that the request is not
/// moved once more on its way to the inner service.
#[inline]
pub(crate) fn enter<V: Slot>(value: &mut V) -> impl Drop + '_ {
    Entered::new(value)
}

pin_project_lite::pin_project! {
    /// A future polled with a value in scope: a whole [`Context`] (made by [`scope`]) or the
    /// one [`Slot`] a layer sets.
    pub struct Scoped<F, V = Context> {
        value: V,
        #[pin]
        inner: F,
    }
}

impl<F, V: fmt::Debug> fmt::Debug for Scoped<F, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

impl<F: Future, V: Slot> Future for Scoped<F, V> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = Entered::new(this.value);
        this.inner.poll(cx)
    }
}

/// Spawns `fut` on the current runtime with the current context carried over, so that the
/// spawned work keeps the request's deadline and id.
///
/// # Panics
/// Outside a tokio runtime, like `tokio::spawn`.
///
/// ```
/// # #[cfg(feature = "timeout")]
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use tower_rampart::{context, timeout::Deadline};
///
/// let ctx = context::Context::new().with_deadline(Deadline::after(Duration::from_secs(3)));
/// let seen = context::scope(ctx, async {
///     context::spawn(async { Deadline::current().is_some() }).await.unwrap()
/// })
/// .await;
/// assert!(seen);
/// # }
/// # #[cfg(not(feature = "timeout"))]
/// # fn main() {}
/// ```
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(scope(Context::current(), fut))
}
