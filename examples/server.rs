//! The example service: an axum app with the rampart stack (routes in `common/app.rs`).
//!
//! Run with: cargo run --example server --features full
//!
//! Serves on `$ADDR` (default `127.0.0.1:3000`); `RUST_LOG` sets the log filter. Stops
//! gracefully on Ctrl-C or SIGTERM: in-flight requests finish, bounded by a drain timeout.

#[path = "common/app.rs"]
mod app;
#[path = "common/shutdown.rs"]
mod shutdown;

use std::net::SocketAddr;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    // With REDIS_URL set, the per-client limit is shared with every server using that Redis.
    let config = app::Config {
        redis_url: std::env::var("REDIS_URL").ok(),
        ..app::Config::default()
    };
    if let Some(url) = &config.redis_url {
        tracing::info!(redis = %url, "sharing the per-client limit through Redis");
    }
    let app = app::app(config)?;
    let (breaker, upstream_calls) = (app.flaky_breaker.clone(), app.upstream_calls.clone());
    // A header-read timeout and a connection cap below the open-file limit: slow or idle
    // clients cannot take the server's file descriptors (see `app::Limits`).
    let limits = limits_for_this_process();
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        "connection limits"
    );
    let server = app::serve(
        listener,
        app.router,
        async move {
            shutdown::shutdown_signal().await;
            let _ = signalled_tx.send(());
        },
        limits,
    );

    tokio::select! {
        result = server => result?,
        () = async {
            let _ = signalled_rx.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => tracing::warn!(drain_timeout_ms = DRAIN_TIMEOUT.as_millis() as u64, "drain timeout reached, exiting"),
    }
    tracing::info!(
        upstream_calls = upstream_calls.load(std::sync::atomic::Ordering::SeqCst),
        upstream_breaker = %breaker.state(),
        "stopped"
    );
    Ok(())
}

/// The default limits, with the connection cap sized to the open-file limit after raising
/// the soft limit as far as the hard one allows (up to 65 536): the cap is what that limit
/// leaves after 64 descriptors kept for everything else.
fn limits_for_this_process() -> app::Limits {
    let files = rlimit::increase_nofile_limit(65_536).unwrap_or(1_024);
    let cap = usize::try_from(files.saturating_sub(64)).unwrap_or(usize::MAX);
    app::Limits {
        max_connections: cap.clamp(16, 60_000),
        ..app::Limits::default()
    }
}
