//! Request ids against tower-http's `SetRequestId` + `PropagateRequestId` (with
//! `MakeRequestUuid`), measured in the same groups over a bare `service_fn` baseline: an
//! incoming valid id, and a generated one (each generator).
//!
//! Requests and responses are shaped as axum and hyper hand them over: every request has a
//! `host` header and every response a `content-type`, so neither header map is empty and
//! the echo does not pay for allocating the response's map (which no real response needs).
//!
//! Run with: cargo bench --bench request_id

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request};
use tower::{Layer, Service};
use tower_rampart::request_id::{Counter, SetRequestIdLayer, UuidV4};

use tower_rampart_bench::cases;
use tower_rampart_bench::support::ready_now;

fn run<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S, incoming: bool)
where
    S: Service<Request<()>, Error = Infallible>,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            let mut req = Request::new(());
            req.headers_mut()
                .insert(http::header::HOST, HeaderValue::from_static("example.com"));
            if incoming {
                req.headers_mut().insert(
                    "x-request-id",
                    HeaderValue::from_static("0193a5c2-7f3e-7b4c-9d2a-5f1e8c3b6a70"),
                );
            }
            black_box(ready_now(svc.call(req)).unwrap())
        })
    });
}

fn incoming(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id/incoming_valid");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", cases::handler(), true);
    run(
        &mut group,
        "rampart_layer",
        SetRequestIdLayer::new().layer(cases::handler()),
        true,
    );
    run(
        &mut group,
        "rampart_layer_with_extension",
        SetRequestIdLayer::new()
            .request_extension(true)
            .layer(cases::handler()),
        true,
    );
    run(&mut group, "tower_http", cases::tower_http_ids(), true);
    run(&mut group, "floor_read_and_echo", cases::id_floor(), true);
    group.finish();
}

fn generated(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id/generated");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", cases::handler(), false);
    run(
        &mut group,
        "rampart_uuid_v7",
        SetRequestIdLayer::new().layer(cases::handler()),
        false,
    );
    run(
        &mut group,
        "rampart_uuid_v4",
        SetRequestIdLayer::new()
            .with_generator(UuidV4)
            .layer(cases::handler()),
        false,
    );
    run(
        &mut group,
        "rampart_counter",
        SetRequestIdLayer::new()
            .with_generator(Counter::new())
            .layer(cases::handler()),
        false,
    );
    run(
        &mut group,
        "tower_http_uuid_v4",
        cases::tower_http_ids(),
        false,
    );
    group.finish();
}

criterion_group!(benches, incoming, generated);
criterion_main!(benches);
