//! [`QueueingLoadShedLayer`]: a load shedder that lets a few calls wait a little for a slot.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::error::ConfigError;
use crate::sync::{Arc, Ordering};

use super::limit::{Gate, Priority};
use super::mode::{Fixed, Mode};
use super::service::{LoadShedLayer, PermitBody, Prioritize, ResponseFuture};

impl<Pr, M> LoadShedLayer<Pr, M> {
    /// Lets up to `size` calls that find no free slot wait for one, each for at most
    /// `max_wait`, instead of being refused at once: for client stacks, where a short wait
    /// is better than an error, and for smoothing bursts. A call that still finds no slot
    /// after `max_wait`, or finds the queue full, is refused as usual. Waiting calls take
    /// slots as they free up; a new call may take a freed slot first.
    ///
    /// The queue is bounded on purpose: an unbounded one is the overload this layer exists
    /// to prevent.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a `size` of 0 or over 100 000, or a `max_wait` of zero or over
    /// a minute.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::load_shed::LoadShedLayer;
    ///
    /// let layer = LoadShedLayer::builder()
    ///     .max_in_flight(8)
    ///     .build()?
    ///     .queue(16, Duration::from_millis(50))?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn queue(
        self,
        size: u64,
        max_wait: Duration,
    ) -> Result<QueueingLoadShedLayer<Pr, M>, ConfigError> {
        if size == 0 || size > 100_000 {
            return Err(ConfigError::new("queue", "size must be 1 to 100 000"));
        }
        if max_wait.is_zero() || max_wait > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "queue",
                "max_wait must be more than zero and at most a minute",
            ));
        }
        Ok(QueueingLoadShedLayer {
            shed: self,
            size,
            max_wait,
        })
    }
}

/// A [`LoadShedLayer`] with a bounded wait queue, made by [`LoadShedLayer::queue`].
pub struct QueueingLoadShedLayer<Pr = super::AllNormal, M = Fixed> {
    shed: LoadShedLayer<Pr, M>,
    size: u64,
    max_wait: Duration,
}

impl<Pr: Clone, M: Copy> Clone for QueueingLoadShedLayer<Pr, M> {
    fn clone(&self) -> Self {
        Self {
            shed: self.shed.clone(),
            size: self.size,
            max_wait: self.max_wait,
        }
    }
}

impl<Pr: fmt::Debug, M> fmt::Debug for QueueingLoadShedLayer<Pr, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueingLoadShedLayer")
            .field("shed", &self.shed)
            .field("size", &self.size)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl<S, Pr: Clone, M: Copy> Layer<S> for QueueingLoadShedLayer<Pr, M> {
    type Service = QueueingLoadShed<S, Pr, M>;

    fn layer(&self, inner: S) -> Self::Service {
        QueueingLoadShed {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`QueueingLoadShedLayer`]. Needs `S: Clone`: a waiting call takes
/// the ready service with it.
pub struct QueueingLoadShed<S, Pr = super::AllNormal, M = Fixed> {
    inner: S,
    layer: QueueingLoadShedLayer<Pr, M>,
}

impl<S: Clone, Pr: Clone, M: Copy> Clone for QueueingLoadShed<S, Pr, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, Pr: fmt::Debug, M> fmt::Debug for QueueingLoadShed<S, Pr, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueingLoadShed")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// A place in the queue, given back when dropped.
struct InQueue {
    gate: Arc<Gate>,
}

impl Drop for InQueue {
    fn drop(&mut self) {
        self.gate.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, B, ResBody, Pr, M> Service<http::Request<B>> for QueueingLoadShed<S, Pr, M>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    Pr: Prioritize<http::Request<B>>,
    M: Mode,
{
    type Response = http::Response<PermitBody<ResBody, M>>;
    type Error = BoxError;
    type Future = QueueFuture<S, http::Request<B>, Pr, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shed = &self.layer.shed;
        let priority = shed.priority_of(&req);
        if let Some(too_late) = shed.too_late(priority) {
            return QueueFuture::running(too_late);
        }
        let gate = shed.gate();
        if let Some(permit) = Gate::try_acquire(gate, priority) {
            return QueueFuture::running(shed.admit(permit, req, |req| self.inner.call(req)));
        }
        let queued = gate
            .waiters
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.layer.size).then_some(n + 1)
            })
            .is_ok();
        if !queued {
            return QueueFuture::running(shed.shed(priority));
        }
        let place = InQueue {
            gate: Arc::clone(gate),
        };
        // The ready service goes with the waiting call; a clone takes its place.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        QueueFuture {
            state: State::Waiting {
                freed: std::sync::Arc::clone(&gate.freed).notified_owned(),
                until: tokio::time::sleep(self.layer.max_wait),
                waiting: Some(Waiting {
                    inner: ready,
                    req,
                    place,
                    priority,
                    layer: self.layer.shed.clone(),
                }),
            },
        }
    }
}

/// What a waiting call keeps until it has a slot.
struct Waiting<S, Req, Pr, M> {
    inner: S,
    req: Req,
    place: InQueue,
    priority: Priority,
    layer: LoadShedLayer<Pr, M>,
}

pin_project_lite::pin_project! {
    /// The future of a [`QueueingLoadShed`] call: waiting for a slot, then the call.
    pub struct QueueFuture<S: Service<Req>, Req, Pr, M: Mode = Fixed> {
        #[pin]
        state: State<S, Req, Pr, M>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S: Service<Req>, Req, Pr, M: Mode> {
        Waiting {
            #[pin]
            freed: tokio::sync::futures::OwnedNotified,
            #[pin]
            until: tokio::time::Sleep,
            waiting: Option<Waiting<S, Req, Pr, M>>,
        },
        Running { #[pin] future: ResponseFuture<S::Future, M> },
    }
}

impl<S: Service<Req>, Req, Pr, M: Mode> QueueFuture<S, Req, Pr, M> {
    fn running(future: ResponseFuture<S::Future, M>) -> Self {
        Self {
            state: State::Running { future },
        }
    }
}

impl<S: Service<Req>, Req, Pr, M: Mode> fmt::Debug for QueueFuture<S, Req, Pr, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
        };
        f.debug_struct("QueueFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, B, ResBody, Pr, M> Future for QueueFuture<S, http::Request<B>, Pr, M>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    M: Mode,
{
    type Output = Result<http::Response<PermitBody<ResBody, M>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Running { future } => return future.poll(cx),
                StateProj::Waiting {
                    mut freed,
                    until,
                    waiting,
                } => {
                    let w = waiting
                        .as_ref()
                        .expect("QueueFuture polled after completion");
                    let gate = Arc::clone(w.layer.gate());
                    if let Some(permit) = Gate::try_acquire(&gate, w.priority) {
                        let Waiting {
                            mut inner,
                            req,
                            place,
                            layer,
                            ..
                        } = waiting.take().expect("present");
                        drop(place);
                        State::Running {
                            future: layer.admit(permit, req, |req| inner.call(req)),
                        }
                    } else if freed.as_mut().poll(cx).is_ready() {
                        // A slot was freed: look again, with a fresh wake-up registered.
                        State::Waiting {
                            freed: std::sync::Arc::clone(&gate.freed).notified_owned(),
                            until: tokio::time::sleep_until(until.deadline()),
                            waiting: waiting.take(),
                        }
                    } else {
                        ready!(until.poll(cx));
                        let w = waiting.take().expect("present");
                        drop(w.place);
                        State::Running {
                            future: w.layer.shed(w.priority),
                        }
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}
