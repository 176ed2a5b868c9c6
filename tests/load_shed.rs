//! The load shedder: refusals at the limit, slots held until the body ends, priorities, the
//! gRPC answer, and an overload simulated in paused time against a backend of fixed
//! capacity, with and without the shedder.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_rampart::load_shed::{HeaderPriority, LoadShedLayer, Priority};
use tower_rampart::timeout::TimeoutLayer;
use tower_rampart::{Rejection, ServiceBuilderExt};

mod support;

fn ok() -> Response<http_body_util::Full<Bytes>> {
    Response::new(http_body_util::Full::new(Bytes::from_static(b"done")))
}

#[tokio::test]
async fn requests_past_the_limit_are_answered_503_at_once() {
    let shed = LoadShedLayer::builder()
        .max_in_flight(2)
        .critical_share(0.0)
        .build()
        .unwrap();
    let (release, released) = tokio::sync::watch::channel(false);
    let svc = ServiceBuilder::new()
        .rejection_response()
        .layer(shed.clone())
        .service_fn(move |_: Request<()>| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, Infallible>(ok())
            }
        });
    let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    let second = tokio::spawn(svc.clone().oneshot(Request::new(())));
    for _ in 0..100 {
        if shed.in_flight() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(shed.in_flight(), 2);
    let refused = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"error":"overloaded","retry_after_s":1}"#);
    release.send(true).unwrap();
    for call in [first, second] {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
    }
    assert_eq!(shed.in_flight(), 0);
}

#[tokio::test]
async fn a_streamed_body_holds_its_slot_until_it_ends() {
    let shed = LoadShedLayer::builder().max_in_flight(1).build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(1);
    let mut rx = Some(rx);
    let svc = shed.layer(service_fn(move |_: Request<()>| {
        let rx = rx.take().expect("one call");
        async move {
            let stream = tokio_stream_from(rx);
            Ok::<_, Infallible>(Response::new(http_body_util::StreamBody::new(stream)))
        }
    }));
    let response = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(shed.in_flight(), 1, "the head is out, the body is not");
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"part"))))
        .await
        .unwrap();
    drop(tx);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "part");
    assert_eq!(shed.in_flight(), 0, "given back at the end of the body");
}

/// A stream over a channel's receiver (without pulling in tokio-stream).
fn tokio_stream_from<T>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[tokio::test]
async fn a_dropped_call_gives_its_slot_back() {
    let shed = LoadShedLayer::builder().max_in_flight(1).build().unwrap();
    let svc = shed.layer(service_fn(|_: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(ok())
    }));
    let call = svc.clone().oneshot(Request::new(()));
    let mut call = Box::pin(call);
    assert!(futures_util::FutureExt::now_or_never(call.as_mut()).is_none());
    assert_eq!(shed.in_flight(), 1);
    drop(call);
    assert_eq!(shed.in_flight(), 0);
}

#[tokio::test]
async fn critical_requests_keep_their_share_while_sheddable_ones_are_refused() {
    let shed = LoadShedLayer::builder()
        .max_in_flight(10)
        .critical_share(0.2)
        .sheddable_share(0.5)
        .prioritize(HeaderPriority::new(http::HeaderName::from_static(
            "x-priority",
        )))
        .build()
        .unwrap();
    let svc = shed.layer(service_fn(|_: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(ok())
    }));
    let request = |priority: &str| {
        Request::builder()
            .header("x-priority", priority)
            .body(())
            .unwrap()
    };
    // Holds calls in flight (pending forever) and reports what was admitted.
    let mut held = Vec::new();
    let mut admit = |priority: &str| {
        let mut call = Box::pin(svc.clone().oneshot(request(priority)));
        let poll = futures_util::FutureExt::now_or_never(call.as_mut());
        match poll {
            None => {
                held.push(call);
                true
            }
            Some(Err(err)) => {
                assert!(matches!(
                    Rejection::find(err.as_ref()),
                    Some(Rejection::Overloaded(_))
                ));
                false
            }
            Some(Ok(_)) => unreachable!("the service never answers"),
        }
    };
    // Sheddable requests take at most half of the normal capacity (8 of 10): 4.
    let sheddable = (0..10).filter(|_| admit("sheddable")).count();
    assert_eq!(sheddable, 4);
    // Normal ones fill the normal capacity: 4 more.
    let normal = (0..10).filter(|_| admit("normal")).count();
    assert_eq!(normal, 4);
    // The last 2 slots are for critical requests only.
    assert!(!admit("normal"));
    assert!(!admit("sheddable"));
    let critical = (0..10).filter(|_| admit("critical")).count();
    assert_eq!(critical, 2);
    assert_eq!(shed.in_flight(), 10);
    assert_eq!(
        Priority::from_header_value(b"CRITICAL"),
        Some(Priority::Critical)
    );
}

#[tokio::test]
async fn grpc_callers_get_unavailable_with_a_pushback() {
    let shed = LoadShedLayer::builder()
        .max_in_flight(1)
        .retry_after(Duration::from_millis(250))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .rejection_response()
        .layer(shed)
        .service_fn(|_: Request<()>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Bytes::new()))
        });
    let grpc = || {
        Request::builder()
            .version(http::Version::HTTP_2)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
    };
    let mut held = Box::pin(svc.clone().oneshot(grpc()));
    assert!(futures_util::FutureExt::now_or_never(held.as_mut()).is_none());
    let refused = svc.clone().oneshot(grpc()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(refused.headers()["grpc-status"], "14");
    assert_eq!(refused.headers()["grpc-retry-pushback-ms"], "250");
}

/// What one overload run measured.
#[derive(Debug)]
struct Run {
    offered: u64,
    good: u64,
    shed: u64,
    timed_out: u64,
    p99: Duration,
}

/// A backend whose `pool` of workers take `service` each, with a queue in front. The work
/// goes on when its caller gives up, as a database query does.
fn simulated(
    pool: Arc<tokio::sync::Semaphore>,
    service: Duration,
) -> impl Service<
    Request<()>,
    Response = Response<http_body_util::Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<http_body_util::Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |_: Request<()>| {
        let pool = Arc::clone(&pool);
        async move {
            let work = tokio::spawn(async move {
                let _worker = pool.acquire().await.unwrap();
                tokio::time::sleep(service).await;
            });
            work.await.unwrap();
            Ok::<_, Infallible>(ok())
        }
    })
}

/// A backend of `workers` workers taking `service` each, with a queue in front, offered four
/// times its capacity for `length` (a batch of `workers` requests every `service / 4`);
/// every call has a deadline of 5 × `service`. The work goes on when its caller gives up,
/// as a database query does: that is how queues collapse.
async fn overload(limit: Option<u64>, workers: usize, service: Duration, length: Duration) -> Run {
    let backend = simulated(Arc::new(tokio::sync::Semaphore::new(workers)), service);
    let deadline = TimeoutLayer::new(service * 5).unwrap().ignore_inbound();
    let svc = match limit {
        Some(limit) => {
            let shed = LoadShedLayer::builder()
                .max_in_flight(limit)
                .build()
                .unwrap();
            tower::util::BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(deadline)
                    .layer(shed)
                    .service(backend)
                    .map_response(|r| r.map(|_| ())),
            )
        }
        None => tower::util::BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(deadline)
                .service(backend)
                .map_response(|r| r.map(|_| ())),
        ),
    };
    let every = service / 4;
    let (good, shed, timed_out) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut offered = 0;
    let mut calls = Vec::new();
    while started.elapsed() < length {
        for _ in 0..workers {
            offered += 1;
            let svc = svc.clone();
            let (good, shed, timed_out, latencies) = (
                good.clone(),
                shed.clone(),
                timed_out.clone(),
                latencies.clone(),
            );
            calls.push(tokio::spawn(async move {
                let sent = Instant::now();
                match svc.oneshot(Request::new(())).await {
                    Ok(_) => {
                        good.fetch_add(1, Ordering::Relaxed);
                        latencies.lock().unwrap().push(sent.elapsed());
                    }
                    Err(err) => match Rejection::find(err.as_ref()) {
                        Some(Rejection::Overloaded(_)) => {
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Rejection::TimedOut(_)) => {
                            timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other:?}"),
                    },
                }
            }));
        }
        tokio::time::sleep(every).await;
    }
    // Only what finished within the run counts as goodput.
    for call in calls {
        call.abort();
    }
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    Run {
        offered,
        good: good.load(Ordering::Relaxed),
        shed: shed.load(Ordering::Relaxed),
        timed_out: timed_out.load(Ordering::Relaxed),
        p99: latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default(),
    }
}

#[tokio::test(start_paused = true)]
async fn under_four_times_the_load_goodput_holds_with_the_shedder_and_collapses_without() {
    let (workers, service, length) = (8, Duration::from_millis(20), Duration::from_secs(10));
    let capacity = (workers as f64 / service.as_secs_f64() * length.as_secs_f64()) as u64;

    // A limit of 1.5 × the workers: a short queue keeps them busy, nothing waits long.
    let shedding = overload(Some(workers as u64 * 3 / 2), workers, service, length).await;
    println!("with the shedder: {shedding:?}, capacity {capacity}");
    assert!(
        shedding.good as f64 >= 0.9 * capacity as f64,
        "{shedding:?}"
    );
    assert!(shedding.p99 <= service * 3, "{shedding:?}");
    assert!(shedding.shed > 0 && shedding.timed_out == 0, "{shedding:?}");

    let queueing = overload(None, workers, service, length).await;
    println!("without: {queueing:?}, capacity {capacity}");
    assert!(
        (queueing.good as f64) < 0.1 * capacity as f64,
        "{queueing:?}"
    );
    assert!(queueing.timed_out > queueing.offered / 2, "{queueing:?}");
}

/// One phase of an adaptive run: what was offered, answered in time, and the limit seen at
/// the end of each window.
#[derive(Debug, Default)]
struct Phase {
    offered: u64,
    good: u64,
    p99: Duration,
    limits: Vec<u64>,
}

type AdaptiveShed =
    LoadShedLayer<tower_rampart::load_shed::AllNormal, tower_rampart::load_shed::Adaptive>;
type Driven = tower::util::BoxCloneSyncService<Request<()>, Response<()>, tower_rampart::BoxError>;

/// The stack the adaptive runs drive: an adaptive shedder (initial limit 4, windows of
/// 5 × `service`, no critical share) over a timeout of 5 × `service` over the simulated
/// backend of `pool`'s workers.
fn adaptive_stack(pool: Arc<tokio::sync::Semaphore>, service: Duration) -> (AdaptiveShed, Driven) {
    use tower_rampart::load_shed::AdaptiveLimit;

    let shed = LoadShedLayer::builder()
        .adaptive(AdaptiveLimit::new().initial(4).window(service * 5))
        .critical_share(0.0)
        .build()
        .unwrap();
    let svc = tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(shed.clone())
            .layer(TimeoutLayer::new(service * 5).unwrap().ignore_inbound())
            .service(simulated(pool, service))
            .map_response(|r| r.map(|_| ())),
    );
    (shed, svc)
}

/// An adaptive shedder over `workers` workers taking `service` each, offered four times the
/// first capacity, through three phases of `length`: full capacity, half (the other half
/// busy elsewhere), full again. The timeout (5 × `service`) is inside the shedder.
async fn adaptive_run(workers: usize, service: Duration, length: Duration) -> [Phase; 3] {
    let pool = Arc::new(tokio::sync::Semaphore::new(workers));
    let window = service * 5;
    let (shed, svc) = adaptive_stack(Arc::clone(&pool), service);
    let mut phases: [Phase; 3] = Default::default();
    let mut held_back = None;
    for (i, phase) in phases.iter_mut().enumerate() {
        if i == 1 {
            // Half the workers go elsewhere.
            held_back = Some(
                Arc::clone(&pool)
                    .acquire_many_owned(workers as u32 / 2)
                    .await
                    .unwrap(),
            );
        }
        if i == 2 {
            held_back = None;
        }
        let _ = &held_back;
        let good = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Instant::now();
        let mut next_window = started + window;
        let mut calls = Vec::new();
        while started.elapsed() < length {
            for _ in 0..workers {
                phase.offered += 1;
                let svc = svc.clone();
                let (good, latencies) = (good.clone(), latencies.clone());
                calls.push(tokio::spawn(async move {
                    let sent = Instant::now();
                    if svc.oneshot(Request::new(())).await.is_ok() {
                        good.fetch_add(1, Ordering::Relaxed);
                        latencies.lock().unwrap().push(sent.elapsed());
                    }
                }));
            }
            tokio::time::sleep(service / 4).await;
            if Instant::now() >= next_window {
                phase.limits.push(shed.limit());
                next_window += window;
            }
        }
        for call in calls {
            call.abort();
        }
        let mut latencies = latencies.lock().unwrap().clone();
        latencies.sort();
        phase.good = good.load(Ordering::Relaxed);
        phase.p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
    }
    phases
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_finds_the_capacity_follows_it_down_and_back_up() {
    let (workers, service, length) = (8u64, Duration::from_millis(20), Duration::from_secs(10));
    let phases = adaptive_run(workers as usize, service, length).await;
    for (i, phase) in phases.iter().enumerate() {
        println!(
            "phase {i}: offered {}, good {}, p99 {:?}, limit per window {:?}",
            phase.offered, phase.good, phase.p99, phase.limits
        );
    }
    // Windows are 100 ms (5 service times). Settled within 10 windows, then held in
    // [0.8 C, 1.5 C], with every admitted call answered within 3 service times.
    let settled = |phase: &Phase, capacity: u64| {
        let (low, high) = ((capacity * 8).div_ceil(10), capacity * 3 / 2);
        phase.limits[10..].iter().all(|l| (low..=high).contains(l))
    };
    let full = |phase: &Phase, capacity: u64| {
        let per_run = capacity as f64 / service.as_secs_f64() * length.as_secs_f64();
        phase.good as f64 >= 0.9 * per_run
    };
    assert!(settled(&phases[0], workers), "{:?}", phases[0].limits);
    assert!(full(&phases[0], workers), "goodput {}", phases[0].good);
    assert!(phases[0].p99 <= service * 3, "{:?}", phases[0].p99);
    // Half the capacity: the limit follows it down.
    assert!(settled(&phases[1], workers / 2), "{:?}", phases[1].limits);
    assert!(full(&phases[1], workers / 2), "goodput {}", phases[1].good);
    // And back up when it returns.
    assert!(settled(&phases[2], workers), "{:?}", phases[2].limits);
    assert!(full(&phases[2], workers), "goodput {}", phases[2].good);
    assert!(phases.iter().all(|p| p.limits.iter().all(|l| *l >= 1)));
}

#[tokio::test(start_paused = true)]
async fn after_a_quiet_spell_a_burst_gets_the_capacity_back_within_a_few_windows() {
    let (workers, service) = (8usize, Duration::from_millis(20));
    let window = service * 5;
    let (shed, svc) = adaptive_stack(Arc::new(tokio::sync::Semaphore::new(workers)), service);
    // Offers `per_tick` calls every `tick` for `length`; returns the limit at the end of
    // each window.
    let offer = |per_tick: usize, tick: Duration, length: Duration| {
        let (svc, shed) = (svc.clone(), shed.clone());
        async move {
            let started = Instant::now();
            let mut next_window = started + window;
            let mut limits = Vec::new();
            while started.elapsed() < length {
                for _ in 0..per_tick {
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        let _ = svc.oneshot(Request::new(())).await;
                    });
                }
                tokio::time::sleep(tick).await;
                if Instant::now() >= next_window {
                    limits.push(shed.limit());
                    next_window += window;
                }
            }
            limits
        }
    };
    // Four times the capacity finds it; a quiet spell (one or two calls in flight) brings
    // the limit down to twice that; then the four-fold load comes back.
    let busy = offer(workers, service / 4, Duration::from_secs(3)).await;
    let quiet = offer(1, service, Duration::from_secs(3)).await;
    let back = offer(workers, service / 4, Duration::from_secs(2)).await;
    println!("busy {busy:?}\nquiet {quiet:?}\nback {back:?}");
    assert!(*busy.last().unwrap() >= 7, "{busy:?}");
    assert!(*quiet.last().unwrap() <= 4, "{quiet:?}");
    let capacity = workers as u64;
    let regained = back
        .iter()
        .position(|l| *l >= (capacity * 8).div_ceil(10))
        .expect("the limit comes back");
    // Doubling back: 4, 8. Probing up one at a time would take four windows.
    assert!(
        regained <= 1,
        "back to the capacity after {regained} windows: {back:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_is_nearer_than_a_typical_call_is_refused_at_once() {
    use tower_rampart::context::{self, Context, Deadline};
    use tower_rampart::load_shed::AdaptiveLimit;

    let shed = LoadShedLayer::builder()
        .adaptive(
            AdaptiveLimit::new()
                .initial(50)
                .window(Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    let svc = shed.layer(service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, Infallible>(ok())
    }));
    // A few windows of 20 ms calls: the typical call is measured.
    for _ in 0..6 {
        let calls = (0..10).map(|_| svc.clone().oneshot(Request::new(())));
        for response in futures_util::future::join_all(calls).await {
            response.unwrap();
        }
    }
    let soon = Context::new().with_deadline(Deadline::after(Duration::from_millis(5)));
    let started = Instant::now();
    let err = context::scope(soon, svc.clone().oneshot(Request::new(())))
        .await
        .unwrap_err();
    assert!(
        matches!(Rejection::find(err.as_ref()), Some(Rejection::TimedOut(_))),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(shed.in_flight(), 0, "and without taking a slot");
    let later = Context::new().with_deadline(Deadline::after(Duration::from_millis(100)));
    context::scope(later, svc.clone().oneshot(Request::new(())))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_client_throttle_backs_off_a_refusing_service_and_returns_when_it_recovers() {
    use std::sync::atomic::AtomicBool;
    use tower_rampart::load_shed::AdaptiveThrottleLayer;

    let healthy = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (up, counter) = (Arc::clone(&healthy), Arc::clone(&sent));
    let throttle = AdaptiveThrottleLayer::builder()
        .window(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = throttle.layer(service_fn(move |_: Request<()>| {
        counter.fetch_add(1, Ordering::Relaxed);
        let status = if up.load(Ordering::Relaxed) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        async move {
            let mut response = ok();
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    }));
    // 10 s of a service answering 503 to everything, one call every 10 ms.
    let mut local = 0;
    for i in 0..1_000 {
        match client.clone().oneshot(Request::new(())).await {
            Ok(_) => {}
            Err(err) => {
                assert!(matches!(
                    Rejection::find(err.as_ref()),
                    Some(Rejection::Overloaded(_))
                ));
                if i >= 500 {
                    local += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Settled at the maximum: 90% of calls refused locally, so the service sees a tenth.
    assert!(
        (400..=475).contains(&local),
        "{local} of the last 500 refused locally"
    );
    assert!((throttle.rejection_probability() - 0.9).abs() < 0.01);
    let sent_while_down = sent.load(Ordering::Relaxed);
    assert!(
        sent_while_down < 250,
        "{sent_while_down} of 1 000 reached the service"
    );

    // The service recovers: within a window, the throttle lets everything through again.
    healthy.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(11)).await;
    for _ in 0..100 {
        client.clone().oneshot(Request::new(())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(throttle.rejection_probability(), 0.0);
}

#[tokio::test(start_paused = true)]
async fn cancelled_calls_say_nothing_about_load() {
    use tower_rampart::load_shed::AdaptiveLimit;

    let shed = LoadShedLayer::builder()
        .adaptive(
            AdaptiveLimit::new()
                .initial(8)
                .window(Duration::from_millis(50)),
        )
        .critical_share(0.0)
        .build()
        .unwrap();
    let svc = shed.layer(service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, Infallible>(ok())
    }));
    // A second of calls whose callers give up halfway: dropped, none of them completes.
    for _ in 0..50 {
        let calls: Vec<_> = (0..8)
            .map(|_| svc.clone().oneshot(Request::new(())))
            .collect();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            futures_util::future::join_all(calls),
        )
        .await;
        assert!(gave_up.is_err());
    }
    assert_eq!(shed.limit(), 8, "no window closed on cancellations alone");
    assert_eq!(shed.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_bounded_queue_lets_a_few_calls_wait_a_little() {
    let shed = LoadShedLayer::builder()
        .max_in_flight(1)
        .critical_share(0.0)
        .build()
        .unwrap();
    let layer = shed.clone().queue(2, Duration::from_millis(50)).unwrap();
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        let ms: u64 = req.uri().path()[1..].parse().unwrap();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Infallible>(ok())
    }));
    let call = |ms: u64| {
        let svc = svc.clone();
        async move {
            let started = Instant::now();
            let request = Request::builder().uri(format!("/{ms}")).body(()).unwrap();
            let answer = svc.oneshot(request).await;
            (
                answer
                    .map(|_| ())
                    .map_err(|e| Rejection::find(e.as_ref()).cloned()),
                started.elapsed(),
            )
        }
    };
    // One runs (30 ms), two wait, the fourth finds the queue full and is refused at once.
    let (first, second, third, fourth) = tokio::join!(call(30), call(30), call(30), call(1));
    assert!(
        first.0.is_ok() && first.1 == Duration::from_millis(30),
        "{first:?}"
    );
    // Of the two waiting, one takes the freed slot at 30 ms and answers at 60 ms; the
    // other waits its 50 ms without a slot and is refused.
    let (mut served, mut refused) = (0, 0);
    for (answer, took) in [&second, &third] {
        match answer {
            Ok(()) => {
                assert_eq!(*took, Duration::from_millis(60));
                served += 1;
            }
            Err(Some(Rejection::Overloaded(_))) => {
                assert_eq!(*took, Duration::from_millis(50));
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((served, refused), (1, 1));
    assert!(
        matches!(fourth.0, Err(Some(Rejection::Overloaded(_)))),
        "{fourth:?}"
    );
    assert_eq!(fourth.1, Duration::ZERO);
    assert_eq!(shed.in_flight(), 0);
}

/// A gRPC answer whose status comes in its trailers.
fn grpc_answer(status: &'static str) -> Response<http_body_util::StreamBody<GrpcFrames>> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    let frames = vec![
        Ok(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    Response::builder()
        .header("content-type", "application/grpc")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap()
}

type GrpcFrames =
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>;

#[tokio::test(start_paused = true)]
async fn a_grpc_status_in_the_trailers_counts_for_the_adaptive_limit() {
    use tower_rampart::load_shed::AdaptiveLimit;

    for (status, shrinks) in [("14", true), ("0", false)] {
        let shed = LoadShedLayer::builder()
            .adaptive(
                AdaptiveLimit::new()
                    .initial(10)
                    .window(Duration::from_millis(10)),
            )
            .critical_share(0.0)
            .build()
            .unwrap();
        let svc = shed.layer(service_fn(move |_: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, Infallible>(grpc_answer(status))
        }));
        for _ in 0..4 {
            let calls = (0..8).map(|_| async {
                let request = Request::builder()
                    .version(http::Version::HTTP_2)
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let response = svc.clone().oneshot(request).await.unwrap();
                response.into_body().collect().await.unwrap();
            });
            futures_util::future::join_all(calls).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            shed.limit() < 10,
            shrinks,
            "grpc-status {status}: limit {}",
            shed.limit()
        );
    }
}

#[test]
fn admitted_calls_and_closing_windows_make_no_heap_allocation() {
    // The fixed limit, the adaptive one, and the client-side throttle.
    use tower_rampart::load_shed::AdaptiveLimit;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let handler = service_fn(|_: Request<()>| std::future::ready(Ok::<_, Infallible>(ok())));
    let fixed = LoadShedLayer::builder().max_in_flight(8).build().unwrap();
    let adaptive = LoadShedLayer::builder()
        .adaptive(
            AdaptiveLimit::new()
                .initial(8)
                .window(Duration::from_millis(1)),
        )
        .build()
        .unwrap();
    let mut fixed = fixed.layer(handler);
    let mut adaptive_svc = adaptive.layer(handler);
    let mut throttled = tower_rampart::load_shed::AdaptiveThrottleLayer::builder()
        .build()
        .unwrap()
        .layer(handler);
    // Calls each service `n` times, reading each answer to its end.
    let mut run = |n: u32| {
        for _ in 0..n {
            let response = support::ready_now(fixed.call(Request::new(()))).unwrap();
            let mut body = response.into_body();
            while support::ready_now(body.frame()).is_some() {}
            let response = support::ready_now(adaptive_svc.call(Request::new(()))).unwrap();
            let mut body = response.into_body();
            while support::ready_now(body.frame()).is_some() {}
            let response = support::ready_now(throttled.call(Request::new(()))).unwrap();
            let mut body = response.into_body();
            while support::ready_now(body.frame()).is_some() {}
        }
    };
    run(64); // first uses: thread-locals, the runtime's own state
    // Between batches of 32, time moves on 1 ms (outside the count: the runtime's own
    // timer work), so the adaptive limit closes a window in every batch.
    let mut allocations = 0;
    for _ in 0..32 {
        allocations += support::alloc::count(|| run(32)).1;
        runtime.block_on(tokio::time::advance(Duration::from_millis(1)));
    }
    assert_eq!(allocations, 0);
    assert_eq!(
        adaptive.limit(),
        2,
        "windows closed during the count (twice the one call in flight)"
    );
}
