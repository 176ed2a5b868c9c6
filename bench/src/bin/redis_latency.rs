//! Per-decision latency and throughput of the shared rate limiter over loopback Redis,
//! beside the floor: one `PING` and one `INCR` round trip on the same kind of connection.
//!
//! ```text
//! cargo run --release -p tower-rampart-bench --bin redis_latency
//! ```
//!
//! Uses `$REDIS_URL`, or starts a `redis-server` of its own on a free loopback port. Prints
//! a Markdown table: p50 and p99 one request at a time, and throughput with 64 requests in
//! flight on one multiplexed connection.

// Latency is wall time by definition: the crate's clock ban is about code under test.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tower::{Layer, ServiceExt, service_fn};
use tower_rampart::rate_limit::{OnStoreFailure, RateLimitLayer, RedisStore};

const ONE_AT_A_TIME: usize = 5_000;
const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 200;

/// p50 and p99 of `n` sequential runs of `op`.
async fn latency<F: Future<Output = ()>>(mut op: impl FnMut(usize) -> F) -> (Duration, Duration) {
    for i in 0..200 {
        op(i).await;
    }
    let mut samples = Vec::with_capacity(ONE_AT_A_TIME);
    for i in 0..ONE_AT_A_TIME {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Operations per second with `IN_FLIGHT` of them at once, over `ROUNDS` rounds.
async fn throughput<F: Future<Output = ()>>(mut op: impl FnMut(usize) -> F) -> f64 {
    let started = Instant::now();
    for round in 0..ROUNDS {
        let batch: Vec<F> = (0..IN_FLIGHT).map(|i| op(round * IN_FLIGHT + i)).collect();
        futures_util::future::join_all(batch).await;
    }
    (ROUNDS * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64()
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (url, _own) = tower_rampart_bench::support::redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = ConnectionManager::new(client.clone()).await.unwrap();

    let ping = |_| {
        let mut conn = conn.clone();
        async move {
            let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        }
    };
    let incr = |i: usize| {
        let mut conn = conn.clone();
        async move {
            let _: i64 = redis::cmd("INCR")
                .arg(format!("bench:incr:{}", i % 1024))
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    let store = RedisStore::builder(client)
        .prefix("bench")
        .timeout(Duration::from_secs(1))
        .on_failure(OnStoreFailure::Refuse)
        .build()
        .unwrap();
    // A quota no run reaches: every decision is an admission, decided in Redis.
    let layer = RateLimitLayer::per_second(1_000_000_000)
        .burst(1_000_000_000)
        .with_key(|key: &u64| Some(*key))
        .shared(store)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u64| async { Ok::<_, Infallible>(()) }));
    let decide = |i: usize| {
        let svc = svc.clone();
        async move {
            svc.oneshot((i % 1024) as u64).await.unwrap();
        }
    };

    let (ping_p50, ping_p99) = latency(ping).await;
    let (incr_p50, incr_p99) = latency(incr).await;
    let (decide_p50, decide_p99) = latency(decide).await;
    let incr_rate = throughput(incr).await;
    let decide_rate = throughput(decide).await;

    println!("| operation | p50 µs | p99 µs | throughput at {IN_FLIGHT} in flight (/s) |");
    println!("|---|---|---|---|");
    println!("| `PING` | {} | {} | |", micros(ping_p50), micros(ping_p99));
    println!(
        "| `INCR` | {} | {} | {incr_rate:.0} |",
        micros(incr_p50),
        micros(incr_p99)
    );
    println!(
        "| shared limiter decision | {} | {} | {decide_rate:.0} |",
        micros(decide_p50),
        micros(decide_p99)
    );
    println!();
    println!(
        "decision p50 / PING p50: {:.2}×; / INCR p50: {:.2}×; throughput / pipelined INCR: {:.2}×",
        decide_p50.as_secs_f64() / ping_p50.as_secs_f64(),
        decide_p50.as_secs_f64() / incr_p50.as_secs_f64(),
        decide_rate / incr_rate
    );
}
