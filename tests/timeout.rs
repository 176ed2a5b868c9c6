//! The timeout and deadline propagation, black box: axum routers driven with `oneshot` in
//! paused time, tower-test mocks for the outbound layer, and a two-hop chain of real servers.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::timeout::{Deadline, PropagateDeadlineLayer, TimeoutLayer};
use tower_rampart::{BoxError, Rejection, ServiceBuilderExt, context};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An app whose handler sleeps `sleep` and answers with the milliseconds it had left.
fn app(layer: TimeoutLayer, sleep: Duration) -> Router {
    let router = Router::new().route(
        "/",
        get(move || async move {
            let left = Deadline::current()
                .expect("a deadline in scope")
                .remaining();
            tokio::time::sleep(sleep).await;
            left.as_millis().to_string()
        }),
    );
    guard(router, layer)
}

/// `router` behind `layer`, with rejections answered as responses.
fn guard(router: Router, layer: TimeoutLayer) -> Router {
    router.layer(ServiceBuilder::new().rejection_response().layer(layer))
}

async fn send(app: Router, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

// --- server side, paused time --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_slow_handler_gets_504_at_the_limit() {
    let started = tokio::time::Instant::now();
    let (status, _) = send(app(TimeoutLayer::new(ms(300)).unwrap(), ms(5_000)), &[]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(started.elapsed(), ms(300));
}

#[tokio::test(start_paused = true)]
async fn the_expiry_status_is_configurable_in_the_one_mapping() {
    let router = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(ms(1_000)).await;
            "late"
        }),
    );
    let app = router.layer(
        ServiceBuilder::new()
            .layer(tower_rampart::http::RejectionResponseLayer::new().status(
                tower_rampart::RejectionKind::TimedOut,
                StatusCode::SERVICE_UNAVAILABLE,
            ))
            .layer(TimeoutLayer::new(ms(100)).unwrap()),
    );
    let (status, _) = send(app, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn a_ready_response_wins_even_past_the_deadline() {
    let layer = TimeoutLayer::new(ms(10)).unwrap().ignore_inbound();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|()| async { Ok::<_, Infallible>("ready") });
    let call = svc.call(());
    tokio::time::advance(ms(1_000)).await;
    assert_eq!(call.await.unwrap(), "ready");
}

#[tokio::test(start_paused = true)]
async fn the_earlier_of_the_limit_and_the_callers_budget_wins() {
    let layer = || TimeoutLayer::new(ms(1_000)).unwrap();
    let quick = ms(0);
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[], "1000"),
        (&[("x-request-timeout-ms", "250")], "250"),
        (&[("x-request-timeout-ms", "5000")], "1000"),
        // A gRPC budget ends 1 ms early.
        (&[("grpc-timeout", "100m")], "99"),
        (
            &[("grpc-timeout", "2S"), ("x-request-timeout-ms", "400")],
            "400",
        ),
        // Malformed values are ignored, not a 400.
        (
            &[("grpc-timeout", "100x"), ("x-request-timeout-ms", "-5")],
            "1000",
        ),
    ];
    for (headers, expected) in cases {
        let (status, body) = send(app(layer(), quick), headers).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, expected),
            "{headers:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_fails_without_calling_the_handler() {
    let called = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&called);
    let app = Router::new()
        .route(
            "/",
            get(move || async move {
                seen.fetch_add(1, Ordering::SeqCst);
                "called"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .rejection_response()
                .layer(TimeoutLayer::new(ms(1_000)).unwrap()),
        );
    let (status, _) = send(app, &[("x-request-timeout-ms", "0")]).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(called.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn nested_layers_keep_the_earliest_deadline() {
    let inner = app(TimeoutLayer::new(ms(5_000)).unwrap(), ms(0));
    let outer = guard(inner, TimeoutLayer::new(ms(800)).unwrap());
    let (status, body) = send(outer, &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "800"));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_in_the_request_extensions_when_asked() {
    let router = Router::new().route(
        "/",
        get(|Extension(deadline): Extension<Deadline>| async move {
            deadline.remaining().as_millis().to_string()
        }),
    );
    let app = guard(
        router,
        TimeoutLayer::new(ms(700)).unwrap().request_extension(true),
    );
    let (status, body) = send(app, &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "700"));
}

#[tokio::test(start_paused = true)]
async fn handlers_extract_the_deadline_without_the_extension() {
    let router = Router::new().route(
        "/",
        get(|deadline: Deadline| async move { deadline.remaining().as_millis().to_string() }),
    );
    let app = guard(router, TimeoutLayer::new(ms(700)).unwrap());
    let (status, body) = send(app, &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "700"));
    // Without the layer: `Deadline` is refused with a 500 naming it, `Option<Deadline>` is `None`.
    let required = Router::new().route("/", get(|_: Deadline| async { "unreachable" }));
    let (status, body) = send(required, &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("TimeoutLayer"), "{body}");
    let optional = Router::new().route(
        "/",
        get(|d: Option<Deadline>| async move { d.is_some().to_string() }),
    );
    assert_eq!(send(optional, &[]).await, (StatusCode::OK, "false".into()));
}

#[tokio::test(start_paused = true)]
async fn generic_services_get_a_typed_rejection() {
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(ms(50)).unwrap().ignore_inbound())
        .service_fn(|n: u64| async move {
            tokio::time::sleep(ms(n)).await;
            Ok::<_, Infallible>(n)
        });
    assert_eq!(svc.ready().await.unwrap().call(10).await.unwrap(), 10);
    let err = svc.ready().await.unwrap().call(100).await.unwrap_err();
    match Rejection::find(err.as_ref()) {
        Some(Rejection::TimedOut(t)) => assert_eq!(t.after(), ms(50)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Heap allocations made by `svc` answering `requests` (each ready at once), with a runtime
/// entered for the timers.
fn allocations<S, Req>(mut svc: S, requests: Vec<Req>) -> u64
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (answered, allocations) = support::alloc::count(|| {
        requests
            .into_iter()
            .map(|req| support::ready_now(svc.call(req)).unwrap())
            .count()
    });
    assert!(answered > 0);
    allocations
}

#[test]
fn the_http_ready_path_with_defaults_makes_no_heap_allocation() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(ms(100)).unwrap())
        .service_fn(|req: Request<()>| std::future::ready(Ok::<_, Infallible>(req)));
    let requests = (0..1_000).map(|_| Request::new(())).collect();
    assert_eq!(allocations(svc, requests), 0);
}

#[test]
fn the_ready_path_makes_no_heap_allocation() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(ms(100)).unwrap().ignore_inbound())
        .service_fn(|n: u32| std::future::ready(Ok::<_, Infallible>(n)));
    assert_eq!(allocations(svc, (0..1_000).collect()), 0);
}

// --- outbound ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_never_sends_the_request() {
    let (mut client, mut upstream) = tower_test::mock::spawn_layer::<Request<()>, (), _>(
        PropagateDeadlineLayer::new().margin(ms(10)),
    );
    let ctx = context::Context::new().with_deadline(Deadline::after(ms(8)));
    assert_ready_ok!(client.poll_ready());
    let err = context::scope(ctx, async { client.call(Request::new(())).await })
        .await
        .unwrap_err();
    assert!(matches!(
        Rejection::find(err.as_ref()),
        Some(Rejection::TimedOut(_))
    ));
    assert_pending!(upstream.poll_request());
}

/// Regression: with 5.97 ms left and the 5 ms margin, the layer sent
/// `x-request-timeout-ms: 0` and the next hop answered 504 without running.
#[tokio::test(start_paused = true)]
async fn less_than_a_millisecond_after_the_margin_fails_locally() {
    let (mut client, mut upstream) =
        tower_test::mock::spawn_layer::<Request<()>, (), _>(PropagateDeadlineLayer::new());
    let ctx = context::Context::new().with_deadline(Deadline::after(Duration::from_micros(5_970)));
    assert_ready_ok!(client.poll_ready());
    let err = context::scope(ctx, async { client.call(Request::new(())).await })
        .await
        .unwrap_err();
    assert!(matches!(
        Rejection::find(err.as_ref()),
        Some(Rejection::TimedOut(_))
    ));
    assert_pending!(upstream.poll_request());
}

#[tokio::test(start_paused = true)]
async fn outbound_calls_carry_and_obey_the_remaining_budget() {
    let (mut client, mut upstream) =
        tower_test::mock::spawn_layer::<Request<()>, (), _>(PropagateDeadlineLayer::new());
    let ctx = context::Context::new().with_deadline(Deadline::after(ms(300)));
    tokio::time::advance(ms(100)).await;
    assert_ready_ok!(client.poll_ready());
    let handle = tokio::spawn(context::scope(ctx, async move {
        client.call(Request::new(())).await
    }));
    let (req, _reply) = upstream.next_request().await.unwrap();
    assert_eq!(req.headers()["x-request-timeout-ms"], "195");
    assert_eq!(req.headers()["grpc-timeout"], "195000u");
    // Never answered: the local timer fails the call when the budget runs out.
    let err = handle.await.unwrap().unwrap_err();
    assert!(matches!(
        Rejection::find(err.as_ref()),
        Some(Rejection::TimedOut(t)) if t.after() == ms(195)
    ));
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_requests_pass_untouched() {
    let mut client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .service(service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(req.headers().len())
        }));
    let headers = client
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(headers, 0);
}

// --- two hops over real TCP ----------------------------------------------------------------

#[tokio::test]
async fn two_hops_share_one_budget_over_real_tcp() {
    // Service B: generous limit, slow handler; records the budget it was sent.
    let seen_ms = Arc::new(AtomicU64::new(u64::MAX));
    let record = Arc::clone(&seen_ms);
    let b = Router::new()
        .route(
            "/",
            get(move |req: Request<Body>| async move {
                let sent = req.headers()["x-request-timeout-ms"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                record.store(sent, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(2)).await;
                "too late"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .rejection_response()
                .layer(TimeoutLayer::new(Duration::from_secs(10)).unwrap()),
        );
    let b_addr = support::serve(b).await;

    // The edge: 300 ms for everything, calling B through the propagation layer.
    let client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let edge = Router::new()
        .route(
            "/",
            get(move || {
                let mut client = client.clone();
                async move {
                    // B's answer is passed on as it is: B times out first (it was sent
                    // less than the edge's budget), or the edge's own timer does.
                    let result: Result<StatusCode, BoxError> = async {
                        let req = Request::get(format!("http://{b_addr}/")).body(Empty::new())?;
                        let response = client.ready().await?.call(req).await?;
                        Ok(response.status())
                    }
                    .await;
                    result
                        .map_err(|err| Rejection::find(err.as_ref()).cloned().expect("a rejection"))
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .rejection_response()
                .layer(TimeoutLayer::new(ms(300)).unwrap()),
        );
    let edge_addr = support::serve(edge).await;

    let started = tokio::time::Instant::now();
    let reply = support::get(edge_addr, "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    let sent = seen_ms.load(Ordering::SeqCst);
    assert!(sent < 300, "B was sent {sent} ms");
    assert!(took < Duration::from_millis(1_500), "504 after {took:?}");
}

/// Regression: `TimeoutLayer::new(Duration::ZERO)` was accepted, and every request then got 504.
#[test]
fn a_zero_limit_is_refused_when_built() {
    let err = TimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "limit");
    assert!(TimeoutLayer::new(Duration::from_nanos(1)).is_ok());
}
