//! What the layers log about what clients send: bounded, escaped, once where it should be
//! once. One global subscriber for the whole binary (`support::global_logs`).

mod support;

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::key::PeerIp;
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::timeout::TimeoutLayer;
use tower_rampart::{BoxError, ServiceBuilderExt};

/// Every line logged by this binary so far.
fn lines() -> Vec<String> {
    support::global_logs().lines().map(str::to_owned).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Regression: a malformed budget header was logged in full at DEBUG (one 64 KiB value made
/// a 64 KiB log line, raw TABs included).
#[test]
fn a_hostile_budget_header_is_logged_as_a_short_escaped_prefix() {
    lines();
    let mut hostile = b"12\t3".to_vec();
    hostile.extend(std::iter::repeat_n(b'9', 65_000));
    runtime().block_on(async {
        let svc = ServiceBuilder::new()
            .layer(TimeoutLayer::new(Duration::from_millis(100)).unwrap())
            .service(service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(())
            }));
        let req = Request::builder()
            .header(
                "x-request-timeout-ms",
                http::HeaderValue::from_bytes(&hostile).unwrap(),
            )
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap();
    });
    let all = lines();
    let line = all
        .iter()
        .find(|line| line.contains("malformed inbound budget"))
        .expect("the malformed value is reported");
    assert!(line.len() < 300, "a {}-byte log line", line.len());
    assert!(!line.contains('\t'), "a raw TAB in {line:?}");
    assert!(line.contains("(+"), "the cut is said: {line:?}");
}

/// An inner error's message may quote what a client sent: the 500's log line carries a
/// bounded, escaped form of it, never the raw bytes.
#[test]
fn an_unhandled_error_is_logged_bounded_and_escaped() {
    lines();
    let hostile = format!("\t{}", "B".repeat(20_000));
    runtime().block_on(async {
        let message = hostile.clone();
        let svc = ServiceBuilder::new()
            .rejection_response()
            .service(service_fn(move |_: Request<()>| {
                let message = message.clone();
                async move {
                    Err::<Response<http_body_util::Full<bytes::Bytes>>, BoxError>(message.into())
                }
            }));
        let response = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    });
    let all = lines();
    let line = all
        .iter()
        .find(|l| l.contains("unhandled service error") && l.contains("BBBB"))
        .expect("the 500 is logged");
    assert!(line.len() < 700, "a {}-byte line", line.len());
    assert!(!line.contains('\t'));
}

/// Regression: a keyless `PeerIp` (no `ConnectInfo`, or the `axum` feature off) put every
/// client in one bucket and said so only at WARN. It is an ERROR now, once per limiter.
#[test]
fn a_missing_peer_address_is_an_error_once() {
    lines();
    runtime().block_on(async {
        let layer = RateLimitLayer::per_second(100)
            .policy_name("logs-no-peer")
            .with_key(PeerIp)
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(())
        }));
        for _ in 0..3 {
            svc.clone().oneshot(Request::new(())).await.unwrap();
        }
    });
    let errors: Vec<String> = lines()
        .into_iter()
        .filter(|l| l.contains("ERROR") && l.contains("logs-no-peer"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("into_make_service_with_connect_info"));
}
