//! The breaker's state over plain integers: the packed state word, the tagged deadline, the
//! trip rules and the pure steps of every transition. No atomics, no clock, no tracing: the
//! atomic core (`state.rs`) reads the words, asks a step what comes next, and swaps.
//!
//! ```text
//! word:     | generation (29) | probes passed (16) | probes issued (16) | phase (3) |
//! deadline: | generation tag (12) | deadline, µs since epoch (52, about 142 years)  |
//! ```

use super::state::CircuitState;
use super::window::Tally;

/// The trip and recovery rules, validated by the builder.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Open after this many failures in a row.
    pub(crate) consecutive: Option<u64>,
    /// Open when failures / calls ≥ this many parts per million.
    pub(crate) failure_ppm: Option<u64>,
    /// Open when slow calls / calls ≥ this many parts per million.
    pub(crate) slow_ppm: Option<u64>,
    /// A call taking at least this long (ns) is slow.
    pub(crate) slow_after: Option<u64>,
    /// No rate policy trips before the window holds this many calls.
    pub(crate) minimum_calls: u64,
    pub(crate) window: Window,
    /// Open time of the first trip (ns).
    pub(crate) open_for: u64,
    /// Upper bound of the open time under backoff (ns).
    pub(crate) max_open_for: u64,
    /// Growth of the open time per consecutive trip (1 = none).
    pub(crate) backoff: u32,
    /// Random extra open time, as parts per million of the open time.
    pub(crate) jitter_ppm: u64,
    /// Calls admitted in half-open.
    pub(crate) probes: u64,
    /// How long the probes may take before they count as failed (ns).
    pub(crate) probe_timeout: u64,
}

/// The window of the rate-based policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Window {
    /// The last `n` calls.
    Count(usize),
    /// The last `buckets × width` ns.
    Time { width: u64, buckets: usize },
}

impl Policy {
    pub(crate) fn rated(&self) -> bool {
        self.failure_ppm.is_some() || self.slow_ppm.is_some()
    }

    pub(crate) fn trips(&self, tally: Tally) -> bool {
        if tally.calls == 0 || tally.calls < self.minimum_calls {
            return false;
        }
        let over = |count: u64, ppm: Option<u64>| {
            ppm.is_some_and(|ppm| {
                u128::from(count) * 1_000_000 >= u128::from(ppm) * u128::from(tally.calls)
            })
        };
        over(tally.failures, self.failure_ppm) || over(tally.slow, self.slow_ppm)
    }

    /// The open time of the `trip`-th consecutive trip (0 for the first), before jitter.
    pub(crate) fn open_time(&self, trip: u64) -> u64 {
        let mut open = self.open_for;
        for _ in 0..trip.min(64) {
            if open >= self.max_open_for {
                break;
            }
            open = open.saturating_mul(u64::from(self.backoff));
        }
        open.min(self.max_open_for.max(self.open_for))
    }
}

// Layout of the state word.
const PHASE_MASK: u64 = 0b111;
pub(crate) const ISSUED_SHIFT: u32 = 3;
const PASSED_SHIFT: u32 = 19;
const COUNT_MASK: u64 = 0xFFFF;
const GEN_SHIFT: u32 = 35;
const GEN_MASK: u64 = (1 << 29) - 1;
/// Largest number of half-open probes the word can count.
pub(crate) const MAX_PROBES: u64 = COUNT_MASK;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) const fn new(
        phase: CircuitState,
        generation: u64,
        issued: u64,
        passed: u64,
    ) -> Self {
        Self(
            phase.code()
                | (issued & COUNT_MASK) << ISSUED_SHIFT
                | (passed & COUNT_MASK) << PASSED_SHIFT
                | (generation & GEN_MASK) << GEN_SHIFT,
        )
    }
    pub(crate) const fn phase(self) -> CircuitState {
        CircuitState::from_code(self.0 & PHASE_MASK)
    }
    pub(crate) const fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }
    pub(crate) const fn issued(self) -> u64 {
        (self.0 >> ISSUED_SHIFT) & COUNT_MASK
    }
    pub(crate) const fn passed(self) -> u64 {
        (self.0 >> PASSED_SHIFT) & COUNT_MASK
    }
    /// The word of the next state, one generation on.
    pub(crate) const fn next(self, phase: CircuitState, issued: u64) -> Self {
        Self::new(phase, self.generation() + 1, issued, 0)
    }
}

pub(crate) const TAG_SHIFT: u32 = 52;
pub(crate) const TAG_MASK: u64 = 0xFFF;
pub(crate) const DEADLINE_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// The deadline's unit: a microsecond.
pub(crate) const US: u64 = 1_000;
pub(crate) const MS: u64 = 1_000_000;

pub(crate) const fn tagged(generation: u64, at_ns: u64) -> u64 {
    // Rounded up: a deadline may end up to 1 µs late, never early, so an open breaker never
    // admits a probe before its open time is over.
    let us = at_ns.div_ceil(US);
    let us = if us > DEADLINE_MASK {
        DEADLINE_MASK
    } else {
        us
    };
    ((generation & TAG_MASK) << TAG_SHIFT) | us
}

/// The deadline in ns of the state entered at `generation`, from a tagged deadline word;
/// `None` until that state's deadline is published.
pub(crate) const fn untag(deadline: u64, generation: u64) -> Option<u64> {
    if deadline >> TAG_SHIFT == generation & TAG_MASK {
        Some((deadline & DEADLINE_MASK) * US)
    } else {
        None
    }
}

/// What a call meeting a breaker that is not closed should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdmitStep {
    /// Pass (the breaker is closed or disabled after all).
    Pass,
    /// Refuse; a probe is expected in this many ns.
    Refuse(u64),
    /// The open time is over: swap to `next` (half-open, this call its first probe) and
    /// publish the probes' deadline `at`.
    HalfOpen { next: Word, at: u64 },
    /// Take a free probe slot: publish the deadline `at`, then swap to `next`.
    Probe { next: Word, at: u64 },
    /// The probes outlived their deadline: open again.
    Reopen,
}

/// The step for a call at `now` against `word`, whose published deadline word is
/// `deadline`.
pub(crate) fn admit_step(word: Word, deadline: u64, now: u64, policy: &Policy) -> AdmitStep {
    match word.phase() {
        CircuitState::Closed | CircuitState::Disabled => AdmitStep::Pass,
        CircuitState::ForcedOpen => AdmitStep::Refuse(policy.open_for),
        CircuitState::Open => match untag(deadline, word.generation()) {
            // Opened an instant ago; its deadline is being written.
            None => AdmitStep::Refuse(policy.open_for),
            Some(until) if now < until => AdmitStep::Refuse(until - now),
            Some(_) => AdmitStep::HalfOpen {
                next: word.next(CircuitState::HalfOpen, 1),
                at: now.saturating_add(policy.probe_timeout),
            },
        },
        CircuitState::HalfOpen if word.issued() < policy.probes => AdmitStep::Probe {
            // The deadline runs from the newest probe.
            next: Word(word.0 + (1 << ISSUED_SHIFT)),
            at: now.saturating_add(policy.probe_timeout),
        },
        CircuitState::HalfOpen => match untag(deadline, word.generation()) {
            None => AdmitStep::Refuse(policy.probe_timeout),
            Some(until) if now < until => AdmitStep::Refuse(until - now),
            Some(_) => AdmitStep::Reopen,
        },
    }
}

/// What a probe's verdict does to the half-open state `word` it was admitted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeStep {
    /// The breaker has moved on: the verdict counts for nothing.
    Stale,
    /// The probe failed: open again.
    Reopen,
    /// One more probe passed; others are still out: swap to `next`.
    Passed(Word),
    /// The last probe passed: close (swap to `next`).
    Close(Word),
}

/// The step for a probe of `generation` ending `failed` (or not) against `word`.
pub(crate) fn probe_step(word: Word, generation: u64, failed: bool, probes: u64) -> ProbeStep {
    if word.phase() != CircuitState::HalfOpen || word.generation() != generation {
        return ProbeStep::Stale;
    }
    if failed {
        return ProbeStep::Reopen;
    }
    let passed = word.passed() + 1;
    if passed < probes {
        ProbeStep::Passed(Word::new(
            CircuitState::HalfOpen,
            generation,
            word.issued(),
            passed,
        ))
    } else {
        ProbeStep::Close(word.next(CircuitState::Closed, 0))
    }
}

/// The word with a probe slot of `generation` given back, if it may be: the breaker is
/// still in that half-open state and the slot was not already counted as passed.
pub(crate) fn release_step(word: Word, generation: u64) -> Option<Word> {
    (word.phase() == CircuitState::HalfOpen
        && word.generation() == generation
        && word.issued() > word.passed())
    .then(|| Word(word.0 - (1 << ISSUED_SHIFT)))
}

/// A 64-bit mixer (splitmix64's finaliser), for jitter.
pub(crate) const fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            consecutive: Some(3),
            failure_ppm: None,
            slow_ppm: None,
            slow_after: None,
            minimum_calls: 1,
            window: Window::Count(10),
            open_for: 10_000,
            max_open_for: 40_000,
            backoff: 2,
            jitter_ppm: 0,
            probes: 2,
            probe_timeout: 5_000,
        }
    }

    #[test]
    fn an_open_breaker_refuses_until_its_deadline_then_half_opens() {
        let open = Word::new(CircuitState::Open, 7, 0, 0);
        let deadline = tagged(7, 10_000);
        assert_eq!(
            admit_step(open, deadline, 9_999, &policy()),
            AdmitStep::Refuse(1)
        );
        let AdmitStep::HalfOpen { next, at } = admit_step(open, deadline, 10_000, &policy()) else {
            panic!("half-opens at its deadline")
        };
        assert_eq!(
            (next.phase(), next.generation(), next.issued()),
            (CircuitState::HalfOpen, 8, 1)
        );
        assert_eq!(at, 15_000);
        // A deadline of an older state is not believed.
        assert_eq!(
            admit_step(open, tagged(6, 0), 50_000, &policy()),
            AdmitStep::Refuse(10_000)
        );
    }

    #[test]
    fn half_open_admits_its_probes_then_refuses_then_reopens_at_the_probe_deadline() {
        let half = Word::new(CircuitState::HalfOpen, 3, 1, 0);
        let AdmitStep::Probe { next, .. } = admit_step(half, tagged(3, 9_000), 1_000, &policy())
        else {
            panic!("a second probe slot is free")
        };
        assert_eq!(next.issued(), 2);
        assert_eq!(
            admit_step(next, tagged(3, 9_000), 1_000, &policy()),
            AdmitStep::Refuse(8_000)
        );
        assert_eq!(
            admit_step(next, tagged(3, 9_000), 9_000, &policy()),
            AdmitStep::Reopen
        );
    }

    #[test]
    fn probes_close_the_breaker_only_when_all_pass() {
        let half = Word::new(CircuitState::HalfOpen, 3, 2, 0);
        let ProbeStep::Passed(one) = probe_step(half, 3, false, 2) else {
            panic!("one of two passed")
        };
        assert_eq!(one.passed(), 1);
        let ProbeStep::Close(closed) = probe_step(one, 3, false, 2) else {
            panic!("both passed")
        };
        assert_eq!(
            (closed.phase(), closed.generation()),
            (CircuitState::Closed, 4)
        );
        assert_eq!(probe_step(half, 3, true, 2), ProbeStep::Reopen);
        assert_eq!(probe_step(half, 2, false, 2), ProbeStep::Stale);
    }

    #[test]
    fn a_released_slot_is_given_back_once() {
        let half = Word::new(CircuitState::HalfOpen, 3, 1, 0);
        let back = release_step(half, 3).unwrap();
        assert_eq!(back.issued(), 0);
        assert_eq!(release_step(back, 3), None);
        assert_eq!(release_step(half, 4), None);
    }

    #[test]
    fn deadlines_round_up_and_saturate() {
        assert_eq!(untag(tagged(1, 1_500), 1), Some(2_000));
        assert_eq!(untag(tagged(1, u64::MAX), 1), Some(DEADLINE_MASK * US));
        assert_eq!(untag(tagged(1, 5), 2), None);
    }
}
