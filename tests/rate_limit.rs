//! The rate limiter, black box: through tower-test mocks in paused time, on an axum `Router`
//! over real TCP, from two OS threads, and against a million keys.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode, header};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::clock::ManualClock;
use tower_rampart::rate_limit::{ClientIp, HeaderKey, MissingKey, PeerIp, RateLimitLayer};
use tower_rampart::{BoxError, Rejection, ServiceBuilderExt};

fn echo() -> impl Service<
    u32,
    Response = u32,
    Error = Infallible,
    Future = std::future::Ready<Result<u32, Infallible>>,
> + Clone {
    service_fn(|n: u32| std::future::ready(Ok::<_, Infallible>(n)))
}

fn retry_after(err: &BoxError) -> Duration {
    match Rejection::find(err.as_ref()) {
        Some(Rejection::RateLimited(limited)) => limited.retry_after(),
        other => panic!("expected a rate-limit rejection, got {other:?}"),
    }
}

// --- paused time, tower-test ---------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn burst_then_one_per_interval_with_an_exact_retry_after() {
    let layer = RateLimitLayer::per_second(50).burst(20).build().unwrap();
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<u32, u32, _>(layer);
    handle.allow(100);
    let mut admitted = 0;
    for i in 0..20 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call(i);
        let (req, send) = handle.next_request().await.expect("forwarded");
        send.send_response(req);
        assert_eq!(fut.await.unwrap(), i);
        admitted += 1;
    }
    assert_eq!(admitted, 20);
    assert_ready_ok!(svc.poll_ready());
    let refused = svc.call(99).await.unwrap_err();
    assert_eq!(retry_after(&refused), Duration::from_millis(20));

    tokio::time::advance(Duration::from_millis(20)).await;
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(7);
    let (req, send) = handle.next_request().await.expect("admitted after 20 ms");
    send.send_response(req);
    assert_eq!(fut.await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_only_forwards_and_never_takes_capacity() {
    let layer = RateLimitLayer::per_second(1).build().unwrap();
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<u32, u32, _>(layer.clone());
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    assert_eq!(
        layer.time_until_ready(&0_u32),
        Duration::ZERO,
        "pending readiness took nothing"
    );
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(
        layer.time_until_ready(&0_u32),
        Duration::ZERO,
        "ready readiness took nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn clones_and_layer_calls_share_one_limit() {
    let layer = RateLimitLayer::per_second(10).burst(3).build().unwrap();
    let mut a = layer.layer(echo());
    let mut b = a.clone();
    let mut c = layer.layer(echo()); // another route, another connection
    for svc in [&mut a, &mut b, &mut c] {
        svc.ready().await.unwrap().call(1).await.unwrap();
    }
    for svc in [&mut a, &mut b, &mut c] {
        assert!(svc.ready().await.unwrap().call(1).await.is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn weighted_cost_and_free_requests() {
    let layer = RateLimitLayer::per_second(10)
        .burst(10)
        .cost(|n: &u32| *n)
        .build()
        .unwrap();
    let mut svc = layer.layer(echo());
    svc.ready().await.unwrap().call(6).await.unwrap();
    let refused = svc.ready().await.unwrap().call(6).await.unwrap_err();
    assert_eq!(retry_after(&refused), Duration::from_millis(200));
    svc.ready()
        .await
        .unwrap()
        .call(0)
        .await
        .expect("cost 0 is free");
    svc.ready()
        .await
        .unwrap()
        .call(4)
        .await
        .expect("4 tokens were left");
}

#[tokio::test(start_paused = true)]
async fn wait_mode_waits_for_its_slot_up_to_max_wait() {
    let layer = RateLimitLayer::per_second(10)
        .burst(1)
        .wait(Duration::from_millis(150))
        .build()
        .unwrap();
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<u32, u32, _>(layer);
    handle.allow(10);
    assert_ready_ok!(svc.poll_ready());
    let first = svc.call(1);
    let (r, send) = handle.next_request().await.unwrap();
    send.send_response(r);
    first.await.unwrap();

    assert_ready_ok!(svc.poll_ready());
    let mut second = tokio_test::task::spawn(svc.call(2));
    assert_pending!(second.poll(), "waits 100 ms for its token");
    assert_ready_ok!(svc.poll_ready());
    let third = svc.call(3).await.unwrap_err(); // would wait 200 ms > 150 ms
    assert_eq!(retry_after(&third), Duration::from_millis(200));

    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(second.poll());
    {
        let mut next = tokio_test::task::spawn(handle.next_request());
        assert_pending!(next.poll(), "not forwarded before its slot");
    }
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_pending!(second.poll()); // now forwarded to the inner service
    let (r, send) = handle.next_request().await.unwrap();
    assert_eq!(r, 2);
    send.send_response(r);
    assert_eq!(assert_ready!(second.poll()).unwrap(), 2);
}

/// A wait-mode limiter of one token per 100 ms whose token was just spent.
async fn waiting_with_empty_bucket() -> (
    tower_rampart::rate_limit::WaitingRateLimitLayer,
    impl Service<u32, Response = u32, Error = BoxError, Future: Send>,
) {
    let layer = RateLimitLayer::per_second(10)
        .burst(1)
        .wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut svc = layer.layer(echo());
    svc.ready().await.unwrap().call(1).await.unwrap();
    (layer, svc)
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_its_slot_back() {
    let (layer, mut svc) = waiting_with_empty_bucket().await;
    let mut waiting = tokio_test::task::spawn(svc.ready().await.unwrap().call(2));
    assert_pending!(waiting.poll());
    assert_eq!(layer.time_until_ready(&0_u32), Duration::from_millis(200));
    drop(waiting);
    assert_eq!(
        layer.time_until_ready(&0_u32),
        Duration::from_millis(100),
        "slot returned"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_under_a_later_reservation_keeps_it_spent() {
    let (layer, mut svc) = waiting_with_empty_bucket().await;
    let mut second = tokio_test::task::spawn(svc.ready().await.unwrap().call(2));
    let mut third = tokio_test::task::spawn(svc.ready().await.unwrap().call(3));
    assert_pending!(second.poll());
    assert_pending!(third.poll());
    drop(second);
    // Refunding under `third` would let a newcomer and `third` run at the same instant.
    assert_eq!(layer.time_until_ready(&0_u32), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_lets_everything_through_and_counts() {
    let layer = RateLimitLayer::per_second(1).shadow().build().unwrap();
    let mut svc = layer.layer(echo());
    for i in 0..5 {
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
    }
    assert_eq!(layer.rejected_count(), 4);
}

// --- HTTP -----------------------------------------------------------------------------------

fn router<L>(limit: L) -> Router
where
    L: Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: Service<Request<Body>, Response = Response<Body>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<Request<Body>>>::Future: Send + 'static,
{
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/other", get(|| async { "other" }))
        .layer(ServiceBuilder::new().rejection_response().layer(limit))
}

async fn get_status(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
    peer: Option<&str>,
) -> Response<Body> {
    let mut req = Request::get(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(peer) = peer {
        req.extensions_mut().insert(axum::extract::ConnectInfo(
            peer.parse::<SocketAddr>().unwrap(),
        ));
    }
    app.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn a_429_carries_retry_after_and_ratelimit_fields() {
    let clock = ManualClock::new();
    let app = router(
        RateLimitLayer::per_second(50)
            .burst(2)
            .policy_name("per-ip")
            .with_clock(clock)
            .build()
            .unwrap(),
    );
    for _ in 0..2 {
        assert_eq!(
            get_status(&app, "/", &[], None).await.status(),
            StatusCode::OK
        );
    }
    let refused = get_status(&app, "/other", &[], None).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1"); // 20 ms, rounded up
    // The sustained quota, not the burst: 50 per second.
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        r#""per-ip";q=50;w=1"#
    );
    assert_eq!(refused.headers()["ratelimit"], r#""per-ip";r=0;t=1"#);
}

#[tokio::test]
async fn advertise_puts_ratelimit_fields_on_admitted_responses() {
    let clock = ManualClock::new();
    let app = router(
        RateLimitLayer::per_minute(60)
            .burst(10)
            .advertise()
            .with_clock(clock)
            .build()
            .unwrap(),
    );
    let ok = get_status(&app, "/", &[], None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["ratelimit-policy"], r#""default";q=60;w=60"#);
    assert_eq!(ok.headers()["ratelimit"], r#""default";r=9;t=1"#);
}

#[tokio::test]
async fn keyed_by_peer_ip_each_client_has_its_own_bucket() {
    let app = router(
        RateLimitLayer::per_second(1)
            .with_key(PeerIp)
            .with_clock(ManualClock::new())
            .build()
            .unwrap(),
    );
    assert_eq!(
        get_status(&app, "/", &[], Some("192.0.2.1:1"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get_status(&app, "/", &[], Some("192.0.2.2:1"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get_status(&app, "/", &[], Some("192.0.2.1:2"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn missing_keys_never_become_500s() {
    let statuses = |missing| async move {
        let app = router(
            RateLimitLayer::per_second(1)
                .with_key(PeerIp)
                .on_missing_key(missing)
                .with_clock(ManualClock::new())
                .build()
                .unwrap(),
        );
        let mut out = Vec::new();
        for _ in 0..2 {
            out.push(get_status(&app, "/", &[], None).await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses(MissingKey::Shared).await, [200, 429]);
    assert_eq!(statuses(MissingKey::Allow).await, [200, 200]);
    assert_eq!(statuses(MissingKey::Reject).await, [429, 429]);
}

#[tokio::test]
async fn header_keys_limit_per_api_key() {
    let app = router(
        RateLimitLayer::per_second(1)
            .with_key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
            .with_clock(ManualClock::new())
            .build()
            .unwrap(),
    );
    assert_eq!(
        get_status(&app, "/", &[("x-api-key", "a")], None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get_status(&app, "/", &[("x-api-key", "b")], None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get_status(&app, "/", &[("x-api-key", "a")], None)
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// The bug tower's `RateLimit` + `Buffer` has on axum: a 5 req/s cap that let 1 500 through.
/// Here 1 000 concurrent requests over real TCP, on two routes, with time frozen: exactly the
/// burst is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_tcp_requests_admit_exactly_the_burst() {
    let app = router(
        RateLimitLayer::per_second(5)
            .burst(20)
            .with_clock(ManualClock::new())
            .build()
            .unwrap(),
    );
    let addr = support::serve(app).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        let path = if i % 2 == 0 { "/" } else { "/other" };
        tasks.spawn(async move { support::get(addr, path, &[]).await.status });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (20, 980));
}

/// Trusted-proxy resolution over a real socket: the peer is 127.0.0.1.
#[tokio::test]
async fn xff_is_believed_only_from_trusted_proxies_over_tcp() {
    let serve = |client_ip: ClientIp| async move {
        let app = router(
            RateLimitLayer::per_second(1)
                .with_key(client_ip)
                .with_clock(ManualClock::new())
                .build()
                .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    };
    // Untrusted peer: spoofed X-Forwarded-For values are ignored, all share 127.0.0.1's bucket.
    let addr = serve(ClientIp::new()).await;
    let a = support::get(addr, "/", &[("x-forwarded-for", "198.51.100.1")]).await;
    let b = support::get(addr, "/", &[("x-forwarded-for", "198.51.100.2")]).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::OK, StatusCode::TOO_MANY_REQUESTS)
    );

    // Loopback trusted as a proxy, plus a second trusted hop: the client is resolved.
    let trusted = ClientIp::new().trust_proxies([
        "127.0.0.0/8".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ]);
    let addr = serve(trusted).await;
    let a = support::get(
        addr,
        "/",
        &[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.1.1.1")],
    )
    .await;
    let b = support::get(
        addr,
        "/",
        &[("x-forwarded-for", "6.6.6.6, 198.51.100.2, 10.1.1.1")],
    )
    .await;
    let a2 = support::get(
        addr,
        "/",
        &[("x-forwarded-for", "7.7.7.7, 198.51.100.1, 10.1.1.1")],
    )
    .await;
    assert_eq!(
        (a.status, b.status, a2.status),
        (
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        )
    );
}

// --- threads, memory, allocations, events ---------------------------------------------------------

#[test]
fn two_os_threads_admit_exactly_the_burst() {
    let layer = RateLimitLayer::per_second(1)
        .burst(1_000)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = layer.layer(echo());
            let admitted = Arc::clone(&admitted);
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    if support::ready_now(svc.call(i)).is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 1_000);
    assert_eq!(layer.rejected_count(), 9_000);
}

#[test]
fn a_million_distinct_keys_never_exceed_the_cap_and_the_limiter_keeps_working() {
    const CAP: u64 = 10_000;
    let clock = ManualClock::new();
    let layer = RateLimitLayer::per_second(10)
        .burst(1)
        .with_key(|n: &u64| Some(*n))
        .max_keys(CAP as usize)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|n: u64| {
        std::future::ready(Ok::<_, Infallible>(n))
    }));

    // Bytes per key, measured on the first CAP keys.
    let ((), bytes) = support::alloc::live_bytes(|| {
        for key in 0..CAP {
            support::ready_now(svc.call(key)).unwrap();
        }
    });
    let per_key = bytes / CAP as i64;
    println!("bytes per key: {per_key}");
    assert!(per_key < 256, "{per_key} bytes per key");

    let (mut max_seen, mut admitted) = (0, 0_u64);
    for key in CAP..1_000_000 {
        admitted += u64::from(support::ready_now(svc.call(key)).is_ok());
        max_seen = max_seen.max(layer.key_count());
        if key % 1_000 == 0 {
            clock.advance(Duration::from_millis(50)); // spray at 20 000 keys per second
        }
    }
    assert!(max_seen <= CAP, "map grew to {max_seen}");
    // Every new key has a full bucket of its own only if idle keys keep being evicted; without
    // eviction they would all share the overflow bucket (about 500 admissions in 50 s).
    assert!(
        admitted >= 900_000,
        "only {admitted} of 990 000 new keys admitted"
    );

    // A known, active key is still limited exactly.
    clock.advance(Duration::from_secs(1));
    assert!(support::ready_now(svc.call(42)).is_ok());
    assert!(support::ready_now(svc.call(42)).is_err());
}

#[test]
fn the_admitted_path_makes_no_heap_allocation() {
    let global = RateLimitLayer::per_second(1_000_000)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = global.layer(echo());
    let (_, allocations) = support::alloc::count(|| {
        for i in 0..1_000 {
            support::ready_now(svc.call(i)).unwrap();
        }
    });
    assert_eq!(allocations, 0, "global limiter");

    let keyed = RateLimitLayer::per_second(1_000_000)
        .with_key(|n: &u32| Some(*n % 10))
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = keyed.layer(echo());
    for i in 0..10 {
        support::ready_now(svc.call(i)).unwrap(); // creates the 10 buckets
    }
    let (_, allocations) = support::alloc::count(|| {
        for i in 0..1_000 {
            support::ready_now(svc.call(i)).unwrap();
        }
    });
    assert_eq!(allocations, 0, "keyed limiter, known keys");
}

#[test]
fn starts_and_stops_rejecting_are_logged_once_per_episode() {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::per_second(10)
        .burst(1)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(echo());
    let ((), events) = support::capture_events(|| {
        for _ in 0..5 {
            let _ = support::ready_now(svc.call(1)); // 1 admitted, 4 refused
        }
        clock.advance(Duration::from_secs(2));
        for _ in 0..3 {
            let _ = support::ready_now(svc.call(1)); // admitted: ends the episode
            clock.advance(Duration::from_millis(100));
        }
    });
    let info: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level == tracing::Level::INFO)
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(
        info,
        [
            "rate limiter started rejecting",
            "rate limiter stopped rejecting"
        ]
    );
    let debug = events
        .iter()
        .filter(|(level, m)| *level == tracing::Level::DEBUG && m == "request rate limited")
        .count();
    assert_eq!(debug, 4);
}

/// Regression: the wait-mode timer once sat inline in every response future (272 bytes),
/// making the common, non-waiting path copy it around.
#[test]
fn the_response_future_stays_small() {
    let layer = RateLimitLayer::per_second(1).build().unwrap();
    let mut svc = layer.layer(echo());
    let fut = svc.call(1);
    assert!(
        std::mem::size_of_val(&fut) <= 48,
        "{} bytes",
        std::mem::size_of_val(&fut)
    );
}

#[test]
fn the_raw_check_shares_buckets_with_the_layer_and_ignores_shadow_and_wait() {
    let clock = ManualClock::new();
    let layer = RateLimitLayer::per_second(10)
        .burst(2)
        .shadow()
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(echo());
    assert!(layer.check(&0_u32).is_ok());
    support::ready_now(svc.call(1)).unwrap(); // takes the second token
    let refused = layer.check(&0_u32).unwrap_err(); // raw: refused despite shadow mode
    assert_eq!(refused.retry_after(), Duration::from_millis(100));
    assert!(
        support::ready_now(svc.call(2)).is_ok(),
        "the layer itself stays in shadow mode"
    );
    assert_eq!(layer.rejected_count(), 2);
    let ((), allocations) = support::alloc::count(|| {
        clock.advance(Duration::from_secs(1));
        assert!(layer.check(&0_u32).is_ok());
    });
    assert_eq!(allocations, 0, "an admitted raw check allocates nothing");
}

/// Regression: `.wait(Duration::ZERO)` was accepted: a "waiting" limiter that never waits.
#[test]
fn a_zero_wait_is_refused_when_built() {
    let err = RateLimitLayer::per_second(5)
        .wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_wait");
}

/// The numbers of `"name";k=v;k=v`, by key.
fn fields(value: &http::HeaderValue) -> std::collections::HashMap<String, u64> {
    value
        .to_str()
        .unwrap()
        .split(';')
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// Regression: `per_second(50).burst(20)` advertised `q=20;w=1` (a client read 20/s) and
/// `per_second(3)` advertised `w=2`. Two clients that believe the advertised fields are never
/// refused: one sends the first response's `r` at once, then one request every `w/q`
/// (rounded up to the nanosecond, as a timer would) and reaches the limiter's sustained
/// rate; the other sends while `r` is above 0 and waits `t` seconds when it is 0.
#[tokio::test]
async fn a_client_pacing_itself_by_the_advertised_fields_is_never_refused() {
    let limits = [
        (RateLimitLayer::per_second(50).burst(20), (50, 1)),
        (RateLimitLayer::per_second(3), (3, 1)),
        (RateLimitLayer::per_second(3).burst(1), (3, 1)),
        (RateLimitLayer::per_minute(100).burst(5), (100, 60)),
        (
            RateLimitLayer::with_period(3, Duration::from_millis(1_500)),
            (4, 2),
        ),
        (
            RateLimitLayer::with_period(7, Duration::from_millis(100)),
            (70, 1),
        ),
    ];
    for (builder, (expect_q, expect_w)) in limits {
        for pacer in [true, false] {
            let clock = ManualClock::new();
            let app = router(
                builder
                    .clone()
                    .advertise()
                    .with_clock(clock.clone())
                    .build()
                    .unwrap(),
            );
            let mut burst_left: Option<u64> = None;
            let mut elapsed = Duration::ZERO;
            for sent in 0..200 {
                let response = get_status(&app, "/", &[], None).await;
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "q={expect_q};w={expect_w}, pacer {pacer}: refused after {sent}"
                );
                let policy = fields(&response.headers()["ratelimit-policy"]);
                let state = fields(&response.headers()["ratelimit"]);
                assert_eq!((policy["q"], policy["w"]), (expect_q, expect_w));
                let (q, w, r, t) = (policy["q"], policy["w"], state["r"], state["t"]);
                let wait = if pacer {
                    let at_once = *burst_left.get_or_insert(r);
                    burst_left = Some(at_once.saturating_sub(1));
                    if at_once > 0 {
                        Duration::ZERO
                    } else {
                        let pace = Duration::from_secs(w).as_nanos().div_ceil(u128::from(q));
                        Duration::from_nanos(u64::try_from(pace).unwrap())
                    }
                } else if r == 0 {
                    Duration::from_secs(t)
                } else {
                    Duration::ZERO
                };
                clock.advance(wait);
                elapsed += wait;
            }
            if pacer {
                let sustained = expect_q as f64 / expect_w as f64;
                let reached = 200.0 / elapsed.as_secs_f64();
                assert!(
                    reached >= 0.9 * sustained,
                    "{reached:.2}/s reached of {sustained}/s"
                );
            }
        }
    }
}

/// Admitted requests out of `n`, each made by `make(i)`, through a limiter of 20 at once.
fn admitted_of<K>(key: K, n: u32, make: impl Fn(u32) -> Request<()>) -> u32
where
    K: tower_rampart::key::KeyFn<Request<()>>,
    for<'r> K::Key<'r>: std::fmt::Debug,
{
    let layer = RateLimitLayer::per_second(1)
        .burst(20)
        .with_key(key)
        .on_missing_key(MissingKey::Allow)
        .with_clock(ManualClock::new())
        .build()
        .unwrap();
    let mut svc = layer.layer(service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(()))
    }));
    (0..n)
        .map(|i| u32::from(support::ready_now(svc.call(make(i))).is_ok()))
        .sum()
}

/// Regression: `X-Forwarded-For: \xff, 198.51.100.9` from a trusted proxy gave no key, so
/// with `MissingKey::Allow` the client was unlimited (1 000 of 1 000 admitted).
#[test]
fn a_non_ascii_byte_in_the_chain_does_not_unlimit_the_client() {
    let client_ip = ClientIp::new().trust_proxies(["10.0.0.0/8".parse().unwrap()]);
    let admitted = admitted_of(client_ip, 1_000, |_| {
        let mut req = Request::new(());
        req.headers_mut().insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff, 198.51.100.9").unwrap(),
        );
        req.extensions_mut()
            .insert("10.0.0.1:443".parse::<SocketAddr>().unwrap());
        req
    });
    assert_eq!(admitted, 20);
}

/// Regression: 1 000 addresses of one /64 got 20 000 admitted where one client gets 20.
#[test]
fn one_ipv6_host_rotating_through_its_64_is_one_client() {
    let peer = |i: u32| {
        let mut req = Request::new(());
        let addr = format!("[2001:db8:5:6:{:x}:{:x}::1]:443", i >> 8, i & 0xff);
        req.extensions_mut()
            .insert(addr.parse::<SocketAddr>().unwrap());
        req
    };
    assert_eq!(admitted_of(PeerIp, 1_000, peer), 20);
    assert_eq!(admitted_of(ClientIp::new(), 1_000, peer), 20);
}
