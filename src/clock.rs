//! Where every layer reads the time.
//!
//! The stateful layers (rate limiter, circuit breaker) hold a [`Clock`] and read it **once**
//! per decision, then pass `now` down to pure decision functions. The deadline layers
//! (timeout, deadline propagation, fan-out) read tokio's `Instant::now` directly, once per
//! call, because their deadlines are tokio timers and must share tokio's (possibly paused)
//! clock. The clocks that ship with the crate:
//!
//! | clock | follows | use it for |
//! |---|---|---|
//! | [`TokioClock`] (default) | tokio's clock, including `tokio::time::pause` and `tokio::time::advance` | production, and service tests with `#[tokio::test(start_paused = true)]` |
//! | [`ManualClock`] | only [`ManualClock::advance`] | pure, runtime-free tests of decision logic |
//! | `QuantaClock` (feature `quanta`) | the CPU's time-stamp counter; **not** tokio's paused time | production hot paths where the system clock read is the largest cost |
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

    /// An instant from which [`nanos_since`](Clock::nanos_since) is cheapest to measure.
    /// Layers take it once, when they are built, and count time from it.
    ///
    /// Default: [`now`](Clock::now).
    ///
    /// ```
    /// use tower_rampart::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let epoch = clock.epoch();
    /// clock.advance(std::time::Duration::from_micros(3));
    /// assert_eq!(clock.nanos_since(epoch), 3_000);
    /// ```
    fn epoch(&self) -> Instant {
        self.now()
    }

    /// Whole nanoseconds from `since` to now (0 if `since` is later), with one read of the
    /// clock. Clocks that count in integers override it to skip `Instant` arithmetic when
    /// `since` is their [`epoch`](Clock::epoch).
    ///
    /// Default: `now() - since`, saturating.
    ///
    /// ```
    /// use tower_rampart::clock::{Clock, TokioClock};
    ///
    /// let clock = TokioClock;
    /// let epoch = clock.epoch();
    /// assert!(clock.nanos_since(epoch) < 1_000_000_000);
    /// ```
    fn nanos_since(&self, since: Instant) -> u64 {
        duration_nanos(self.now().saturating_duration_since(since))
    }
}

/// Whole nanoseconds in `d`, saturating at `u64::MAX` (about 584 years).
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
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

    fn epoch(&self) -> Instant {
        self.origin
    }

    #[inline]
    fn nanos_since(&self, since: Instant) -> u64 {
        if since == self.origin {
            self.offset_nanos.load(Ordering::Acquire)
        } else {
            duration_nanos(self.now().saturating_duration_since(since))
        }
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

/// A clock that counts the CPU's time-stamp counter through the [`quanta`] crate, the same
/// kind of clock governor uses by default.
///
/// Reading the system clock is the largest single cost of an admitted request in the rate
/// limiter (about 37 ns on this project's benchmark machine); this clock reads the counter
/// instead and measures from its epoch with integer arithmetic only. It does **not** follow
/// tokio's paused time: use it in production and keep [`TokioClock`] or [`ManualClock`] in
/// tests. Where the CPU offers no reliable counter, `quanta` falls back to the system clock.
///
/// ```
/// use tower_rampart::clock::{Clock, QuantaClock};
///
/// let clock = QuantaClock::new();
/// let epoch = clock.epoch();
/// let a = clock.nanos_since(epoch);
/// assert!(clock.nanos_since(epoch) >= a);
/// assert!(clock.now() >= epoch);
/// ```
#[cfg(feature = "quanta")]
#[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
#[derive(Clone, Debug)]
pub struct QuantaClock {
    clock: quanta::Clock,
    origin_raw: u64,
    origin: Instant,
}

#[cfg(feature = "quanta")]
impl QuantaClock {
    /// Calibrates the counter (once per process) and ties it to tokio's clock now.
    ///
    /// ```
    /// # use tower_rampart::clock::{Clock, QuantaClock};
    /// let clock = QuantaClock::new();
    /// assert_eq!(clock.clone().epoch(), clock.epoch());
    /// ```
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        Self {
            origin_raw: clock.raw(),
            origin: Instant::now(),
            clock,
        }
    }

    #[inline]
    fn elapsed_nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin_raw, self.clock.raw())
    }
}

#[cfg(feature = "quanta")]
impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "quanta")]
impl Clock for QuantaClock {
    #[inline]
    fn now(&self) -> Instant {
        self.origin + Duration::from_nanos(self.elapsed_nanos())
    }

    fn epoch(&self) -> Instant {
        self.origin
    }

    #[inline]
    fn nanos_since(&self, since: Instant) -> u64 {
        if since == self.origin {
            self.elapsed_nanos()
        } else {
            duration_nanos(self.now().saturating_duration_since(since))
        }
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

    #[test]
    fn manual_clock_counts_from_its_epoch_without_instant_arithmetic() {
        let clock = ManualClock::new();
        let epoch = clock.epoch();
        clock.advance(Duration::from_nanos(42));
        assert_eq!(clock.nanos_since(epoch), 42);
        // From any other instant it still answers, through the default path.
        let later = clock.now();
        clock.advance(Duration::from_nanos(8));
        assert_eq!(clock.nanos_since(later), 8);
        assert_eq!(clock.nanos_since(clock.now() + Duration::from_secs(1)), 0);
    }

    #[cfg(feature = "quanta")]
    #[test]
    fn quanta_clock_agrees_with_its_instants() {
        let clock = QuantaClock::new();
        let epoch = clock.epoch();
        let before = clock.nanos_since(epoch);
        let now = clock.now();
        let after = clock.nanos_since(epoch);
        let at = duration_nanos(now - epoch);
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
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
