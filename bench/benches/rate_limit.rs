//! The rate limiter against the crates it compares with, measured in the same groups:
//! a bare `service_fn` (baseline), governor's direct and keyed `check`, and tower's
//! `RateLimit` (allowed path only: its refusal is a `poll_ready` that waits).
//!
//! Run with: cargo bench --bench rate_limit

// `criterion_group!` generates an undocumented `pub fn`; `iter_custom` times itself with the
// wall clock, which the crate's clock ban is not about.
#![allow(missing_docs, clippy::disallowed_types)]

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant as StdInstant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tower::{Layer, Service, service_fn};
use tower_rampart::BoxError;
use tower_rampart::clock::{Clock, ManualClock, QuantaClock, TokioClock};
use tower_rampart::rate_limit::RateLimitLayer;

use tower_rampart_bench::support::ready_now;
use tower_rampart_bench::support::two_threads;

type Ready = std::future::Ready<Result<u32, Infallible>>;

fn bare() -> impl Service<u32, Response = u32, Error = Infallible, Future = Ready> + Clone {
    service_fn(|n: u32| std::future::ready(Ok::<_, Infallible>(n)))
}

/// As fast as one token per nanosecond: never refuses at benchmark speed.
const UNLIMITED: u32 = 1_000_000_000;

fn governor_quota(rate: u32) -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(rate).unwrap())
}

/// The global limiter over the bare service, with `clock`.
fn global<C: Clock>(clock: C) -> impl Service<u32, Response = u32, Error = BoxError> {
    let layer = RateLimitLayer::per_second(UNLIMITED)
        .with_clock(clock)
        .build()
        .unwrap();
    layer.layer(bare())
}

/// One admitted call per iteration.
fn admit_one<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<u32, Response = u32>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter(|| ready_now(svc.call(black_box(1))).unwrap())
    });
}

const KEYS: u32 = 10_000;

/// A limiter keyed by the request, with `clock`, holding `KEYS` live keys.
fn keyed_warm<C: Clock>(clock: C) -> impl Service<u32, Response = u32, Error = BoxError> {
    let layer = RateLimitLayer::per_second(UNLIMITED)
        .with_key(|n: &u32| Some(*n))
        .with_clock(clock)
        .build()
        .unwrap();
    let mut svc = layer.layer(bare());
    for key in 0..KEYS {
        ready_now(svc.call(key)).unwrap();
    }
    svc
}

/// One admitted call per iteration, cycling through the live keys.
fn cycle_keys<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<u32, Response = u32>,
    S::Error: std::fmt::Debug,
{
    let mut n = 0_u32;
    group.bench_function(name, |b| {
        b.iter(|| {
            n = (n + 1) % KEYS;
            ready_now(svc.call(black_box(n))).unwrap()
        })
    });
}

/// One limiter with `clock`, a service per thread, two threads at once.
fn share_two_threads<C: Clock>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, clock: C) {
    let layer = RateLimitLayer::per_second(UNLIMITED)
        .with_clock(clock)
        .build()
        .unwrap();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let layer = layer.clone();
            two_threads(iters, move |n| {
                let mut svc = layer.layer(bare());
                for i in 0..n {
                    black_box(ready_now(svc.call(i as u32)).unwrap());
                }
            })
        })
    });
}

fn allowed(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/allowed");
    group.throughput(Throughput::Elements(1));

    admit_one(&mut group, "baseline", bare());

    admit_one(&mut group, "rampart_layer", global(TokioClock));
    admit_one(
        &mut group,
        "rampart_layer_manual_clock",
        global(ManualClock::new()),
    );
    admit_one(
        &mut group,
        "rampart_layer_quanta_clock",
        global(QuantaClock::new()),
    );

    // The raw decision, like for like with governor's `check`: no service around it.
    let raw = RateLimitLayer::per_second(UNLIMITED).build().unwrap();
    group.bench_function("rampart_check", |b| {
        b.iter(|| raw.check(black_box(&())).unwrap())
    });
    let raw = RateLimitLayer::per_second(UNLIMITED)
        .with_clock(QuantaClock::new())
        .build()
        .unwrap();
    group.bench_function("rampart_check_quanta_clock", |b| {
        b.iter(|| raw.check(black_box(&())).unwrap())
    });

    let governor = governor::RateLimiter::direct(governor_quota(UNLIMITED));
    group.bench_function("governor_direct_check", |b| {
        b.iter(|| governor.check().unwrap())
    });

    // What one clock read costs here. Benches build tokio with the dev-dependency feature
    // `test-util`, whose `Instant::now` first looks for a paused clock; production builds read
    // the system clock directly, as `clock_std_instant_now` does.
    group.bench_function("clock_tokio_instant_now", |b| {
        b.iter(tokio::time::Instant::now)
    });
    group.bench_function("clock_std_instant_now", |b| b.iter(StdInstant::now));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut tower_limit =
        tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(bare());
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function("tower_rate_limit", |b| {
        b.iter(|| {
            assert!(tower_limit.poll_ready(&mut cx).is_ready());
            ready_now(tower_limit.call(black_box(1))).unwrap()
        })
    });
    group.finish();
}

fn rejected(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/rejected");
    group.throughput(Throughput::Elements(1));

    admit_one(&mut group, "baseline", bare());

    // Time stands still, so once the burst is spent every call is refused.
    let layer = RateLimitLayer::per_second(1)
        .burst(1)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut rampart = layer.layer(bare());
    let _ = ready_now(rampart.call(0));
    group.bench_function("rampart_layer", |b| {
        b.iter(|| ready_now(rampart.call(black_box(1))).unwrap_err())
    });

    let governor =
        governor::RateLimiter::direct(governor::Quota::per_hour(NonZeroU32::new(1).unwrap()));
    let _ = governor.check();
    group.bench_function("governor_direct_check", |b| {
        b.iter(|| governor.check().unwrap_err())
    });
    group.finish();
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/keyed_10k");
    group.throughput(Throughput::Elements(1));

    cycle_keys(&mut group, "baseline", bare());
    cycle_keys(&mut group, "rampart_layer", keyed_warm(TokioClock));
    cycle_keys(
        &mut group,
        "rampart_layer_manual_clock",
        keyed_warm(ManualClock::new()),
    );
    cycle_keys(
        &mut group,
        "rampart_layer_quanta_clock",
        keyed_warm(QuantaClock::new()),
    );

    let governor = governor::RateLimiter::keyed(governor_quota(UNLIMITED));
    for key in 0..KEYS {
        governor.check_key(&key).unwrap();
    }
    let mut n = 0_u32;
    group.bench_function("governor_keyed_check", |b| {
        b.iter(|| {
            n = (n + 1) % KEYS;
            governor.check_key(black_box(&n)).unwrap()
        })
    });
    group.finish();
}

/// Runs `per_thread` on two OS threads at once, each doing `iters / 2` operations, and returns
/// the wall time: the contended cost per operation across the pair.
fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/two_threads");
    group.throughput(Throughput::Elements(1));

    group.bench_function("baseline", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |n| {
                let mut svc = bare();
                for i in 0..n {
                    black_box(ready_now(svc.call(i as u32)).unwrap());
                }
            })
        })
    });

    share_two_threads(&mut group, "rampart_layer", TokioClock);
    share_two_threads(&mut group, "rampart_layer_quanta_clock", QuantaClock::new());

    let governor = Arc::new(governor::RateLimiter::direct(governor_quota(UNLIMITED)));
    group.bench_function("governor_direct_check", |b| {
        b.iter_custom(|iters| {
            let governor = Arc::clone(&governor);
            two_threads(iters, move |n| {
                for _ in 0..n {
                    governor.check().unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, allowed, rejected, keyed, contention);
criterion_main!(benches);
