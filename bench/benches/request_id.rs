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
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, ServiceBuilder};
use tower_rampart::request_id::{Counter, SetRequestIdLayer, UuidV4};

use tower_rampart_bench::support::ready_now;

/// The baseline handler: an empty `200` with a `content-type`, as any axum handler that
/// returns a body answers.
fn bare() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    tower::service_fn(|_: Request<()>| {
        let mut response = Response::new(());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

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

fn tower_http() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> {
    ServiceBuilder::new()
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .service(bare())
}

/// The least any request-id layer does for a kept id: read the header, and copy it onto the
/// response (no check, no span, no context). The distance from the baseline to this is the
/// floor of the layer's cost.
fn floor() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> {
    static NAME: http::HeaderName = http::HeaderName::from_static("x-request-id");
    let mut inner = bare();
    tower::service_fn(move |req: Request<()>| {
        let id = req.headers().get(&NAME).cloned();
        let answer = inner.call(req);
        async move {
            let mut response = answer.await?;
            if let Some(id) = id {
                response.headers_mut().insert(&NAME, id);
            }
            Ok(response)
        }
    })
}

fn incoming(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id/incoming_valid");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", bare(), true);
    run(
        &mut group,
        "rampart_layer",
        SetRequestIdLayer::new().layer(bare()),
        true,
    );
    run(
        &mut group,
        "rampart_layer_with_extension",
        SetRequestIdLayer::new()
            .request_extension(true)
            .layer(bare()),
        true,
    );
    run(&mut group, "tower_http", tower_http(), true);
    run(&mut group, "floor_read_and_echo", floor(), true);
    group.finish();
}

fn generated(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_id/generated");
    group.throughput(Throughput::Elements(1));
    run(&mut group, "baseline", bare(), false);
    run(
        &mut group,
        "rampart_uuid_v7",
        SetRequestIdLayer::new().layer(bare()),
        false,
    );
    run(
        &mut group,
        "rampart_uuid_v4",
        SetRequestIdLayer::new()
            .with_generator(UuidV4)
            .layer(bare()),
        false,
    );
    run(
        &mut group,
        "rampart_counter",
        SetRequestIdLayer::new()
            .with_generator(Counter::new())
            .layer(bare()),
        false,
    );
    run(&mut group, "tower_http_uuid_v4", tower_http(), false);
    group.finish();
}

criterion_group!(benches, incoming, generated);
criterion_main!(benches);
