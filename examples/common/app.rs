//! The example service's routes and stack, shared by `examples/server.rs` (which serves them)
//! and `tests/server.rs` (which drives them over real sockets).
//!
//! | route | what it shows |
//! |---|---|
//! | `GET /` | a plain answer, with `x-request-id` |
//! | `GET /slow` | a 5 s handler behind the 1 s timeout: 504; `grpc-timeout: 200m` makes it 200 ms |
//! | `GET /budget` | the time this request has left (the `Deadline` extractor) |
//! | `GET /flaky` | an upstream that always answers 500, behind a client circuit breaker: 502, then 503 + `Retry-After` without calling it |
//! | `GET /product/{id}` | the product page by fan-out: `"degraded":["reviews"]` after 300 ms |
//! | `GET /work` | a resource of 8 workers taking 20 ms each, behind an adaptive load shedder starting at 12 in flight (`x-priority: critical / normal / sheddable`), outside the rate limit: 200 within a few times 20 ms, or 503 + `Retry-After` at once |
//! | `GET /health` | the breakers' states, outside the rate limit |
//! | `GET /metrics` | every layer's metrics in the Prometheus text format, outside the rate limit |
//!
//! Every route but `/health` and `/metrics` is limited to 50 requests per second per client IP, 20 at once.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Request, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::util::Either;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_rampart::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use tower_rampart::fan_out::{Answers, FanOut, Part, PartResult};
use tower_rampart::load_shed::{AdaptiveLimit, HeaderPriority, LoadShedLayer};
use tower_rampart::metrics::HttpMetricsLayer;
use tower_rampart::rate_limit::{OnStoreFailure, PeerIp, RateLimitLayer, RedisStore};
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::{Deadline, TimeoutLayer};
use tower_rampart::{BoxError, ConfigError, Rejection, ServiceBuilderExt};

/// What the tests may change; `Config::default()` is what the example serves.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Each request's time limit (callers may ask for less). Default: 1 s.
    pub(crate) request_timeout: Duration,
    /// How long `/flaky`'s breaker stays open before it probes the upstream. Default: 10 s.
    pub(crate) flaky_open_for: Duration,
    /// After how many calls `/flaky`'s upstream recovers and answers 200. Default: never.
    pub(crate) upstream_recovers_after: Option<u64>,
    /// How often the Prometheus recorder drains its histograms, scraped or not. Default: 5 s.
    pub(crate) metrics_upkeep: Duration,
    /// A Redis to share the per-client limit with every server using it (`REDIS_URL` in
    /// the example). Default: none, the limit is this process's own.
    pub(crate) redis_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(1),
            flaky_open_for: Duration::from_secs(10),
            upstream_recovers_after: None,
            metrics_upkeep: Duration::from_secs(5),
            redis_url: None,
        }
    }
}

/// How the server treats connections: what keeps slow or idle clients from taking it down.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// A connection must send a whole request head within this time, the first one or the
    /// next one on a kept-alive connection, or it is closed. Default: 5 s. It also bounds
    /// how long a half-sent head can hold a graceful shutdown.
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog, unaccepted, so
    /// they use no file descriptor of the server's. Default: 512 (half of the usual 1 024
    /// open-file limit).
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 512,
        }
    }
}

/// The app and the handles the example and the tests look into.
pub(crate) struct App {
    /// Every route behind the rampart stack; serve it with `ConnectInfo<SocketAddr>`.
    pub(crate) router: Router,
    /// `/flaky`'s client breaker.
    pub(crate) flaky_breaker: CircuitBreakerHandle,
    /// How many calls reached `/flaky`'s upstream.
    pub(crate) upstream_calls: Arc<AtomicU64>,
}

/// The process's Prometheus recorder, installed as the global `metrics` recorder the first
/// time it is asked for: [`app`] asks before it builds any layer, so that the layers'
/// counters register with it.
///
/// `install_recorder` starts no upkeep of its own: until something calls `run_upkeep`, every
/// histogram sample is kept, so an unscraped server would grow without bound (and the first
/// scrape would take seconds). [`app`] starts a task that runs it on a timer.
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other global metrics recorder is installed")
    })
}

/// Builds the app: request id → metrics → rejection mapping → timeout → per-client rate
/// limit → routes.
///
/// Call it inside a tokio runtime: it spawns the metrics upkeep task.
pub(crate) fn app(config: Config) -> Result<App, BoxError> {
    let metrics = prometheus();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(config.metrics_upkeep);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            metrics.run_upkeep();
        }
    });
    let per_client = RateLimitLayer::per_second(50)
        .burst(20)
        .with_key(PeerIp)
        .policy_name("per-ip");
    // With a Redis, every server using it shares each client's 50/s; while Redis is
    // unreachable, each server limits alone with the same quota (answering within the
    // store's 5 ms timeout, then at once once its breaker opens).
    let per_client = match &config.redis_url {
        None => Either::Left(per_client.build()?),
        Some(url) => {
            let client = redis::Client::open(url.as_str())?;
            let store = RedisStore::builder(client)
                .prefix("example")
                .on_failure(OnStoreFailure::Local { share: 1.0 })
                .build()?;
            Either::Right(per_client.shared(store).build()?)
        }
    };
    let upstream_calls = Arc::new(AtomicU64::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .name("upstream")
        .failure_threshold(5)
        .open_for(config.flaky_open_for)
        .build()?;
    let flaky_breaker = breaker.handle();

    let limited = Router::new()
        .route("/", get(|| async { "tower-rampart example server\n" }))
        .route("/slow", get(slow))
        .route("/budget", get(budget))
        .merge(flaky(
            breaker,
            upstream_calls.clone(),
            config.upstream_recovers_after,
        ))
        .merge(product_page()?)
        // The limiter's 429s become responses here, inside the route.
        .layer(ServiceBuilder::new().rejection_response().layer(per_client));
    let health_breaker = flaky_breaker.clone();
    let router = Router::new()
        .merge(limited)
        .merge(work()?)
        .route(
            "/health",
            get(move || {
                let state = health_breaker.state();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        format!(r#"{{"status":"ok","breakers":{{"upstream":"{state}"}}}}"#),
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                metrics.run_upkeep();
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }),
        )
        .layer(
            ServiceBuilder::new()
                // Outermost: accept or generate `x-request-id`, echo it on every response,
                // rejections included.
                .layer(SetRequestIdLayer::new())
                // Requests and durations by method and status class, rejections included.
                .layer(HttpMetricsLayer::new())
                // Rejections from the layers below become 429/503/504/502 responses.
                .rejection_response()
                // 1 s per request, or less if the caller sends `grpc-timeout` or
                // `x-request-timeout-ms`; 504 when it runs out.
                .layer(TimeoutLayer::new(config.request_timeout)?),
        );
    Ok(App {
        router,
        flaky_breaker,
        upstream_calls,
    })
}

/// `/work`: a resource of 8 workers taking 20 ms each (a semaphore inside the handler),
/// behind an adaptive load shedder starting at 12 in flight: 8 working and a short queue. The example trusts
/// the `x-priority` header; a real service decides priority from the route or the caller.
fn work() -> Result<Router, ConfigError> {
    let workers = Arc::new(tokio::sync::Semaphore::new(8));
    // Starts at 12 in flight (8 working, a short queue) and follows what the workers manage.
    let shed = LoadShedLayer::builder()
        .name("work")
        .adaptive(
            AdaptiveLimit::new()
                .initial(12)
                .min(2)
                .max(64)
                .window(Duration::from_millis(100)),
        )
        .critical_share(0.2)
        .retry_after(Duration::from_millis(20))
        .prioritize(HeaderPriority::new(http::HeaderName::from_static(
            "x-priority",
        )))
        .build()?;
    Ok(Router::new()
        .route(
            "/work",
            get(move || {
                let workers = Arc::clone(&workers);
                async move {
                    let _worker = workers
                        .acquire()
                        .await
                        .expect("the semaphore is never closed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    "worked 20 ms\n"
                }
            }),
        )
        .layer(ServiceBuilder::new().rejection_response().layer(shed)))
}

/// Takes 5 s: longer than any request may.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "done\n"
}

/// Answers with the time this request has left: try `curl -H 'x-request-timeout-ms: 250'`.
async fn budget(deadline: Deadline) -> String {
    format!("{} ms left\n", deadline.remaining().as_millis())
}

/// `/flaky`: calls an upstream that fails (always, or for its first `recovers_after` calls)
/// through a client stack with a circuit breaker (5 failures in a row open it). An upstream
/// 5xx is answered 502; once the breaker is open, the breaker's rejection is answered 503
/// with `Retry-After`, at once.
fn flaky(
    breaker: CircuitBreakerLayer,
    calls: Arc<AtomicU64>,
    recovers_after: Option<u64>,
) -> Router {
    let upstream = tower::service_fn(move |_: Request<Body>| {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        let healthy = recovers_after.is_some_and(|n| call >= n);
        async move {
            let (status, body) = if healthy {
                (StatusCode::OK, "upstream answered\n")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "upstream failed\n")
            };
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    let client = breaker.layer(upstream);
    Router::new().route(
        "/flaky",
        get(move || {
            let client = client.clone();
            async move {
                match client.oneshot(Request::new(Body::empty())).await {
                    Ok(response) if response.status().is_server_error() => {
                        (StatusCode::BAD_GATEWAY, "the upstream failed\n").into_response()
                    }
                    Ok(response) => response.into_response(),
                    Err(err) => match Rejection::find(err.as_ref()) {
                        Some(rejection) => rejection.clone().into_response(),
                        None => (StatusCode::BAD_GATEWAY, "the upstream failed\n").into_response(),
                    },
                }
            }
        }),
    )
}

/// The product page: the core data (essential, fast), reviews (optional, 300 ms
/// budget, but the stand-in takes 2 s) and related products (optional, fast), all under a
/// 1 s cap. Built once; answers 200 with `"degraded":["reviews"]` after 300 ms.
fn product_page() -> Result<Router, ConfigError> {
    // Stand-ins for three backends; in a real service, hyper clients with their own stacks.
    let core = tower::service_fn(|id: u64| async move {
        Ok::<_, Infallible>(format!(
            r#"{{"id":{id},"name":"kettle","price_cents":2999}}"#
        ))
    });
    let reviews = tower::service_fn(|_: u64| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, Infallible>(r#"[{"stars":5}]"#.to_string())
    });
    let related = tower::service_fn(|id: u64| async move {
        Ok::<_, Infallible>(format!("[{},{}]", id + 1, id + 2))
    });
    let page = FanOut::builder(Duration::from_secs(1))
        .part(Part::essential("core", core))
        .part(Part::optional("reviews", reviews).timeout(Duration::from_millis(300)))
        .part(Part::optional("related", related).timeout(Duration::from_millis(300)))
        .build()?;
    Ok(Router::new().route(
        "/product/{id}",
        get(move |Path(id): Path<u64>| {
            let page = page.clone();
            async move { render(page.call(&id).await?) }
        }),
    ))
}

/// The product page as JSON: the parts that answered, and the list of those that did not.
fn render(
    outcome: Answers<(PartResult<String>, PartResult<String>, PartResult<String>)>,
) -> Result<Response, Rejection> {
    let (core, reviews, related) = outcome.parts();
    let mut fields = Vec::new();
    fields.extend(core.value().map(|v| ("product", v.as_str())));
    fields.extend(reviews.value().map(|v| ("reviews", v.as_str())));
    fields.extend(related.value().map(|v| ("related", v.as_str())));
    Ok(outcome.json_response::<Body>(&fields))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the connections in flight (bound that wait yourself: see `examples/server.rs`).
///
/// Each request carries axum's `ConnectInfo<SocketAddr>`, which `PeerIp` needs. Unlike
/// `axum::serve`, connections are held to [`Limits`]: a header-read timeout and a cap on
/// connections served at once, so that clients sending a byte a second, or idling on
/// kept-alive connections, cannot use up the process's file descriptors.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // back off a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service =
            TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(router.clone()));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
