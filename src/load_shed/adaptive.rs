//! The adaptive limit: latency and overload signals per window, and the rule that moves the
//! limit from one window to the next.

use std::time::Duration;

use crate::error::ConfigError;
use crate::sync::{AtomicU64, Ordering};

/// How the limit of an adaptive [`LoadShedLayer`](super::LoadShedLayer) moves.
///
/// Each window (default 250 ms, and at least 16 completed calls) the layer looks at what
/// completed in it: the 90th percentile latency of the calls that succeeded, how many calls
/// showed overload (they timed out, or the service below refused them: 429, 503, 504, gRPC
/// `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, read from the headers or, for a
/// streamed gRPC answer, from its trailers when its body ends), and the most calls that were
/// in flight at once. Client cancellations, other 4xx and other 5xx (a handler's own
/// failure, not load) say nothing and are not counted.
/// Statuses and gRPC codes are read through the same table as the circuit breaker's
/// `HttpClassifier`, each to its own end.
/// Then, with `L` the limit:
///
/// | situation | new limit | why |
/// |---|---|---|
/// | slow start (no overload seen yet), demand near `L` | `2·L` | find the capacity in a few windows, not one request at a time |
/// | overload: any timeout or refusal from below, or p90 over `tolerance · baseline` | `L · max(0.8, tolerance · baseline / p90)` (at most `0.8·L` on timeouts or refusals) | a queue has formed: shrink in proportion to how long it makes calls, but never by more than a fifth per window, so one slow window does not collapse the limit |
/// | no overload, demand near `L`, `L` below `K`, the limit the last overload left | `min(2·L, K)` | the limit fell while the service was not busy (see below): the capacity found before is the best guess, so take it back in a few windows |
/// | no overload, demand near `L` (in flight reached `0.8·L`) | `L + max(1, L / 20)` | probe upward slowly, so the limit sits just above where the queue begins |
/// | no overload, demand well below `L` | `L` | nothing to learn while the service is not busy |
///
/// The limit always stays within `[min, max]` and at most `headroom ×` (default `2 ×`) the
/// most requests seen in flight in the window: it never grows while the service is idle,
/// and a limit far above what is used cannot let a sudden burst through. The baseline is the
/// lowest window median seen, which rises by 5% of the gap per window toward the current
/// median, so it follows a service that became slower for good, and is never measured by
/// pinning the concurrency low.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::load_shed::AdaptiveLimit;
///
/// let adaptive = AdaptiveLimit::new()
///     .initial(8)
///     .min(2)
///     .max(500)
///     .window(Duration::from_millis(100))
///     .tolerance(1.5);
/// # let _ = adaptive;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveLimit {
    pub(crate) initial: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) window: Duration,
    pub(crate) tolerance: f64,
    pub(crate) headroom: f64,
}

impl Default for AdaptiveLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl AdaptiveLimit {
    /// Initial limit 4, between 1 and 1 000, windows of 250 ms, tolerance 1.1, headroom 2.
    ///
    /// See [`AdaptiveLimit`] for an example.
    pub const fn new() -> Self {
        Self {
            initial: 4,
            min: 1,
            max: 1_000,
            window: Duration::from_millis(250),
            tolerance: 1.1,
            headroom: 2.0,
        }
    }

    /// The limit before anything is measured. Default: 4.
    ///
    /// See [`AdaptiveLimit`] for an example.
    pub const fn initial(mut self, limit: u64) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest the limit goes (at least 1). Default: 1.
    ///
    /// See [`AdaptiveLimit`] for an example.
    pub const fn min(mut self, limit: u64) -> Self {
        self.min = limit;
        self
    }

    /// The highest the limit goes. Default: 1 000.
    ///
    /// See [`AdaptiveLimit`] for an example.
    pub const fn max(mut self, limit: u64) -> Self {
        self.max = limit;
        self
    }

    /// How often the limit moves. Default: 250 ms (a window also waits for 16 calls).
    ///
    /// See [`AdaptiveLimit`] for an example.
    pub const fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How much slower than the baseline the 90th percentile may get before it counts as a
    /// queue. Default: 1.1: a 10% rise in the 90th percentile is a queue forming.
    ///
    /// See [`AdaptiveLimit`] for an example.
    pub const fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How far above what is used the limit may stay: at most `headroom ×` the most calls
    /// in flight in the last window (1.5 to 100). Default: 2, so a service at a tenth of its
    /// capacity admits a burst of twice its current load at once, and the limit doubles
    /// back toward the capacity it found before within a few windows.
    ///
    /// ```
    /// use tower_rampart::load_shed::{AdaptiveLimit, LoadShedLayer};
    ///
    /// let layer = LoadShedLayer::builder().adaptive(AdaptiveLimit::new().headroom(4.0)).build()?;
    /// # let _ = layer;
    /// assert!(LoadShedLayer::builder().adaptive(AdaptiveLimit::new().headroom(1.0)).build().is_err());
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn headroom(mut self, headroom: f64) -> Self {
        self.headroom = headroom;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.min == 0 || self.min > self.max {
            return Err(ConfigError::new(
                "adaptive",
                "min must be at least 1 and at most max",
            ));
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return Err(ConfigError::new(
                "adaptive",
                "initial must be within min and max",
            ));
        }
        if self.window < Duration::from_millis(1) {
            return Err(ConfigError::new("adaptive", "window must be at least 1 ms"));
        }
        if !(self.tolerance >= 1.0 && self.tolerance <= 10.0) {
            return Err(ConfigError::new("adaptive", "tolerance must be 1 to 10"));
        }
        // Below 1.5 a limit could never grow: growing needs 0.8·L in flight, and the
        // ceiling would then be under L · 1.2.
        if !(self.headroom >= 1.5 && self.headroom <= 100.0) {
            return Err(ConfigError::new("adaptive", "headroom must be 1.5 to 100"));
        }
        Ok(())
    }
}

/// What one window saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Window {
    /// Successful calls.
    pub(crate) samples: u64,
    /// Median and 90th percentile latency of those, in ns.
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    /// Calls that timed out or were refused from below.
    pub(crate) overloads: u64,
    /// The most calls in flight at once.
    pub(crate) max_in_flight: u64,
}

/// The state the rule carries from window to window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct State {
    pub(crate) limit: f64,
    /// ns; 0 until the first window with samples.
    pub(crate) baseline: f64,
    pub(crate) slow_start: bool,
    /// The limit the last overload left; 0 before the first.
    pub(crate) known: f64,
}

/// The update rule: pure, over plain numbers (see [`AdaptiveLimit`] for the table).
/// Also says whether the window showed overload.
pub(crate) fn next(state: State, window: Window, config: &AdaptiveLimit) -> (State, bool) {
    let State {
        mut limit,
        mut baseline,
        mut slow_start,
        mut known,
    } = state;
    if window.samples > 0 {
        let p50 = window.p50 as f64;
        baseline = if baseline == 0.0 || p50 < baseline {
            p50
        } else {
            baseline + (p50 - baseline) * 0.05
        };
    }
    let queued = window.samples > 0 && (window.p90 as f64) > config.tolerance * baseline;
    let overloaded = window.overloads > 0 || queued;
    let demand = window.max_in_flight as f64 >= 0.8 * limit.floor();
    if overloaded {
        slow_start = false;
        let gradient = if window.samples > 0 && window.p90 > 0 {
            config.tolerance * baseline / window.p90 as f64
        } else {
            0.8
        };
        let mut factor = gradient.clamp(0.8, 1.0);
        if window.overloads > 0 {
            factor = factor.min(0.8);
        }
        limit *= factor;
        known = limit;
    } else if demand {
        limit = if slow_start {
            limit * 2.0
        } else if limit < known {
            (limit * 2.0).min(known)
        } else {
            limit + (limit / 20.0).max(1.0)
        };
    }
    let ceiling = (config.headroom * window.max_in_flight as f64).max(config.min as f64);
    let limit = limit
        .min(ceiling)
        .clamp(config.min as f64, config.max as f64);
    let state = State {
        limit,
        baseline,
        slow_start,
        known,
    };
    (state, overloaded)
}

/// What closing a window decided.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Closed {
    /// The new limit, rounded.
    pub(crate) limit: u64,
    pub(crate) state: State,
    pub(crate) window: Window,
    /// The window showed overload and the one before did not.
    pub(crate) overload_began: bool,
    /// The window showed none and the one before did.
    pub(crate) overload_ended: bool,
}

/// Latencies of one window, in quarter-octave buckets: lock-free to record, and precise to
/// about 10%, enough to tell a queue from a service.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; Self::BUCKETS],
}

impl Histogram {
    const BUCKETS: usize = 4 * 48;

    pub(crate) fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn bucket(nanos: u64) -> usize {
        let nanos = nanos.max(4);
        let octave = 63 - nanos.leading_zeros() as usize;
        // The quarter of the octave: the two bits below the top one.
        let quarter = ((nanos >> (octave - 2)) & 3) as usize;
        (octave * 4 + quarter).min(Self::BUCKETS - 1)
    }

    /// The upper end of a bucket, in ns.
    fn upper(bucket: usize) -> u64 {
        let (octave, quarter) = (bucket / 4, bucket % 4);
        let base = 1u64 << octave;
        base + (quarter as u64 + 1) * (base / 4)
    }

    pub(crate) fn record(&self, nanos: u64) {
        self.buckets[Self::bucket(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    /// Empties the histogram; returns (samples, p50, p90).
    pub(crate) fn drain(&self) -> (u64, u64, u64) {
        // On the stack: closing a window allocates nothing either.
        let counts: [u64; Self::BUCKETS] =
            std::array::from_fn(|i| self.buckets[i].swap(0, Ordering::Relaxed));
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (bucket, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Self::upper(bucket);
                }
            }
            0
        };
        if total == 0 {
            (0, 0, 0)
        } else {
            (total, quantile(0.5), quantile(0.9))
        }
    }
}

/// What one completed call says about load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// It succeeded, taking this long (ns).
    Latency(u64),
    /// It timed out, or the service below refused it.
    Overload,
    /// It says nothing about load (a 4xx, an error of its own).
    Neutral,
}

/// The adaptive limit at work: the window being measured and the rule's state, in atomics.
/// Calls record into the window without a lock; the call that closes a window (one
/// compare-and-swap elects it) moves the limit.
#[derive(Debug)]
pub(crate) struct Controller {
    config: AdaptiveLimit,
    latencies: Histogram,
    overloads: AtomicU64,
    completed: AtomicU64,
    max_in_flight: AtomicU64,
    /// When the window began, ns since `epoch`.
    window_start: AtomicU64,
    limit_bits: AtomicU64,
    baseline_bits: AtomicU64,
    /// The last window's median latency (ns): what a call typically takes now.
    typical: AtomicU64,
    slow_start: crate::sync::AtomicBool,
    /// The limit the last overload left.
    known_bits: AtomicU64,
    /// Whether the last window showed overload: episodes are logged at INFO.
    in_overload: crate::sync::AtomicBool,
    epoch: tokio::time::Instant,
    /// Where each closed window's figures go.
    pub(crate) gauges: crate::metrics::LoadShedWindow,
}

/// Calls a window needs, besides its time, before the limit moves.
const MIN_CALLS: u64 = 16;

/// Every how many calls a completion looks at the time to see if its window is over.
const CHECK_EVERY: u64 = 8;

impl Controller {
    pub(crate) fn new(config: AdaptiveLimit, name: &'static str) -> Self {
        Self {
            gauges: crate::metrics::LoadShedWindow::new(name),
            latencies: Histogram::new(),
            overloads: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            limit_bits: AtomicU64::new((config.initial as f64).to_bits()),
            baseline_bits: AtomicU64::new(0f64.to_bits()),
            typical: AtomicU64::new(0),
            slow_start: crate::sync::AtomicBool::new(true),
            known_bits: AtomicU64::new(0f64.to_bits()),
            in_overload: crate::sync::AtomicBool::new(false),
            epoch: tokio::time::Instant::now(),
            config,
        }
    }

    /// What a call typically takes now (the last window's median), if measured yet.
    pub(crate) fn typical(&self) -> Option<std::time::Duration> {
        match self.typical.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(std::time::Duration::from_nanos(nanos)),
        }
    }

    /// Notes that `in_flight` calls are in flight after an admission.
    #[inline]
    pub(crate) fn admitted(&self, in_flight: u64) {
        // Most calls do not raise the window's most: a load, not a read-modify-write.
        if in_flight > self.max_in_flight.load(Ordering::Relaxed) {
            self.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
    }

    /// Records a completed call that ended at `end`; returns the new limit when this call
    /// closed a window. The time is turned into the window's terms only every few calls
    /// (reading a clock is cheap, converting it is not).
    #[inline]
    pub(crate) fn complete(&self, signal: Signal, end: tokio::time::Instant) -> Option<Closed> {
        match signal {
            Signal::Latency(nanos) => self.latencies.record(nanos),
            Signal::Overload => {
                self.overloads.fetch_add(1, Ordering::Relaxed);
            }
            Signal::Neutral => return None,
        }
        let completed = self.completed.fetch_add(1, Ordering::Relaxed) + 1;
        if completed % CHECK_EVERY != 0 || completed < MIN_CALLS {
            return None;
        }
        let now = crate::clock::duration_nanos(end.saturating_duration_since(self.epoch));
        let start = self.window_start.load(Ordering::Relaxed);
        let window = crate::clock::duration_nanos(self.config.window);
        if now < start.saturating_add(window) {
            return None;
        }
        // One caller closes the window.
        self.window_start
            .compare_exchange(start, now, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        let (samples, p50, p90) = self.latencies.drain();
        if samples > 0 {
            self.typical.store(p50, Ordering::Relaxed);
        }
        let measured = Window {
            samples,
            p50,
            p90,
            overloads: self.overloads.swap(0, Ordering::Relaxed),
            max_in_flight: self.max_in_flight.swap(0, Ordering::Relaxed),
        };
        self.completed.store(0, Ordering::Relaxed);
        let state = State {
            limit: f64::from_bits(self.limit_bits.load(Ordering::Relaxed)),
            baseline: f64::from_bits(self.baseline_bits.load(Ordering::Relaxed)),
            slow_start: self.slow_start.load(Ordering::Relaxed),
            known: f64::from_bits(self.known_bits.load(Ordering::Relaxed)),
        };
        let (next, overloaded) = next(state, measured, &self.config);
        self.limit_bits
            .store(next.limit.to_bits(), Ordering::Relaxed);
        self.baseline_bits
            .store(next.baseline.to_bits(), Ordering::Relaxed);
        self.slow_start.store(next.slow_start, Ordering::Relaxed);
        self.known_bits
            .store(next.known.to_bits(), Ordering::Relaxed);
        let was = self.in_overload.swap(overloaded, Ordering::Relaxed);
        Some(Closed {
            limit: next.limit.round() as u64,
            state: next,
            window: measured,
            overload_began: overloaded && !was,
            overload_ended: !overloaded && was,
        })
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn window(p50_ms: u64, p90_ms: u64, overloads: u64, max_in_flight: u64) -> Window {
        Window {
            samples: 100,
            p50: p50_ms * MS,
            p90: p90_ms * MS,
            overloads,
            max_in_flight,
        }
    }

    fn start(limit: f64) -> State {
        State {
            limit,
            baseline: 0.0,
            slow_start: true,
            known: 0.0,
        }
    }

    #[test]
    fn slow_start_doubles_until_the_first_overload() {
        let config = AdaptiveLimit::new();
        let mut state = start(4.0);
        for expected in [8.0, 16.0, 32.0] {
            state = next(state, window(20, 20, 0, state.limit as u64), &config).0;
            assert_eq!(state.limit, expected);
        }
        // A queue: p90 at twice the baseline. Shrink, by a fifth at most, and leave slow start.
        state = next(state, window(20, 40, 0, 32), &config).0;
        assert_eq!(state.limit, 32.0 * 0.8);
        assert!(!state.slow_start);
        // Then probe upward by 1 (or 5%) per busy window.
        state = next(state, window(20, 20, 0, 26), &config).0;
        assert_eq!(state.limit, 25.6 + 1.28);
    }

    #[test]
    fn timeouts_and_refusals_below_are_overload() {
        let config = AdaptiveLimit::new();
        let state = next(start(10.0), window(20, 20, 1, 10), &config).0;
        assert_eq!(state.limit, 8.0);
        assert!(!state.slow_start);
    }

    #[test]
    fn the_limit_never_grows_while_the_service_is_idle_and_never_reaches_zero() {
        let config = AdaptiveLimit::new().min(1);
        let idle = next(start(100.0), window(20, 20, 0, 3), &config).0;
        assert_eq!(idle.limit, 6.0, "at most twice what was in flight");
        let mut state = start(4.0);
        for _ in 0..100 {
            state = next(state, window(20, 200, 5, 4), &config).0;
        }
        assert_eq!(state.limit, 1.0);
    }

    #[test]
    fn the_headroom_over_what_is_in_flight_is_configurable() {
        let config = AdaptiveLimit::new().headroom(5.0);
        let idle = next(start(100.0), window(20, 20, 0, 3), &config).0;
        assert_eq!(idle.limit, 15.0);
    }

    #[test]
    fn after_a_quiet_spell_the_limit_doubles_back_to_the_capacity_found_before() {
        let config = AdaptiveLimit::new();
        // Overload at 50: the limit drops to 40, and 40 is what the service is known to take.
        let mut state = next(
            State {
                slow_start: false,
                ..start(50.0)
            },
            window(20, 20, 3, 50),
            &config,
        )
        .0;
        assert_eq!((state.limit, state.known), (40.0, 40.0));
        // A quiet spell: 2 in flight, so the limit falls to 4.
        state = next(state, window(20, 20, 0, 2), &config).0;
        assert_eq!(state.limit, 4.0);
        // Demand is back: 4, 8, 16, 32, then 40, then slow probing.
        let mut limits = Vec::new();
        for _ in 0..6 {
            state = next(state, window(20, 20, 0, state.limit as u64), &config).0;
            limits.push(state.limit);
        }
        assert_eq!(limits, [8.0, 16.0, 32.0, 40.0, 42.0, 44.1]);
    }

    #[test]
    fn the_baseline_follows_a_slower_service_slowly() {
        let config = AdaptiveLimit::new();
        let mut state = start(10.0);
        state = next(state, window(20, 20, 0, 10), &config).0;
        assert_eq!(state.baseline, 20.0 * MS as f64);
        state = next(state, window(40, 40, 0, 10), &config).0;
        assert_eq!(state.baseline, 21.0 * MS as f64);
        state = next(state, window(10, 10, 0, 10), &config).0;
        assert_eq!(
            state.baseline,
            10.0 * MS as f64,
            "a faster window resets it at once"
        );
    }

    #[test]
    fn histogram_quantiles_land_in_their_bucket() {
        let h = Histogram::new();
        for _ in 0..90 {
            h.record(20 * MS);
        }
        for _ in 0..10 {
            h.record(100 * MS);
        }
        let (samples, p50, p90) = h.drain();
        assert_eq!(samples, 100);
        // 20 ms falls in the quarter-octave [18.9, 21.0] ms.
        assert!((20 * MS..=22 * MS).contains(&p50), "{p50}");
        assert!((20 * MS..=22 * MS).contains(&p90), "{p90}");
        assert_eq!(h.drain(), (0, 0, 0));
    }
}
