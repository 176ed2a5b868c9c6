//! Loom models of the breaker's atomics: every interleaving of two threads.

use super::*;
use crate::circuit_breaker::window::Tally;
use crate::sync::Arc;

fn metrics() -> std::sync::Arc<crate::metrics::Breaker> {
    std::sync::Arc::new(crate::metrics::Breaker::new(Cow::Borrowed("loom")))
}

const SEC: u64 = 1_000_000_000;

fn policy(consecutive: u64) -> Policy {
    Policy {
        consecutive: Some(consecutive),
        failure_ppm: None,
        slow_ppm: None,
        slow_after: None,
        minimum_calls: 1,
        window: Window::Count(2),
        open_for: SEC,
        max_open_for: SEC,
        backoff: 1,
        jitter_ppm: 0,
        probes: 1,
        probe_timeout: SEC,
    }
}

fn open_core() -> Arc<Core> {
    let core = Arc::new(Core::new(
        policy(1),
        2,
        Cow::Borrowed("loom"),
        None,
        None,
        metrics(),
    ));
    let Admission::Admit(ticket) = core.admit(0, None, || 0) else {
        panic!("closed breakers admit");
    };
    core.record(0, ticket, Outcome::Failure, || 0);
    core
}

#[test]
fn loom_half_open_admits_exactly_one_probe() {
    loom::model(|| {
        let core = open_core();
        let other = Arc::clone(&core);
        let t = loom::thread::spawn(move || {
            matches!(other.admit(1, None, || SEC), Admission::Admit(_))
        });
        let here = matches!(core.admit(0, None, || SEC), Admission::Admit(_));
        let there = t.join().unwrap();
        assert!(here ^ there, "exactly one probe is admitted");
        assert_eq!(core.state(), CircuitState::HalfOpen);
    });
}

#[test]
fn loom_a_released_probe_slot_is_taken_at_most_once() {
    loom::model(|| {
        let core = open_core();
        let Admission::Admit(probe) = core.admit(0, None, || SEC) else {
            panic!("the first call after the open time is a probe");
        };
        let other = Arc::clone(&core);
        let t = loom::thread::spawn(move || {
            matches!(other.admit(1, None, || SEC), Admission::Admit(_))
        });
        core.release(probe);
        let there = t.join().unwrap();
        // One more caller: the slot is free again only if the other thread did not take it.
        let here = matches!(core.admit(0, None, || SEC), Admission::Admit(_));
        assert!(here ^ there, "the returned slot goes to exactly one caller");
    });
}

#[test]
fn loom_concurrent_failures_trip_once() {
    loom::model(|| {
        let core = Arc::new(Core::new(
            policy(2),
            2,
            Cow::Borrowed("loom"),
            None,
            None,
            metrics(),
        ));
        let tickets = [0, 1].map(|lane| match core.admit(lane, None, || 0) {
            Admission::Admit(ticket) => ticket,
            Admission::Reject { .. } => panic!("closed breakers admit"),
        });
        let other = Arc::clone(&core);
        let t = loom::thread::spawn(move || other.record(1, tickets[1], Outcome::Failure, || 0));
        core.record(0, tickets[0], Outcome::Failure, || 0);
        t.join().unwrap();
        assert_eq!(core.state(), CircuitState::Open);
        assert_eq!(core.metrics().transitions(), 1);
        assert!(matches!(
            core.admit(0, None, || 0),
            Admission::Reject { retry_after: SEC }
        ));
    });
}

#[test]
fn loom_count_window_totals_settle_exactly() {
    loom::model(|| {
        let ring = Arc::new(CountWindow::new(2));
        let other = Arc::clone(&ring);
        let t = loom::thread::spawn(move || other.record(FAILED));
        ring.record(SLOW);
        t.join().unwrap();
        assert_eq!(
            ring.tally(),
            Tally {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
    });
}
