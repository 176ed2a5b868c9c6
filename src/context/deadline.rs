//! [`Deadline`]: the instant by which a request must be answered.

use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a request must be answered, on tokio's clock.
///
/// [`TimeoutLayer`](crate::timeout::TimeoutLayer) puts it in the [request context](crate::context)
/// around the inner call (and in the request's extensions if asked), so handler code can ask how much
/// time is left and pass it on; [`PropagateDeadlineLayer`](crate::timeout::PropagateDeadlineLayer)
/// sends what remains of it to the next service.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::timeout::Deadline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let deadline = Deadline::after(Duration::from_millis(300));
/// tokio::time::advance(Duration::from_millis(100)).await;
/// assert_eq!(deadline.remaining(), Duration::from_millis(200));
/// assert!(!deadline.is_expired());
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline at `at`.
    ///
    /// ```
    /// # use tower_rampart::timeout::Deadline;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let now = tokio::time::Instant::now();
    /// assert_eq!(Deadline::at(now).instant(), now);
    /// # }
    /// ```
    pub const fn at(at: Instant) -> Self {
        Self { at }
    }

    /// The deadline `budget` from now (tokio's clock). A budget too large to represent is
    /// capped at about 30 years.
    ///
    /// See [`Deadline`] for an example.
    pub fn after(budget: Duration) -> Self {
        Self::starting(Instant::now(), budget)
    }

    #[inline]
    pub(crate) fn starting(now: Instant, budget: Duration) -> Self {
        // Capping first keeps the addition in range without `checked_add` on every request
        // (a monotonic clock is nowhere near its end 30 years from now).
        const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
        Self {
            at: now + budget.min(FAR),
        }
    }

    /// The instant itself.
    ///
    /// See [`Deadline::at`] for an example.
    pub const fn instant(&self) -> Instant {
        self.at
    }

    /// Time left until the deadline, zero once it has passed.
    ///
    /// See [`Deadline`] for an example.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::timeout::Deadline;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let deadline = Deadline::after(Duration::from_secs(1));
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// assert!(deadline.is_expired());
    /// # }
    /// ```
    pub fn is_expired(&self) -> bool {
        self.at <= Instant::now()
    }

    /// The deadline of the request being handled, from the [request context](crate::context):
    /// `None` outside a [`TimeoutLayer`](crate::timeout::TimeoutLayer)'s scope (for example in a task
    /// spawned with `tokio::spawn` rather than [`context::spawn`](crate::context::spawn)).
    ///
    /// See [`crate::context`] for an example.
    pub fn current() -> Option<Self> {
        crate::context::current_deadline()
    }
}
