//! The gRPC example service: `rampart.example.Demo` behind the rampart stack (service and
//! stack in `common/grpc.rs`, the contract in `proto/demo.proto`).
//!
//! Run with: cargo run --example grpc_server --features full
//!
//! Serves on `$ADDR` (default `127.0.0.1:50051`); `RUST_LOG` sets the log filter. Try it with
//! `cargo run --example grpc_client --features full`, or any gRPC client and the `.proto`.
//! Stops gracefully on Ctrl-C or SIGTERM.

#[path = "common/grpc.rs"]
mod grpc;
#[path = "common/shutdown.rs"]
mod shutdown;

use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:50051".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (running, server) = grpc::start(
        listener,
        grpc::Config::default(),
        shutdown::shutdown_signal(),
    )
    .await?;
    tracing::info!(addr = %running.addr, "listening");
    server.await??;
    tracing::info!(
        upstream_calls = running.upstream_calls.load(std::sync::atomic::Ordering::SeqCst),
        upstream_breaker = %running.flaky_breaker.state(),
        "stopped"
    );
    Ok(())
}
