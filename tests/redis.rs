//! The shared rate limiter against a real `redis-server`, started by each test on a free
//! loopback port without persistence (`.ci/run` installs the server).

#[path = "../examples/common/app.rs"]
#[allow(dead_code)]
mod app;

use std::convert::Infallible;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use http::Request;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_rampart::clock::ManualClock;
use tower_rampart::rate_limit::{OnStoreFailure, RateLimitLayer, RedisStore};
use tower_rampart::{BoxError, Rejection};

/// A `redis-server` of its own, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        Self::start_on(
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port(),
        )
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    fn command(&self, args: &[&str]) -> redis::Value {
        let mut conn = self.client().get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn).unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh server on the same port (all state lost, as after a crash).
    fn restart(&mut self) {
        self.kill();
        *self = Self::start_on(self.port);
    }

    /// Starts `redis-server` on `port` and waits until it accepts connections.
    // A process start, waited for outside any runtime: the thread may block.
    #[allow(clippy::disallowed_methods)]
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store(server: &RedisServer, prefix: &str, policy: OnStoreFailure) -> RedisStore {
    RedisStore::builder(server.client())
        .prefix(prefix)
        .timeout(Duration::from_millis(50))
        .on_failure(policy)
        .breaker(3, Duration::from_secs(60))
        .build()
        .unwrap()
}

type Svc = tower::util::BoxCloneSyncService<Request<()>, (), BoxError>;

/// A keyed shared limiter (key: the `x-client` header) over a service that answers `()`.
fn limited(store: RedisStore, rate: u32, burst: u32) -> Svc {
    let layer = RateLimitLayer::per_second(rate)
        .burst(burst)
        .policy_name("test")
        .with_key(|req: &Request<()>| req.headers().get("x-client").map(|v| v.as_bytes().to_vec()))
        .shared(store)
        .build()
        .unwrap();
    tower::util::BoxCloneSyncService::new(layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(())
    })))
}

fn request(client: &str) -> Request<()> {
    Request::builder()
        .header("x-client", client)
        .body(())
        .unwrap()
}

async fn admitted(svc: &mut Svc, client: &str) -> Result<(), Rejection> {
    match svc.ready().await.unwrap().call(request(client)).await {
        Ok(()) => Ok(()),
        Err(err) => Err(Rejection::find(err.as_ref()).expect("a rejection").clone()),
    }
}

#[tokio::test]
async fn two_replicas_share_one_bucket() {
    let server = RedisServer::start();
    // Two limiters, two connections: two replicas of one service.
    let mut a = limited(store(&server, "two", OnStoreFailure::Refuse), 1, 10);
    let mut b = limited(store(&server, "two", OnStoreFailure::Refuse), 1, 10);
    let mut admitted_count = 0;
    for i in 0..30 {
        let svc = if i % 2 == 0 { &mut a } else { &mut b };
        if admitted(svc, "alice").await.is_ok() {
            admitted_count += 1;
        }
    }
    // At 1 per second, a burst of 10 and well under a second: 10, maybe 11, never 20.
    assert!((10..=11).contains(&admitted_count), "{admitted_count}");
    // Another key has its own bucket.
    assert!(admitted(&mut a, "bob").await.is_ok());
}

#[tokio::test]
async fn refusals_match_the_in_memory_limiter() {
    let server = RedisServer::start();
    let mut shared = limited(store(&server, "same", OnStoreFailure::Refuse), 50, 20);
    for _ in 0..20 {
        admitted(&mut shared, "carol").await.unwrap();
    }
    let Rejection::RateLimited(refused) = admitted(&mut shared, "carol").await.unwrap_err() else {
        panic!("a rate limit refusal");
    };
    // The in-memory limiter, same quota, same history, no time passing.
    let clock = ManualClock::new();
    let local = RateLimitLayer::per_second(50)
        .burst(20)
        .policy_name("test")
        .with_clock(clock)
        .build()
        .unwrap();
    for _ in 0..20 {
        local.check(&()).unwrap();
    }
    let expected = local.check(&()).unwrap_err();
    assert_eq!(refused.policy(), expected.policy());
    assert_eq!(
        (refused.limit(), refused.window()),
        (expected.limit(), expected.window())
    );
    assert_eq!(refused.remaining(), expected.remaining());
    // Redis's clock moved on a little between the calls; the waits agree to within it.
    let drift = expected.retry_after().saturating_sub(refused.retry_after());
    assert!(
        drift < Duration::from_millis(20),
        "{refused:?} vs {expected:?}"
    );
    assert!(refused.retry_after() <= expected.retry_after());
    // What a client sees is the same, header for header.
    let headers = |rejection: tower_rampart::error::RateLimited| {
        let mut headers = http::HeaderMap::new();
        Rejection::from(rejection).write_headers(&mut headers);
        headers
    };
    assert_eq!(headers(refused), headers(expected));
}

#[tokio::test]
async fn a_refused_key_is_refused_locally_until_its_retry_after() {
    let server = RedisServer::start();
    let mut shared = limited(store(&server, "cache", OnStoreFailure::Allow), 1, 1);
    admitted(&mut shared, "dave").await.unwrap();
    assert!(admitted(&mut shared, "dave").await.is_err());
    // Redis is gone; with fail-open, only the local refusal cache can still refuse.
    drop(server);
    for _ in 0..5 {
        assert!(
            admitted(&mut shared, "dave").await.is_err(),
            "refused until its retry-after"
        );
    }
    assert!(
        admitted(&mut shared, "erin").await.is_ok(),
        "fail open for unknown keys"
    );
}

#[tokio::test]
async fn scripts_flushed_or_a_restarted_server_cost_one_more_round_trip() {
    let mut server = RedisServer::start();
    let mut shared = limited(store(&server, "flush", OnStoreFailure::Refuse), 1000, 1000);
    admitted(&mut shared, "frank").await.unwrap();
    server.command(&["SCRIPT", "FLUSH"]);
    admitted(&mut shared, "frank").await.unwrap();
    server.restart();
    // The connection manager reconnects in the background; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if admitted(&mut shared, "frank").await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after a restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn with_redis_down_requests_never_wait_past_the_timeout_and_fall_back() {
    let mut server = RedisServer::start();
    let mut shared = limited(
        store(&server, "down", OnStoreFailure::Local { share: 1.0 }),
        1,
        5,
    );
    admitted(&mut shared, "gina").await.unwrap();
    server.kill();
    let mut slowest = Duration::ZERO;
    let mut admitted_count = 0;
    for i in 0..20 {
        let started = Instant::now();
        if admitted(&mut shared, &format!("gina-{}", i % 2))
            .await
            .is_ok()
        {
            admitted_count += 1;
        }
        let took = started.elapsed();
        if i >= 3 {
            // The breaker opened after 3 failures: no more waiting for Redis at all.
            assert!(took < Duration::from_millis(1), "call {i} took {took:?}");
        }
        slowest = slowest.max(took);
    }
    // Every call stayed within the 50 ms store timeout (plus scheduling).
    assert!(slowest < Duration::from_millis(100), "{slowest:?}");
    // The local fallback limits each key to its burst of 5.
    assert_eq!(admitted_count, 10);
}

#[tokio::test]
async fn fail_closed_refuses_while_redis_is_down() {
    let mut server = RedisServer::start();
    let mut shared = limited(store(&server, "closed", OnStoreFailure::Refuse), 100, 100);
    admitted(&mut shared, "hank").await.unwrap();
    server.kill();
    for _ in 0..5 {
        let Rejection::RateLimited(refused) = admitted(&mut shared, "hank").await.unwrap_err()
        else {
            panic!("a rate limit refusal");
        };
        assert_eq!(
            refused.retry_after(),
            Duration::from_secs(60),
            "the breaker's open time"
        );
    }
}

#[test]
fn two_threads_hammering_two_replicas_admit_at_most_burst_plus_rate_times_t() {
    let server = RedisServer::start();
    let url = server.url();
    let admitted_total = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            let admitted_total = Arc::clone(&admitted_total);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let client = redis::Client::open(url).unwrap();
                    let store = RedisStore::builder(client)
                        .prefix("hammer")
                        .timeout(Duration::from_millis(200))
                        .on_failure(OnStoreFailure::Refuse)
                        .build()
                        .unwrap();
                    let mut svc = limited(store, 100, 10);
                    let until = Instant::now() + Duration::from_millis(500);
                    while Instant::now() < until {
                        if admitted(&mut svc, "ivy").await.is_ok() {
                            admitted_total.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let elapsed = started.elapsed();
    let admitted = admitted_total.load(Ordering::SeqCst);
    // burst + rate · t, with t the whole span the threads ran (Redis's clock is the judge).
    let bound = 10 + (100.0 * elapsed.as_secs_f64()).ceil() as u64;
    assert!(admitted <= bound, "{admitted} admitted, bound {bound}");
    assert!(
        admitted >= 40,
        "{admitted} admitted in {elapsed:?}: the limiter is not limiting fairly"
    );
}

fn ttl_ms(server: &RedisServer, key: &str) -> i64 {
    match server.command(&["PTTL", key]) {
        redis::Value::Int(ms) => ms,
        other => panic!("PTTL answered {other:?}"),
    }
}

fn value(server: &RedisServer, key: &str) -> redis::Value {
    server.command(&["GET", key])
}

#[tokio::test]
async fn a_bucket_expires_when_it_would_be_full_never_sooner() {
    let server = RedisServer::start();
    let mut shared = limited(store(&server, "ttl", OnStoreFailure::Refuse), 1, 10);
    admitted(&mut shared, "jo").await.unwrap();
    // One token taken at one per second: full again in 1 s, and kept until then.
    let ttl = ttl_ms(&server, "ttl:{test:jo}:0");
    assert!((990..=1000).contains(&ttl), "{ttl}");
    for _ in 0..4 {
        admitted(&mut shared, "jo").await.unwrap();
    }
    let ttl = ttl_ms(&server, "ttl:{test:jo}:0");
    assert!((4_990..=5_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn several_quotas_are_decided_together_all_or_nothing() {
    let server = RedisServer::start();
    let hourly = tower_rampart::rate_limit::Quota::new(3, Duration::from_secs(3_600), 3).unwrap();
    let layer = RateLimitLayer::per_second(100)
        .burst(100)
        .policy_name("test")
        .with_key(|req: &Request<()>| req.headers().get("x-client").map(|v| v.as_bytes().to_vec()))
        .shared(store(&server, "multi", OnStoreFailure::Refuse))
        .and_quota(hourly)
        .build()
        .unwrap();
    let mut shared: Svc =
        tower::util::BoxCloneSyncService::new(layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(())
        })));
    for _ in 0..3 {
        admitted(&mut shared, "kim").await.unwrap();
    }
    let per_second = value(&server, "multi:{test:kim}:0");
    let Rejection::RateLimited(refused) = admitted(&mut shared, "kim").await.unwrap_err() else {
        panic!("a rate limit refusal");
    };
    // The hourly quota refused, and says so; the per-second one was not charged.
    assert_eq!(
        (refused.limit(), refused.window()),
        (3, Duration::from_secs(3_600))
    );
    assert!(
        refused.retry_after() > Duration::from_secs(1_000),
        "{refused:?}"
    );
    assert_eq!(value(&server, "multi:{test:kim}:0"), per_second);
}

#[tokio::test]
async fn weighted_requests_take_their_cost() {
    let server = RedisServer::start();
    let layer = RateLimitLayer::per_second(1)
        .burst(10)
        .policy_name("test")
        .with_key(|req: &Request<()>| req.headers().get("x-client").map(|v| v.as_bytes().to_vec()))
        .cost(|_: &Request<()>| 4)
        .shared(store(&server, "cost", OnStoreFailure::Refuse))
        .build()
        .unwrap();
    let mut shared: Svc =
        tower::util::BoxCloneSyncService::new(layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(())
        })));
    admitted(&mut shared, "lee").await.unwrap();
    admitted(&mut shared, "lee").await.unwrap();
    // 8 of 10 taken: a third request of 4 does not fit.
    let Rejection::RateLimited(refused) = admitted(&mut shared, "lee").await.unwrap_err() else {
        panic!("a rate limit refusal");
    };
    assert_eq!(refused.remaining(), 2);
}

#[tokio::test]
async fn the_local_refusal_cache_ends_at_the_retry_after_and_never_admits_early() {
    let server = RedisServer::start();
    let mut shared = limited(store(&server, "expiry", OnStoreFailure::Refuse), 20, 1);
    admitted(&mut shared, "max").await.unwrap();
    let Rejection::RateLimited(first) = admitted(&mut shared, "max").await.unwrap_err() else {
        panic!("a rate limit refusal");
    };
    // While the cached refusal lasts, every answer is a refusal, with a shrinking wait.
    let Rejection::RateLimited(cached) = admitted(&mut shared, "max").await.unwrap_err() else {
        panic!("a rate limit refusal");
    };
    assert!(cached.retry_after() <= first.retry_after());
    // Once it is over (one token per 50 ms), Redis decides again and admits.
    tokio::time::sleep(first.retry_after() + Duration::from_millis(5)).await;
    admitted(&mut shared, "max").await.unwrap();
}

/// The status code of `GET /` on `addr`, and how long it took.
async fn get_root(addr: std::net::SocketAddr) -> (u16, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: example\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let status = std::str::from_utf8(&answer[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, started.elapsed())
}

/// The example server's app with `redis_url`, served on a loopback port.
async fn example_server(redis_url: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = app::app(app::Config {
        redis_url: Some(redis_url),
        ..app::Config::default()
    })
    .unwrap();
    tokio::spawn(app::serve(
        listener,
        built.router,
        std::future::pending(),
        app::Limits::default(),
    ));
    addr
}

#[tokio::test]
async fn example_servers_share_their_per_client_limit_and_survive_redis_going_away() {
    let mut server = RedisServer::start();
    let one = example_server(server.url()).await;
    let two = example_server(server.url()).await;
    let mut answered = [0, 0];
    for i in 0..40 {
        let (status, _) = get_root(if i % 2 == 0 { one } else { two }).await;
        match status {
            200 => answered[0] += 1,
            429 => answered[1] += 1,
            other => panic!("status {other}"),
        }
    }
    // One client (127.0.0.1), one burst of 20 across both servers (a token more may come in
    // during the run, at 50 per second).
    assert!((20..=22).contains(&answered[0]), "{answered:?}");

    // Redis gone: each server limits alone with the same quota, and answers quickly.
    server.kill();
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let (status, took) = get_root(if i % 2 == 0 { one } else { two }).await;
        assert!(status == 200 || status == 429, "status {status}");
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_millis(50), "{slowest:?}");
}

/// How many times Redis ran a command (from `INFO commandstats`).
fn calls_of(server: &RedisServer, command: &str) -> u64 {
    let mut conn = server.client().get_connection().unwrap();
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test]
async fn leases_save_round_trips_within_their_stated_bound() {
    let server = RedisServer::start();
    let replica = || {
        let layer = RateLimitLayer::per_second(100)
            .burst(20)
            .policy_name("test")
            .with_key(|req: &Request<()>| {
                req.headers().get("x-client").map(|v| v.as_bytes().to_vec())
            })
            .shared(store(&server, "lease", OnStoreFailure::Refuse))
            .lease(5)
            .build()
            .unwrap();
        let svc: Svc = tower::util::BoxCloneSyncService::new(layer.layer(service_fn(
            |_: Request<()>| async { Ok::<_, Infallible>(()) },
        )));
        svc
    };
    let mut replicas = [replica(), replica()];
    let started = Instant::now();
    let mut admitted_count = 0u64;
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(300) {
        if admitted(&mut replicas[i % 2], "nia").await.is_ok() {
            admitted_count += 1;
        }
        i += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // burst + rate · t + replicas · lease.
    let bound = 20 + (100.0 * elapsed).ceil() as u64 + 2 * 5;
    assert!(
        admitted_count <= bound,
        "{admitted_count} admitted, bound {bound}"
    );
    assert!(admitted_count >= 20, "{admitted_count}");
    // Admissions mostly came from leases: far fewer scripts ran than requests were admitted.
    let scripts = calls_of(&server, "evalsha") + calls_of(&server, "eval");
    assert!(scripts > 0);
    let from_redis_admissions = admitted_count.div_ceil(5);
    assert!(
        i as u64 > scripts,
        "{i} requests, {scripts} scripts, {from_redis_admissions} leases at least"
    );
}

#[tokio::test]
async fn a_lease_takes_only_what_the_bucket_has() {
    let server = RedisServer::start();
    let layer = RateLimitLayer::per_second(1)
        .burst(3)
        .policy_name("test")
        .with_key(|req: &Request<()>| req.headers().get("x-client").map(|v| v.as_bytes().to_vec()))
        .shared(store(&server, "small", OnStoreFailure::Refuse))
        .lease(10)
        .build()
        .unwrap();
    let mut svc: Svc =
        tower::util::BoxCloneSyncService::new(layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(())
        })));
    let scripts = || calls_of(&server, "evalsha") + calls_of(&server, "eval");
    // One decision takes the whole burst of 3: the first is used, two are leased.
    admitted(&mut svc, "oz").await.unwrap();
    let after_first = scripts();
    for _ in 0..2 {
        admitted(&mut svc, "oz").await.unwrap();
    }
    assert_eq!(scripts(), after_first, "leased tokens need no round trip");
    assert!(
        admitted(&mut svc, "oz").await.is_err(),
        "never more than the bucket held"
    );
    assert_eq!(scripts(), after_first + 1);
}

#[tokio::test]
async fn advertised_ratelimit_fields_match_the_in_memory_limiter() {
    let server = RedisServer::start();
    let build = || {
        RateLimitLayer::per_second(50)
            .burst(20)
            .policy_name("test")
            .with_key(|_: &Request<()>| Some(1u64))
            .advertise()
    };
    let shared = build()
        .shared(store(&server, "advertise", OnStoreFailure::Refuse))
        .build()
        .unwrap()
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    let local = build()
        .with_clock(ManualClock::new())
        .build()
        .unwrap()
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    for _ in 0..5 {
        let from_redis = shared.clone().oneshot(Request::new(())).await.unwrap();
        let from_memory = local.clone().oneshot(Request::new(())).await.unwrap();
        // Redis's clock moves a little between calls; the fields are in whole seconds and
        // whole tokens, so they agree.
        assert_eq!(
            from_redis.headers()["ratelimit-policy"],
            from_memory.headers()["ratelimit-policy"]
        );
        assert_eq!(
            from_redis.headers()["ratelimit"],
            from_memory.headers()["ratelimit"]
        );
    }
}
