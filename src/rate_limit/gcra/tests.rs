use super::*;
use proptest::prelude::*;

const MS: u64 = 1_000_000;

fn quota(rate: u32, period_ms: u64, burst: u32) -> Quota {
    Quota::new(rate, Duration::from_millis(period_ms), burst).unwrap()
}

/// Runs arrivals through `decide` in reject mode, returning which were admitted.
fn run(quota: &Quota, arrivals: &[(u64, u32)]) -> Vec<bool> {
    let mut tat = 0;
    arrivals
        .iter()
        .map(|&(now, cost)| match decide(tat, now, cost, quota, 0) {
            Decision::Admit { tat: next, .. } => {
                tat = next;
                true
            }
            Decision::Deny { .. } => false,
        })
        .collect()
}

#[test]
fn full_bucket_admits_burst_at_once_then_one_per_interval() {
    // The documented timeline: per_second(50).burst(20).
    let q = quota(50, 1_000, 20);
    let at_zero: Vec<_> = (0..21).map(|_| (0, 1)).collect();
    let admitted = run(&q, &at_zero);
    assert_eq!(admitted.iter().filter(|a| **a).count(), 20);
    assert!(!admitted[20]);

    let mut arrivals: Vec<_> = (0..20).map(|_| (0, 1)).collect();
    arrivals.extend([(19 * MS, 1), (20 * MS, 1), (20 * MS, 1), (40 * MS, 1)]);
    assert_eq!(&run(&q, &arrivals)[20..], [false, true, false, true]);
}

#[test]
fn deny_reports_the_exact_wait() {
    let q = quota(50, 1_000, 20);
    let mut tat = 0;
    for _ in 0..20 {
        let Decision::Admit { tat: next, .. } = decide(tat, 0, 1, &q, 0) else {
            panic!()
        };
        tat = next;
    }
    let Decision::Deny {
        retry_after_nanos,
        snapshot,
    } = decide(tat, 5 * MS, 1, &q, 0)
    else {
        panic!("bucket should be empty")
    };
    assert_eq!(retry_after_nanos, 15 * MS);
    assert_eq!(snapshot.remaining, 0);
    assert_eq!(snapshot.next_nanos, 15 * MS);
    assert!(matches!(
        decide(tat, 20 * MS - 1, 1, &q, 0),
        Decision::Deny { .. }
    ));
    assert!(matches!(
        decide(tat, 20 * MS, 1, &q, 0),
        Decision::Admit { .. }
    ));
}

#[test]
fn admit_snapshot_counts_remaining_tokens_and_the_next_one() {
    let q = quota(10, 1_000, 5);
    let Decision::Admit { tat, wait_nanos } = decide(0, 0, 2, &q, 0) else {
        panic!()
    };
    assert_eq!(wait_nanos, 0);
    let snapshot = snapshot(tat, 0, &q);
    assert_eq!(snapshot.remaining, 3);
    assert_eq!(snapshot.next_nanos, 100 * MS);
    // Full: nothing more to come.
    assert_eq!(super::snapshot(0, 0, &q).next_nanos, 0);
    assert_eq!(super::snapshot(0, 0, &q).remaining, 5);
}

#[test]
fn weighted_cost_takes_several_tokens_and_is_capped_at_burst() {
    let q = quota(10, 1_000, 5);
    assert_eq!(run(&q, &[(0, 3), (0, 3)]), [true, false]);
    // A cost above burst is charged burst: it needs a full bucket and empties it.
    assert_eq!(
        run(&q, &[(0, 100), (0, 1), (500 * MS, 100)]),
        [true, false, true]
    );
}

#[test]
fn wait_mode_reserves_when_the_wait_fits() {
    let q = quota(10, 1_000, 1);
    let Decision::Admit { tat, .. } = decide(0, 0, 1, &q, 0) else {
        panic!()
    };
    let Decision::Admit {
        tat: reserved,
        wait_nanos,
        ..
    } = decide(tat, 0, 1, &q, 150 * MS)
    else {
        panic!("a 100 ms wait fits in 150 ms")
    };
    assert_eq!(wait_nanos, 100 * MS);
    let Decision::Deny {
        retry_after_nanos, ..
    } = decide(reserved, 0, 1, &q, 150 * MS)
    else {
        panic!("a 200 ms wait does not fit")
    };
    assert_eq!(retry_after_nanos, 200 * MS);
}

#[test]
fn refund_only_when_no_later_reservation_exists() {
    let q = quota(10, 1_000, 1);
    let one = increment(1, &q);
    assert_eq!(refund(200 * MS, 200 * MS, one), Some(100 * MS));
    assert_eq!(refund(300 * MS, 200 * MS, one), None);
}

#[test]
fn interval_rounds_up_so_rounding_never_loosens_the_limit() {
    let q = quota(3, 1_000, 1);
    assert_eq!(q.interval_nanos(), 333_333_334);
}

#[test]
fn quota_rejects_each_invalid_field() {
    assert_eq!(
        Quota::new(0, Duration::from_secs(1), 1)
            .unwrap_err()
            .field(),
        "rate"
    );
    assert_eq!(
        Quota::new(1, Duration::from_secs(1), 0)
            .unwrap_err()
            .field(),
        "burst"
    );
    assert_eq!(
        Quota::new(1, Duration::ZERO, 1).unwrap_err().field(),
        "period"
    );
    assert_eq!(
        Quota::new(10, Duration::from_nanos(5), 1)
            .unwrap_err()
            .field(),
        "rate"
    );
    assert_eq!(
        Quota::new(1, Duration::MAX, 1).unwrap_err().field(),
        "period"
    );
    assert_eq!(
        Quota::new(1, Duration::from_secs(365 * 24 * 3600), u32::MAX)
            .unwrap_err()
            .field(),
        "burst"
    );
}

/// Sorted arrival times (ns) with costs.
fn arrivals() -> impl Strategy<Value = Vec<(u64, u32)>> {
    prop::collection::vec((0..3_000 * MS, 1..4_u32), 1..120).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

proptest! {
    /// Over any span [a_i, a_j], admitted cost <= burst + rate * span / period.
    #[test]
    fn never_exceeds_burst_plus_rate_times_t(
        rate in 1..100_u32, period_ms in 1..2_000_u64, burst in 1..20_u32, arrivals in arrivals()
    ) {
        let q = quota(rate, period_ms, burst);
        let admitted = run(&q, &arrivals);
        let charged: Vec<u64> = arrivals.iter().map(|&(_, c)| charged(c, &q)).collect();
        let period_ns = u128::from(period_ms * MS);
        for i in 0..arrivals.len() {
            let mut sum = 0_u128;
            for j in i..arrivals.len() {
                if admitted[j] { sum += u128::from(charged[j]); }
                let span = u128::from(arrivals[j].0 - arrivals[i].0);
                // sum <= burst + rate * span / period, in integers: sum * period <= ...
                prop_assert!(
                    sum * period_ns <= u128::from(burst) * period_ns + u128::from(rate) * span,
                    "window [{}, {}] admitted {}", arrivals[i].0, arrivals[j].0, sum
                );
            }
        }
    }

    /// GCRA equals a token bucket of `burst` tokens refilled one per interval: it never
    /// denies what the bucket would allow, nor allows what it would deny.
    #[test]
    fn matches_a_reference_token_bucket(
        rate in 1..100_u32, period_ms in 1..2_000_u64, burst in 1..20_u32, arrivals in arrivals()
    ) {
        let q = quota(rate, period_ms, burst);
        let interval = u128::from(q.interval_nanos());
        let capacity = u128::from(burst) * interval; // tokens, in nanoseconds of refill
        let (mut level, mut last) = (capacity, 0_u64);
        let expected: Vec<bool> = arrivals.iter().map(|&(now, cost)| {
            level = (level + u128::from(now - last)).min(capacity);
            last = now;
            let need = u128::from(charged(cost, &q)) * interval;
            if need <= level { level -= need; true } else { false }
        }).collect();
        prop_assert_eq!(run(&q, &arrivals), expected);
    }

    /// A denied request retried exactly `retry_after` later (nothing else arriving) is
    /// admitted, and one nanosecond earlier it is not.
    #[test]
    fn retry_after_is_exact(
        rate in 1..100_u32, period_ms in 1..2_000_u64, burst in 1..20_u32, arrivals in arrivals()
    ) {
        let q = quota(rate, period_ms, burst);
        let mut tat = 0;
        for &(now, cost) in &arrivals {
            match decide(tat, now, cost, &q, 0) {
                Decision::Admit { tat: next, .. } => tat = next,
                Decision::Deny { retry_after_nanos, .. } => {
                    let later = now + retry_after_nanos;
                    let admitted = matches!(decide(tat, later, cost, &q, 0), Decision::Admit { .. });
                    prop_assert!(admitted, "not admitted after retry_after");
                    let early = matches!(decide(tat, later - 1, cost, &q, 0), Decision::Deny { .. });
                    prop_assert!(early, "admitted before retry_after");
                }
            }
        }
    }
}

proptest! {
    /// `Quota::new` accepts exactly the configurations whose arithmetic is sound.
    #[test]
    fn quota_new_rejects_exactly_the_invalid_configs(
        rate in prop_oneof![Just(0_u32), 1..=u32::MAX],
        period_nanos in prop_oneof![Just(0_u64), 1..=u64::MAX],
        burst in prop_oneof![Just(0_u32), 1..=u32::MAX],
    ) {
        let valid = rate > 0
            && burst > 0
            && period_nanos >= u64::from(rate)
            && period_nanos
                .div_ceil(u64::from(rate.max(1)))
                .checked_mul(u64::from(burst))
                .is_some_and(|t| t <= MAX_TOLERANCE_NANOS);
        let built = Quota::new(rate, Duration::from_nanos(period_nanos), burst);
        prop_assert_eq!(built.is_ok(), valid, "{:?}", built);
    }
}

proptest! {
    /// `next_nanos` is exactly when one more whole token is there: a client told `t` and
    /// coming back then finds `r + 1` (never before).
    #[test]
    fn the_next_token_comes_exactly_when_the_snapshot_says(
        rate in 1u32..1_000,
        period_ms in 1u64..10_000,
        burst in 1u32..50,
        owed_parts in 0u64..2_000,
        now in 0u64..1_000_000_000_000,
    ) {
        let q = quota(rate, period_ms, burst);
        let tat = now + q.interval_nanos() * owed_parts / 20;
        let before = snapshot(tat, now, &q);
        prop_assert!(before.remaining <= u64::from(burst));
        if before.next_nanos == 0 {
            prop_assert_eq!(before.remaining, u64::from(burst));
        } else {
            let at = snapshot(tat, now + before.next_nanos, &q);
            prop_assert_eq!(at.remaining, before.remaining + 1);
            let just_before = snapshot(tat, now + before.next_nanos - 1, &q);
            prop_assert_eq!(just_before.remaining, before.remaining);
        }
    }
}
