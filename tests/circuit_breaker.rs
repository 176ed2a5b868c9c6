//! The circuit breaker, black box: tower-test mocks in paused time, 2 OS threads and 1 000
//! tasks racing for probes, dropped futures, keyed breakers, and an axum `Router` over real
//! TCP.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{Request, Response, StatusCode, header};
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::circuit_breaker::{
    CircuitBreakerLayer, CircuitState, ErrorsFail, Outcome, UpstreamHost,
};
use tower_rampart::clock::ManualClock;
use tower_rampart::error::CircuitOpen;
use tower_rampart::{BoxError, Rejection, ServiceBuilderExt};

fn open_for(err: &BoxError) -> Duration {
    match Rejection::find(err.as_ref()) {
        Some(Rejection::CircuitOpen(open)) => open.retry_after(),
        other => panic!("expected an open-circuit rejection, got {other:?}"),
    }
}

/// A service that fails when the request is `true`.
fn flaky()
-> impl Service<bool, Response = (), Error = BoxError, Future = std::future::Ready<Result<(), BoxError>>>
+ Clone {
    service_fn(|fail: bool| {
        std::future::ready(if fail {
            Err(BoxError::from("upstream failed"))
        } else {
            Ok(())
        })
    })
}

// --- paused time, tower-test ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn trips_rejects_probes_and_closes_in_paused_time() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(2)
        .open_for(Duration::from_secs(10))
        .with_classifier(ErrorsFail)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut upstream) = tower_test::mock::spawn_layer::<(), (), _>(layer);

    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let call = svc.call(());
        let (_, reply) = upstream.next_request().await.unwrap();
        reply.send_error("boom");
        assert_eq!(call.await.unwrap_err().to_string(), "boom");
    }
    assert_eq!(handle.state(), CircuitState::Open);

    // Open: rejected at once, the upstream never sees the call.
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(open_for(&err), Duration::from_secs(6));
    assert_pending!(upstream.poll_request());

    // After the open time, one probe goes through and closes the breaker.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_ready_ok!(svc.poll_ready());
    let probe = svc.call(());
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    let (_, reply) = upstream.next_request().await.unwrap();
    reply.send_response(());
    probe.await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    let metrics = handle.metrics();
    assert_eq!(
        (metrics.failures(), metrics.successes(), metrics.rejected()),
        (2, 1, 1)
    );
}

type Mocked = (
    tower_test::mock::Spawn<
        tower_rampart::circuit_breaker::CircuitBreaker<
            tower_test::mock::Mock<(), ()>,
            tower_rampart::circuit_breaker::Single,
            ErrorsFail,
        >,
    >,
    tower_test::mock::Handle<(), ()>,
);

/// A mocked upstream behind `layer` (threshold 1, open 1 s), tripped by one failure, with the
/// open time over.
async fn tripped_after_1s(
    layer: &CircuitBreakerLayer<tower_rampart::circuit_breaker::Single, ErrorsFail>,
) -> Mocked {
    let (mut svc, mut upstream) = tower_test::mock::spawn_layer::<(), (), _>(layer.clone());
    assert_ready_ok!(svc.poll_ready());
    let call = svc.call(());
    upstream.next_request().await.unwrap().1.send_error("down");
    call.await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    (svc, upstream)
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .open_for(Duration::from_secs(1))
        .with_classifier(ErrorsFail)
        .build()
        .unwrap();
    let (mut svc, mut upstream) = tripped_after_1s(&layer).await;
    assert_ready_ok!(svc.poll_ready());
    let probe = svc.call(());
    assert_ready_ok!(svc.poll_ready());
    assert!(svc.call(()).await.is_err(), "the only probe slot is taken");
    drop(probe); // the client went away

    assert_ready_ok!(svc.poll_ready());
    let probe = svc.call(());
    // Two requests reached the upstream: the dropped probe and this one.
    upstream.next_request().await.unwrap();
    upstream.next_request().await.unwrap().1.send_response(());
    probe.await.unwrap();
    assert_eq!(layer.handle().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_reopens_the_breaker_at_its_deadline() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .open_for(Duration::from_secs(1))
        .backoff(1)
        .probe_timeout(Duration::from_secs(3))
        .with_classifier(ErrorsFail)
        .build()
        .unwrap();
    let (mut svc, _upstream) = tripped_after_1s(&layer).await;
    assert_ready_ok!(svc.poll_ready());
    let _hung = svc.call(()); // never answered
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(open_for(&err), Duration::from_secs(1));
    assert_eq!(layer.handle().state(), CircuitState::Open);
}

// --- sharing, contention, allocation -------------------------------------------------------

#[tokio::test]
async fn every_clone_and_every_layer_call_share_one_breaker() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(2)
        .with_classifier(ErrorsFail)
        .build()
        .unwrap();
    let mut a = layer.layer(flaky());
    let mut b = layer.layer(flaky()).clone();
    a.ready().await.unwrap().call(true).await.unwrap_err();
    b.ready().await.unwrap().call(true).await.unwrap_err();
    let err = a.ready().await.unwrap().call(false).await.unwrap_err();
    assert!(open_for(&err) > Duration::ZERO);
}

#[test]
fn two_threads_and_a_thousand_tasks_get_exactly_the_probes() {
    const PROBES: u32 = 3;
    let clock = ManualClock::new();
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .open_for(Duration::from_secs(1))
        .half_open_probes(PROBES)
        .with_classifier(ErrorsFail)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    // Trip it, then let the open time pass.
    let mut svc = layer.layer(flaky());
    support::ready_now(svc.call(true)).unwrap_err();
    clock.advance(Duration::from_secs(1));

    let reached = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let admitted = runtime.block_on(async {
        let inner = {
            let reached = Arc::clone(&reached);
            service_fn(move |()| {
                reached.fetch_add(1, Ordering::SeqCst);
                // The probes hang, so nobody can close the breaker meanwhile.
                std::future::pending::<Result<(), BoxError>>()
            })
        };
        let svc = layer.layer(inner);
        let tasks: Vec<_> = (0..1_000)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    let mut call = Box::pin(svc.call(()));
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
                    // A call still running was admitted; keep it alive so that its probe slot
                    // stays taken until every task has tried.
                    first.is_pending().then_some(call)
                })
            })
            .collect();
        let mut running = Vec::new();
        for task in tasks {
            running.extend(task.await.unwrap());
        }
        u32::try_from(running.len()).unwrap()
    });
    assert_eq!(admitted, PROBES);
    assert_eq!(reached.load(Ordering::SeqCst), u64::from(PROBES));
    assert_eq!(
        layer.handle().metrics().rejected(),
        1_000 - u64::from(PROBES)
    );
}

#[test]
fn the_closed_path_makes_no_heap_allocation() {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate(50.0)
        .time_window(Duration::from_secs(10), 10)
        .slow_call_rate(Duration::from_secs(1), 50.0)
        .with_classifier(ErrorsFail)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(flaky());
    support::ready_now(svc.call(false)).unwrap(); // warm the thread's lane
    let (_, allocations) = support::alloc::count(|| {
        for _ in 0..1_000 {
            support::ready_now(svc.call(false)).unwrap();
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(layer.handle().metrics().successes(), 1_001);
}

// --- keyed ---------------------------------------------------------------------------------

fn upstream_status(
    status: &'static AtomicBool,
) -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<()>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<()>| {
        let bad = req.uri().host() == Some("bad.internal") && status.load(Ordering::SeqCst);
        let code = if bad { 500 } else { 200 };
        std::future::ready(Ok(Response::builder().status(code).body(()).unwrap()))
    })
}

fn to(host: &str) -> Request<()> {
    Request::get(format!("http://{host}/")).body(()).unwrap()
}

#[test]
fn one_bad_backend_does_not_cut_off_the_healthy_ones() {
    static BAD: AtomicBool = AtomicBool::new(true);
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(3)
        .with_key(UpstreamHost)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(upstream_status(&BAD));
    for _ in 0..3 {
        let response = support::ready_now(svc.call(to("bad.internal"))).unwrap();
        assert_eq!(response.status(), 500);
    }
    assert!(support::ready_now(svc.call(to("bad.internal"))).is_err());
    for _ in 0..10 {
        assert!(support::ready_now(svc.call(to("good.internal"))).is_ok());
    }
    assert_eq!(
        layer.handle_for("bad.internal").unwrap().state(),
        CircuitState::Open
    );
    assert_eq!(
        layer.handle_for("good.internal").unwrap().state(),
        CircuitState::Closed
    );
    assert_eq!(layer.key_count(), 2);
}

#[test]
fn the_registry_is_bounded_and_drops_idle_closed_breakers() {
    static OK: AtomicBool = AtomicBool::new(false);
    let clock = ManualClock::new();
    let layer = CircuitBreakerLayer::builder()
        .with_key(UpstreamHost)
        .max_keys(100)
        .idle_timeout(Duration::from_secs(60))
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(upstream_status(&OK));
    let mut max_seen = 0;
    for i in 0..10_000 {
        if i % 1_000 == 0 {
            clock.advance(Duration::from_secs(61));
        }
        support::ready_now(svc.call(to(&format!("h{i}.internal")))).unwrap();
        max_seen = max_seen.max(layer.key_count());
    }
    assert_eq!(max_seen, 100, "never more breakers than max_keys");
    // Keys beyond the cap shared the layer's shared breaker; nothing failed.
    assert!(layer.shared_handle().metrics().calls() > 0);
}

// --- classification, fallback, events ------------------------------------------------------

#[test]
fn the_default_http_classifier_counts_5xx_but_not_4xx() {
    static BAD: AtomicBool = AtomicBool::new(true);
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(2)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let not_found = service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(
            Response::builder().status(404).body(()).unwrap(),
        ))
    });
    let mut svc = layer.layer(not_found);
    for _ in 0..10 {
        support::ready_now(svc.call(to("a"))).unwrap();
    }
    assert_eq!(layer.handle().state(), CircuitState::Closed);
    let mut svc = layer.layer(upstream_status(&BAD));
    for _ in 0..2 {
        support::ready_now(svc.call(to("bad.internal"))).unwrap();
    }
    assert_eq!(layer.handle().state(), CircuitState::Open);
}

#[test]
fn a_custom_classifier_can_ignore_results() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .with_classifier(|result: &Result<(), BoxError>| match result {
            Err(e) if e.to_string().contains("cancelled") => Outcome::Ignore,
            Err(_) => Outcome::Failure,
            Ok(()) => Outcome::Success,
        })
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: ()| {
        std::future::ready(Err::<(), BoxError>("cancelled by caller".into()))
    }));
    for _ in 0..5 {
        support::ready_now(svc.call(())).unwrap_err();
    }
    assert_eq!(layer.handle().state(), CircuitState::Closed);
    assert_eq!(layer.handle().metrics().ignored(), 5);
}

#[test]
fn a_fallback_answers_instead_of_the_rejection() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .with_classifier(ErrorsFail)
        .fallback(|_req: bool, open: CircuitOpen| {
            assert!(open.retry_after() > Duration::ZERO);
        })
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(flaky());
    support::ready_now(svc.call(true)).unwrap_err();
    // Open: the fallback answers, even for a request that would fail.
    support::ready_now(svc.call(true)).unwrap();
    assert_eq!(layer.handle().metrics().rejected(), 1);
}

#[test]
fn transitions_are_logged_once_each() {
    let clock = ManualClock::new();
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(2)
        .open_for(Duration::from_secs(1))
        .with_classifier(ErrorsFail)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(flaky());
    let ((), events) = support::capture_events(|| {
        for _ in 0..5 {
            let _ = support::ready_now(svc.call(true));
        }
        clock.advance(Duration::from_secs(1));
        support::ready_now(svc.call(false)).unwrap();
        support::ready_now(svc.call(false)).unwrap();
    });
    let transitions: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level <= tracing::Level::INFO)
        .map(|(level, message)| (level.to_string(), message.as_str()))
        .collect();
    assert_eq!(
        transitions,
        [
            ("WARN".to_owned(), "circuit opened"),
            ("INFO".to_owned(), "circuit half-open"),
            ("INFO".to_owned(), "circuit closed"),
        ]
    );
}

// --- axum over real TCP --------------------------------------------------------------------

#[tokio::test]
async fn an_axum_router_answers_503_with_retry_after_once_the_upstream_fails() {
    let breaker = CircuitBreakerLayer::builder()
        .failure_threshold(3)
        .open_for(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let app = Router::new()
        .route(
            "/pay",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "ledger down") }),
        )
        .layer(ServiceBuilder::new().rejection_response().layer(breaker));
    let addr = support::serve(app).await;
    for _ in 0..3 {
        assert_eq!(support::get(addr, "/pay", &[]).await.status, 500);
    }
    let reply = support::get(addr, "/pay", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[header::RETRY_AFTER], "30");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(handle.metrics().rejected(), 1);
}

/// A gRPC answer as a server streams it: headers, one message, then `grpc-status` in the
/// trailers (`None`: the body ends without trailers).
type Frames = futures_util::stream::Iter<
    std::vec::IntoIter<Result<http_body::Frame<bytes::Bytes>, Infallible>>,
>;

fn grpc_answer(status: Option<&'static str>) -> Response<http_body_util::StreamBody<Frames>> {
    let mut frames = vec![Ok(http_body::Frame::data(bytes::Bytes::from_static(
        b"\0\0\0\0\0",
    )))];
    if let Some(status) = status {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(status));
        frames.push(Ok(http_body::Frame::trailers(trailers)));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap()
}

#[tokio::test]
async fn grpc_statuses_in_trailers_are_counted_when_the_body_ends() {
    use http_body_util::BodyExt;

    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let answers = Arc::new(std::sync::Mutex::new(vec![
        Some("0"),
        Some("14"),
        None,
        Some("14"),
    ]));
    let svc = layer.layer(service_fn(move |_: Request<()>| {
        let status = answers.lock().unwrap().remove(0);
        std::future::ready(Ok::<_, Infallible>(grpc_answer(status)))
    }));

    // OK in the trailers: counted as a success once the body has been read, not before.
    let response = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        handle.metrics().calls(),
        0,
        "nothing is known before the trailers"
    );
    response.into_body().collect().await.unwrap();
    assert_eq!(handle.metrics().successes(), 1);

    // UNAVAILABLE in the trailers is a failure.
    let response = svc.clone().oneshot(Request::new(())).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(handle.metrics().failures(), 1);

    // A body that ends without any status is a failure too: the breaker opens.
    let response = svc.clone().oneshot(Request::new(())).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(handle.metrics().failures(), 2);
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test]
async fn a_grpc_body_dropped_before_its_trailers_is_neutral() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(grpc_answer(Some("14"))))
    }));
    let response = svc.oneshot(Request::new(())).await.unwrap();
    drop(response);
    assert_eq!(handle.metrics().calls(), 0);
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test]
async fn trailers_only_grpc_answers_are_counted_at_once() {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: Request<()>| {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", "4")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        std::future::ready(Ok::<_, Infallible>(response))
    }));
    let response = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        handle.metrics().failures(),
        1,
        "DEADLINE_EXCEEDED fails before the body is read"
    );
    assert_eq!(handle.state(), CircuitState::Open);
    drop(response);
}
