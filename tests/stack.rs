//! The whole server stack (request id, rejection mapping, timeout, rate limit, circuit
//! breaker) adds at most one heap allocation per request: none for a
//! request that brings a valid id, one (the id) for a request that does not.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Request, Response, header};
use tower::{ServiceBuilder, service_fn};
use tower_rampart::ServiceBuilderExt;
use tower_rampart::circuit_breaker::CircuitBreakerLayer;
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::TimeoutLayer;

fn respond(_: Request<()>) -> std::future::Ready<Result<Response<Body>, Infallible>> {
    let mut response = Response::new(Body::empty());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    std::future::ready(Ok(response))
}

#[test]
fn the_whole_stack_adds_at_most_two_allocations_per_request() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let stack = || {
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .rejection_response()
            .layer(TimeoutLayer::new(Duration::from_secs(10)).unwrap())
            .layer(
                RateLimitLayer::per_second(1_000_000)
                    .burst(1_000_000)
                    .build()
                    .unwrap(),
            )
            .layer(CircuitBreakerLayer::builder().build().unwrap())
            .service_fn(respond)
    };
    // As hyper hands them over: a `host` header, and values that share the read buffer.
    let shared = support::shared_header;
    let plain = || {
        let mut req = Request::new(());
        req.headers_mut()
            .insert(header::HOST, shared("example.com"));
        req
    };
    let with_id = || {
        let mut req = plain();
        req.headers_mut().insert("x-request-id", shared("edge-42"));
        req
    };
    let bare = || service_fn(respond);
    let kept = support::allocations_per_request(stack(), &with_id)
        - support::allocations_per_request(bare(), &with_id);
    let generated = support::allocations_per_request(stack(), &plain)
        - support::allocations_per_request(bare(), &plain);
    println!("allocations added per request: incoming id {kept}, generated id {generated}");
    // Exact, to catch a regression long before the budget of 2 is reached.
    assert_eq!(kept, 0.0, "incoming id");
    assert_eq!(generated, 1.0, "generated id");
}
