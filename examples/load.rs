//! A bounded loopback load test: the same axum handler served bare and behind the whole
//! rampart stack, each driven by N keep-alive HTTP/1 connections for T seconds. The two
//! alternate over R rounds (bare, stack, bare, stack, ...), so that a slow moment of the
//! machine hits both alike; it prints each round, then the median ratio of the stack's
//! throughput to bare with its spread, and the median p50 and p99 of each.
//!
//! Run with: cargo run --release --example load --features full -- [connections] [seconds] [rounds]
//!
//! Defaults: 32 connections, 3 seconds per run, 5 rounds; capped at 256 connections, 30
//! seconds and 20 rounds. Client and servers share this process and its cores: compare the
//! runs with each other, not with other machines.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_rampart::ServiceBuilderExt;
use tower_rampart::circuit_breaker::CircuitBreakerLayer;
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::TimeoutLayer;

const MAX_CONNECTIONS: usize = 256;
const MAX_SECONDS: u64 = 30;
const MAX_ROUNDS: usize = 20;

/// The handler both runs serve.
fn routes() -> Router {
    Router::new().route("/", get(|| async { "ok\n" }))
}

/// The handler behind the stack. The limit is far above what one machine can send, so the
/// run measures the layers' cost, not their refusals.
fn with_stack() -> Result<Router, tower_rampart::ConfigError> {
    Ok(routes().layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .rejection_response()
            .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
            .layer(
                RateLimitLayer::per_second(10_000_000)
                    .burst(1_000_000)
                    .build()?,
            )
            .layer(CircuitBreakerLayer::builder().build()?),
    ))
}

/// Serves `router` on a fresh loopback port until the returned sender is dropped.
async fn serve(router: Router) -> std::io::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr, stop))
}

/// One connection sending requests back to back until `until`; the latency of each, in µs.
async fn connection(
    addr: SocketAddr,
    until: Instant,
) -> Result<Vec<u32>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let req = Request::get("/")
            .header("host", "127.0.0.1")
            .body(Empty::<Bytes>::new())?;
        let started = Instant::now();
        let response = sender.send_request(req).await?;
        response.into_body().collect().await?;
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(latencies)
}

struct Run {
    per_second: f64,
    p50_us: u32,
    p99_us: u32,
}

async fn run(
    router: Router,
    connections: usize,
    seconds: u64,
) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let (addr, _stop) = serve(router).await?;
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(addr, until)))
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Run {
        per_second: latencies.len() as f64 / elapsed,
        p50_us: at(0.50),
        p99_us: at(0.99),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let connections: usize = args
        .next()
        .map_or(Ok(32), |a| a.parse())?
        .clamp(1, MAX_CONNECTIONS);
    let seconds: u64 = args
        .next()
        .map_or(Ok(3), |a| a.parse())?
        .clamp(1, MAX_SECONDS);
    let rounds: usize = args
        .next()
        .map_or(Ok(5), |a| a.parse())?
        .clamp(1, MAX_ROUNDS);
    println!("{connections} connections, {seconds} s per run, {rounds} rounds, loopback");
    let (mut ratios, mut bare_runs, mut stack_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let bare = run(routes(), connections, seconds).await?;
        let stack = run(with_stack()?, connections, seconds).await?;
        let ratio = stack.per_second / bare.per_second;
        println!(
            "round {round}: bare {:>9.0} req/s (p50 {} µs, p99 {} µs)   stack {:>9.0} req/s (p50 {} µs, p99 {} µs)   {:.1}%",
            bare.per_second,
            bare.p50_us,
            bare.p99_us,
            stack.per_second,
            stack.p50_us,
            stack.p99_us,
            100.0 * ratio
        );
        ratios.push(ratio);
        bare_runs.push(bare);
        stack_runs.push(stack);
    }
    ratios.sort_by(f64::total_cmp);
    let median = |mut values: Vec<u32>| {
        values.sort_unstable();
        values[values.len() / 2]
    };
    println!(
        "stack throughput: median {:.1}% of bare (from {:.1}% to {:.1}% over {rounds} rounds)",
        100.0 * ratios[ratios.len() / 2],
        100.0 * ratios[0],
        100.0 * ratios[ratios.len() - 1]
    );
    for (name, runs) in [("bare", &bare_runs), ("stack", &stack_runs)] {
        println!(
            "{name:>5}: median p50 {} µs, median p99 {} µs",
            median(runs.iter().map(|r| r.p50_us).collect()),
            median(runs.iter().map(|r| r.p99_us).collect())
        );
    }
    Ok(())
}
