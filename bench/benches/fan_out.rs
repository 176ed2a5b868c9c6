//! The fan-out against the hand-written ways of calling three services at once, in the same
//! group: `tokio::join!` of the three calls (the plain join), `join_all` of boxed futures, and a
//! `FanOut` of the same three parts. Every service answers at once, so what is measured is
//! the joining itself: readiness, the calls, the per-part deadlines (never armed) and the
//! outcome.
//!
//! Run with: cargo bench --bench fan_out

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::hint::black_box;
use std::pin::Pin;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::{Service, ServiceExt, service_fn};
use tower_rampart::fan_out::{FanOut, Part};

use tower_rampart_bench::support::ready_now;

fn part(
    scale: u64,
) -> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(move |n: u64| std::future::ready(Ok(n * scale)))
}

fn three_parts(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let (a, b, c3) = (part(1), part(2), part(3));
    let mut group = c.benchmark_group("fan_out/three_ready_parts");
    group.throughput(Throughput::Elements(1));

    group.bench_function("tokio_join", |bench| {
        bench.iter(|| {
            let n = black_box(7u64);
            let (x, y, z) = ready_now(async {
                tokio::join!(
                    a.clone().oneshot(n),
                    b.clone().oneshot(n),
                    c3.clone().oneshot(n)
                )
            });
            black_box((x.unwrap(), y.unwrap(), z.unwrap()))
        })
    });

    // What a hand-written fan-out needs for per-part deadlines: a timeout around each call.
    group.bench_function("tokio_join_with_timeouts", |bench| {
        bench.iter(|| {
            let n = black_box(7u64);
            let limit = Duration::from_millis(300);
            let (x, y, z) = ready_now(async {
                tokio::join!(
                    tokio::time::timeout(Duration::from_secs(1), a.clone().oneshot(n)),
                    tokio::time::timeout(limit, b.clone().oneshot(n)),
                    tokio::time::timeout(limit, c3.clone().oneshot(n))
                )
            });
            black_box((x.is_ok(), y.is_ok(), z.is_ok()))
        })
    });

    type Boxed = Pin<Box<dyn Future<Output = Result<u64, Infallible>> + Send>>;
    group.bench_function("join_all_boxed", |bench| {
        bench.iter(|| {
            let n = black_box(7u64);
            let calls: Vec<Boxed> = vec![
                Box::pin(a.clone().oneshot(n)),
                Box::pin(b.clone().oneshot(n)),
                Box::pin(c3.clone().oneshot(n)),
            ];
            black_box(ready_now(futures_util::future::join_all(calls)))
        })
    });

    let fan = FanOut::builder(Duration::from_secs(1))
        .part(Part::essential("a", a.clone()))
        .part(Part::optional("b", b.clone()).timeout(Duration::from_millis(300)))
        .part(Part::optional("c", c3.clone()).timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    group.bench_function("rampart_fan_out", |bench| {
        bench.iter(|| black_box(ready_now(fan.call(&black_box(7u64))).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, three_parts);
criterion_main!(benches);
