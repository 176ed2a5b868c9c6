//! The fan-out, black box, in paused time: timing of fast and slow parts, deadlines (part,
//! overall, propagated), essential failures cancelling the rest, a breaker-open part failing
//! fast, fallbacks, the every-optional-failed case, the context inside parts, and the
//! product page on an axum `Router`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use http::{Request, StatusCode};
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};
use tower_rampart::circuit_breaker::{CircuitBreakerLayer, ErrorsFail};
use tower_rampart::context::{self, Context};
use tower_rampart::fan_out::{FanOut, Part, PartResult, Status};
use tower_rampart::request_id::{MakeRequestId, RequestId, UuidV7};
use tower_rampart::timeout::Deadline;
use tower_rampart::{BoxError, Rejection};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A service answering `value` after `delay`.
fn after<T: Clone + Send + 'static>(
    delay: Duration,
    value: T,
) -> impl tower::Service<u64, Response = T, Error = BoxError, Future: Send> + Clone {
    service_fn(move |_: u64| {
        let value = value.clone();
        async move {
            sleep(delay).await;
            Ok(value)
        }
    })
}

/// A service failing with `message` after `delay`.
fn failing(
    delay: Duration,
    message: &'static str,
) -> impl tower::Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(move |_: u64| async move {
        sleep(delay).await;
        Err::<u64, BoxError>(message.into())
    })
}

/// Sets its flag when dropped: proves a part's call was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A service that never answers, holding a [`DropFlag`].
fn hanging(
    dropped: Arc<AtomicBool>,
) -> impl tower::Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(move |_: u64| {
        let flag = DropFlag(dropped.clone());
        async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok(0)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn all_fast_parts_take_as_long_as_the_slowest() {
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("a", after(ms(100), 1u8)))
        .part(Part::optional("b", after(ms(250), "two")))
        .part(Part::optional("c", after(ms(200), 3.0f32)))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = fan.call(&0).await.unwrap();
    assert_eq!(started.elapsed(), ms(250));
    let (a, b, c) = outcome.parts();
    assert_eq!(
        (a.value(), b.value(), c.value()),
        (Some(&1), Some(&"two"), Some(&3.0))
    );
    assert!(!outcome.is_degraded());
}

#[tokio::test(start_paused = true)]
async fn a_slow_optional_part_is_degraded_at_its_own_deadline() {
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", after(ms(50), "core")))
        .part(Part::optional("reviews", after(ms(2_000), "reviews")).timeout(ms(300)))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = fan.call(&0).await.unwrap();
    assert_eq!(started.elapsed(), ms(300));
    assert!(matches!(outcome.parts().1, PartResult::TimedOut));
    let report = outcome.report("reviews").unwrap();
    assert_eq!(report.status(), Status::TimedOut);
    assert_eq!(
        outcome.degraded().map(|r| r.name()).collect::<Vec<_>>(),
        ["reviews"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_essential_failure_cancels_the_other_parts_at_once() {
    let dropped = Arc::new(AtomicBool::new(false));
    let fan = FanOut::builder(ms(1_000))
        .part(Part::optional("slow", hanging(dropped.clone())))
        .part(Part::essential("core", failing(ms(40), "core is down")))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = fan.call(&0).await.unwrap_err();
    assert_eq!(started.elapsed(), ms(40));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the optional part was not cancelled"
    );
    let Rejection::PartFailed(failed) = err else {
        panic!("expected PartFailed, got {err:?}")
    };
    assert_eq!(failed.part(), "core");
    assert_eq!(failed.cause().to_string(), "core is down");
    assert_eq!(
        Rejection::PartFailed(failed).status(),
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test(start_paused = true)]
async fn an_essential_part_that_runs_out_of_time_fails_the_fan_out() {
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", after(ms(5_000), 0u8)).timeout(ms(200)))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = fan.call(&0).await.unwrap_err();
    assert_eq!(started.elapsed(), ms(200));
    let Rejection::PartFailed(failed) = err else {
        panic!("{err:?}")
    };
    assert!(matches!(
        Rejection::find(failed.cause()),
        Some(Rejection::TimedOut(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_overall_deadline_cuts_part_timeouts_short() {
    let fan = FanOut::builder(ms(200))
        .part(Part::essential("core", after(ms(10), 1u8)).timeout(ms(500)))
        .part(Part::optional("slow", after(ms(900), 2u8)).timeout(ms(500)))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = fan.call(&0).await.unwrap();
    assert_eq!(started.elapsed(), ms(200));
    assert_eq!(outcome.report("slow").unwrap().status(), Status::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_propagated_deadline_shorter_still_wins() {
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", after(ms(10), 1u8)))
        .part(Part::optional("slow", after(ms(900), 2u8)).timeout(ms(500)))
        .build()
        .unwrap();
    let request = Context::new().with_deadline(Deadline::after(ms(120)));
    let started = Instant::now();
    // As in a handler behind a `TimeoutLayer`: the fan-out is called inside the scope.
    let outcome = context::scope(request, async { fan.call(&0).await })
        .await
        .unwrap();
    assert_eq!(started.elapsed(), ms(120));
    assert_eq!(outcome.report("slow").unwrap().status(), Status::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_part_behind_an_open_breaker_is_rejected_without_waiting() {
    let breaker = CircuitBreakerLayer::builder()
        .with_classifier(ErrorsFail)
        .build()
        .unwrap();
    breaker.handle().force_open();
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", after(ms(0), 1u8)))
        .part(Part::optional("recs", breaker.layer(after(ms(500), 2u8))))
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = fan.call(&0).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(matches!(outcome.parts().1, PartResult::Rejected(_)));
    assert_eq!(outcome.report("recs").unwrap().status(), Status::Rejected);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_part_counts_for_nothing_in_its_breaker() {
    let breaker = CircuitBreakerLayer::builder()
        .with_classifier(ErrorsFail)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let fan = FanOut::builder(ms(1_000))
        .part(Part::optional(
            "guarded",
            breaker.layer(hanging(dropped.clone())),
        ))
        .part(Part::essential("core", failing(ms(5), "down")))
        .build()
        .unwrap();
    assert!(fan.call(&0).await.is_err());
    assert!(dropped.load(Ordering::SeqCst));
    let metrics = breaker.handle().metrics();
    assert_eq!((metrics.calls(), metrics.failures()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_fallback_stands_in_and_is_still_reported() {
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("core", after(ms(0), 1u8)))
        .part(Part::optional("reviews", failing(ms(5), "down")).fallback(|| 0u64))
        .part(Part::essential("price", failing(ms(5), "down")).fallback(|| 99u64))
        .build()
        .unwrap();
    let outcome = fan.call(&0).await.unwrap();
    let (_, reviews, price) = outcome.parts();
    assert!(matches!(reviews, PartResult::Fallback(0)));
    assert!(matches!(price, PartResult::Fallback(99)));
    let report = outcome.report("price").unwrap();
    assert_eq!(
        (report.status(), report.used_fallback()),
        (Status::Failed, true)
    );
}

#[tokio::test(start_paused = true)]
async fn when_every_optional_part_fails_the_caller_gets_the_error() {
    let fan = FanOut::builder(ms(1_000))
        .part(Part::optional("a", failing(ms(5), "a is down")))
        .part(Part::optional("b", after(ms(900), 1u64)).timeout(ms(100)))
        .build()
        .unwrap();
    let err = fan.call(&0).await.unwrap_err();
    let Rejection::PartFailed(failed) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (failed.part(), failed.cause().to_string().as_str()),
        ("a", "a is down")
    );
}

#[tokio::test(start_paused = true)]
async fn parts_see_their_deadline_and_the_request_id_and_spawn_nothing() {
    let seen = service_fn(|_: u64| async {
        let left = Deadline::current().map(|d| d.remaining());
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        Ok::<_, BoxError>((left, RequestId::current(), tasks))
    });
    let fan = FanOut::builder(ms(1_000))
        .part(Part::essential("short", seen).timeout(ms(200)))
        .part(Part::optional("long", seen))
        .build()
        .unwrap();
    let id = UuidV7.make_request_id();
    let ctx = Context::new().with_request_id(id.clone());
    let (short, long) = context::scope(ctx, fan.call(&0))
        .await
        .unwrap()
        .into_parts();
    let (short, long) = (short.into_value().unwrap(), long.into_value().unwrap());
    assert_eq!(short, (Some(ms(200)), Some(id.clone()), 0));
    assert_eq!(long, (Some(ms(1_000)), Some(id), 0));
}

#[test]
fn bad_configs_are_refused_when_built() {
    let svc = after(ms(0), 0u8);
    let zero_timeout =
        FanOut::builder(ms(100)).part(Part::essential("a", svc.clone()).timeout(Duration::ZERO));
    assert_eq!(zero_timeout.build().err().unwrap().field(), "timeout");
    let unnamed = FanOut::builder(ms(100)).part(Part::essential("", svc));
    assert_eq!(unnamed.build().err().unwrap().field(), "part");
    assert_eq!(
        FanOut::builder(ms(100)).build().unwrap_err().field(),
        "part"
    );
}

/// The shop's product page: `core` essential, `reviews` slow with 300 ms, `related` fast,
/// 1 s overall; and a 502 naming `core` when it fails.
#[tokio::test(start_paused = true)]
async fn the_product_page_over_axum() {
    fn app(core_fails: bool) -> Router {
        let core = service_fn(move |id: u64| async move {
            if core_fails {
                Err::<String, BoxError>("catalogue unreachable".into())
            } else {
                Ok(format!(r#"{{"id":{id}}}"#))
            }
        });
        let page = FanOut::builder(ms(1_000))
            .part(Part::essential("core", core))
            .part(Part::optional("reviews", after(ms(2_000), "[]".to_string())).timeout(ms(300)))
            .part(Part::optional("related", after(ms(20), "[1]".to_string())))
            .build()
            .unwrap();
        Router::new().route(
            "/product/{id}",
            get(move |Path(id): Path<u64>| {
                let page = page.clone();
                async move {
                    let outcome = page.call(&id).await?;
                    let (core, reviews, related) = outcome.parts();
                    let mut fields = vec![("product", core.value().unwrap().as_str())];
                    fields.extend(reviews.value().map(|v| ("reviews", v.as_str())));
                    fields.extend(related.value().map(|v| ("related", v.as_str())));
                    Ok::<_, Rejection>(outcome.json_response::<Body>(&fields))
                }
            }),
        )
    }
    async fn get_page(app: Router) -> (StatusCode, Option<String>, String) {
        let req = Request::get("/product/5").body(Body::empty()).unwrap();
        let response = app.oneshot(req).await.unwrap();
        let status = response.status();
        let degraded = response
            .headers()
            .get("x-degraded")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, degraded, String::from_utf8(body.to_vec()).unwrap())
    }

    let started = Instant::now();
    let (status, degraded, body) = get_page(app(false)).await;
    assert_eq!(started.elapsed(), ms(300));
    assert_eq!(
        (status, degraded.as_deref()),
        (StatusCode::OK, Some("reviews"))
    );
    assert_eq!(
        body,
        r#"{"product":{"id":5},"related":[1],"degraded":["reviews"]}"#
    );

    let started = Instant::now();
    let (status, _, body) = get_page(app(true)).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains(r#""part":"core""#), "{body}");
}

/// Regression: a part's invalid setting was reported without saying which part it was.
#[test]
fn a_part_config_error_names_the_part() {
    let err = FanOut::builder(ms(500))
        .part(Part::essential("core", after(ms(1), 1_u64)))
        .part(Part::optional("reviews", after(ms(1), 2_u64)).timeout(Duration::ZERO))
        .build()
        .err()
        .expect("a zero part timeout is refused");
    assert_eq!((err.field(), err.part()), ("timeout", Some("reviews")));
    assert!(err.to_string().contains("`reviews`"), "{err}");
}
