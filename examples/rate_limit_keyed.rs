//! A per-client rate limit behind a trusted reverse proxy.
//!
//! Run with: cargo run --example rate_limit_keyed --features full
//!
//! Then, from another terminal:
//!
//! ```text
//! for i in $(seq 1 8); do curl -s -o /dev/null -w '%{http_code} ' localhost:3001/; done; echo
//! # 200 200 200 200 200 429 429 429
//! curl -si localhost:3001/ -H 'x-forwarded-for: 198.51.100.7'   # another client: 200
//! ```
//!
//! Loopback is trusted as a proxy here, so the `X-Forwarded-For` entry decides the client.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_rampart::ServiceBuilderExt;
use tower_rampart::rate_limit::{ClientIp, RateLimitLayer};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let per_client = RateLimitLayer::per_second(2)
        .burst(5)
        .policy_name("per-client")
        .with_key(ClientIp::new().trust_proxies(["127.0.0.0/8".parse()?, "::1/128".parse()?]))
        .advertise()
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .layer(ServiceBuilder::new().rejection_response().layer(per_client));

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3001".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
