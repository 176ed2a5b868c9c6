//! The timeout against the crates it compares with, measured in the same groups: a bare `service_fn`
//! (baseline), tower's `Timeout` and tower-http's `TimeoutLayer`. One group for a response
//! that is ready on the first poll, one for a call that is pending once (so the timer is
//! armed), one for reading a caller's budget.
//!
//! Run with: cargo bench --bench timeout

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service, service_fn};
use tower_rampart::timeout::{HttpInbound, TimeoutLayer};

use tower_rampart_bench::support::http_bare as bare;
use tower_rampart_bench::support::ready_now;

const LIMIT: Duration = Duration::from_secs(10);

/// Pending on its first poll (waking itself), ready on the second.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = Result<Response<()>, Infallible>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(Ok(Response::new(())))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn slow()
-> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future = PendingOnce> + Clone
{
    service_fn(|_: Request<()>| PendingOnce(false))
}

/// Polls a future that completes on its second poll.
fn twice<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
        return out;
    }
    match fut.poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("still pending after two polls"),
    }
}

/// How a call's future is driven to its output: `ready_now` or `twice`.
type Drive<S> = fn(
    <S as Service<Request<()>>>::Future,
) -> <<S as Service<Request<()>>>::Future as Future>::Output;

fn run<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S, drive: Drive<S>)
where
    S: Service<Request<()>>,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            let _ = black_box(drive(svc.call(Request::new(()))));
        })
    });
}

/// The same benches for every timeout layer over the services `$make()` builds, each call
/// driven by `$drive` (a macro: each layer is a different service type).
macro_rules! timeout_group {
    ($c:expr, $name:expr, $make:expr, $drive:expr) => {{
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let mut group = $c.benchmark_group($name);
        group.throughput(Throughput::Elements(1));
        run(&mut group, "baseline", $make(), $drive);
        run(
            &mut group,
            "rampart_layer",
            TimeoutLayer::new(LIMIT).unwrap().layer($make()),
            $drive,
        );
        run(
            &mut group,
            "rampart_layer_with_extension",
            TimeoutLayer::new(LIMIT)
                .unwrap()
                .request_extension(true)
                .layer($make()),
            $drive,
        );
        run(
            &mut group,
            "rampart_layer_ignore_inbound",
            TimeoutLayer::new(LIMIT)
                .unwrap()
                .ignore_inbound()
                .layer($make()),
            $drive,
        );
        run(
            &mut group,
            "tower_timeout",
            tower::timeout::TimeoutLayer::new(LIMIT).layer($make()),
            $drive,
        );
        run(
            &mut group,
            "tower_http_timeout",
            tower_http::timeout::TimeoutLayer::with_status_code(
                http::StatusCode::GATEWAY_TIMEOUT,
                LIMIT,
            )
            .layer($make()),
            $drive,
        );
        group.finish();
    }};
}

fn ready(c: &mut Criterion) {
    timeout_group!(c, "timeout/ready", bare, ready_now);
}

fn pending(c: &mut Criterion) {
    timeout_group!(c, "timeout/pending_once", slow, twice);
}

fn inbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("timeout/inbound_budget");
    group.throughput(Throughput::Elements(1));
    let reader = HttpInbound::default();
    let mut grpc = HeaderMap::new();
    grpc.insert("grpc-timeout", "250m".parse().unwrap());
    let mut plain = HeaderMap::new();
    plain.insert("x-request-timeout-ms", "1500".parse().unwrap());
    let none = HeaderMap::new();
    for (name, headers) in [
        ("grpc_timeout", grpc),
        ("plain_ms", plain),
        ("absent", none),
    ] {
        group.bench_function(name, |b| b.iter(|| reader.budget(black_box(&headers))));
    }
    group.finish();
}

criterion_group!(benches, ready, pending, inbound);
criterion_main!(benches);
