//! Helpers shared by the benches: 2-thread timing for `iter_custom`, and polling a future to
//! completion without a runtime.

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
#[allow(dead_code)] // used by some benches only
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
