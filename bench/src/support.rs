//! Helpers shared by the benches: 2-thread timing for `iter_custom`, polling a future to
//! completion without a runtime, the HTTP baseline service, and failsafe's breaker behind a
//! Tower adapter, and the least a refuse-in-`call` concurrency limit must do.

// `iter_custom` times itself with the wall clock, which the crate's clock ban is not about.
#![allow(clippy::disallowed_types)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};

use std::time::{Duration, Instant as StdInstant};
use tower::Service;
use tower_rampart::BoxError;

/// Runs `per_thread(iters / 2)` on 2 OS threads released together; returns the slower
/// thread's time, so that `iters` calls took that long in all.
pub fn two_threads<F>(iters: u64, per_thread: F) -> Duration
where
    F: Fn(u64) + Send + Sync + 'static,
{
    let per_thread = Arc::new(per_thread);
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (f, barrier) = (Arc::clone(&per_thread), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let start = StdInstant::now();
                f(iters / 2);
                start.elapsed()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap()
}

/// Polls `fut` once with a no-op waker and returns its output; panics if it is pending.
pub fn ready_now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("future was expected to be ready"),
    }
}

/// Polls `fut` until it completes, spinning: for futures that wait on a lock another thread
/// holds for a moment (a no-op waker never wakes them).
pub fn spin_on<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::hint::spin_loop();
    }
}

/// The HTTP baseline: a bare `service_fn` that answers an empty `200`.
pub fn http_bare() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<()>, Infallible>>,
> + Clone {
    tower::service_fn(|_: http::Request<()>| std::future::ready(Ok(http::Response::new(()))))
}

/// failsafe's state machine as a Tower service: permission in `call`, verdict when the
/// future completes. No boxing, one `Arc` clone per call (as failsafe's own futures do).
#[allow(missing_debug_implementations)]
pub struct Failsafe<S, P> {
    inner: S,
    breaker: failsafe::StateMachine<P, ()>,
}

impl<S: Clone, P> Clone for Failsafe<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
        }
    }
}

impl<S, P, Req> Service<Req> for Failsafe<S, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: failsafe::FailurePolicy,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FailsafeFuture<S::Future, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if self.breaker.is_call_permitted() {
            FailsafeFuture {
                inner: Some(self.inner.call(req)),
                breaker: Some(self.breaker.clone()),
            }
        } else {
            FailsafeFuture {
                inner: None,
                breaker: None,
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Failsafe`]: reports the outcome to failsafe's state machine.
    #[allow(missing_debug_implementations)]
    pub struct FailsafeFuture<F, P> {
        #[pin]
        inner: Option<F>,
        breaker: Option<failsafe::StateMachine<P, ()>>,
    }
}

impl<F, T, E, P> Future for FailsafeFuture<F, P>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    P: failsafe::FailurePolicy,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err("circuit open".into()));
        };
        let result = std::task::ready!(inner.poll(cx)).map_err(Into::into);
        if let Some(breaker) = this.breaker.take() {
            match &result {
                Ok(_) => breaker.on_success(),
                Err(_) => breaker.on_error(),
            }
        }
        Poll::Ready(result)
    }
}

/// `inner` behind failsafe's breaker: 5 consecutive failures open it for an hour.
pub fn failsafe_layer<S>(
    inner: S,
) -> Failsafe<S, impl failsafe::FailurePolicy + Send + Sync + 'static> {
    let policy = failsafe::failure_policy::consecutive_failures(
        5,
        failsafe::backoff::constant(Duration::from_secs(3_600)),
    );
    Failsafe {
        inner,
        breaker: failsafe::Config::new().failure_policy(policy).build(),
    }
}

/// A `redis-server` of the benchmarks' own on a free loopback port, stopped when dropped.
#[derive(Debug)]
pub struct OwnRedis(std::process::Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `$REDIS_URL`, or the URL of a `redis-server` started here (without persistence).
///
/// # Panics
///
/// Without `REDIS_URL` and without `redis-server` on the `PATH`.
// Waits for a process to start, outside any runtime.
#[allow(clippy::disallowed_methods)]
pub fn redis_url() -> (String, Option<OwnRedis>) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return (url, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("REDIS_URL, or redis-server on the PATH");
    let own = OwnRedis(child);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (format!("redis://127.0.0.1:{port}"), Some(own))
}

/// The least a concurrency limit that refuses in `call` and holds its slot until the
/// response body ends must do: one compare-and-swap, one `Arc` clone, a body wrapper that
/// gives the slot back when dropped. No priorities, no metrics, no adaptive limit.
///
/// `SlotFloor<S, tokio::time::Instant>` (from [`timed`](Self::timed)) adds the least an
/// adaptive limit must add: tokio's clock read when the call starts and when its answer is
/// ready, the latency counted (one atomic add).
#[derive(Clone, Debug)]
pub struct SlotFloor<S, T = ()> {
    inner: S,
    in_flight: Arc<std::sync::atomic::AtomicU64>,
    limit: u64,
    _stamp: std::marker::PhantomData<fn() -> T>,
}

impl<S> SlotFloor<S> {
    /// `inner` held to `limit` calls in flight.
    pub fn new(inner: S, limit: u64) -> Self {
        Self {
            inner,
            in_flight: Arc::default(),
            limit,
            _stamp: std::marker::PhantomData,
        }
    }

    /// Also times each call, as an adaptive limit must.
    pub fn timed(self) -> SlotFloor<S, tokio::time::Instant> {
        SlotFloor {
            inner: self.inner,
            in_flight: self.in_flight,
            limit: self.limit,
            _stamp: std::marker::PhantomData,
        }
    }
}

/// What [`SlotFloor`] notes when a call starts, and does with it when the answer is ready.
pub trait Stamp: Copy {
    /// Taken when the call is admitted.
    fn now() -> Self;
    /// Called when the answer is ready.
    fn sample(self);
}

impl Stamp for () {
    fn now() -> Self {}
    fn sample(self) {}
}

impl Stamp for tokio::time::Instant {
    fn now() -> Self {
        tokio::time::Instant::now()
    }

    fn sample(self) {
        // Where the latency goes: one counter stands in for a histogram bucket.
        static LATENCY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let latency = tokio::time::Instant::now().saturating_duration_since(self);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        LATENCY.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A slot of [`SlotFloor`], given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<std::sync::atomic::AtomicU64>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Release);
    }
}

impl<S, T: Stamp, Req, B> Service<Req> for SlotFloor<S, T>
where
    S: Service<Req, Response = http::Response<B>>,
{
    type Response = http::Response<SlotBody<B>>;
    type Error = Option<S::Error>;
    type Future = SlotFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Some)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let limit = self.limit;
        let taken = self
            .in_flight
            .fetch_update(
                std::sync::atomic::Ordering::Acquire,
                std::sync::atomic::Ordering::Relaxed,
                |n| (n < limit).then_some(n + 1),
            )
            .is_ok();
        SlotFuture {
            slot: taken.then(|| Slot(Arc::clone(&self.in_flight))),
            start: T::now(),
            inner: taken.then(|| self.inner.call(req)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SlotFloor`]: `Err(None)` when refused.
    pub struct SlotFuture<F, T> {
        #[pin]
        inner: Option<F>,
        slot: Option<Slot>,
        start: T,
    }
}

impl<F, T: Stamp, B, E> Future for SlotFuture<F, T>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<SlotBody<B>>, Option<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(None));
        };
        let response = std::task::ready!(inner.poll(cx)).map_err(Some)?;
        this.start.sample();
        let slot = this.slot.take();
        Poll::Ready(Ok(response.map(|inner| SlotBody { inner, _slot: slot })))
    }
}

pin_project_lite::pin_project! {
    /// A response body holding its [`Slot`].
    pub struct SlotBody<B> {
        #[pin]
        inner: B,
        _slot: Option<Slot>,
    }
}

impl<B: http_body::Body> http_body::Body for SlotBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }
}
