//! Instructions per request of each hot path, counted by callgrind: exact from run to run,
//! whatever else the machine is doing. Each case stands beside its group's baseline (a bare
//! service), its floor (the least any layer doing the job must do) and the crates it is
//! compared with.
//!
//! ```text
//! cargo run --release -p tower-rampart-bench --bin icount            # every case, a table
//! cargo run --release -p tower-rampart-bench --bin icount -- timeout # the cases of one group
//! ```
//!
//! It needs `valgrind` on the `PATH`. Each case runs twice under
//! `valgrind --tool=callgrind --toggle-collect=icount::measured`, with `N` and `2N`
//! iterations; the difference divided by `N` is the cost of one iteration, free of set-up,
//! warm-up (first-use allocations, thread-locals) and process start. Run one case by hand
//! with `icount run <case> <iterations>`.

// Cases build their services outside the measured loop; the wall clock is never read here.
#![allow(clippy::disallowed_types)]

use std::convert::Infallible;
use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Request, Response, header};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;
use tower_rampart::ServiceBuilderExt;
use tower_rampart::circuit_breaker::CircuitBreakerLayer;
use tower_rampart::fan_out::{FanOut, Part};
use tower_rampart::rate_limit::{RateLimitLayer, RedisStore};
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::TimeoutLayer;
use tower_rampart_bench::cases;
use tower_rampart_bench::cases::{
    LIMIT, UNLIMITED, compared_stack, handler, rampart_stack, tower_http_ids,
};
use tower_rampart_bench::support::{failsafe_layer, ready_now};

/// Iterations of the shorter run; the longer one makes twice as many.
const ITERATIONS: u64 = 2_000;

/// What a case is to its group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The bare service every other case's cost is measured over.
    Baseline,
    /// The least any layer doing this job must do.
    Floor,
    /// A crate this one is compared with.
    Compared,
    /// This crate.
    Rampart,
    /// A figure to read beside the others, not a service over the baseline.
    Alone,
}

struct Case {
    group: &'static str,
    name: &'static str,
    role: Role,
    run: fn(u64),
}

/// Runs `call` `iterations` times: the only function callgrind counts in.
#[inline(never)]
fn measured(iterations: u64, call: &mut dyn FnMut()) {
    for _ in 0..iterations {
        call();
    }
}

/// The tokio runtime the timers need (never driven: every call here is ready at once).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// Calls `svc` once per iteration with `make()`, polling the future once.
fn drive<S, Req>(iterations: u64, mut svc: S, make: impl Fn() -> Req)
where
    S: Service<Req>,
{
    let runtime = runtime();
    let _entered = runtime.enter();
    // One call outside the count: lazily built state is not a request's cost.
    let _ = ready_now(svc.call(make()));
    measured(iterations, &mut || {
        let _ = black_box(ready_now(svc.call(black_box(make()))));
    });
}

// --- requests and handlers, shaped as hyper and axum hand them over ----------------------

const INCOMING_ID: &str = "0193a5c2-7f3e-7b4c-9d2a-5f1e8c3b6a70";

/// A request with a `host` header, and optionally an incoming id and a caller's budget.
fn request(id: bool, budget: bool) -> Request<()> {
    let mut req = Request::new(());
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("example.com"));
    if id {
        headers.insert("x-request-id", HeaderValue::from_static(INCOMING_ID));
    }
    if budget {
        headers.insert("x-request-timeout-ms", HeaderValue::from_static("5000"));
    }
    req
}

// --- rate limit ----------------------------------------------------------------------------

fn limit_baseline(n: u64) {
    drive(n, handler(), || request(false, false));
}

fn limit_rampart(n: u64) {
    let layer = RateLimitLayer::per_second(UNLIMITED)
        .burst(UNLIMITED)
        .build()
        .unwrap();
    drive(n, layer.layer(handler()), || request(false, false));
}

fn limit_rampart_refused(n: u64) {
    let layer = RateLimitLayer::with_period(1, Duration::from_secs(3_600))
        .burst(1)
        .build()
        .unwrap();
    drive(n, layer.layer(handler()), || request(false, false));
}

fn limit_tower_governor(n: u64) {
    let config = GovernorConfigBuilder::default()
        .key_extractor(GlobalKeyExtractor)
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    let layer = GovernorLayer {
        config: Arc::new(config),
    };
    drive(n, layer.layer(handler()), || request(false, false));
}

fn limit_tower(n: u64) {
    let runtime = runtime();
    let _entered = runtime.enter();
    let mut svc =
        tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(handler());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut call = || {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let _ = black_box(ready_now(svc.call(black_box(request(false, false)))));
    };
    call();
    measured(n, &mut call);
}

/// The raw decision, no service around it: what governor's `check` does.
fn limit_governor_check(n: u64) {
    let limiter = governor::RateLimiter::direct(governor::Quota::per_second(
        std::num::NonZeroU32::new(UNLIMITED).unwrap(),
    ));
    let _ = limiter.check();
    measured(n, &mut || {
        let _ = black_box(limiter.check());
    });
}

/// A refusal answered as a 429 response through the one mapping.
fn limit_rampart_refused_answered(n: u64) {
    let layer = RateLimitLayer::with_period(1, Duration::from_secs(3_600))
        .burst(1)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .rejection_response()
        .layer(layer)
        .service(handler());
    drive(n, svc, || request(false, false));
}

/// tower_governor's refusal, which answers its own 429.
fn limit_tower_governor_refused(n: u64) {
    let config = GovernorConfigBuilder::default()
        .key_extractor(GlobalKeyExtractor)
        .per_second(3_600)
        .burst_size(1)
        .finish()
        .unwrap();
    let layer = GovernorLayer {
        config: Arc::new(config),
    };
    drive(n, layer.layer(handler()), || request(false, false));
}

// --- timeout -------------------------------------------------------------------------------

fn timeout_baseline(n: u64) {
    drive(n, handler(), || request(false, true));
}

fn timeout_rampart(n: u64) {
    let svc = TimeoutLayer::new(LIMIT).unwrap().layer(handler());
    drive(n, svc, || request(false, true));
}

fn timeout_rampart_ignoring_inbound(n: u64) {
    let layer = TimeoutLayer::new(LIMIT).unwrap().ignore_inbound();
    drive(n, layer.layer(handler()), || request(false, true));
}

fn timeout_tower(n: u64) {
    let svc = tower::timeout::TimeoutLayer::new(LIMIT).layer(handler());
    drive(n, svc, || request(false, true));
}

fn timeout_tower_http(n: u64) {
    #[allow(deprecated)]
    let layer = tower_http::timeout::TimeoutLayer::with_status_code(
        http::StatusCode::GATEWAY_TIMEOUT,
        LIMIT,
    );
    drive(n, layer.layer(handler()), || request(false, true));
}

// --- request id ----------------------------------------------------------------------------

fn id_baseline(n: u64) {
    drive(n, handler(), || request(true, false));
}

/// The request-id floor (see `cases::id_floor`).
fn id_floor(n: u64) {
    drive(n, cases::id_floor(), || request(true, false));
}

fn id_rampart_kept(n: u64) {
    drive(n, SetRequestIdLayer::new().layer(handler()), || {
        request(true, false)
    });
}

fn id_rampart_generated(n: u64) {
    drive(n, SetRequestIdLayer::new().layer(handler()), || {
        request(false, false)
    });
}

fn id_tower_http_kept(n: u64) {
    drive(n, tower_http_ids(), || request(true, false));
}

fn id_tower_http_generated(n: u64) {
    drive(n, tower_http_ids(), || request(false, false));
}

/// What a UUID v7 alone costs (it reads the system time).
fn id_uuid_now_v7(n: u64) {
    let _ = uuid::Uuid::now_v7();
    measured(n, &mut || {
        black_box(uuid::Uuid::now_v7());
    });
}

// --- circuit breaker -----------------------------------------------------------------------

fn breaker_baseline(n: u64) {
    drive(n, handler(), || request(false, false));
}

fn breaker_rampart(n: u64) {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    drive(n, layer.layer(handler()), || request(false, false));
}

/// An open breaker refusing (the handler answers 500, so one call trips it).
fn breaker_rampart_open(n: u64) {
    let layer = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .open_for(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let failing = service_fn(|_: Request<()>| {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        std::future::ready(Ok::<_, Infallible>(response))
    });
    drive(n, layer.layer(failing), || request(false, false));
}

fn breaker_failsafe(n: u64) {
    drive(n, failsafe_layer(handler()), || request(false, false));
}

// --- fan-out -------------------------------------------------------------------------------

fn part(
    scale: u64,
) -> impl Service<
    u64,
    Response = u64,
    Error = Infallible,
    Future = std::future::Ready<Result<u64, Infallible>>,
> + Clone {
    service_fn(move |n: u64| std::future::ready(Ok(n * scale)))
}

fn fan_baseline(n: u64) {
    let (a, b, c) = (part(1), part(2), part(3));
    measured(n, &mut || {
        let x = ready_now(a.clone().oneshot(black_box(7)));
        let y = ready_now(b.clone().oneshot(black_box(7)));
        let z = ready_now(c.clone().oneshot(black_box(7)));
        let _ = black_box((x, y, z));
    });
}

/// What a hand-written fan-out needs for per-part deadlines: `tokio::join!` with a
/// `tokio::time::timeout` around each call.
fn fan_join_with_timeouts(n: u64) {
    let runtime = runtime();
    let _entered = runtime.enter();
    let (a, b, c) = (part(1), part(2), part(3));
    let limit = Duration::from_millis(300);
    let mut call = || {
        let out = ready_now(async {
            tokio::join!(
                tokio::time::timeout(Duration::from_secs(1), a.clone().oneshot(black_box(7))),
                tokio::time::timeout(limit, b.clone().oneshot(black_box(7))),
                tokio::time::timeout(limit, c.clone().oneshot(black_box(7)))
            )
        });
        black_box(out.0.is_ok() && out.1.is_ok() && out.2.is_ok());
    };
    call();
    measured(n, &mut call);
}

fn fan_rampart(n: u64) {
    let runtime = runtime();
    let _entered = runtime.enter();
    let fan = FanOut::builder(Duration::from_secs(1))
        .part(Part::essential("a", part(1)))
        .part(Part::optional("b", part(2)).timeout(Duration::from_millis(300)))
        .part(Part::optional("c", part(3)).timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    let mut call = || {
        black_box(ready_now(fan.call(&black_box(7u64))).is_ok());
    };
    call();
    measured(n, &mut call);
}

// --- the whole stack -----------------------------------------------------------------------

fn stack_baseline(n: u64) {
    drive(n, handler(), || request(true, false));
}

fn stack_rampart(n: u64) {
    drive(n, rampart_stack(), || request(true, false));
}

fn stack_compared(n: u64) {
    drive(n, compared_stack(), || request(true, false));
}

/// A key Redis refused, refused again from the shared limiter's local cache: no round
/// trip. (The first refusal, outside the count, comes from a `redis-server` started here.)
fn limit_shared_cached_refusal(n: u64) {
    let (url, _own) = tower_rampart_bench::support::redis_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let _entered = runtime.enter();
    let store = RedisStore::builder(redis::Client::open(url).unwrap())
        .prefix("icount")
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = RateLimitLayer::with_period(1, Duration::from_secs(3_600))
        .burst(1)
        .with_key(|_: &Request<()>| Some(7u64))
        .shared(store)
        .build()
        .unwrap();
    let mut svc = layer.layer(handler());
    runtime.block_on(async {
        let _ = svc.call(request(false, false)).await;
        let refused = svc.call(request(false, false)).await;
        assert!(refused.is_err(), "the second call is refused by Redis");
    });
    measured(n, &mut || {
        let _ = black_box(ready_now(svc.call(black_box(request(false, false)))));
    });
}

// --- load shedding ----------------------------------------------------------------------

fn shed_baseline(n: u64) {
    drive(n, handler(), || request(false, false));
}

/// A slot taken and given back: the response is dropped, body and all, inside the count.
fn shed_rampart(n: u64) {
    let layer = tower_rampart::load_shed::LoadShedLayer::builder()
        .max_in_flight(1_000)
        .build()
        .unwrap();
    drive(n, layer.layer(handler()), || request(false, false));
}

/// The adaptive limit: a clock read at each end of the call, the latency recorded.
fn shed_rampart_adaptive(n: u64) {
    let layer = tower_rampart::load_shed::LoadShedLayer::builder()
        .adaptive(tower_rampart::load_shed::AdaptiveLimit::new().initial(1_000))
        .build()
        .unwrap();
    drive(n, layer.layer(handler()), || request(false, false));
}

/// The least a limit refusing in `call` and holding its slot to the body's end must do.
fn shed_floor(n: u64) {
    drive(
        n,
        tower_rampart_bench::support::SlotFloor::new(handler(), 1_000),
        || request(false, false),
    );
}

/// The floor of an adaptive limit: the fixed floor, each call timed with tokio's clock.
fn shed_floor_timed(n: u64) {
    drive(
        n,
        tower_rampart_bench::support::SlotFloor::new(handler(), 1_000).timed(),
        || request(false, false),
    );
}

/// tower's pair: a concurrency limit (its slot taken in `poll_ready`) that sheds when full.
fn shed_tower(n: u64) {
    drive_ready(
        n,
        ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1_000)
            .service(handler()),
    );
}

/// tower's concurrency limit alone: it waits in `poll_ready` for a slot instead of refusing.
fn shed_tower_limit_only(n: u64) {
    drive_ready(
        n,
        ServiceBuilder::new()
            .concurrency_limit(1_000)
            .service(handler()),
    );
}

/// Like [`drive`], for a service that needs `poll_ready` before each call.
fn drive_ready<S>(n: u64, svc: S)
where
    S: Service<Request<()>>,
{
    let runtime = runtime();
    let _entered = runtime.enter();
    let mut svc = svc;
    let mut ready_call = move || {
        let ready = ready_now(std::future::poll_fn(|cx| svc.poll_ready(cx)));
        let _ = black_box(ready);
        black_box(ready_now(svc.call(black_box(request(false, false)))))
    };
    let _ = ready_call();
    measured(n, &mut || {
        let _ = ready_call();
    });
}

// --- gRPC ----------------------------------------------------------------------------------

/// A unary gRPC request as tonic sends it.
fn grpc_request() -> Request<()> {
    let mut req = request(false, false);
    *req.version_mut() = http::Version::HTTP_2;
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    req
}

/// A unary gRPC answer as a server streams it: one message, then `grpc-status: 0` in the
/// trailers. The trailers are boxed, as in the boxed bodies tonic and hyper hand over, so
/// that moving the response costs what it costs there.
struct GrpcAnswer {
    message: Option<bytes::Bytes>,
    trailers: Option<Box<http::HeaderMap>>,
}

impl http_body::Body for GrpcAnswer {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        let frame = match self.message.take() {
            Some(message) => Some(http_body::Frame::data(message)),
            None => self
                .trailers
                .take()
                .map(|trailers| http_body::Frame::trailers(*trailers)),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

/// A handler answering every call with a [`GrpcAnswer`].
fn grpc_handler() -> impl Service<
    Request<()>,
    Response = Response<GrpcAnswer>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<GrpcAnswer>, Infallible>>,
> + Clone {
    service_fn(|_: Request<()>| {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut response = Response::new(GrpcAnswer {
            message: Some(bytes::Bytes::from_static(b"\0\0\0\0\x02\x08\x01")),
            trailers: Some(Box::new(trailers)),
        });
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        std::future::ready(Ok(response))
    })
}

/// Like [`drive`], and reads each response's body to its end (the trailers included).
fn drive_to_end<S, Req, B>(iterations: u64, mut svc: S, make: impl Fn() -> Req)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
{
    fn drain<B: http_body::Body>(body: B) {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut body = std::pin::pin!(body);
        while let std::task::Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
            drop(black_box(frame));
        }
    }
    let runtime = runtime();
    let _entered = runtime.enter();
    drain(ready_now(svc.call(make())).unwrap().into_body());
    measured(iterations, &mut || {
        drain(ready_now(svc.call(black_box(make()))).unwrap().into_body());
    });
}

fn grpc_breaker_baseline(n: u64) {
    drive_to_end(n, grpc_handler(), grpc_request);
}

/// The breaker's default classifier on a gRPC answer: the status is read from the trailers.
fn grpc_breaker_rampart(n: u64) {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    drive_to_end(n, layer.layer(grpc_handler()), grpc_request);
}

/// The same refusal as `limit_rampart_refused_answered`, to a gRPC caller: Trailers-Only.
fn grpc_refused_answered(n: u64) {
    let layer = RateLimitLayer::with_period(1, Duration::from_secs(3_600))
        .burst(1)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .rejection_response()
        .layer(layer)
        .service(handler());
    drive(n, svc, grpc_request);
}

// --- the table -----------------------------------------------------------------------------

const CASES: &[Case] = &[
    Case {
        group: "load_shed",
        name: "baseline",
        role: Role::Baseline,
        run: shed_baseline,
    },
    Case {
        group: "load_shed",
        name: "floor: one compare-and-swap, the slot held by the body",
        role: Role::Floor,
        run: shed_floor,
    },
    Case {
        group: "load_shed",
        name: "rampart admitted (slot held to the end of the body)",
        role: Role::Rampart,
        run: shed_rampart,
    },
    Case {
        group: "load_shed",
        name: "floor, timed: two clock reads and a latency sample more",
        role: Role::Floor,
        run: shed_floor_timed,
    },
    Case {
        group: "load_shed",
        name: "rampart adaptive admitted",
        role: Role::Rampart,
        run: shed_rampart_adaptive,
    },
    Case {
        group: "load_shed",
        name: "tower ConcurrencyLimit alone (waits instead of refusing)",
        role: Role::Compared,
        run: shed_tower_limit_only,
    },
    Case {
        group: "load_shed",
        name: "tower ConcurrencyLimit + LoadShed",
        role: Role::Compared,
        run: shed_tower,
    },
    Case {
        group: "grpc",
        name: "baseline (answer read to its trailers)",
        role: Role::Baseline,
        run: grpc_breaker_baseline,
    },
    Case {
        group: "grpc",
        name: "breaker closed, status read from the trailers",
        role: Role::Rampart,
        run: grpc_breaker_rampart,
    },
    Case {
        group: "grpc",
        name: "rate limit refused, answered RESOURCE_EXHAUSTED",
        role: Role::Alone,
        run: grpc_refused_answered,
    },
    Case {
        group: "rate_limit",
        name: "baseline",
        role: Role::Baseline,
        run: limit_baseline,
    },
    Case {
        group: "rate_limit",
        name: "rampart admitted",
        role: Role::Rampart,
        run: limit_rampart,
    },
    Case {
        group: "rate_limit",
        name: "rampart refused",
        role: Role::Rampart,
        run: limit_rampart_refused,
    },
    Case {
        group: "rate_limit",
        name: "shared (Redis), refused from the local cache",
        role: Role::Rampart,
        run: limit_shared_cached_refusal,
    },
    Case {
        group: "rate_limit",
        name: "tower_governor",
        role: Role::Compared,
        run: limit_tower_governor,
    },
    Case {
        group: "rate_limit",
        name: "tower RateLimit",
        role: Role::Compared,
        run: limit_tower,
    },
    Case {
        group: "rate_limit",
        name: "governor check (no service)",
        role: Role::Alone,
        run: limit_governor_check,
    },
    Case {
        group: "rate_limit",
        name: "rampart refused, answered 429",
        role: Role::Rampart,
        run: limit_rampart_refused_answered,
    },
    Case {
        group: "rate_limit",
        name: "tower_governor refused (its 429)",
        role: Role::Alone,
        run: limit_tower_governor_refused,
    },
    Case {
        group: "timeout",
        name: "baseline",
        role: Role::Baseline,
        run: timeout_baseline,
    },
    Case {
        group: "timeout",
        name: "rampart (inbound budget)",
        role: Role::Rampart,
        run: timeout_rampart,
    },
    Case {
        group: "timeout",
        name: "rampart (inbound not read)",
        role: Role::Rampart,
        run: timeout_rampart_ignoring_inbound,
    },
    Case {
        group: "timeout",
        name: "tower Timeout",
        role: Role::Compared,
        run: timeout_tower,
    },
    Case {
        group: "timeout",
        name: "tower-http Timeout",
        role: Role::Compared,
        run: timeout_tower_http,
    },
    Case {
        group: "request_id",
        name: "baseline",
        role: Role::Baseline,
        run: id_baseline,
    },
    Case {
        group: "request_id",
        name: "read and echo",
        role: Role::Floor,
        run: id_floor,
    },
    Case {
        group: "request_id",
        name: "rampart kept",
        role: Role::Rampart,
        run: id_rampart_kept,
    },
    Case {
        group: "request_id",
        name: "rampart generated (UUID v7)",
        role: Role::Rampart,
        run: id_rampart_generated,
    },
    Case {
        group: "request_id",
        name: "tower-http kept",
        role: Role::Compared,
        run: id_tower_http_kept,
    },
    Case {
        group: "request_id",
        name: "tower-http generated (UUID v4)",
        role: Role::Compared,
        run: id_tower_http_generated,
    },
    Case {
        group: "request_id",
        name: "Uuid::now_v7 alone",
        role: Role::Alone,
        run: id_uuid_now_v7,
    },
    Case {
        group: "circuit_breaker",
        name: "baseline",
        role: Role::Baseline,
        run: breaker_baseline,
    },
    Case {
        group: "circuit_breaker",
        name: "rampart closed",
        role: Role::Rampart,
        run: breaker_rampart,
    },
    Case {
        group: "circuit_breaker",
        name: "failsafe",
        role: Role::Compared,
        run: breaker_failsafe,
    },
    Case {
        group: "circuit_breaker",
        name: "rampart open (refused)",
        role: Role::Rampart,
        run: breaker_rampart_open,
    },
    Case {
        group: "fan_out",
        name: "baseline (3 calls in a row)",
        role: Role::Baseline,
        run: fan_baseline,
    },
    Case {
        group: "fan_out",
        name: "join! with a timeout per part",
        role: Role::Floor,
        run: fan_join_with_timeouts,
    },
    Case {
        group: "fan_out",
        name: "rampart 3 ready parts",
        role: Role::Rampart,
        run: fan_rampart,
    },
    Case {
        group: "stack",
        name: "baseline",
        role: Role::Baseline,
        run: stack_baseline,
    },
    Case {
        group: "stack",
        name: "rampart (kept id)",
        role: Role::Rampart,
        run: stack_rampart,
    },
    Case {
        group: "stack",
        name: "tower-http + tower + tower_governor + failsafe",
        role: Role::Compared,
        run: stack_compared,
    },
];

/// Instructions callgrind counted in [`measured`] for `case` at `iterations`.
fn count(case: usize, iterations: u64) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::env::temp_dir().join(format!(
        "icount-{}-{case}-{iterations}.out",
        std::process::id()
    ));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--toggle-collect=icount::measured")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(["run", &case.to_string(), &iterations.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run valgrind (is it installed?): {e}"))?;
    if !status.success() {
        return Err(format!("valgrind exited with {status}"));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|total| total.trim().parse().ok())
        .ok_or_else(|| "no totals in callgrind's output".to_owned())
}

/// Instructions per iteration of `case`.
fn per_iteration(case: usize) -> Result<f64, String> {
    let once = count(case, ITERATIONS)?;
    let twice = count(case, 2 * ITERATIONS)?;
    Ok(twice.saturating_sub(once) as f64 / ITERATIONS as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [run, case, iterations] = args.as_slice() {
        if run == "run" {
            let case: usize = case.parse().expect("a case number");
            let iterations: u64 = iterations.parse().expect("an iteration count");
            (CASES[case].run)(iterations);
            return;
        }
    }
    let only = args.first().map(String::as_str);
    let mut failed = false;
    let mut group = "";
    let mut baseline = 0.0;
    let mut rows: Vec<(&Case, f64)> = Vec::new();
    let flush = |rows: &mut Vec<(&Case, f64)>, baseline: f64| {
        let compared: Vec<&(&Case, f64)> = rows
            .iter()
            .filter(|(c, _)| c.role == Role::Compared)
            .collect();
        // A case is read against the nearest floor above it (a group may have several,
        // one per kind of case), else the group's first.
        let mut floor = rows.iter().find(|(c, _)| c.role == Role::Floor);
        for row @ (case, total) in rows.iter() {
            if case.role == Role::Floor {
                floor = Some(row);
            }
            let over = total - baseline;
            let mut line = if case.role == Role::Alone {
                format!("| {} | {} | {:.0} | |", case.group, case.name, total)
            } else {
                format!(
                    "| {} | {} | {:.0} | {:.0} |",
                    case.group, case.name, total, over
                )
            };
            let ratio = |other: f64| {
                let other_over = other - baseline;
                if other_over > 0.0 && case.role == Role::Rampart {
                    format!(" {:.2}× |", over / other_over)
                } else {
                    " |".to_owned()
                }
            };
            line.push_str(&compared.first().map_or(" |".to_owned(), |(_, t)| ratio(*t)));
            line.push_str(&floor.map_or(" |".to_owned(), |(_, t)| ratio(*t)));
            println!("{line}");
        }
        rows.clear();
    };
    println!("| group | case | instructions | over baseline | vs first compared | vs floor |");
    println!("|---|---|---|---|---|---|");
    for (index, case) in CASES.iter().enumerate() {
        if only.is_some_and(|g| g != case.group) {
            continue;
        }
        if case.group != group {
            flush(&mut rows, baseline);
            group = case.group;
        }
        match per_iteration(index) {
            Ok(total) => {
                if case.role == Role::Baseline {
                    baseline = total;
                }
                rows.push((case, total));
            }
            Err(error) => {
                eprintln!("{} / {}: {error}", case.group, case.name);
                failed = true;
            }
        }
    }
    flush(&mut rows, baseline);
    if failed {
        std::process::exit(1);
    }
}
