//! A tonic client with the rampart client stack, calling the gRPC example server.
//!
//! Run `cargo run --example grpc_server --features full` first, then:
//! cargo run --example grpc_client --features full
//!
//! Calls `$ADDR` (default `127.0.0.1:50051`) through: request-id propagation → deadline
//! propagation → a circuit breaker of its own → the channel, and prints each answer's
//! `tonic::Code`, message, `grpc-retry-pushback-ms` and `x-request-id`:
//! `Hello`, a burst of 30 `Hello`s (some `RESOURCE_EXHAUSTED`), `Slow` with a 300 ms
//! deadline (`DEADLINE_EXCEEDED`), and `Flaky` until this client's own breaker opens
//! (`UNAVAILABLE` without a call).

#[path = "common/grpc.rs"]
#[allow(dead_code)]
mod grpc;

use std::time::Duration;

use grpc::proto::demo_client::DemoClient;
use grpc::proto::{Empty, HelloRequest};
use tower::ServiceBuilder;
use tower_rampart::circuit_breaker::{CircuitBreakerLayer, HttpClassifier, Outcome};
use tower_rampart::context::{self, Context, Deadline};
use tower_rampart::grpc::retry_pushback;
use tower_rampart::request_id::PropagateRequestIdLayer;
use tower_rampart::timeout::PropagateDeadlineLayer;

/// One line for a call's answer.
fn describe<T: std::fmt::Debug>(answer: &Result<tonic::Response<T>, tonic::Status>) -> String {
    let id = |metadata: &tonic::metadata::MetadataMap| {
        metadata
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    match answer {
        Ok(response) => format!(
            "OK {:?} (x-request-id {})",
            response.get_ref(),
            id(response.metadata())
        ),
        Err(status) => {
            let pushback = retry_pushback(status.metadata().as_ref())
                .map_or_else(|| "-".to_owned(), |wait| format!("{} ms", wait.as_millis()));
            format!(
                "{:?} {:?} (pushback {pushback}, x-request-id {})",
                status.code(),
                status.message(),
                id(status.metadata())
            )
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    // The server's rate limit (RESOURCE_EXHAUSTED) says "slow down", not "down": it must not
    // open this breaker.
    let classifier = HttpClassifier::new().resource_exhausted(Outcome::Ignore);
    let breaker = CircuitBreakerLayer::builder()
        .name("demo")
        .with_classifier(classifier)
        .failure_threshold(3)
        .open_for(Duration::from_secs(5))
        .build()?;
    let health = breaker.handle();
    let stack = ServiceBuilder::new()
        .layer(PropagateRequestIdLayer::new())
        .layer(PropagateDeadlineLayer::new())
        .layer(breaker)
        .service(grpc::channel(addr.parse()?));
    let mut client = DemoClient::new(stack);

    let hello = || HelloRequest {
        name: "rampart".to_owned(),
    };
    println!("Hello: {}", describe(&client.hello(hello()).await));

    let burst: Vec<_> = (0..30)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.hello(hello()).await })
        })
        .collect();
    let mut refused = 0;
    for call in burst {
        let answer = call.await?;
        if answer.is_err() {
            refused += 1;
            if refused == 1 {
                println!("Hello burst, first refusal: {}", describe(&answer));
            }
        }
    }
    println!("Hello burst: {refused} of 30 refused");

    // The caller's deadline travels as `grpc-timeout`; the server answers DEADLINE_EXCEEDED.
    let budget = Context::new().with_deadline(Deadline::after(Duration::from_millis(300)));
    let slow = context::scope(budget, client.slow(Empty {})).await;
    println!("Slow with 300 ms: {}", describe(&slow));

    for attempt in 1..=5 {
        let answer = client.flaky(Empty {}).await;
        println!(
            "Flaky #{attempt}: {} [client breaker {}]",
            describe(&answer),
            health.state()
        );
    }
    Ok(())
}
