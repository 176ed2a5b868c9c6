//! Where every layer reads the time.
//!
//! Layers never call `Instant::now` themselves: they hold a [`Clock`] and read it **once** per
//! decision, then pass `now` down to pure decision functions. Two clocks ship with the crate:
//!
//! | clock | follows | use it for |
//! |---|---|---|
//! | [`TokioClock`] (default) | tokio's clock, including `tokio::time::pause` and `tokio::time::advance` | production, and service tests with `#[tokio::test(start_paused = true)]` |
//! | [`ManualClock`] | only [`ManualClock::advance`] | pure, runtime-free tests of decision logic |
//!
//! Sleeping (the timeout layer's timer, the limiter's wait mode) always goes through
//! `tokio::time`, so one paused-time test controls both the clock and the timers when the
//! layer uses [`TokioClock`].
//!
//! ```
//! use std::time::Duration;
//! use tower_rampart::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let shared = clock.clone(); // clones share one time line
//! let t0 = clock.now();
//! shared.advance(Duration::from_millis(250));
//! assert_eq!(clock.now() - t0, Duration::from_millis(250));
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{Arc, AtomicU64, Ordering};

/// A monotonic source of time.
///
/// Implementations must be cheap to clone (layers clone their clock into every service) and
/// cheap to read: [`TokioClock`] costs exactly one [`tokio::time::Instant::now`].
///
/// ```
/// use tower_rampart::clock::{Clock, TokioClock};
///
/// let clock = TokioClock;
/// let a = clock.now();
/// let b = clock.now();
/// assert!(b >= a);
/// ```
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current instant. Never goes backwards between two calls on the same clock.
    fn now(&self) -> Instant;
}

/// The default clock: [`tokio::time::Instant::now`].
///
/// It follows tokio's paused time, so `#[tokio::test(start_paused = true)]` together with
/// `tokio::time::advance` drives every layer deterministically. It needs no runtime to be
/// read (outside a runtime it reads the system's monotonic clock), spawns nothing and holds no
/// global state.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::clock::{Clock, TokioClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let t0 = TokioClock.now();
/// tokio::time::advance(Duration::from_secs(3)).await;
/// assert_eq!(TokioClock.now() - t0, Duration::from_secs(3));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokioClock;

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for pure tests without a runtime.
///
/// All clones share one time line: hand a clone to a layer, keep one in the test, and
/// [`advance`](ManualClock::advance) it. It never reads the system clock after
/// construction.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(1));
/// clock.advance(Duration::from_millis(500));
/// assert_eq!(clock.elapsed(), Duration::from_millis(1500));
/// assert_eq!(clock.now(), start + Duration::from_millis(1500));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    origin: Instant,
    offset_nanos: Arc<AtomicU64>,
}

// === impl ManualClock ===

impl ManualClock {
    /// A clock standing at an arbitrary origin, with zero elapsed time.
    ///
    /// ```
    /// use tower_rampart::clock::ManualClock;
    ///
    /// assert_eq!(ManualClock::new().elapsed(), std::time::Duration::ZERO);
    /// ```
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves every clone of this clock forward by `by`.
    ///
    /// The offset saturates at `u64::MAX` nanoseconds (about 584 years); it never wraps.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::clock::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// clock.clone().advance(Duration::from_millis(7));
    /// assert_eq!(clock.elapsed(), Duration::from_millis(7));
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.offset_nanos.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(by);
            match self.offset_nanos.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// How far the clock has been advanced since [`ManualClock::new`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::clock::ManualClock;
    ///
    /// let clock = ManualClock::new();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(clock.elapsed(), Duration::from_secs(2));
    /// ```
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(clock.now() - t0, Duration::from_nanos(1));
    }

    #[test]
    fn manual_clock_clones_share_one_time_line() {
        let a = ManualClock::new();
        let b = a.clone();
        b.advance(Duration::from_secs(5));
        assert_eq!(a.elapsed(), Duration::from_secs(5));
        assert_eq!(a.now(), b.now());
    }

    #[test]
    fn manual_clock_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let t0 = TokioClock.now();
        tokio::time::advance(Duration::from_millis(1234)).await;
        assert_eq!(TokioClock.now() - t0, Duration::from_millis(1234));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_does_not_move_while_paused_without_advance() {
        let t0 = TokioClock.now();
        tokio::task::yield_now().await;
        assert_eq!(TokioClock.now(), t0);
    }
}

#[cfg(all(test, tower_rampart_loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_manual_clock_concurrent_advances_all_land() {
        loom::model(|| {
            let clock = ManualClock::new();
            let other = clock.clone();
            let t = loom::thread::spawn(move || other.advance(Duration::from_nanos(3)));
            clock.advance(Duration::from_nanos(4));
            t.join().unwrap();
            assert_eq!(clock.elapsed(), Duration::from_nanos(7));
        });
    }
}
