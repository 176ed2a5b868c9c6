//! A per-backend circuit breaker on a hyper client, watching a backend fail and recover.
//!
//! Run with: cargo run --example circuit_breaker --features full
//!
//! The example starts two small backends on loopback: `flaky` answers 500 for its first 4
//! requests and 200 afterwards, `steady` always answers 200. A client stack with one breaker
//! per upstream host calls both every 100 ms for 3 seconds, prints what each call got and
//! the breakers' states, and exits. The flaky backend's breaker opens, rejects without
//! calling it, probes it after the open time and closes; the steady backend is never cut off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_rampart::Rejection;
use tower_rampart::circuit_breaker::{CircuitBreakerLayer, UpstreamHost};
use tracing_subscriber::EnvFilter;

async fn backend(failures_first: u32) -> std::io::Result<SocketAddr> {
    let served = Arc::new(AtomicU32::new(0));
    let app = Router::new().route(
        "/",
        get(move || {
            let n = served.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < failures_first {
                    (StatusCode::INTERNAL_SERVER_ERROR, "failing\n")
                } else {
                    (StatusCode::OK, "ok\n")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), tower_rampart::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let flaky = backend(4).await?;
    let steady = backend(0).await?;

    let breakers = CircuitBreakerLayer::builder()
        .name("upstream")
        .failure_threshold(3)
        .open_for(Duration::from_millis(500))
        .with_key(UpstreamHost)
        .build()?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new().layer(breakers.clone()).service(http);

    for round in 0..30 {
        let mut line = format!("{:>5} ms", round * 100);
        for (name, addr) in [("flaky", flaky), ("steady", steady)] {
            let request = http::Request::get(format!("http://{addr}/")).body(Empty::new())?;
            let answer = match client.ready().await?.call(request).await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(err) => match Rejection::find(err.as_ref()) {
                    Some(Rejection::CircuitOpen(open)) => {
                        format!("open ({} ms)", open.retry_after().as_millis())
                    }
                    _ => format!("error: {err}"),
                },
            };
            let state = breakers
                .handle_for(&addr.to_string())
                .map_or("-", |h| h.state().as_str());
            line.push_str(&format!("  {name}: {answer:<14} [{state}]"));
        }
        println!("{line}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    if let Some(flaky) = breakers.handle_for(&flaky.to_string()) {
        let m = flaky.metrics();
        println!(
            "flaky: {} calls, {} failures, {} rejected without a call, {} transitions",
            m.calls(),
            m.failures(),
            m.rejected(),
            m.transitions()
        );
    }
    Ok(())
}
