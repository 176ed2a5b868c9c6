//! The example service: an axum app with the rampart stack.
//!
//! Run with: cargo run --example server --features full
//!
//! Serves on `$ADDR` (default `127.0.0.1:3000`); `RUST_LOG` sets the log filter. Stops
//! gracefully on Ctrl-C or SIGTERM: in-flight requests finish, bounded by a drain timeout.

use std::net::SocketAddr;
use std::time::Duration;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_rampart::circuit_breaker::CircuitBreakerLayer;
use tower_rampart::fan_out::{FanOut, Outcome, Part, PartResult};
use tower_rampart::rate_limit::{PeerIp, RateLimitLayer};
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::{Deadline, TimeoutLayer};
use tower_rampart::{Rejection, ServiceBuilderExt};
use tracing_subscriber::EnvFilter;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The example's app: every route behind the rampart stack.
fn app() -> Result<Router, tower_rampart::ConfigError> {
    // 50 requests per second per client IP, 20 at once.
    let per_client = RateLimitLayer::per_second(50)
        .burst(20)
        .with_key(PeerIp)
        .policy_name("per-ip")
        .build()?;
    Ok(Router::new()
        .route("/", get(|| async { "tower-rampart example server\n" }))
        .route("/budget", get(budget))
        .merge(product_page()?)
        .layer(
            ServiceBuilder::new()
                // Outermost: accept or generate `x-request-id`, echo it on every response,
                // rejections included.
                .layer(SetRequestIdLayer::new())
                // Rejections from the layers below become 429/503/504/502 responses.
                .rejection_response()
                // 2 s per request, or less if the caller sends `grpc-timeout` or
                // `x-request-timeout-ms`; 504 when it runs out.
                .deadline(TimeoutLayer::new(Duration::from_secs(2)))
                .token_bucket(per_client)
                // 5 server errors in a row: answer 503 for 30 s, then probe.
                .circuit_breaker(CircuitBreakerLayer::builder().build()?),
        ))
}

/// Answers with the time this request has left: try `curl -H 'x-request-timeout-ms: 250'`.
async fn budget(deadline: Deadline) -> String {
    format!("{} ms left\n", deadline.remaining().as_millis())
}

/// The seed's product page: the core data (essential, fast), reviews (optional, 300 ms
/// budget, but the stand-in takes 2 s) and related products (optional, fast), all under a
/// 1 s cap. Built once; answers 200 with `"degraded":["reviews"]` after 300 ms.
fn product_page() -> Result<Router, tower_rampart::ConfigError> {
    // Stand-ins for three backends; in a real service, hyper clients with their own stacks.
    let core = tower::service_fn(|id: u64| async move {
        Ok::<_, Infallible>(format!(
            r#"{{"id":{id},"name":"kettle","price_cents":2999}}"#
        ))
    });
    let reviews = tower::service_fn(|_: u64| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok::<_, Infallible>(r#"[{"stars":5}]"#.to_string())
    });
    let related = tower::service_fn(|id: u64| async move {
        Ok::<_, Infallible>(format!("[{},{}]", id + 1, id + 2))
    });
    let page = FanOut::builder(Duration::from_secs(1))
        .part(Part::essential("core", core))
        .part(Part::optional("reviews", reviews).timeout(Duration::from_millis(300)))
        .part(Part::optional("related", related).timeout(Duration::from_millis(300)))
        .build()?;
    Ok(Router::new().route(
        "/product/{id}",
        get(move |Path(id): Path<u64>| {
            let page = page.clone();
            async move { render(page.call(&id).await?) }
        }),
    ))
}

/// The product page as JSON, with the parts that answered and the list of those that did not.
fn render(
    outcome: Outcome<(PartResult<String>, PartResult<String>, PartResult<String>)>,
) -> Result<Response, Rejection> {
    let (core, reviews, related) = outcome.parts();
    let mut fields = Vec::new();
    fields.extend(core.value().map(|v| ("product", v.as_str())));
    fields.extend(reviews.value().map(|v| ("reviews", v.as_str())));
    fields.extend(related.value().map(|v| ("related", v.as_str())));
    Ok(outcome.json_response::<Body>(&fields))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app()?.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    });

    tokio::select! {
        result = server => result?,
        () = async {
            let _ = signalled_rx.await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => tracing::warn!(drain_timeout_ms = DRAIN_TIMEOUT.as_millis() as u64, "drain timeout reached, exiting"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, draining");
}
