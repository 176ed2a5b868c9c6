//! gRPC, with a real tonic client and real tonic servers over loopback: the example server
//! (`examples/common/grpc.rs`), refusals as a gRPC client sees them, breakers on both sides,
//! client stacks on a `Channel`, and a deadline across two hops.

#[path = "../examples/common/grpc.rs"]
#[allow(dead_code)]
mod grpc;

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use grpc::proto::demo_client::DemoClient;
use grpc::proto::demo_server::{Demo, DemoServer};
use grpc::proto::{Empty, HelloReply, HelloRequest};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tower::ServiceBuilder;
use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_rampart::context::{self, Context, Deadline};
use tower_rampart::grpc::retry_pushback;
use tower_rampart::rate_limit::RateLimitLayer;
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::{PropagateDeadlineLayer, TimeoutLayer};
use tower_rampart::{Rejection, ServiceBuilderExt};

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The example server with `config`, and a plain tonic client for it.
async fn example(config: grpc::Config) -> (grpc::Running, DemoClient<tonic::transport::Channel>) {
    let (running, _server) = grpc::start(loopback().await, config, std::future::pending())
        .await
        .unwrap();
    let client = DemoClient::new(grpc::channel(running.addr));
    (running, client)
}

fn hello() -> HelloRequest {
    HelloRequest {
        name: "test".to_owned(),
    }
}

fn request_id(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    metadata.get("x-request-id").and_then(|v| v.to_str().ok())
}

/// Asserts what every refusal carries: its code, and the request id the server gave it.
fn assert_refused<T: std::fmt::Debug>(answer: Result<T, Status>, code: Code) -> Status {
    let status = answer.expect_err("a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        request_id(status.metadata()).is_some_and(|id| !id.is_empty()),
        "x-request-id on {status:?}"
    );
    status
}

#[tokio::test(start_paused = true)]
async fn hello_answers_with_a_request_id() {
    let (_running, mut client) = example(grpc::Config::default()).await;
    let response = client.hello(hello()).await.unwrap();
    assert_eq!(response.get_ref().message, "hello, test");
    assert!(request_id(response.metadata()).is_some());

    // An id the caller sent is kept.
    let mut request = Request::new(hello());
    request
        .metadata_mut()
        .insert("x-request-id", "caller-7".parse().unwrap());
    let response = client.hello(request).await.unwrap();
    assert_eq!(request_id(response.metadata()), Some("caller-7"));
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_refused_with_resource_exhausted_and_a_pushback() {
    let (_running, mut client) = example(grpc::Config::default()).await;
    // No time passes: exactly the burst of 20 is admitted.
    for i in 0..20 {
        client
            .hello(hello())
            .await
            .unwrap_or_else(|s| panic!("call {i}: {s:?}"));
    }
    let status = assert_refused(client.hello(hello()).await, Code::ResourceExhausted);
    assert_eq!(status.message(), "rate limited (retry after 20 ms)");
    // One token every 20 ms at 50 per second.
    assert_eq!(
        retry_pushback(status.metadata().as_ref()),
        Some(Duration::from_millis(20))
    );
    // After the pushback, the caller is admitted again.
    tokio::time::advance(Duration::from_millis(20)).await;
    client.hello(hello()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_answers_deadline_exceeded_at_the_limit_and_at_the_callers_budget() {
    let (_running, mut client) = example(grpc::Config::default()).await;
    let start = Instant::now();
    let status = assert_refused(client.slow(Empty {}).await, Code::DeadlineExceeded);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(status.message(), "deadline elapsed after 1000 ms");

    // The caller's grpc-timeout is enforced by the crate, before tonic's own timer would
    // answer CANCELLED "Timeout expired".
    let mut request = Request::new(Empty {});
    request.set_timeout(Duration::from_millis(200));
    let start = Instant::now();
    let status = assert_refused(client.slow(request).await, Code::DeadlineExceeded);
    assert_eq!(start.elapsed(), Duration::from_millis(199));
    assert_eq!(status.message(), "deadline elapsed after 199 ms");
}

#[tokio::test(start_paused = true)]
async fn flaky_trips_the_client_breaker_on_unavailable_replies() {
    let (running, mut client) = example(grpc::Config::default()).await;
    for _ in 0..5 {
        let status = assert_refused(client.flaky(Empty {}).await, Code::Unavailable);
        assert_eq!(status.message(), "the upstream is down");
    }
    assert_eq!(running.flaky_breaker.state(), CircuitState::Open);
    assert_eq!(running.upstream_calls.load(Ordering::SeqCst), 5);

    // Now the breaker answers, without calling the upstream, with when to come back.
    let status = assert_refused(client.flaky(Empty {}).await, Code::Unavailable);
    assert!(status.message().starts_with("circuit open"), "{status:?}");
    assert_eq!(
        retry_pushback(status.metadata().as_ref()),
        Some(Duration::from_secs(10))
    );
    assert_eq!(running.upstream_calls.load(Ordering::SeqCst), 5);
}

/// A `Demo` whose every method fails with `UNAVAILABLE`, counting its calls, and whose
/// `Hello` reports the deadline it runs under.
#[derive(Clone, Default)]
struct Reporter {
    calls: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl Demo for Reporter {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let left = Deadline::current().map(|d| d.remaining().as_millis());
        Ok(Response::new(HelloReply {
            message: format!("{left:?}"),
        }))
    }

    async fn slow(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn flaky(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("down"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_side_breaker_trips_on_grpc_failures() {
    let breaker = CircuitBreakerLayer::builder()
        .failure_threshold(2)
        .open_for(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let service = Reporter::default();
    let calls = Arc::clone(&service.calls);
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(ServiceBuilder::new().rejection_response().layer(breaker))
            .add_service(DemoServer::new(service))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = DemoClient::new(grpc::channel(addr));
    // The handler's UNAVAILABLE travels as HTTP 200: still a failure for the breaker.
    for _ in 0..2 {
        let status = client.flaky(Empty {}).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unavailable, "down")
        );
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let status = client.flaky(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        retry_pushback(status.metadata().as_ref()),
        Some(Duration::from_secs(30))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn client_stacks_on_a_channel_fail_with_the_right_status() {
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    let service = Reporter::default();
    let calls = Arc::clone(&service.calls);
    grpc::spawn_plain(listener, service);

    // An open breaker: UNAVAILABLE with the pushback, not Unknown, and nothing is sent.
    let breaker = CircuitBreakerLayer::builder()
        .failure_threshold(1)
        .open_for(Duration::from_secs(7))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut client = DemoClient::new(
        ServiceBuilder::new()
            .layer(breaker)
            .service(grpc::channel(addr)),
    );
    let status = client.flaky(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "the server's own answer");
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "opened by a gRPC UNAVAILABLE"
    );
    let status = client.flaky(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        retry_pushback(status.metadata().as_ref()),
        Some(Duration::from_secs(7))
    );
    assert!(matches!(
        status.source().and_then(Rejection::find),
        Some(Rejection::CircuitOpen(_))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A waiting limiter that gave up: RESOURCE_EXHAUSTED.
    let limiter = RateLimitLayer::per_second(1)
        .burst(1)
        .wait(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut client = DemoClient::new(
        ServiceBuilder::new()
            .layer(limiter)
            .service(grpc::channel(addr)),
    );
    client.hello(hello()).await.unwrap();
    let status = client.hello(hello()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(retry_pushback(status.metadata().as_ref()).is_some());

    // A spent budget: DEADLINE_EXCEEDED, without sending.
    let mut client = DemoClient::new(
        ServiceBuilder::new()
            .layer(PropagateDeadlineLayer::new())
            .service(grpc::channel(addr)),
    );
    let spent = Context::new().with_deadline(Deadline::after(Duration::from_millis(3)));
    let status = context::scope(spent, client.hello(hello()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

/// The first hop: its `Hello` asks the second hop, through a deadline-propagating channel.
#[derive(Clone)]
struct Relay {
    next: DemoClient<tower_rampart::timeout::PropagateDeadline<tonic::transport::Channel>>,
}

#[tonic::async_trait]
impl Demo for Relay {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        self.next.clone().hello(request.into_inner()).await
    }

    async fn slow(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn flaky(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("no"))
    }
}

/// Serves `service` behind a timeout of 10 s that honours the caller's `grpc-timeout`.
async fn serve_with_timeout<S: Demo>(service: S) -> std::net::SocketAddr {
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new())
                    .rejection_response()
                    .layer(TimeoutLayer::new(Duration::from_secs(10)).unwrap()),
            )
            .add_service(DemoServer::new(service))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

#[tokio::test(start_paused = true)]
async fn a_deadline_crosses_two_hops() {
    let second = serve_with_timeout(Reporter::default()).await;
    let next = DemoClient::new(
        ServiceBuilder::new()
            .layer(PropagateDeadlineLayer::new())
            .service(grpc::channel(second)),
    );
    let first = serve_with_timeout(Relay { next }).await;
    let mut client = DemoClient::new(grpc::channel(first));
    let mut request = Request::new(hello());
    request.set_timeout(Duration::from_millis(800));
    let answer = client.hello(request).await.unwrap();
    // 800 ms sent; the first hop keeps 799 (its gRPC margin), sends 794 (the 5 ms
    // propagation margin); the second hop keeps 793. No time passes in paused time.
    assert_eq!(answer.get_ref().message, "Some(793)");
}

#[tokio::test(start_paused = true)]
async fn tonic_inside_an_axum_router_gets_grpc_refusals() {
    let config = grpc::Config::default();
    let slow = SlowOnly(config.slow_takes);
    let router = tonic::service::Routes::new(DemoServer::new(slow))
        .into_axum_router()
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new())
                .rejection_response()
                .layer(TimeoutLayer::new(Duration::from_millis(300)).unwrap()),
        );
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = DemoClient::new(grpc::channel(addr));
    let start = Instant::now();
    let status = assert_refused(client.slow(Empty {}).await, Code::DeadlineExceeded);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(status.message(), "deadline elapsed after 300 ms");
}

/// Only `Slow`, taking its time.
#[derive(Clone)]
struct SlowOnly(Duration);

#[tonic::async_trait]
impl Demo for SlowOnly {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("no"))
    }

    async fn slow(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        tokio::time::sleep(self.0).await;
        Ok(Response::new(Empty {}))
    }

    async fn flaky(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("no"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_callers_own_deadline_on_a_channel_is_deadline_exceeded() {
    // tonic's channel also holds the call to the grpc-timeout it sends, and would answer
    // CANCELLED "Timeout expired" in the same instant.
    let listener = loopback().await;
    let addr = listener.local_addr().unwrap();
    grpc::spawn_plain(listener, SlowOnly(Duration::from_secs(5)));
    let mut client = DemoClient::new(
        ServiceBuilder::new()
            .layer(PropagateDeadlineLayer::new())
            .service(grpc::channel(addr)),
    );
    let budget = Context::new().with_deadline(Deadline::after(Duration::from_millis(300)));
    let start = Instant::now();
    let status = context::scope(budget, client.slow(Empty {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(295));
}
