//! Every metric the `metrics` module documents is emitted, with its labels, by driving each
//! layer under a recording backend (`metrics-util`'s `DebuggingRecorder`, installed for this
//! thread only).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::circuit_breaker::CircuitBreakerLayer;
use tower_rampart::context::{self, Context};
use tower_rampart::fan_out::{FanOut, Part};
use tower_rampart::metrics::HttpMetricsLayer;
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::{Deadline, PropagateDeadlineLayer, TimeoutLayer};
use tower_rampart::{BoxError, Rejection, ServiceBuilderExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn answer(status: u16) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// Drives every layer through the paths that emit each documented metric.
async fn drive() {
    // Rate limiter: one admitted, one rejected.
    let limiter = RateLimitLayer::per_second(1)
        .burst(1)
        .policy_name("tiny")
        .build()
        .unwrap();
    let svc = limiter.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(answer(200))
    }));
    assert!(svc.clone().oneshot(Request::new(())).await.is_ok());
    assert!(svc.oneshot(Request::new(())).await.is_err());

    // Breaker: a success, an ignored 429, a failure that trips it, then a rejection.
    let breaker = CircuitBreakerLayer::builder()
        .name("upstream")
        .failure_threshold(1)
        .build()
        .unwrap();
    let svc = breaker.layer(service_fn(|status: u16| async move {
        Ok::<_, Infallible>(answer(status))
    }));
    for status in [200, 429, 500] {
        svc.clone().oneshot(status).await.unwrap();
    }
    assert!(svc.oneshot(200).await.is_err());

    // Timeout: a server call that runs out of time, one refused for a spent budget; the
    // same on the client side.
    let slow = service_fn(|_: Request<()>| async {
        tokio::time::sleep(ms(500)).await;
        Ok::<_, Infallible>(answer(200))
    });
    let server = TimeoutLayer::new(ms(100)).unwrap().layer(slow);
    assert!(server.clone().oneshot(Request::new(())).await.is_err());
    let spent = Request::builder()
        .header("x-request-timeout-ms", "0")
        .body(())
        .unwrap();
    assert!(server.oneshot(spent).await.is_err());
    let client = PropagateDeadlineLayer::new().layer(slow);
    let short = Context::new().with_deadline(Deadline::after(ms(100)));
    assert!(
        context::scope(short, client.clone().oneshot(Request::new(())))
            .await
            .is_err()
    );
    let gone = Context::new().with_deadline(Deadline::after(Duration::ZERO));
    assert!(
        context::scope(gone, client.oneshot(Request::new(())))
            .await
            .is_err()
    );

    // Fan-out: a degraded optional part; then an essential failure.
    let ok = service_fn(|n: u64| async move { Ok::<_, BoxError>(n) });
    let down = service_fn(|_: u64| async { Err::<u64, BoxError>("down".into()) });
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", ok))
        .part(Part::optional("reviews", down))
        .build()
        .unwrap();
    assert!(fan.call(&1).await.unwrap().is_degraded());
    let slow = service_fn(|n: u64| async move {
        tokio::time::sleep(ms(500)).await;
        Ok::<_, BoxError>(n)
    });
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", down))
        .part(Part::optional("slow", slow))
        .build()
        .unwrap();
    assert!(matches!(fan.call(&1).await, Err(Rejection::PartFailed(_))));

    // HTTP requests: a 200 and a 504 through the request metrics, by method and class.
    let timed = ServiceBuilder::new()
        .layer(HttpMetricsLayer::new())
        .rejection_response()
        .layer(TimeoutLayer::new(ms(100)).unwrap())
        .service_fn(|req: Request<()>| async move {
            if req.method() == Method::POST {
                tokio::time::sleep(ms(500)).await;
            }
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        });
    timed.clone().oneshot(Request::new(())).await.unwrap();
    let post = Request::post("/").body(()).unwrap();
    assert_eq!(
        timed.oneshot(post).await.unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );

    // Request ids: accepted, generated, rejected (and replaced), from a traceparent.
    let mut ids = SetRequestIdLayer::new()
        .from_traceparent(true)
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(answer(200))
        }));
    for header in [
        Some(("x-request-id", "ok-1")),
        None,
        Some(("x-request-id", "bad id")),
        Some((
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )),
    ] {
        let mut req = Request::builder();
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        ids.ready()
            .await
            .unwrap()
            .call(req.body(()).unwrap())
            .await
            .unwrap();
    }
}

/// Runs `work` in paused time under a recording backend; every series seen, by
/// `name{label=value,...}` with the labels sorted.
fn record(work: impl std::future::Future<Output = ()>) -> BTreeMap<String, DebugValue> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(work);
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

/// Regression: shadow mode exported a would-be refusal as `admitted`, while the limiter's
/// own counter called it rejected.
#[test]
fn shadow_refusals_are_rejections_in_the_metric_and_the_counter_alike() {
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted_in = counted.clone();
    let seen = record(async move {
        // Built under the recorder: handles registered before it stay no-ops.
        let layer = RateLimitLayer::per_second(1)
            .burst(1)
            .policy_name("trial")
            .shadow()
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(answer(200))
        }));
        for _ in 0..3 {
            assert!(svc.clone().oneshot(Request::new(())).await.is_ok());
        }
        counted_in.store(layer.rejected_count(), std::sync::atomic::Ordering::Relaxed);
    });
    let counted = counted.load(std::sync::atomic::Ordering::Relaxed);
    let count = |outcome: &str| match seen.get(&format!(
        "rampart_rate_limit_requests_total{{outcome={outcome},policy=trial}}"
    )) {
        Some(DebugValue::Counter(n)) => *n,
        _ => 0,
    };
    assert_eq!(counted, 2);
    assert_eq!(count("rejected"), counted);
    assert_eq!(count("admitted"), 1);
}

#[test]
fn every_documented_metric_is_emitted() {
    let seen = record(drive());
    let counter = |name: &str| match seen.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!(
            "{name}: {other:?}\nseen: {:#?}",
            seen.keys().collect::<Vec<_>>()
        ),
    };
    assert_eq!(
        counter("rampart_rate_limit_requests_total{outcome=admitted,policy=tiny}"),
        1
    );
    assert_eq!(
        counter("rampart_rate_limit_requests_total{outcome=rejected,policy=tiny}"),
        1
    );
    assert!(matches!(
        seen.get("rampart_rate_limit_retry_after_seconds{policy=tiny}"),
        Some(DebugValue::Histogram(values)) if values.len() == 1
    ));
    assert_eq!(
        counter("rampart_circuit_breaker_calls_total{breaker=upstream,outcome=success}"),
        1
    );
    assert_eq!(
        counter("rampart_circuit_breaker_calls_total{breaker=upstream,outcome=ignored}"),
        1
    );
    assert_eq!(
        counter("rampart_circuit_breaker_calls_total{breaker=upstream,outcome=failure}"),
        1
    );
    assert_eq!(
        counter("rampart_circuit_breaker_rejected_total{breaker=upstream}"),
        1
    );
    assert_eq!(
        counter("rampart_circuit_breaker_transitions_total{breaker=upstream,from=closed,to=open}"),
        1
    );
    assert!(matches!(
        seen.get("rampart_circuit_breaker_state{breaker=upstream}"),
        Some(DebugValue::Gauge(level)) if level.0 == 2.0
    ));
    // Two: the timeout's own case, and the HTTP metrics case's 504.
    assert_eq!(counter("rampart_timeout_expired_total{side=server}"), 2);
    assert_eq!(
        counter("rampart_timeout_budget_spent_total{side=server}"),
        1
    );
    assert_eq!(counter("rampart_timeout_expired_total{side=client}"), 1);
    assert_eq!(
        counter("rampart_timeout_budget_spent_total{side=client}"),
        1
    );
    assert_eq!(
        counter("rampart_fan_out_degraded_total{part=reviews,status=failed}"),
        1
    );
    assert_eq!(counter("rampart_fan_out_failed_total{part=core}"), 1);
    assert_eq!(
        counter("rampart_fan_out_degraded_total{part=slow,status=cancelled}"),
        1
    );
    assert_eq!(counter("rampart_request_ids_total{source=accepted}"), 1);
    assert_eq!(counter("rampart_request_ids_total{source=generated}"), 2);
    assert_eq!(counter("rampart_request_ids_total{source=traceparent}"), 1);
    assert_eq!(counter("rampart_request_ids_rejected_total{}"), 1);
    assert_eq!(
        counter("rampart_http_requests_total{method=GET,status=2xx}"),
        1
    );
    assert_eq!(
        counter("rampart_http_requests_total{method=POST,status=5xx}"),
        1
    );
    assert!(matches!(
        seen.get("rampart_http_request_duration_seconds{method=POST,status=5xx}"),
        Some(DebugValue::Histogram(values)) if values.len() == 1 && values[0].0 == 0.1
    ));
}

/// Regression: the HTTP layer registered all 60 (method, status) series up front, so
/// `/metrics` was mostly zeros.
#[test]
fn http_metrics_register_only_what_is_seen() {
    let seen = record(async {
        let svc = HttpMetricsLayer::new().layer(service_fn(|req: Request<()>| async move {
            let status = if req.method() == Method::POST {
                500
            } else {
                200
            };
            Ok::<_, Infallible>(answer(status))
        }));
        for method in [Method::GET, Method::GET, Method::POST] {
            let req = Request::builder().method(method).body(()).unwrap();
            svc.clone().oneshot(req).await.unwrap();
        }
    });
    let http: Vec<&String> = seen
        .keys()
        .filter(|k| k.starts_with("rampart_http_requests_total"))
        .collect();
    assert_eq!(
        http,
        [
            "rampart_http_requests_total{method=GET,status=2xx}",
            "rampart_http_requests_total{method=POST,status=5xx}"
        ]
    );
}

/// Regression: each per-key breaker copied its key into a `name[key]` label, so 200 keys
/// through `max_keys(4)` left 201 state series (and 1 024 hosts of 60 KB added 125 MB).
#[test]
fn keyed_breakers_export_the_layers_series_never_one_per_key() {
    let seen = record(async {
        let layer = CircuitBreakerLayer::builder()
            .name("upstreams")
            .failure_threshold(1)
            .with_key(|host: &String| Some(host.clone()))
            .max_keys(4)
            .idle_timeout(ms(10))
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|host: String| async move {
            Ok::<_, Infallible>(answer(if host.ends_with('7') { 500 } else { 200 }))
        }));
        for i in 0..200 {
            let host = format!("{}-host-{i}", "x".repeat(60_000));
            let _ = svc.clone().oneshot(host).await;
            tokio::time::advance(ms(20)).await;
        }
    });
    let breaker_series: Vec<&String> = seen
        .keys()
        .filter(|k| k.starts_with("rampart_circuit_breaker"))
        .collect();
    println!(
        "200 keys through max_keys(4): {} breaker series",
        breaker_series.len()
    );
    assert!(
        breaker_series.len() <= 12,
        "{} series: {breaker_series:#?}",
        breaker_series.len()
    );
    assert!(breaker_series.iter().all(|k| !k.contains("host")));
    assert!(breaker_series.iter().all(|k| k.len() < 200));
    // Keys ending in 7 failed and opened their breakers; the gauge counts those still held.
    assert!(matches!(
        seen.get("rampart_circuit_breaker_open_keys{breaker=upstreams}"),
        Some(DebugValue::Gauge(open)) if open.0 >= 1.0 && open.0 <= 4.0
    ));
}

#[test]
fn requests_without_a_key_are_counted() {
    let seen = record(async {
        let layer = RateLimitLayer::per_second(100)
            .policy_name("per-peer")
            .with_key(tower_rampart::key::PeerIp)
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(answer(200))
        }));
        for _ in 0..3 {
            svc.clone().oneshot(Request::new(())).await.unwrap();
        }
    });
    assert!(matches!(
        seen.get("rampart_rate_limit_missing_key_total{policy=per-peer}"),
        Some(DebugValue::Counter(3))
    ));
}
