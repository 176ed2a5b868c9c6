use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::circuit_breaker::events::Transition;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

fn policy() -> Policy {
    Policy {
        consecutive: Some(3),
        failure_ppm: None,
        slow_ppm: None,
        slow_after: None,
        minimum_calls: 1,
        window: Window::Count(10),
        open_for: 10 * SEC,
        max_open_for: 40 * SEC,
        backoff: 2,
        jitter_ppm: 0,
        probes: 1,
        probe_timeout: 5 * SEC,
    }
}

fn metrics() -> Arc<crate::metrics::Breaker> {
    Arc::new(crate::metrics::Breaker::new(Cow::Borrowed("test")))
}

fn core(policy: Policy) -> Core {
    Core::new(policy, 2, Cow::Borrowed("test"), None, None, metrics())
}

/// Admits a call at `now` and records `outcome` at once; `None` if rejected.
fn call(core: &Core, now: u64, outcome: Outcome) -> Option<Ticket> {
    match core.admit(0, Some(now), || now) {
        Admission::Admit(ticket) => {
            core.record(0, ticket, outcome, || now);
            Some(ticket)
        }
        Admission::Reject { .. } => None,
    }
}

fn admit(core: &Core, now: u64) -> Admission {
    core.admit(0, None, || now)
}

fn ticket(admission: Admission) -> Ticket {
    match admission {
        Admission::Admit(ticket) => ticket,
        Admission::Reject { retry_after } => panic!("rejected, retry after {retry_after} ns"),
    }
}

fn trip(core: &Core, now: u64) {
    while core.state() == CircuitState::Closed {
        call(core, now, Outcome::Failure).unwrap();
    }
}

#[test]
fn opens_after_consecutive_failures() {
    let core = core(policy());
    call(&core, 0, Outcome::Failure).unwrap();
    call(&core, 0, Outcome::Failure).unwrap();
    assert_eq!(core.state(), CircuitState::Closed);
    call(&core, 0, Outcome::Failure).unwrap();
    assert_eq!(core.state(), CircuitState::Open);
    assert_eq!(
        admit(&core, 4 * SEC),
        Admission::Reject {
            retry_after: 6 * SEC
        }
    );
}

#[test]
fn a_success_resets_the_failure_run() {
    let core = core(policy());
    for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
        call(&core, 0, outcome).unwrap();
    }
    call(&core, 0, Outcome::Failure).unwrap();
    call(&core, 0, Outcome::Failure).unwrap();
    assert_eq!(core.state(), CircuitState::Closed);
}

#[test]
fn ignored_outcomes_count_for_nothing() {
    let core = core(policy());
    for _ in 0..10 {
        call(&core, 0, Outcome::Ignore).unwrap();
    }
    assert_eq!(core.state(), CircuitState::Closed);
    assert_eq!(core.metrics().ignored(), 10);
}

#[test]
fn half_open_admits_one_probe_after_the_open_time() {
    let core = core(policy());
    trip(&core, 0);
    assert!(matches!(
        admit(&core, 10 * SEC - 1),
        Admission::Reject { retry_after: 1 }
    ));
    let probe = ticket(admit(&core, 10 * SEC));
    assert_eq!(core.state(), CircuitState::HalfOpen);
    // Everyone else is rejected until the probe answers.
    assert_eq!(
        admit(&core, 10 * SEC),
        Admission::Reject {
            retry_after: 5 * SEC
        }
    );
    core.record(0, probe, Outcome::Success, || 10 * SEC);
    assert_eq!(core.state(), CircuitState::Closed);
    assert_eq!(core.metrics().transitions(), 3);
}

#[test]
fn a_failed_probe_reopens_with_a_doubled_open_time_up_to_the_cap() {
    let core = core(policy());
    trip(&core, 0);
    let mut now = 0;
    for open_for in [20 * SEC, 40 * SEC, 40 * SEC] {
        now += 60 * SEC;
        let probe = ticket(admit(&core, now));
        core.record(0, probe, Outcome::Failure, || now);
        assert_eq!(core.state(), CircuitState::Open);
        assert_eq!(
            admit(&core, now),
            Admission::Reject {
                retry_after: open_for
            }
        );
    }
    // Closing resets the backoff.
    now += 60 * SEC;
    call(&core, now, Outcome::Success).unwrap();
    assert_eq!(core.state(), CircuitState::Closed);
    trip(&core, now);
    assert_eq!(
        admit(&core, now),
        Admission::Reject {
            retry_after: 10 * SEC
        }
    );
}

#[test]
fn all_probes_must_pass_to_close() {
    let core = core(Policy {
        probes: 3,
        ..policy()
    });
    trip(&core, 0);
    let probes: Vec<_> = (0..3).map(|_| ticket(admit(&core, 10 * SEC))).collect();
    assert!(matches!(admit(&core, 10 * SEC), Admission::Reject { .. }));
    core.record(0, probes[0], Outcome::Success, || 10 * SEC);
    core.record(0, probes[1], Outcome::Success, || 10 * SEC);
    assert_eq!(core.state(), CircuitState::HalfOpen);
    core.record(0, probes[2], Outcome::Success, || 10 * SEC);
    assert_eq!(core.state(), CircuitState::Closed);
}

#[test]
fn a_dropped_probe_returns_its_slot() {
    let core = core(policy());
    trip(&core, 0);
    let probe = ticket(admit(&core, 10 * SEC));
    core.release(probe);
    assert_eq!(core.state(), CircuitState::HalfOpen);
    let again = ticket(admit(&core, 10 * SEC));
    core.record(0, again, Outcome::Success, || 10 * SEC);
    assert_eq!(core.state(), CircuitState::Closed);
    // The dropped probe's late release changes nothing.
    core.release(probe);
    assert_eq!(core.state(), CircuitState::Closed);
}

#[test]
fn a_hung_probe_cannot_pin_the_breaker_half_open() {
    let core = core(policy());
    trip(&core, 0);
    let hung = ticket(admit(&core, 10 * SEC));
    assert!(matches!(
        admit(&core, 15 * SEC - 1),
        Admission::Reject { retry_after: 1 }
    ));
    // At the probe deadline the next call re-opens the breaker (backoff: 20 s).
    assert_eq!(
        admit(&core, 15 * SEC),
        Admission::Reject {
            retry_after: 20 * SEC
        }
    );
    assert_eq!(core.state(), CircuitState::Open);
    // The hung probe's late answer belongs to an earlier state and is ignored.
    core.record(0, hung, Outcome::Success, || 16 * SEC);
    assert_eq!(core.state(), CircuitState::Open);
}

#[test]
fn results_from_an_earlier_state_do_not_count() {
    let core = core(policy());
    let old = [0, 1, 2].map(|_| ticket(admit(&core, 0)));
    trip(&core, 0);
    let probe = ticket(admit(&core, 10 * SEC));
    core.record(0, probe, Outcome::Success, || 10 * SEC);
    assert_eq!(core.state(), CircuitState::Closed);
    // Three failures that started before the trip arrive now: they do not re-open it.
    for ticket in old {
        core.record(0, ticket, Outcome::Failure, || 11 * SEC);
    }
    assert_eq!(core.state(), CircuitState::Closed);
    assert_eq!(core.metrics().failures(), 6);
}

#[test]
fn failure_rate_waits_for_minimum_calls() {
    let core = core(Policy {
        consecutive: None,
        failure_ppm: Some(500_000),
        minimum_calls: 4,
        window: Window::Count(4),
        ..policy()
    });
    for outcome in [Outcome::Failure, Outcome::Success, Outcome::Failure] {
        call(&core, 0, outcome).unwrap();
    }
    assert_eq!(core.state(), CircuitState::Closed, "only 3 calls so far");
    call(&core, 0, Outcome::Success).unwrap();
    assert_eq!(core.state(), CircuitState::Closed, "a success never trips");
    // Window: S F S F -> 50 %.
    call(&core, 0, Outcome::Failure).unwrap();
    assert_eq!(core.state(), CircuitState::Open);
}

#[test]
fn count_window_is_a_true_ring() {
    // 3 failures then 7 successes in a window of 10 at 40 %: fine; the 4th failure trips
    // only while the old ones are still in the window.
    let core = core(Policy {
        consecutive: None,
        failure_ppm: Some(400_000),
        minimum_calls: 10,
        window: Window::Count(10),
        ..policy()
    });
    for i in 0..10 {
        let outcome = if i < 3 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        call(&core, 0, outcome).unwrap();
    }
    // Three more successes push the failures out of the ring.
    for _ in 0..3 {
        call(&core, 0, Outcome::Success).unwrap();
    }
    call(&core, 0, Outcome::Failure).unwrap();
    assert_eq!(
        core.state(),
        CircuitState::Closed,
        "1 failure in the last 10"
    );
}

#[test]
fn slow_call_rate_over_a_time_window() {
    let core = core(Policy {
        consecutive: None,
        slow_ppm: Some(500_000),
        slow_after: Some(SEC),
        minimum_calls: 2,
        window: Window::Time {
            width: SEC,
            buckets: 10,
        },
        ..policy()
    });
    // A fast call, then a slow one 30 s later: the fast one has left the window.
    let fast = ticket(core.admit(0, Some(0), || 0));
    core.record(0, fast, Outcome::Success, || MS);
    let slow = ticket(core.admit(0, Some(30 * SEC), || 30 * SEC));
    core.record(0, slow, Outcome::Success, || 32 * SEC);
    assert_eq!(core.state(), CircuitState::Closed, "one call in the window");
    let fast = ticket(core.admit(0, Some(33 * SEC), || 33 * SEC));
    core.record(0, fast, Outcome::Success, || 33 * SEC);
    let slow = ticket(core.admit(0, Some(34 * SEC), || 34 * SEC));
    core.record(0, slow, Outcome::Success, || 36 * SEC);
    assert_eq!(core.state(), CircuitState::Open, "2 of 3 calls slow");
    assert_eq!(core.metrics().slow(), 2);
}

#[test]
fn a_slow_probe_fails() {
    let core = core(Policy {
        slow_ppm: Some(1_000_000),
        slow_after: Some(SEC),
        ..policy()
    });
    trip(&core, 0);
    let probe = ticket(core.admit(0, Some(10 * SEC), || 10 * SEC));
    core.record(0, probe, Outcome::Success, || 12 * SEC);
    assert_eq!(core.state(), CircuitState::Open);
}

#[test]
fn forced_states_hold_until_reset() {
    let core = core(policy());
    core.force(CircuitState::ForcedOpen);
    assert!(matches!(admit(&core, 0), Admission::Reject { .. }));
    assert!(matches!(
        admit(&core, 1_000 * SEC),
        Admission::Reject { .. }
    ));
    core.force(CircuitState::Disabled);
    for _ in 0..10 {
        call(&core, 0, Outcome::Failure).unwrap();
    }
    assert_eq!(core.state(), CircuitState::Disabled);
    assert_eq!(core.metrics().failures(), 10);
    core.force(CircuitState::Closed);
    assert_eq!(core.state(), CircuitState::Closed);
    assert_eq!(core.metrics().rejected(), 2);
}

#[test]
fn jitter_adds_at_most_its_fraction() {
    for start in 0..50 {
        let core = core(Policy {
            jitter_ppm: 500_000,
            ..policy()
        });
        trip(&core, start * SEC);
        let Admission::Reject { retry_after } = admit(&core, start * SEC) else {
            panic!("open");
        };
        assert!(
            (10 * SEC..=15 * SEC + MS).contains(&retry_after),
            "{retry_after}"
        );
    }
}

#[test]
fn transitions_reach_the_callback() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let core = Core::new(
        policy(),
        1,
        Cow::Borrowed("cb"),
        None,
        Some(Arc::new(move |t: &Transition<'_>| {
            log.lock().unwrap().push((t.from(), t.to(), t.open_for()));
        })),
        metrics(),
    );
    trip(&core, 0);
    call(&core, 10 * SEC, Outcome::Success).unwrap();
    use CircuitState::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Closed, Open, Some(Duration::from_secs(10))),
            (Open, HalfOpen, None),
            (HalfOpen, Closed, None)
        ]
    );
}

/// A plain, obviously correct breaker to check the atomic one against: consecutive failures,
/// a failure rate over a count window, backoff, and sequential probes.
struct Model {
    policy: Policy,
    state: ModelState,
    run: u64,
    ring: VecDeque<bool>,
    trips: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelState {
    Closed,
    Open { until: u64 },
    HalfOpen { passed: u64 },
}

impl Model {
    fn step(&mut self, now: u64, outcome: Outcome) -> bool {
        if let ModelState::Open { until } = self.state {
            if now < until {
                return false;
            }
            self.state = ModelState::HalfOpen { passed: 0 };
        }
        match (self.state, outcome) {
            (_, Outcome::Ignore) => {}
            (ModelState::Closed, outcome) => {
                let failed = outcome == Outcome::Failure;
                self.run = if failed { self.run + 1 } else { 0 };
                let Window::Count(size) = self.policy.window else {
                    unreachable!()
                };
                self.ring.push_back(failed);
                if self.ring.len() > size {
                    self.ring.pop_front();
                }
                let calls = self.ring.len() as u64;
                let failures = self.ring.iter().filter(|f| **f).count() as u64;
                let by_run = self.policy.consecutive.is_some_and(|t| self.run >= t);
                let by_rate = failed
                    && calls >= self.policy.minimum_calls
                    && self
                        .policy
                        .failure_ppm
                        .is_some_and(|ppm| failures * 1_000_000 >= ppm * calls);
                if by_run || by_rate {
                    self.open(now);
                }
            }
            (ModelState::HalfOpen { .. }, Outcome::Failure) => self.open(now),
            (ModelState::HalfOpen { passed }, Outcome::Success) => {
                if passed + 1 == self.policy.probes {
                    self.state = ModelState::Closed;
                    self.run = 0;
                    self.ring.clear();
                    self.trips = 0;
                } else {
                    self.state = ModelState::HalfOpen { passed: passed + 1 };
                }
            }
            (ModelState::Open { .. }, _) => unreachable!(),
        }
        true
    }

    fn open(&mut self, now: u64) {
        let open_for = self.policy.open_time(self.trips);
        self.trips += 1;
        self.state = ModelState::Open {
            until: now + open_for,
        };
    }

    fn phase(&self) -> CircuitState {
        match self.state {
            ModelState::Closed => CircuitState::Closed,
            ModelState::Open { .. } => CircuitState::Open,
            ModelState::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignore),
    ]
}

proptest! {
    #[test]
    fn matches_the_reference_model(
        threshold in proptest::option::of(1u64..6),
        rate in proptest::option::of(10u64..=100),
        window in 1usize..12,
        minimum in 1u64..12,
        probes in 1u64..4,
        steps in proptest::collection::vec((0u64..4_000, outcome()), 1..300),
    ) {
        let policy = Policy {
            consecutive: threshold.or(if rate.is_none() { Some(3) } else { None }),
            failure_ppm: rate.map(|r| r * 10_000),
            minimum_calls: minimum.min(window as u64),
            window: Window::Count(window),
            open_for: SEC,
            max_open_for: 8 * SEC,
            probes,
            ..policy()
        };
        let core = core(policy.clone());
        let mut model = Model { policy, state: ModelState::Closed, run: 0, ring: VecDeque::new(), trips: 0 };
        let mut now = 0;
        for (advance_ms, outcome) in steps {
            now += advance_ms * MS;
            let admitted = call(&core, now, outcome).is_some();
            prop_assert_eq!(admitted, model.step(now, outcome), "admission at {} ms", now / MS);
            prop_assert_eq!(core.state(), model.phase(), "state at {} ms", now / MS);
        }
    }
}

/// Regression: open times were truncated to the millisecond, so a breaker tripped at 1.5 ms
/// and open for 10 s admitted its probe 0.5 ms before the 10 s were up.
#[test]
fn never_half_opens_before_the_open_time_is_over() {
    let core = core(policy());
    let tripped_at = 1_500_300;
    trip(&core, tripped_at);
    let reopens = tripped_at + 10 * SEC;
    for early in [reopens - 500_000, reopens - 1] {
        assert!(
            matches!(admit(&core, early), Admission::Reject { retry_after } if retry_after > 0),
            "admitted {} ns early",
            reopens - early
        );
    }
    // Rounded toward later: at most one microsecond late.
    assert!(matches!(admit(&core, reopens + 1_000), Admission::Admit(_)));
}
