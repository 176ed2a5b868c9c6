//! The gRPC example service and its stack, shared by `examples/grpc_server.rs` (which serves
//! it) and `tests/grpc.rs` (which drives it with a real tonic client over loopback).
//!
//! `rampart.example.Demo` (`examples/proto/demo.proto`):
//!
//! | method | what it shows |
//! |---|---|
//! | `Hello` | a plain answer with `x-request-id`; over 50 calls per second per peer (20 at once): `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms` |
//! | `Slow` | a 5 s handler behind the 1 s limit: `DEADLINE_EXCEEDED` after 1 s, or after the caller's `grpc-timeout` if sooner |
//! | `Flaky` | calls an upstream gRPC server that always answers `UNAVAILABLE`, through a client circuit breaker: the upstream's `UNAVAILABLE` 5 times, then `UNAVAILABLE` with `grpc-retry-pushback-ms` from the open breaker for 10 s, without calling it |
//!
//! The server stack, outermost first: request id, rejection mapping (gRPC requests get
//! Trailers-Only answers), timeout (honouring `grpc-timeout`), per-peer rate limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;
use tower_rampart::ServiceBuilderExt;
use tower_rampart::circuit_breaker::{CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer};
use tower_rampart::rate_limit::{PeerIp, RateLimitLayer};
use tower_rampart::request_id::SetRequestIdLayer;
use tower_rampart::timeout::{PropagateDeadline, PropagateDeadlineLayer, TimeoutLayer};

/// The code `tonic-prost-build` generated from `examples/proto/demo.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod proto {
    include!("../proto/rampart.example.rs");
}

use proto::demo_client::DemoClient;
use proto::demo_server::{Demo, DemoServer};
use proto::{Empty, HelloReply, HelloRequest};

/// What the tests may change; `Config::default()` is what the example serves.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Each call's time limit (callers may ask for less). Default: 1 s.
    pub(crate) request_timeout: Duration,
    /// How long `Slow` takes. Default: 5 s.
    pub(crate) slow_takes: Duration,
    /// How long `Flaky`'s breaker stays open before it probes the upstream. Default: 10 s.
    pub(crate) flaky_open_for: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(1),
            slow_takes: Duration::from_secs(5),
            flaky_open_for: Duration::from_secs(10),
        }
    }
}

/// The client stack `Flaky` calls its upstream through: a breaker over a deadline-propagating
/// channel.
type UpstreamStack = CircuitBreaker<PropagateDeadline<Channel>>;

/// The `Demo` service the example serves.
#[derive(Clone)]
pub(crate) struct DemoService {
    slow_takes: Duration,
    upstream: DemoClient<UpstreamStack>,
}

#[tonic::async_trait]
impl Demo for DemoService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("hello, {name}"),
        }))
    }

    async fn slow(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        tokio::time::sleep(self.slow_takes).await;
        Ok(Response::new(Empty {}))
    }

    async fn flaky(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        // The upstream's status, or the open breaker's (tonic finds it in the error).
        self.upstream.clone().flaky(Empty {}).await
    }
}

/// The upstream `Flaky` calls: every call answers `UNAVAILABLE`.
#[derive(Clone, Default)]
pub(crate) struct FailingUpstream {
    /// Calls that reached it.
    pub(crate) calls: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl Demo for FailingUpstream {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("the upstream only fails"))
    }

    async fn slow(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("the upstream only fails"))
    }

    async fn flaky(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::unavailable("the upstream is down"))
    }
}

/// A running example: where it listens and what the tests look into.
pub(crate) struct Running {
    /// The example's address.
    pub(crate) addr: SocketAddr,
    /// `Flaky`'s client breaker.
    pub(crate) flaky_breaker: CircuitBreakerHandle,
    /// How many calls reached `Flaky`'s upstream.
    pub(crate) upstream_calls: Arc<AtomicU64>,
}

/// Serves `service` on `listener` in a background task, with no rampart layer.
pub(crate) fn spawn_plain<S>(listener: TcpListener, service: S)
where
    S: Demo,
{
    tokio::spawn(
        Server::builder()
            .add_service(DemoServer::new(service))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
}

/// A channel to `addr`, connected on first use.
pub(crate) fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect_lazy()
}

/// Starts the failing upstream and the example server (on `listener`), both in background
/// tasks; `shutdown` stops the example server gracefully.
pub(crate) async fn start(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<
    (
        Running,
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ),
    Box<dyn std::error::Error>,
> {
    let upstream = FailingUpstream::default();
    let upstream_calls = Arc::clone(&upstream.calls);
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream_listener.local_addr()?;
    spawn_plain(upstream_listener, upstream);

    // The client stack: the breaker sees every gRPC status the upstream answers.
    let breaker = CircuitBreakerLayer::builder()
        .name("upstream")
        .failure_threshold(5)
        .open_for(config.flaky_open_for)
        .build()?;
    let flaky_breaker = breaker.handle();
    let upstream = ServiceBuilder::new()
        .layer(breaker)
        .layer(PropagateDeadlineLayer::new())
        .service(channel(upstream_addr));

    let service = DemoService {
        slow_takes: config.slow_takes,
        upstream: DemoClient::new(upstream),
    };
    // The server stack: request id → rejection mapping → timeout → per-peer rate limit.
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new())
        .rejection_response()
        .layer(TimeoutLayer::new(config.request_timeout)?)
        .layer(
            RateLimitLayer::per_second(50)
                .burst(20)
                .policy_name("per-peer")
                .with_key(PeerIp)
                .build()?,
        );
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .layer(stack)
        .add_service(DemoServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown);
    let task = tokio::spawn(server);
    Ok((
        Running {
            addr,
            flaky_breaker,
            upstream_calls,
        },
        task,
    ))
}
