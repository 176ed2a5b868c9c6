//! Helpers shared by the benches: 2-thread timing for `iter_custom`, polling a future to
//! completion without a runtime, and the HTTP baseline service.

// Each bench uses some of these; `iter_custom` times itself with the wall clock, which the
// crate's clock ban is not about.
#![allow(dead_code, clippy::disallowed_types)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant as StdInstant};

/// Runs `per_thread(iters / 2)` on 2 OS threads released together; returns the slower
/// thread's time, so that `iters` calls took that long in all.
pub(crate) fn two_threads<F>(iters: u64, per_thread: F) -> Duration
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

/// Polls `fut` until it completes, spinning: for futures that wait on a lock another thread
/// holds for a moment (a no-op waker never wakes them).
pub(crate) fn spin_on<F: Future>(fut: F) -> F::Output {
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
pub(crate) fn http_bare() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<()>, Infallible>>,
> + Clone {
    tower::service_fn(|_: http::Request<()>| std::future::ready(Ok(http::Response::new(()))))
}
