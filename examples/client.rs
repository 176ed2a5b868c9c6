//! The outbound stack on a hyper-util client, calling the example server.
//!
//! Run with: cargo run --example client --features full
//!
//! Starts the example server's app (`common/app.rs`) on a loopback port, then calls it
//! through request-id propagation, deadline propagation, a per-host circuit breaker and a
//! rate limiter that waits rather than refuses, and prints what each layer did:
//!
//! 1. the request id in scope travels to the server and comes back in its echo;
//! 2. a 300 ms deadline in scope reaches the server as a smaller budget (two hops share one
//!    budget), and `/slow` gives up at it;
//! 3. the limiter (5 per second, 2 at once) spaces calls out instead of refusing them;
//! 4. `/flaky` fails: the client's breaker opens after 3 failures and then refuses at once,
//!    without sending.

#[path = "common/app.rs"]
mod app;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_rampart::circuit_breaker::{CircuitBreakerLayer, ClassifiedBody, UpstreamHost};
use tower_rampart::context::{self, Context};
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::request_id::{PropagateRequestIdLayer, RequestId, Rules};
use tower_rampart::timeout::{Deadline, PropagateDeadlineLayer};
use tower_rampart::{BoxError, Rejection};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a call got: the status and body, or the rejection that stopped it.
async fn describe<S>(client: &mut S, uri: String) -> Result<String, Error>
where
    S: Service<
            Request<Empty<Bytes>>,
            Response = http::Response<ClassifiedBody<hyper::body::Incoming>>,
            Error = BoxError,
        >,
{
    let request = Request::get(uri).body(Empty::new())?;
    Ok(match client.ready().await?.call(request).await {
        Ok(response) => {
            let status = response.status();
            let id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let body = response.into_body().collect().await?.to_bytes();
            let body = String::from_utf8_lossy(&body).trim().to_owned();
            format!("{status} (x-request-id {id}) {body}")
        }
        Err(err) => match Rejection::find(err.as_ref()) {
            Some(Rejection::CircuitOpen(open)) => format!(
                "refused by the client's breaker, not sent (retry in {} ms)",
                open.retry_after().as_millis()
            ),
            Some(Rejection::TimedOut(t)) => {
                format!("gave up locally after {} ms", t.after().as_millis())
            }
            _ => format!("error: {err}"),
        },
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = app::app(app::Config::default())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(
        listener,
        served.router,
        async move {
            let _ = stopped.await;
        },
        app::Limits::default(),
    ));
    println!("example server on {addr}\n");

    let breakers = CircuitBreakerLayer::builder()
        .name("client")
        .failure_threshold(3)
        .open_for(Duration::from_secs(5))
        .with_key(UpstreamHost)
        .build()?;
    let limiter = RateLimitLayer::per_second(5)
        .burst(2)
        .wait(Duration::from_secs(2))
        .build()?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(PropagateRequestIdLayer::new())
        .layer(PropagateDeadlineLayer::new())
        .layer(breakers.clone())
        .layer(limiter)
        .service(http)
        .map_err(Into::<BoxError>::into);

    println!("1. request id");
    let id = RequestId::parse(b"client-demo-1", &Rules::default()).expect("a valid id");
    let ctx = Context::new().with_request_id(id);
    let answer = context::scope(ctx, describe(&mut client, format!("http://{addr}/"))).await?;
    println!("   GET / with id client-demo-1 in scope -> {answer}\n");

    println!("2. deadline across two hops");
    let ctx = Context::new().with_deadline(Deadline::after(Duration::from_millis(300)));
    let answer = context::scope(
        ctx.clone(),
        describe(&mut client, format!("http://{addr}/budget")),
    )
    .await?;
    println!("   GET /budget with 300 ms in scope -> {answer}");
    let started = Instant::now();
    let answer = context::scope(ctx, describe(&mut client, format!("http://{addr}/slow"))).await?;
    println!(
        "   GET /slow (5 s handler) with what is left -> {answer}, after {} ms\n",
        started.elapsed().as_millis()
    );

    println!("3. rate limit, waiting (5 per second, 2 at once)");
    let started = Instant::now();
    for n in 1..=5 {
        describe(&mut client, format!("http://{addr}/")).await?;
        println!(
            "   call {n} answered at {:>4} ms",
            started.elapsed().as_millis()
        );
    }
    println!();

    println!("4. circuit breaker");
    for n in 1..=5 {
        let answer = describe(&mut client, format!("http://{addr}/flaky")).await?;
        let state = breakers
            .handle_for(&addr.to_string())
            .map_or("-", |h| h.state().as_str());
        println!("   GET /flaky #{n} -> {answer} [client breaker: {state}]");
    }
    println!(
        "   the server's upstream was called {} times; the server's own breaker is {}",
        served
            .upstream_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        served.flaky_breaker.state()
    );

    let _ = stop.send(());
    server.await??;
    Ok(())
}
