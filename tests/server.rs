//! The example server's app (`examples/common/app.rs`, the same `app()` the example serves)
//! on a real loopback socket, driven by a hyper client: every route, request ids, the rate
//! limit under load, the breaker on `/flaky`, and graceful shutdown. Where timing is asserted
//! the tests run in paused time, which tokio advances to the next timer whenever every task
//! waits; the rate limit under load and the connection limits keep the real clock, because
//! real time is their point.

#[path = "../examples/common/app.rs"]
mod app;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_rampart::circuit_breaker::CircuitState;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

struct Running {
    addr: SocketAddr,
    app: app::App,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    client: HttpClient,
}

/// Serves the example's app on `127.0.0.1:0` (with `config`) until `stop` is sent.
async fn start(config: app::Config) -> Running {
    start_with(config, app::Limits::default()).await
}

/// [`start`] with the server's connection limits set.
async fn start_with(config: app::Config, limits: app::Limits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = app::app(config).unwrap();
    let router = built.router.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(
        listener,
        router,
        async move {
            let _ = stopped.await;
        },
        limits,
    ));
    Running {
        addr,
        app: built,
        stop: Some(stop),
        server,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    took: Duration,
}

impl Running {
    /// Five calls to `/flaky`, each a 502: enough to open its breaker.
    async fn fail_flaky_five_times(&self) {
        for _ in 0..5 {
            assert_eq!(
                self.get("/flaky", &[]).await.status,
                StatusCode::BAD_GATEWAY
            );
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let started = Instant::now();
        let response = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
            took: started.elapsed(),
        }
    }
}

#[tokio::test]
async fn the_root_answers_and_every_answer_carries_a_request_id() {
    let server = start(app::Config::default()).await;
    let plain = server.get("/", &[]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.body, "tower-rampart example server\n");
    assert_eq!(plain.headers["x-request-id"].len(), 36);
    let kept = server.get("/", &[("x-request-id", "edge-42")]).await;
    assert_eq!(kept.headers["x-request-id"], "edge-42");
    let replaced = server.get("/", &[("x-request-id", "<script>")]).await;
    assert_ne!(replaced.headers["x-request-id"], "<script>");
    let health = server.get("/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.body,
        r#"{"status":"ok","breakers":{"upstream":"closed"}}"#
    );
    assert!(health.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn metrics_expose_every_layer_in_prometheus_text() {
    let server = start(app::Config::default()).await;
    server.get("/", &[]).await;
    server.get("/slow", &[("x-request-timeout-ms", "50")]).await;
    let metrics = server.get("/metrics", &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for name in [
        "rampart_request_ids_total",
        "rampart_rate_limit_requests_total",
        "rampart_timeout_expired_total",
        "rampart_circuit_breaker_state",
        "rampart_http_requests_total{method=\"GET\",status=\"5xx\"}",
        "rampart_http_request_duration_seconds",
    ] {
        assert!(
            metrics.body.contains(name),
            "{name} missing:\n{}",
            metrics.body
        );
    }
}

// Paused time over real sockets: the runtime moves its clock to the next timer whenever
// every task waits, so the 1 s limit and the 200 ms budget are hit exactly, in no real time.
#[tokio::test(start_paused = true)]
async fn slow_answers_504_at_the_limit_or_at_the_callers_budget() {
    let server = start(app::Config::default()).await;
    let limited = server.get("/slow", &[]).await;
    assert_eq!(limited.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(limited.took, Duration::from_secs(1));
    assert!(limited.headers.contains_key("x-request-id"));
    let budget = server.get("/slow", &[("grpc-timeout", "200m")]).await;
    assert_eq!(budget.status, StatusCode::GATEWAY_TIMEOUT);
    // A gRPC budget ends 1 ms early, before the server's own gRPC timeout would.
    assert_eq!(budget.took, Duration::from_millis(199));
}

#[tokio::test(start_paused = true)]
async fn budget_reports_the_time_left() {
    let server = start(app::Config::default()).await;
    let answer = server
        .get("/budget", &[("x-request-timeout-ms", "250")])
        .await;
    let left: u64 = answer.body.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(left, 250, "{}", answer.body);
}

#[tokio::test(start_paused = true)]
async fn flaky_fails_502_then_the_breaker_answers_503_without_calling() {
    let server = start(app::Config {
        flaky_open_for: Duration::from_millis(400),
        ..app::Config::default()
    })
    .await;
    server.fail_flaky_five_times().await;
    assert_eq!(server.app.upstream_calls.load(Ordering::SeqCst), 5);
    let open = server.get("/flaky", &[]).await;
    assert_eq!(open.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(open.headers.contains_key("retry-after"));
    assert!(open.headers.contains_key("x-request-id"));
    assert_eq!(open.took, Duration::ZERO, "refused without waiting");
    assert_eq!(server.app.upstream_calls.load(Ordering::SeqCst), 5);
    let health = server.get("/health", &[]).await;
    assert!(
        health.body.contains(r#""upstream":"open""#),
        "{}",
        health.body
    );
    assert_eq!(server.app.flaky_breaker.state(), CircuitState::Open);
    // After the open time, one probe reaches the upstream; it fails, so the breaker opens again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        server.get("/flaky", &[]).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(server.app.upstream_calls.load(Ordering::SeqCst), 6);
    assert_eq!(
        server.get("/flaky", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn flakys_breaker_closes_once_the_upstream_recovers() {
    let server = start(app::Config {
        flaky_open_for: Duration::from_millis(300),
        upstream_recovers_after: Some(5),
        ..app::Config::default()
    })
    .await;
    server.fail_flaky_five_times().await;
    assert_eq!(
        server.get("/flaky", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The probe finds the upstream healthy: the breaker closes and calls flow again.
    assert_eq!(server.get("/flaky", &[]).await.status, StatusCode::OK);
    assert_eq!(server.app.flaky_breaker.state(), CircuitState::Closed);
    assert_eq!(server.get("/flaky", &[]).await.status, StatusCode::OK);
    assert_eq!(server.app.upstream_calls.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn the_product_page_degrades_reviews_at_their_budget() {
    let server = start(app::Config::default()).await;
    let page = server.get("/product/7", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["x-degraded"], "reviews");
    assert_eq!(
        page.body,
        r#"{"product":{"id":7,"name":"kettle","price_cents":2999},"related":[8,9],"degraded":["reviews"]}"#
    );
    assert_eq!(page.took, Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_under_a_thousand_requests() {
    let server = Arc::new(start(app::Config::default()).await);
    // 1 000 requests at once. Each holds a client and a server socket: raise the soft limit
    // on open files if it is lower than that needs, and if the hard limit forbids it, keep
    // as many in flight as it allows.
    let files = rlimit::increase_nofile_limit(4_096).unwrap_or(1_024);
    let in_flight = usize::try_from(files.saturating_sub(100) / 2)
        .unwrap_or(usize::MAX)
        .clamp(100, 1_000);
    println!("{in_flight} requests in flight at once (open-file limit {files})");
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let requests: Vec<_> = (0..1_000)
        .map(|_| {
            let (server, gate) = (server.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                server.get("/", &[]).await
            })
        })
        .collect();
    let mut admitted = 0u64;
    for request in requests {
        let answer = request.await.unwrap();
        assert!(answer.headers.contains_key("x-request-id"));
        match answer.status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(answer.headers.contains_key("retry-after"));
                assert!(answer.headers.contains_key("ratelimit-policy"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A burst of 20, then 50 per second.
    let allowed = 20.0 + 50.0 * elapsed + 1.0;
    assert!(admitted >= 20, "admitted {admitted}");
    assert!(
        admitted as f64 <= allowed,
        "admitted {admitted} in {elapsed:.2} s"
    );
    // `/health` is outside the limit.
    assert_eq!(server.get("/health", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut server = start(app::Config::default()).await;
    let in_flight = {
        let client = server.client.clone();
        let uri = format!("http://{}/slow", server.addr);
        tokio::spawn(async move {
            let req = Request::get(uri)
                .header("x-request-timeout-ms", "400")
                .body(Empty::<Bytes>::new())
                .unwrap();
            client.request(req).await.map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop.take().unwrap().send(()).unwrap();
    // The request in flight gets its answer (a 504 at its 400 ms budget), not a reset.
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        StatusCode::GATEWAY_TIMEOUT
    );
    drop(server.client);
    tokio::time::timeout(Duration::from_secs(5), server.server)
        .await
        .expect("the server stops once the request is answered")
        .unwrap()
        .unwrap();
}

/// Limits small enough for a test: heads must arrive within 300 ms, 4 connections at once.
fn tight_limits() -> app::Limits {
    app::Limits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 4,
    }
}

/// Regression: `axum::serve` set no header-read timeout, so a client sending a byte a second
/// held its connection (and a file descriptor) forever; 1 100 of them left a server at the
/// usual 1 024 open files answering nobody. Now the server closes such a connection.
#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = start_with(app::Config::default(), tight_limits()).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the half-sent head was still open after 3 s"
    );
}

/// Connections beyond the cap wait, unaccepted, instead of taking descriptors; a normal
/// client is answered as soon as the slow ones are dropped.
#[tokio::test]
async fn slow_clients_at_the_connection_cap_do_not_lock_others_out() {
    use tokio::io::AsyncWriteExt;

    let server = start_with(app::Config::default(), tight_limits()).await;
    let mut hogs = Vec::new();
    for _ in 0..12 {
        let mut hog = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        hog.write_all(b"G").await.unwrap();
        hogs.push(hog);
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), server.get("/", &[]))
        .await
        .expect("a normal request is answered while slow clients come and go");
    assert_eq!(answer.status, StatusCode::OK);
    drop(hogs);
}

/// Regression: a single half-sent request head held graceful shutdown for the whole drain
/// time. Now it holds it at most the header-read timeout.
#[tokio::test]
async fn a_half_sent_head_cannot_hold_shutdown() {
    use tokio::io::AsyncWriteExt;

    let mut server = start_with(app::Config::default(), tight_limits()).await;
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /slow HT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    drop(server.client);
    tokio::time::timeout(Duration::from_secs(3), server.server)
        .await
        .expect("shutdown waits no longer than the header-read timeout")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2));
    drop(half);
}

#[tokio::test(start_paused = true)]
async fn work_under_200_concurrent_clients_answers_quickly_or_sheds_at_once() {
    let server = start(app::Config::default()).await;
    let answers = futures_util::future::join_all((0..200).map(|_| server.get("/work", &[]))).await;
    let (admitted, shed): (Vec<_>, Vec<_>) =
        answers.iter().partition(|a| a.status == StatusCode::OK);
    // 12 slots, of which normal requests may use 9: 3 are kept for critical ones.
    assert_eq!(
        admitted.len(),
        9,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in &admitted {
        assert!(
            answer.took <= Duration::from_millis(60),
            "{:?}",
            answer.took
        );
    }
    for answer in &shed {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers["retry-after"], "1");
        assert_eq!(answer.took, Duration::ZERO, "refused at once");
        assert!(answer.headers.contains_key("x-request-id"));
    }
    // A critical request still gets one of the slots kept for it while normal ones fill
    // theirs.
    let busy = futures_util::future::join_all((0..9).map(|_| server.get("/work", &[])));
    let critical = server.get("/work", &[("x-priority", "critical")]);
    let (busy, critical) = tokio::join!(busy, critical);
    assert_eq!(critical.status, StatusCode::OK);
    assert!(busy.iter().all(|a| a.status == StatusCode::OK));
}
