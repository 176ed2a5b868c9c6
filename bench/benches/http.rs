//! The rejection → response mapping: what `RejectionResponseLayer` costs on the admitted
//! path (beside the bare `service_fn` baseline in the same group) and what building each
//! rejection response costs.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};
use tower_rampart::error::{CircuitOpen, RateLimited};
use tower_rampart::http::RejectionResponseLayer;
use tower_rampart::{BoxError, Rejection};

use tower_rampart_bench::support::ready_now;

fn ok(_: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

fn bench_rejection_response(c: &mut Criterion) {
    let mut group = c.benchmark_group("rejection_response");
    group.throughput(Throughput::Elements(1));

    let mut baseline = service_fn(ok);
    group.bench_function("baseline", |b| {
        b.iter(|| {
            ready_now(baseline.call(black_box(Request::new(()))))
                .unwrap()
                .status()
        })
    });

    let mut admitted = RejectionResponseLayer::new().layer(service_fn(ok));
    group.bench_function("admitted", |b| {
        b.iter(|| {
            ready_now(admitted.call(black_box(Request::new(()))))
                .unwrap()
                .status()
        })
    });

    let mut limited = RejectionResponseLayer::new().layer(service_fn(|_: Request<()>| {
        let limited = RateLimited::new(Duration::from_millis(200))
            .with_quota("default", 20, Duration::from_millis(400))
            .with_remaining(0, Duration::from_millis(400));
        std::future::ready(Err::<Response<Full<Bytes>>, BoxError>(
            Rejection::from(limited).into(),
        ))
    }));
    group.bench_function("rejected_429", |b| {
        b.iter(|| {
            ready_now(limited.call(black_box(Request::new(()))))
                .unwrap()
                .status()
        })
    });

    let mut open = RejectionResponseLayer::new().layer(service_fn(|_: Request<()>| {
        let open = CircuitOpen::new(Duration::from_secs(10));
        std::future::ready(Err::<Response<Full<Bytes>>, BoxError>(
            Rejection::from(open).into(),
        ))
    }));
    group.bench_function("rejected_503", |b| {
        b.iter(|| {
            ready_now(open.call(black_box(Request::new(()))))
                .unwrap()
                .status()
        })
    });

    group.finish();
}

criterion_group!(benches, bench_rejection_response);
criterion_main!(benches);
