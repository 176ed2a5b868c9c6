//! The example server's memory when nobody scrapes `/metrics`, alone in its binary so that
//! the counting allocator sees only this test. Paused time, one thread: the upkeep task runs
//! on the thread that counts.

// This binary uses the app's routes, not its serving or handles.
#[allow(dead_code)]
#[path = "../examples/common/app.rs"]
mod app;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use tower::ServiceExt;

/// Bytes left allocated by 20 000 requests to the app after 2 000 of warm-up, with the
/// Prometheus upkeep due every `upkeep` of paused time (200 ms pass per 500 requests).
fn growth(upkeep: Duration) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let router = app::app(app::Config {
            metrics_upkeep: upkeep,
            ..app::Config::default()
        })
        .unwrap()
        .router;
        let mut before = 0;
        for i in 0..22_000_u32 {
            if i == 2_000 {
                before = support::alloc::live_now();
            }
            let mut req = Request::get("/").body(Body::empty()).unwrap();
            let peer = SocketAddr::from(([198, 51, 100, (i % 250) as u8], 4000));
            req.extensions_mut().insert(ConnectInfo(peer));
            drop(router.clone().oneshot(req).await.unwrap());
            if i % 500 == 0 {
                tokio::time::advance(Duration::from_millis(200)).await;
                tokio::task::yield_now().await;
            }
        }
        support::alloc::live_now() - before
    })
}

/// Regression: the example installed the Prometheus recorder without its upkeep, so every
/// histogram sample was kept until a scrape: 5 MB grew to 123 MB in 60 s at full load.
#[test]
fn unscraped_metrics_stay_bounded() {
    // Without upkeep (due once an hour) the samples pile up: the measurement sees it.
    let without = growth(Duration::from_secs(3_600));
    assert!(without > 128 * 1024, "{without} bytes left without upkeep");
    let with_upkeep = growth(Duration::from_millis(100));
    println!("20 000 requests: {without} bytes left without upkeep, {with_upkeep} with it");
    assert!(with_upkeep < 16 * 1024, "{with_upkeep} bytes left");
}
