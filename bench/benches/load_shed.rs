//! The load shedder, static and adaptive, beside tower's `ConcurrencyLimit` + `LoadShed`, on
//! one thread and two threads sharing one limit.
//!
//! Run with: cargo bench -p tower-rampart-bench --bench load_shed

// `criterion_group!` generates an undocumented `pub fn`; `iter_custom` times itself with the
// wall clock, which the crate's clock ban is not about.
#![allow(missing_docs, clippy::disallowed_types)]

use std::convert::Infallible;
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_rampart::load_shed::{Adaptive, AdaptiveLimit, AllNormal, LoadShedLayer};
use tower_rampart_bench::support::{ready_now, two_threads};

fn bare() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<()>, Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(|_: Request<()>| std::future::ready(Ok(Response::new(()))))
}

fn fixed() -> LoadShedLayer {
    LoadShedLayer::builder()
        .max_in_flight(1_000)
        .build()
        .unwrap()
}

fn adaptive() -> LoadShedLayer<AllNormal, Adaptive> {
    LoadShedLayer::builder()
        .adaptive(AdaptiveLimit::new().initial(1_000).max(10_000))
        .build()
        .unwrap()
}

/// One call, ready and answered, its response (and slot) dropped.
fn once<S: Service<Request<()>>>(svc: &mut S) {
    let ready = ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    let _ = black_box(ready.is_ok());
    let _ = black_box(ready_now(svc.call(Request::new(()))));
}

fn run<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: S)
where
    S: Service<Request<()>> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    let mut one = svc.clone();
    group.bench_function(format!("{name}/one_thread"), |b| b.iter(|| once(&mut one)));
    group.bench_function(format!("{name}/two_threads"), |b| {
        b.iter_custom(|iters| {
            let svc = svc.clone();
            two_threads(iters, move |n| {
                let mut svc = svc.clone();
                for _ in 0..n {
                    once(&mut svc);
                }
            })
        })
    });
}

fn shedding(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut group = c.benchmark_group("load_shed");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", bare());
    run(&mut group, "rampart_fixed", fixed().layer(bare()));
    run(&mut group, "rampart_adaptive", adaptive().layer(bare()));
    let tower = ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(1_000)
        .service(bare());
    // tower's pair is not `Clone` across threads with one limit: a `Buffer` would add its
    // own cost, so it is measured on one thread only.
    let mut tower = tower;
    group.bench_function("tower_concurrency_limit_load_shed/one_thread", |b| {
        b.iter(|| once(&mut tower))
    });
    group.finish();
}

criterion_group!(benches, shedding);
criterion_main!(benches);
