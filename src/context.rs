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
//! use std::time::Duration;
//! use tower_rampart::{context, timeout::Deadline};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let deadline = Deadline::after(Duration::from_secs(2));
//! let left = context::scope(context::Context::new().with_deadline(deadline), async {
//!     // Anywhere below, however deep: how much time is left?
//!     Deadline::current().map(|d| d.remaining())
//! })
//! .await;
//! assert_eq!(left, Some(Duration::from_secs(2)));
//! assert!(Deadline::current().is_none()); // outside the scope
//! # }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{self, Poll};

#[cfg(feature = "request-id")]
use crate::request_id::RequestId;
#[cfg(feature = "timeout")]
use crate::timeout::Deadline;

std::thread_local! {
    // The context of the task being polled on this thread. A `Cell` of a `Copy` value with a
    // constant initialiser: entering and leaving a scope are two plain thread-local writes.
    static CURRENT: Cell<Context> = const { Cell::new(Context::new()) };
}

/// Puts `ctx` in place for as long as it lives, then restores what was there (also when
/// the code in scope panics).
struct Entered(Context);

impl Entered {
    #[inline]
    fn new(ctx: Context) -> Self {
        Self(CURRENT.with(|current| current.replace(ctx)))
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

/// The values in scope for one request. Cheap to copy.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::{context::Context, timeout::Deadline};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let ctx = Context::new().with_deadline(Deadline::after(Duration::from_secs(1)));
/// assert!(ctx.deadline().is_some());
/// assert!(Context::new().deadline().is_none());
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
        CURRENT.with(Cell::get)
    }

    /// The request's id, if a [`SetRequestIdLayer`](crate::request_id::SetRequestIdLayer) set
    /// one.
    ///
    /// ```
    /// use tower_rampart::{context::Context, request_id::{MakeRequestId, UuidV7}};
    ///
    /// let id = UuidV7.make_request_id();
    /// assert_eq!(Context::new().with_request_id(id).request_id(), Some(id));
    /// ```
    #[cfg(feature = "request-id")]
    #[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
    pub const fn request_id(&self) -> Option<RequestId> {
        self.request_id
    }

    /// This context with `id` as the request id.
    ///
    /// See [`request_id`](Self::request_id) for an example.
    #[cfg(feature = "request-id")]
    #[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
    #[must_use]
    pub const fn with_request_id(mut self, id: RequestId) -> Self {
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
    Scoped { ctx, inner: fut }
}

/// Runs `f` with `ctx` in scope (for the synchronous part of a call).
#[inline]
pub(crate) fn sync_scope<R>(ctx: Context, f: impl FnOnce() -> R) -> R {
    let _entered = Entered::new(ctx);
    f()
}

pin_project_lite::pin_project! {
    /// A future polled with its [`Context`] in scope; made by [`scope`].
    pub struct Scoped<F> {
        ctx: Context,
        #[pin]
        inner: F,
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = Entered::new(*this.ctx);
        this.inner.poll(cx)
    }
}

/// Spawns `fut` on the current runtime with the current context carried over, so that the
/// spawned work keeps the request's deadline.
///
/// # Panics
/// Outside a tokio runtime, like `tokio::spawn`.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::{context, timeout::Deadline};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let ctx = context::Context::new().with_deadline(Deadline::after(Duration::from_secs(3)));
/// let seen = context::scope(ctx, async {
///     context::spawn(async { Deadline::current().is_some() }).await.unwrap()
/// })
/// .await;
/// assert!(seen);
/// # }
/// ```
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(scope(Context::current(), fut))
}
