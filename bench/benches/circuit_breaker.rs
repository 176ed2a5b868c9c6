//! The circuit breaker against the crates it compares with, measured in the same groups: a bare `service_fn`
//! (baseline), failsafe's `StateMachine` behind a minimal no-boxing Tower adapter written
//! here, and tower-resilience's circuit breaker. The 2-thread group also has the target's
//! floor: a pair of uncontended `AtomicU64::fetch_add`s per call.
//!
//! Run with: cargo bench --bench circuit_breaker

// `criterion_group!` generates an undocumented `pub fn`; `iter_custom` times itself with the
// wall clock, which the crate's clock ban is not about.
#![allow(missing_docs, clippy::disallowed_types)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use tower::{Layer, Service, service_fn};
use tower_rampart::BoxError;
use tower_rampart::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, ErrorsFail};

use tower_rampart_bench::support::ready_now;
use tower_rampart_bench::support::{spin_on, two_threads};

type Ready = std::future::Ready<Result<u32, BoxError>>;

/// Answers `Ok(n)`, or fails when `n` is 0.
fn bare() -> impl Service<u32, Response = u32, Error = BoxError, Future = Ready> + Clone {
    service_fn(|n: u32| {
        std::future::ready(if n == 0 {
            Err(BoxError::from("failed"))
        } else {
            Ok(n)
        })
    })
}

// --- the compared crates ---------------------------------------------------------------------------

fn resilience_layer() -> tower_resilience_circuitbreaker::CircuitBreakerLayer {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(5)
        .wait_duration_in_open(Duration::from_secs(3_600))
        .build()
        .unwrap()
}

// --- tower-rampart -------------------------------------------------------------------------

type Rampart = CircuitBreakerLayer<tower_rampart::circuit_breaker::Single, ErrorsFail>;

/// A breaker that stays open for an hour once tripped, configured by `policy`.
fn rampart(policy: impl FnOnce(CircuitBreakerBuilder) -> CircuitBreakerBuilder) -> Rampart {
    policy(CircuitBreakerLayer::builder().open_for(Duration::from_secs(3_600)))
        .with_classifier(ErrorsFail)
        .build()
        .unwrap()
}

/// The default policy: 5 failures in a row.
fn rampart_default() -> Rampart {
    rampart(|b| b)
}

/// Failure rate over the last 100 calls.
fn rampart_count_window() -> Rampart {
    rampart(|b| {
        b.no_failure_threshold()
            .failure_rate(50.0)
            .count_window(100)
            .minimum_calls(5)
    })
}

/// Failure rate over the last 10 s, in 1 s buckets.
fn rampart_time_window() -> Rampart {
    rampart(|b| {
        b.no_failure_threshold()
            .failure_rate(50.0)
            .time_window(Duration::from_secs(10), 10)
            .minimum_calls(5)
    })
}

fn run<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, req: u32, mut svc: S)
where
    S: Service<u32>,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            let _ = black_box(ready_now(svc.call(black_box(req))));
        })
    });
}

/// Fails a service's calls until they stop reaching the inner service.
fn trip<S: Service<u32>>(svc: &mut S) {
    for _ in 0..200 {
        let _ = spin_on(svc.call(0));
    }
}

fn closed(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/closed");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", 1, bare());
    run(
        &mut group,
        "rampart_layer",
        1,
        rampart_default().layer(bare()),
    );
    run(
        &mut group,
        "rampart_layer_count_window",
        1,
        rampart_count_window().layer(bare()),
    );
    run(
        &mut group,
        "rampart_layer_time_window",
        1,
        rampart_time_window().layer(bare()),
    );
    run(
        &mut group,
        "failsafe_adapter",
        1,
        tower_rampart_bench::support::failsafe_layer(bare()),
    );
    let mut resilience = resilience_layer().layer(bare());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(spin_on(resilience.call(black_box(1)))))
    });
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/open");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", 1, bare());
    let mut svc = rampart_default().layer(bare());
    trip(&mut svc);
    run(&mut group, "rampart_layer", 1, svc);
    let mut svc = tower_rampart_bench::support::failsafe_layer(bare());
    trip(&mut svc);
    run(&mut group, "failsafe_adapter", 1, svc);
    let mut resilience = resilience_layer().layer(bare());
    trip(&mut resilience);
    group.bench_function("tower_resilience", |b| {
        b.iter(|| black_box(spin_on(resilience.call(black_box(1)))))
    });
    group.finish();
}

fn half_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/half_open_rejection");
    group.throughput(Throughput::Elements(1));
    let clock = tower_rampart::clock::ManualClock::new();
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .open_for(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(3_600))
        .with_classifier(ErrorsFail)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let hang = service_fn(|n: u32| async move {
        if n == 0 {
            Err::<u32, BoxError>("failed".into())
        } else {
            std::future::pending().await
        }
    });
    let mut svc = layer.layer(hang);
    let _ = ready_now(svc.call(0));
    clock.advance(Duration::from_secs(1));
    // The one probe hangs: every other call is a half-open rejection.
    let probe = Box::pin(svc.call(1));
    let mut rejected = layer.layer(bare());
    group.bench_function("rampart_layer", |b| {
        b.iter(|| {
            let _ = black_box(ready_now(rejected.call(black_box(1))));
        })
    });
    drop(probe);
    group.finish();
}

fn share<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: S)
where
    S: Service<u32> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let svc = svc.clone();
            two_threads(iters, move |n| {
                let mut svc = svc.clone();
                for _ in 0..n {
                    let _ = black_box(spin_on(svc.call(1)));
                }
            })
        })
    });
}

fn contention(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/two_threads");
    group.throughput(Throughput::Elements(1));
    share(&mut group, "baseline", bare());
    group.bench_function("fetch_add_pair_uncontended", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |n| {
                // Each thread its own pair: no sharing.
                let pair = [AtomicU64::new(0), AtomicU64::new(0)];
                for _ in 0..n {
                    black_box(pair[0].fetch_add(1, Ordering::Relaxed));
                    black_box(pair[1].fetch_add(1, Ordering::Relaxed));
                }
            })
        })
    });
    share(&mut group, "rampart_layer", rampart_default().layer(bare()));
    share(
        &mut group,
        "rampart_layer_count_window",
        rampart_count_window().layer(bare()),
    );
    share(
        &mut group,
        "rampart_layer_time_window",
        rampart_time_window().layer(bare()),
    );
    share(
        &mut group,
        "failsafe_adapter",
        tower_rampart_bench::support::failsafe_layer(bare()),
    );
    share(
        &mut group,
        "tower_resilience",
        resilience_layer().layer(bare()),
    );
    group.finish();
}

criterion_group!(benches, closed, open, half_open, contention);
criterion_main!(benches);
