//! Helpers shared by the black-box tests. Each test binary uses a subset of them.
#![allow(dead_code, unreachable_pub)]

pub mod alloc;
mod poll;

#[allow(unused_imports)] // not every test binary polls by hand
pub(crate) use poll::ready_now;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service};
use tower_rampart::error::{CircuitOpen, PartFailed, RateLimited, TimedOut};
use tower_rampart::{BoxError, Rejection};

/// A stand-in for a rampart layer: rejects when the request carries `x-reject`
/// (`rate`, `open`, `timeout`, `part`, or anything else for a plain error), and otherwise
/// calls the inner service.
#[derive(Clone, Copy, Debug, Default)]
pub struct RejectOnHeaderLayer;

impl<S> Layer<S> for RejectOnHeaderLayer {
    type Service = RejectOnHeader<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RejectOnHeader { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RejectOnHeader<S> {
    inner: S,
}

pub fn rejection_for(kind: &str) -> BoxError {
    match kind {
        "rate" => Rejection::from(
            RateLimited::new(Duration::from_millis(200))
                .with_quota("default", 20, Duration::from_millis(400))
                .with_remaining(0, Duration::from_millis(400)),
        )
        .into(),
        "open" => Rejection::from(CircuitOpen::new(Duration::from_millis(9_100))).into(),
        "timeout" => Rejection::from(TimedOut::new(Duration::from_millis(300))).into(),
        "part" => Rejection::from(PartFailed::new("core", "connection refused")).into(),
        other => format!("database password is hunter2 ({other})").into(),
    }
}

impl<S, B> Service<Request<B>> for RejectOnHeader<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match req
            .headers()
            .get("x-reject")
            .map(|v| v.to_str().unwrap_or("?").to_owned())
        {
            Some(kind) => Box::pin(async move { Err(rejection_for(&kind)) }),
            None => {
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}

/// Serves `app` on `127.0.0.1:0` in a background task and returns its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server");
    });
    addr
}

/// A response read to the end: status, headers and body bytes.
#[derive(Debug)]
pub struct Reply {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends `GET path` to `addr` over a real hyper client with the given headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = client
        .request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

/// Events captured by [`capture_events`]: `(level, message)`.
pub type Events = std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>;

/// Runs `f` with a thread-local subscriber that records every event's level and message.
pub fn capture_events<R>(f: impl FnOnce() -> R) -> (R, Vec<(tracing::Level, String)>) {
    use tracing_subscriber::layer::SubscriberExt;

    struct Capture(Events);
    struct Message<'a>(&'a mut String);
    impl tracing::field::Visit for Message<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut message = String::new();
            event.record(&mut Message(&mut message));
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), message));
        }
    }

    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(Capture(events.clone()));
    let out = tracing::subscriber::with_default(subscriber, f);
    let captured = events.lock().unwrap().clone();
    (out, captured)
}

/// Everything this test binary logged, as text: a global fmt subscriber at TRACE installed on
/// first use, writing into memory. Global because tracing caches each callsite's interest
/// process-wide: with a thread-local subscriber, a test on another thread that reached a
/// callsite first can make it look disabled.
pub fn global_logs() -> String {
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    static LOGS: OnceLock<Captured> = OnceLock::new();
    let captured = LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .init();
        captured
    });
    String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned()
}

/// A header value as hyper hands one over: a slice of a shared read buffer, so cloning it
/// copies nothing.
pub fn shared_header(text: &str) -> http::HeaderValue {
    let mut buf = bytes::BytesMut::from(text.as_bytes());
    http::HeaderValue::from_maybe_shared(buf.split().freeze()).unwrap()
}

/// Heap allocations per request made by `svc` answering 100 requests from `make` (each
/// ready at once), after one warm-up call (so one-time set-up, such as thread-locals or an
/// RNG, is not counted), without a tracing subscriber (a test binary's global one would add
/// the spans' own allocations).
pub fn allocations_per_request<S>(mut svc: S, make: &dyn Fn() -> Request<()>) -> f64
where
    S: Service<Request<()>, Error = Infallible>,
{
    drop(ready_now(svc.call(make())));
    let requests: Vec<_> = (0..100).map(|_| make()).collect();
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    // Room made outside the count: a `collect` would reuse the requests' allocation or not
    // depending on the response's size, and count that as the stack's.
    let mut responses = Vec::with_capacity(requests.len());
    let ((), allocations) = alloc::count(|| {
        for req in requests {
            responses.push(ready_now(svc.call(req)).unwrap());
        }
    });
    drop(responses);
    allocations as f64 / 100.0
}
