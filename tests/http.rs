//! The rejection → response mapping, end to end: through `RejectionResponseLayer` on a bare
//! service, on an axum `Router` (no `HandleErrorLayer`, no `Buffer`), and over real TCP.

mod support;

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::error::{CircuitOpen, RateLimited};
use tower_rampart::http::{JsonBody, RejectionResponseLayer, rejection_response};
use tower_rampart::{BoxError, Rejection, ServiceBuilderExt};

use support::{RejectOnHeaderLayer, rejection_for};

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .rejection_response()
            .layer(RejectOnHeaderLayer),
    )
}

async fn call(app: Router, reject: Option<&str>) -> (http::response::Parts, Bytes) {
    let mut req = Request::get("/");
    if let Some(kind) = reject {
        req = req.header("x-reject", kind);
    }
    let response = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

fn respond_to(rejection: Rejection) -> Response<Full<Bytes>> {
    rejection_response(&rejection, &JsonBody)
}

#[tokio::test]
async fn router_passes_admitted_requests_through_untouched() {
    let (parts, body) = call(app(), None).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, "hello");
    assert!(parts.headers.get(header::RETRY_AFTER).is_none());
}

#[tokio::test]
async fn router_answers_429_with_retry_after_and_ratelimit_fields() {
    let (parts, body) = call(app(), Some("rate")).await;
    assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(parts.headers[header::RETRY_AFTER], "1");
    // 20 per 400 ms, told as 50 per second.
    assert_eq!(parts.headers["ratelimit-policy"], r#""default";q=50;w=1"#);
    assert_eq!(parts.headers["ratelimit"], r#""default";r=0;t=1"#);
    assert_eq!(parts.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body, r#"{"error":"rate_limited","retry_after_s":1}"#);
}

#[tokio::test]
async fn router_answers_503_with_remaining_open_time_and_no_store() {
    let (parts, body) = call(app(), Some("open")).await;
    assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(parts.headers[header::RETRY_AFTER], "10"); // 9.1 s rounded up
    assert_eq!(parts.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(body, r#"{"error":"circuit_open","retry_after_s":10}"#);
}

#[tokio::test]
async fn router_answers_504_for_an_elapsed_deadline() {
    let (parts, body) = call(app(), Some("timeout")).await;
    assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(parts.headers.get(header::RETRY_AFTER).is_none());
    assert_eq!(body, r#"{"error":"timed_out"}"#);
}

#[tokio::test]
async fn router_answers_502_naming_the_failed_part() {
    let (parts, body) = call(app(), Some("part")).await;
    assert_eq!(parts.status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, r#"{"error":"part_failed","part":"core"}"#);
}

#[tokio::test]
async fn other_errors_become_an_opaque_500_that_leaks_nothing() {
    let (parts, body) = call(app(), Some("db")).await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, r#"{"error":"internal"}"#);
    assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
}

#[test]
fn retry_after_rounds_up_to_whole_seconds_and_never_below_one() {
    for (wait_ms, expected) in [
        (0, "1"),
        (200, "1"),
        (1_000, "1"),
        (1_010, "2"),
        (59_001, "60"),
    ] {
        let wait = Duration::from_millis(wait_ms);
        for rejection in [
            Rejection::from(RateLimited::new(wait)),
            Rejection::from(CircuitOpen::new(wait)),
        ] {
            let response = respond_to(rejection);
            assert_eq!(
                response.headers()[header::RETRY_AFTER],
                expected,
                "{wait_ms} ms"
            );
        }
    }
}

#[test]
fn ratelimit_fields_round_window_and_reset_up_and_t_never_exceeds_retry_after() {
    let limited = RateLimited::new(Duration::from_millis(1_500))
        .with_quota("tier-free", 100, Duration::from_millis(60_000))
        .with_remaining(0, Duration::from_millis(2_001));
    let response = respond_to(limited.into());
    assert_eq!(
        response.headers()["ratelimit-policy"],
        r#""tier-free";q=100;w=60"#
    );
    // Regression: `t` (2.001 s, up to 3) said more than `Retry-After` (2), which the draft
    // forbids.
    assert_eq!(response.headers()["ratelimit"], r#""tier-free";r=0;t=2"#);
    assert_eq!(response.headers()[header::RETRY_AFTER], "2");
}

#[test]
fn ratelimit_policy_names_are_escaped_or_dropped_never_malformed() {
    let limited = RateLimited::new(Duration::from_secs(1)).with_quota(
        "a\"b\\c\u{7f}é\n",
        1,
        Duration::from_secs(1),
    );
    let response = respond_to(limited.into());
    assert_eq!(
        response.headers()["ratelimit-policy"],
        r#""a\"b\\c";q=1;w=1"#
    );
}

#[test]
fn part_names_are_json_escaped_in_the_body() {
    let response = respond_to(tower_rampart::error::PartFailed::new("a\"b\n", "x").into());
    let body = response.into_body();
    let bytes = support::ready_now(body.collect()).unwrap().to_bytes();
    assert_eq!(bytes, r#"{"error":"part_failed","part":"a\"b\u000a"}"#);
}

#[tokio::test]
async fn a_custom_body_builder_keeps_status_and_rejection_headers() {
    let plain = |rejection: &Rejection, headers: &mut HeaderMap| {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Bytes::from(format!("nope: {}", rejection.code()))
    };
    let app = Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .layer(RejectionResponseLayer::new().with_body(plain))
            .layer(RejectOnHeaderLayer),
    );
    let (parts, body) = call(app, Some("rate")).await;
    assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(parts.headers[header::RETRY_AFTER], "1");
    assert_eq!(parts.headers[header::CONTENT_TYPE], "text/plain");
    assert_eq!(body, "nope: rate_limited");
}

/// A service whose `poll_ready` fails once.
#[derive(Clone)]
struct FailsReady(bool);

impl Service<Request<()>> for FailsReady {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if std::mem::take(&mut self.0) {
            Poll::Ready(Err(rejection_for("open")))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

#[tokio::test]
async fn a_poll_ready_error_is_answered_by_the_next_call() {
    let mut svc = RejectionResponseLayer::new().layer(FailsReady(true));
    let first = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    let second = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
}

#[test]
fn the_admitted_path_allocates_nothing() {
    let inner = service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"ok"),
        ))))
    });
    let mut svc = RejectionResponseLayer::new().layer(inner);
    let req = Request::new(());
    let (status, allocations) =
        support::alloc::count(|| support::ready_now(svc.call(req)).unwrap().status());
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allocations, 0);
}

#[test]
fn the_allocation_counter_counts() {
    let (_boxed, allocations) = support::alloc::count(|| Box::new(7_u64));
    assert_eq!(allocations, 1);
}

#[tokio::test]
async fn real_tcp_clients_see_the_same_answers() {
    let addr = support::serve(app()).await;
    let ok = support::get(addr, "/", &[]).await;
    assert_eq!((ok.status, &ok.body[..]), (StatusCode::OK, &b"hello"[..]));
    for (kind, status) in [
        ("rate", StatusCode::TOO_MANY_REQUESTS),
        ("open", StatusCode::SERVICE_UNAVAILABLE),
        ("timeout", StatusCode::GATEWAY_TIMEOUT),
        ("part", StatusCode::BAD_GATEWAY),
    ] {
        let reply = support::get(addr, "/", &[("x-reject", kind)]).await;
        assert_eq!(reply.status, status, "{kind}");
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn handlers_can_return_a_rejection_with_the_axum_feature() {
    async fn handler() -> Result<&'static str, Rejection> {
        Err(RateLimited::new(Duration::from_millis(1_200)).into())
    }
    let app = Router::new().route("/", get(handler));
    let (parts, body) = call(app, None).await;
    assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(parts.headers[header::RETRY_AFTER], "2");
    assert_eq!(body, r#"{"error":"rate_limited","retry_after_s":2}"#);
}

proptest::proptest! {
    /// `Retry-After` is never below 1, never below the wait, and less than a second above it.
    #[test]
    fn retry_after_is_the_wait_rounded_up_to_whole_seconds(nanos in 0_u64..=u64::MAX / 2) {
        let wait = Duration::from_nanos(nanos);
        let secs = tower_rampart::http::retry_after_secs(wait);
        proptest::prop_assert!(secs >= 1);
        proptest::prop_assert!(Duration::from_secs(secs) >= wait);
        proptest::prop_assert!(secs == 1 || Duration::from_secs(secs - 1) < wait);
    }
}

/// Calls a service failing with `error` as a tonic client would (HTTP/2, gRPC content type).
async fn grpc_answer(error: BoxError) -> Response<Bytes> {
    let mut error = Some(error);
    let failing = service_fn(move |_: Request<()>| {
        let error = error.take().expect("called once");
        async move { Err::<Response<Bytes>, BoxError>(error) }
    });
    let request = Request::builder()
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "application/grpc+proto")
        .body(())
        .unwrap();
    ServiceBuilder::new()
        .rejection_response()
        .service(failing)
        .oneshot(request)
        .await
        .unwrap()
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_answers() {
    use tower_rampart::error::{PartFailed, TimedOut};
    let cases: [(BoxError, &str, &str, Option<&str>); 5] = [
        (
            Rejection::from(RateLimited::new(Duration::from_micros(20_001))).into(),
            "8",
            "rate limited (retry after 20 ms)",
            Some("21"),
        ),
        (
            Rejection::from(CircuitOpen::new(Duration::from_secs(10))).into(),
            "14",
            "circuit open (retry after 10000 ms)",
            Some("10000"),
        ),
        (
            Rejection::from(TimedOut::new(Duration::from_millis(300))).into(),
            "4",
            "deadline elapsed after 300 ms",
            None,
        ),
        (
            Rejection::from(PartFailed::new("café", "down")).into(),
            "14",
            "essential part `caf%C3%A9` failed",
            None,
        ),
        // Any other error: INTERNAL, and its text (which may quote a client) stays here.
        (
            "secret path /etc/passwd".into(),
            "13",
            "internal error",
            None,
        ),
    ];
    for (error, code, message, pushback) in cases {
        let response = grpc_answer(error).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "gRPC answers are HTTP 200"
        );
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(headers["grpc-status"], code);
        assert_eq!(headers["grpc-message"], message);
        assert_eq!(
            headers
                .get("grpc-retry-pushback-ms")
                .map(|v| v.to_str().unwrap()),
            pushback
        );
        assert!(response.body().is_empty(), "Trailers-Only: no body");
    }
}

#[tokio::test]
async fn http1_requests_with_a_grpc_content_type_keep_http_answers() {
    // gRPC runs over HTTP/2 only; grpc-web and proxies speaking HTTP/1 get the HTTP answer.
    let failing = service_fn(|_: Request<()>| async {
        Err::<Response<Bytes>, BoxError>(
            Rejection::from(RateLimited::new(Duration::from_secs(1))).into(),
        )
    });
    let request = Request::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .body(())
        .unwrap();
    let response = ServiceBuilder::new()
        .rejection_response()
        .service(failing)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}
