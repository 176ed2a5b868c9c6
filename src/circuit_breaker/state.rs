//! The breaker's atomic core: the state word and its deadline in atomics, read, stepped by
//! the pure functions of `transition.rs`, and swapped.
//!
//! Time is nanoseconds since the breaker's epoch, passed in by the caller. The whole state
//! lives in one `AtomicU64` word (phase, generation, half-open probe counts) plus a tagged
//! deadline word, so every transition is a single compare-and-swap and exactly one thread
//! wins it.
//!
//! ```text
//! word:     | generation (29) | probes passed (16) | probes issued (16) | phase (3) |
//! deadline: | generation tag (12) | deadline, µs since epoch (52, about 142 years)  |
//! ```
//!
//! The deadline is the end of the open time (open) or the probes' deadline (half-open). It is
//! written just after the word by the thread that won the transition and carries that
//! transition's generation, so a reader never acts on a deadline of an earlier state: until
//! the tag matches, the new state counts as just entered.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::sync::{AtomicU64, Ordering};

use super::classify::Outcome;
use super::events::{Events, OnChange};
use super::transition::{
    AdmitStep, Policy, ProbeStep, Window, Word, admit_step, mix, probe_step, release_step, tagged,
};
use super::window::{CountWindow, FAILED, SLOW, TimeWindow};

/// Where a breaker is in its cycle.
///
/// ```
/// use tower_rampart::circuit_breaker::CircuitState;
///
/// assert_eq!(CircuitState::HalfOpen.as_str(), "half_open");
/// assert!(CircuitState::ForcedOpen.rejects());
/// assert!(!CircuitState::Disabled.rejects());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls pass; outcomes are recorded and may trip the breaker.
    Closed,
    /// Calls are rejected until the open time ends.
    Open,
    /// A fixed number of probe calls pass; the rest are rejected.
    HalfOpen,
    /// Held open through the handle: every call is rejected until the handle releases it.
    ForcedOpen,
    /// Held closed through the handle: every call passes and is counted, nothing trips.
    Disabled,
}

impl CircuitState {
    /// A stable snake_case name, for logs, metrics and health endpoints.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitState;
    /// assert_eq!(CircuitState::ForcedOpen.as_str(), "forced_open");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }

    /// Whether calls are rejected in this state (half-open rejects all but its probes).
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitState;
    /// assert!(CircuitState::Open.rejects());
    /// assert!(!CircuitState::Closed.rejects());
    /// ```
    pub const fn rejects(self) -> bool {
        matches!(self, Self::Open | Self::ForcedOpen)
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
        }
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code {
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            4 => Self::Disabled,
            _ => Self::Closed,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call's claim on the breaker, from admission to outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The state's generation (29 bits) when the call was admitted.
    generation: u32,
    probe: bool,
    /// When the call started (ns), if slow calls are detected.
    pub(crate) start: u64,
}

/// The answer to "may this call go through now?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admit(Ticket),
    /// Rejected; the breaker expects to admit a probe in this many ns.
    Reject {
        retry_after: u64,
    },
}

/// Counters of one lane, on their own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    slow: AtomicU64,
    rejected: AtomicU64,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedU64(AtomicU64);

/// A snapshot of a breaker's counters since it was built.
///
/// ```
/// use tower_rampart::circuit_breaker::CircuitBreakerLayer;
///
/// let layer = CircuitBreakerLayer::builder().build()?;
/// let metrics = layer.handle().metrics();
/// assert_eq!(metrics.calls(), 0);
/// assert_eq!(metrics.rejected(), 0);
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    successes: u64,
    failures: u64,
    ignored: u64,
    slow: u64,
    rejected: u64,
    transitions: u64,
}

impl Counts {
    /// Completed calls: successes, failures and ignored outcomes.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # let layer = CircuitBreakerLayer::builder().build()?;
    /// let m = layer.handle().metrics();
    /// assert_eq!(m.calls(), m.successes() + m.failures() + m.ignored());
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn calls(&self) -> u64 {
        self.successes + self.failures + self.ignored
    }
    /// Calls classified as successes (slow ones included).
    ///
    /// See [`calls`](Self::calls) for an example.
    pub const fn successes(&self) -> u64 {
        self.successes
    }
    /// Calls classified as failures.
    ///
    /// See [`calls`](Self::calls) for an example.
    pub const fn failures(&self) -> u64 {
        self.failures
    }
    /// Calls the classifier ignored (neutral outcomes). Dropped calls are not counted.
    ///
    /// See [`calls`](Self::calls) for an example.
    pub const fn ignored(&self) -> u64 {
        self.ignored
    }
    /// Calls at or over the slow-call threshold (also counted as successes or failures).
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # let layer = CircuitBreakerLayer::builder().build()?;
    /// assert_eq!(layer.handle().metrics().slow(), 0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn slow(&self) -> u64 {
        self.slow
    }
    /// Calls rejected without reaching the inner service.
    ///
    /// See [`Counts`] for an example.
    pub const fn rejected(&self) -> u64 {
        self.rejected
    }
    /// State changes since the breaker was built.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # let layer = CircuitBreakerLayer::builder().build()?;
    /// layer.handle().force_open();
    /// layer.handle().reset();
    /// assert_eq!(layer.handle().metrics().transitions(), 2);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn transitions(&self) -> u64 {
        self.transitions
    }
}

/// One breaker's shared state.
pub(crate) struct Core {
    word: AtomicU64,
    deadline: AtomicU64,
    consecutive: PaddedU64,
    /// Trips since the breaker last closed: the exponent of the backoff.
    trips: AtomicU64,
    count: Option<CountWindow>,
    time: Option<TimeWindow>,
    counters: Box<[Counters]>,
    /// Successes need only a count and the reset of the failure run: no window, no
    /// slow-call check.
    plain_success: bool,
    policy: Policy,
    events: Events,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.events.name)
            .field("key", &self.events.key)
            .field("state", &self.state())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(
        policy: Policy,
        lanes: usize,
        name: Cow<'static, str>,
        key: Option<Box<str>>,
        on_change: Option<OnChange>,
        metrics: Arc<crate::metrics::Breaker>,
    ) -> Self {
        let lanes = lanes.max(1).next_power_of_two();
        let (count, time) = match (policy.rated(), policy.window) {
            (false, _) => (None, None),
            (true, Window::Count(n)) => (Some(CountWindow::new(n)), None),
            (true, Window::Time { width, buckets }) => {
                (None, Some(TimeWindow::new(width, buckets, lanes)))
            }
        };
        let plain_success = count.is_none() && time.is_none() && policy.slow_after.is_none();
        Self {
            word: AtomicU64::new(Word::new(CircuitState::Closed, 0, 0, 0).0),
            deadline: AtomicU64::new(0),
            consecutive: PaddedU64::default(),
            trips: AtomicU64::new(0),
            count,
            time,
            counters: (0..lanes).map(|_| Counters::default()).collect(),
            plain_success,
            policy,
            events: Events::new(name, key, on_change, metrics),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.events.name
    }

    pub(crate) fn key(&self) -> Option<&str> {
        self.events.key.as_deref()
    }

    /// Whether calls need their start time (slow-call detection).
    pub(crate) fn needs_start(&self) -> bool {
        self.policy.slow_after.is_some()
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.load().phase()
    }

    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    #[inline]
    fn lane(&self, lane: usize) -> &Counters {
        // The number of lanes is a power of two.
        &self.counters[lane & (self.counters.len() - 1)]
    }

    /// Decides whether a call may go through. `now` is read at most once, and only when the
    /// breaker is not closed.
    #[inline]
    pub(crate) fn admit(
        &self,
        lane: usize,
        start: Option<u64>,
        now: impl Fn() -> u64,
    ) -> Admission {
        let word = self.load();
        if let CircuitState::Closed | CircuitState::Disabled = word.phase() {
            return Admission::Admit(Ticket {
                generation: word.generation() as u32,
                probe: false,
                start: start.unwrap_or(0),
            });
        }
        self.admit_not_closed(word, lane, start, now)
    }

    #[inline(never)]
    fn admit_not_closed(
        &self,
        mut word: Word,
        lane: usize,
        start: Option<u64>,
        now: impl Fn() -> u64,
    ) -> Admission {
        let now = start.unwrap_or_else(now);
        let admitted = |generation: u64, probe| {
            Admission::Admit(Ticket {
                generation: generation as u32,
                probe,
                start: start.unwrap_or(0),
            })
        };
        loop {
            let deadline = self.deadline.load(Ordering::Acquire);
            match admit_step(word, deadline, now, &self.policy) {
                AdmitStep::Pass => return admitted(word.generation(), false),
                AdmitStep::Refuse(retry_after) => return self.reject(lane, retry_after),
                AdmitStep::HalfOpen { next, at } => match self.swap(word, next) {
                    Ok(()) => {
                        self.publish(next.generation(), at);
                        self.events
                            .announce(CircuitState::Open, CircuitState::HalfOpen, None);
                        return admitted(next.generation(), true);
                    }
                    Err(actual) => word = actual,
                },
                AdmitStep::Probe { next, at } => {
                    // Pushed back before the slot is taken, so that no caller sees a full
                    // half-open state with an old deadline.
                    self.publish(word.generation(), at);
                    match self.swap(word, next) {
                        Ok(()) => return admitted(word.generation(), true),
                        Err(actual) => word = actual,
                    }
                }
                AdmitStep::Reopen => match self.open(word, now, "probe_timeout") {
                    Ok(open_for) => return self.reject(lane, open_for),
                    Err(actual) => word = actual,
                },
            }
        }
    }

    fn reject(&self, lane: usize, retry_after: u64) -> Admission {
        self.lane(lane).rejected.fetch_add(1, Ordering::Relaxed);
        self.events.metrics().rejected();
        Admission::Reject { retry_after }
    }

    fn swap(&self, current: Word, next: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(current.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    /// Sets the deadline of the state at `generation`, unless the breaker has moved on.
    ///
    /// A plain store could land late, after a newer state published its own deadline, and
    /// leave that state without one. Checking the word after loading the old deadline and
    /// swapping from exactly that value rules it out: a newer deadline is either seen (and
    /// its state seen with it) or makes the swap fail.
    fn publish(&self, generation: u64, deadline: u64) {
        let value = tagged(generation, deadline);
        let mut current = self.deadline.load(Ordering::Acquire);
        while self.load().generation() == generation {
            match self.deadline.compare_exchange(
                current,
                value,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Opens the breaker from `word`; on success returns the open time (ns).
    fn open(&self, word: Word, now: u64, reason: &'static str) -> Result<u64, Word> {
        let next = word.next(CircuitState::Open, 0);
        self.swap(word, next)?;
        let trip = self.trips.fetch_add(1, Ordering::Relaxed);
        let mut open_for = self.policy.open_time(trip);
        if self.policy.jitter_ppm > 0 {
            let unit = mix(now ^ next.0.rotate_left(17)) % 1_000_000;
            let extra =
                u128::from(open_for) * u128::from(self.policy.jitter_ppm) * u128::from(unit)
                    / 1_000_000_000_000;
            open_for = open_for.saturating_add(u64::try_from(extra).unwrap_or(u64::MAX));
        }
        self.publish(next.generation(), now.saturating_add(open_for));
        self.events.opened(word.phase(), reason, open_for);
        Ok(open_for)
    }

    /// Records the outcome of an admitted call. `now` is read at most once, only when the
    /// outcome needs a time (a time window, a slow-call threshold, or a trip).
    #[inline]
    pub(crate) fn record(
        &self,
        lane: usize,
        ticket: Ticket,
        outcome: Outcome,
        now: impl Fn() -> u64,
    ) {
        if self.plain_success && outcome == Outcome::Success && !ticket.probe {
            // The common case, kept small: a success with no window and no slow-call check.
            self.lane(lane).successes.fetch_add(1, Ordering::Relaxed);
            self.events.metrics().success();
            let run = &self.consecutive.0;
            if run.load(Ordering::Relaxed) != 0 {
                let word = self.load();
                if word.generation() == u64::from(ticket.generation)
                    && word.phase() == CircuitState::Closed
                {
                    run.store(0, Ordering::Relaxed);
                }
            }
            return;
        }
        self.record_in_full(lane, ticket, outcome, now);
    }

    #[inline(never)]
    fn record_in_full(&self, lane: usize, ticket: Ticket, outcome: Outcome, now: impl Fn() -> u64) {
        let mut read = None;
        let mut now = || *read.get_or_insert_with(&now);
        let counters = self.lane(lane);
        let slow = self
            .policy
            .slow_after
            .is_some_and(|after| now().saturating_sub(ticket.start) >= after);
        if slow {
            counters.slow.fetch_add(1, Ordering::Relaxed);
        }
        let bits = match outcome {
            Outcome::Success => {
                counters.successes.fetch_add(1, Ordering::Relaxed);
                self.events.metrics().success();
                0
            }
            Outcome::Failure => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                self.events.metrics().failure();
                FAILED
            }
            Outcome::Ignore => {
                counters.ignored.fetch_add(1, Ordering::Relaxed);
                self.events.metrics().ignored();
                if ticket.probe {
                    self.release(ticket);
                }
                return;
            }
        } | if slow { SLOW } else { 0 };
        let word = self.load();
        if word.generation() != u64::from(ticket.generation) {
            return; // the call started in an earlier state
        }
        if ticket.probe {
            self.probe_done(word, bits, &mut now);
        } else if word.phase() == CircuitState::Closed {
            self.closed_done(word, lane, bits, &mut now);
        }
    }

    fn closed_done(&self, word: Word, lane: usize, bits: u8, now: &mut impl FnMut() -> u64) {
        let mut trip = false;
        if let Some(threshold) = self.policy.consecutive {
            let run = &self.consecutive.0;
            if bits & FAILED != 0 {
                trip |= run.fetch_add(1, Ordering::Relaxed) + 1 >= threshold;
            } else if run.load(Ordering::Relaxed) != 0 {
                run.store(0, Ordering::Relaxed);
            }
        }
        if let Some(ring) = &self.count {
            ring.record(bits);
            trip |= bits != 0 && self.policy.trips(ring.tally());
        }
        if let Some(time) = &self.time {
            let now = now();
            time.record(lane, now, bits);
            trip |= bits != 0 && self.policy.trips(time.tally(now));
        }
        if trip {
            // Losing the race means another call already moved the breaker on.
            let _ = self.open(word, now(), "failures");
        }
    }

    fn probe_done(&self, mut word: Word, bits: u8, now: &mut impl FnMut() -> u64) {
        let generation = word.generation();
        loop {
            match probe_step(word, generation, bits != 0, self.policy.probes) {
                ProbeStep::Stale => return,
                ProbeStep::Reopen => match self.open(word, now(), "probe_failed") {
                    Ok(_) => return,
                    Err(actual) => word = actual,
                },
                ProbeStep::Passed(next) => match self.swap(word, next) {
                    Ok(()) => return,
                    Err(actual) => word = actual,
                },
                ProbeStep::Close(next) => {
                    // Windows are not written outside the closed state, so they can be
                    // cleared before the switch is won.
                    self.clear_windows();
                    match self.swap(word, next) {
                        Ok(()) => {
                            self.trips.store(0, Ordering::Relaxed);
                            self.events.announce(
                                CircuitState::HalfOpen,
                                CircuitState::Closed,
                                None,
                            );
                            return;
                        }
                        Err(actual) => word = actual,
                    }
                }
            }
        }
    }

    /// Returns a probe's slot without a verdict (the call was dropped or ignored).
    pub(crate) fn release(&self, ticket: Ticket) {
        if !ticket.probe {
            return;
        }
        let mut word = self.load();
        while let Some(next) = release_step(word, u64::from(ticket.generation)) {
            match self.swap(word, next) {
                Ok(()) => return,
                Err(actual) => word = actual,
            }
        }
    }

    fn clear_windows(&self) {
        self.consecutive.0.store(0, Ordering::Relaxed);
        if let Some(ring) = &self.count {
            ring.clear();
        }
        if let Some(time) = &self.time {
            time.clear();
        }
    }

    /// Moves to `to` whatever the current state, for the handle.
    pub(crate) fn force(&self, to: CircuitState) {
        if to == CircuitState::Closed {
            self.clear_windows();
            self.trips.store(0, Ordering::Relaxed);
        }
        let mut word = self.load();
        loop {
            let from = word.phase();
            if from == to && to != CircuitState::Closed {
                return;
            }
            match self.swap(word, word.next(to, 0)) {
                Ok(()) => {
                    if from != to {
                        self.events.announce(from, to, None);
                    }
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    pub(crate) fn metrics(&self) -> Counts {
        let mut metrics = Counts {
            transitions: self.events.transitions(),
            ..Counts::default()
        };
        for lane in &*self.counters {
            metrics.successes += lane.successes.load(Ordering::Relaxed);
            metrics.failures += lane.failures.load(Ordering::Relaxed);
            metrics.ignored += lane.ignored.load(Ordering::Relaxed);
            metrics.slow += lane.slow.load(Ordering::Relaxed);
            metrics.rejected += lane.rejected.load(Ordering::Relaxed);
        }
        metrics
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests;

#[cfg(all(test, tower_rampart_loom))]
mod loom_models;
