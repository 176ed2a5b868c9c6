//! The whole stack a server runs (request id + rejection mapping + timeout + rate limit +
//! circuit breaker) against the leanest stack of the compared crates that does the same (tower-http
//! `SetRequestId` + `PropagateRequestId`, tower's `Timeout`, tower_governor, failsafe behind
//! a small adapter), over the same handler, in the same groups. Requests carry a `host`
//! header (and an `x-request-id`, in the first group) and the handler answers with a
//! `content-type`, as hyper and axum hand them over. Neither limiter nor breaker ever says
//! no here: what is measured is the price of the happy path.
//!
//! Run with: cargo bench --bench stack

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use axum::body::Body;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use tower::Service;

use tower_rampart_bench::cases;
use tower_rampart_bench::support::ready_now;

fn request(with_id: bool) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_static("example.com"));
    if with_id {
        req.headers_mut().insert(
            "x-request-id",
            HeaderValue::from_static("0193a5c2-7f3e-7b4c-9d2a-5f1e8c3b6a70"),
        );
    }
    req
}

fn run<S, B>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S, with_id: bool)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter(|| black_box(ready_now(svc.call(request(with_id))).unwrap()))
    });
}

fn stack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    for (group_name, with_id) in [("stack/incoming_id", true), ("stack/generated_id", false)] {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        run(&mut group, "baseline", cases::handler(), with_id);
        run(&mut group, "rampart", cases::rampart_stack(), with_id);
        run(&mut group, "compared", cases::compared_stack(), with_id);
        group.finish();
    }
}

criterion_group!(benches, stack);
criterion_main!(benches);
