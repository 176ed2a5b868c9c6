//! Two axum servers, two ports, one limit: a per-client quota shared through Redis.
//!
//! Run with: cargo run --example distributed_limit --features full
//!
//! Uses the Redis at `$REDIS_URL`; without it, starts a `redis-server` of its own on a free
//! loopback port (Debian: `apt-get install redis-server`). Sends 40 requests, alternating
//! between the two servers, and prints what each answered: 20 are admitted in all (the
//! burst), not 20 per server.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_rampart::ServiceBuilderExt;
use tower_rampart::rate_limit::{OnStoreFailure, PeerIp, RateLimitLayer, RedisStore};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One replica: `GET /` behind a per-client limit of 10/s, burst 20, kept in `redis_url`.
async fn replica(name: &'static str, redis_url: &str) -> Result<SocketAddr, Error> {
    let store = RedisStore::builder(redis::Client::open(redis_url)?)
        .prefix("distributed-example")
        .on_failure(OnStoreFailure::Local { share: 0.5 })
        .build()?;
    let limit = RateLimitLayer::per_second(10)
        .burst(20)
        .policy_name("per-ip")
        .with_key(PeerIp)
        .shared(store)
        .build()?;
    let app = Router::new()
        .route("/", get(move || async move { name }))
        .layer(ServiceBuilder::new().rejection_response().layer(limit));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(addr)
}

/// A `redis-server` of this example's own, stopped when dropped.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn own_redis() -> Result<(String, OwnRedis), Error> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("no REDIS_URL and cannot start redis-server: {e}"))?;
    let server = OwnRedis(child);
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((format!("redis://127.0.0.1:{port}"), server));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("redis-server did not start".into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (url, _own) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let (url, server) = own_redis().await?;
            (url, Some(server))
        }
    };
    println!("sharing one limit through {url}");
    let servers = [replica("one", &url).await?, replica("two", &url).await?];
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut admitted = [0, 0];
    let mut refused = 0;
    for i in 0..40 {
        let addr = servers[i % 2];
        let response = client.get(format!("http://{addr}/").parse()?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status.is_success() {
            admitted[i % 2] += 1;
        } else {
            refused += 1;
            if refused == 1 {
                println!(
                    "first refusal: {status} {}",
                    String::from_utf8_lossy(&body).trim()
                );
            }
        }
    }
    println!(
        "admitted {} by server one and {} by server two ({} in all, one burst of 20); refused {refused}",
        admitted[0],
        admitted[1],
        admitted[0] + admitted[1]
    );
    Ok(())
}
