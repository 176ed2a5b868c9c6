//! The services the benches measure, built once here for the criterion benches and the
//! instruction-count harness alike: the handler, the whole rampart stack, the same jobs done
//! by the compared crates, and the request-id floor.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Request, Response, header};
use tower::{Service, ServiceBuilder, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;
use tower_rampart::ServiceBuilderExt;
use tower_rampart::circuit_breaker::{CircuitBreakerLayer, ClassifiedBody};
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::TimeoutLayer;

use crate::support::failsafe_layer;

/// The time limit of the stacks: far longer than any call here takes.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Never refuses at benchmark speed.
pub const UNLIMITED: u32 = 1_000_000_000;

/// The handler: an empty `200` with a `content-type`, as any axum handler returning a body.
pub fn handler<B>()
-> impl Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_: Request<B>| {
        let mut response = Response::new(Body::empty());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// The whole rampart server stack over [`handler`]: request id, rejection mapping, timeout,
/// rate limit, circuit breaker.
pub fn rampart_stack<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<ClassifiedBody<Body>>, Error = Infallible> {
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new())
        .rejection_response()
        .layer(TimeoutLayer::new(LIMIT).unwrap())
        .layer(
            RateLimitLayer::per_second(UNLIMITED)
                .burst(UNLIMITED)
                .build()
                .unwrap(),
        )
        .layer(CircuitBreakerLayer::builder().build().unwrap())
        .service(handler())
}

/// The same jobs done by tower-http's request id, tower's `Timeout`, tower_governor and
/// failsafe (whose errors are not mapped to responses).
pub fn compared_stack<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<Body>, Error = tower::BoxError> {
    let governor = GovernorConfigBuilder::default()
        .key_extractor(GlobalKeyExtractor)
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    ServiceBuilder::new()
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower::timeout::TimeoutLayer::new(LIMIT))
        .layer(GovernorLayer {
            config: Arc::new(governor),
        })
        .layer_fn(failsafe_layer)
        .service(handler())
}

/// tower-http's request id, set and echoed, over [`handler`].
pub fn tower_http_ids<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<Body>, Error = Infallible> {
    ServiceBuilder::new()
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .service(handler())
}

/// The least a request-id layer does for a kept id: read the header and copy it onto the
/// response (no check, no span, no context). Its distance from [`handler`] is the floor of
/// any request-id layer's cost.
pub fn id_floor<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<Body>, Error = Infallible> {
    static NAME: HeaderName = HeaderName::from_static("x-request-id");
    let mut inner = handler();
    service_fn(move |req: Request<B>| {
        let id = req.headers().get(&NAME).cloned();
        let answer = inner.call(req);
        async move {
            let mut response = answer.await?;
            if let Some(id) = id {
                response.headers_mut().insert(&NAME, id);
            }
            Ok::<_, Infallible>(response)
        }
    })
}
