//! [`Fixed`] and [`Adaptive`]: what a load shedder does around each call besides taking a
//! slot. Chosen by type, so that a fixed limit's futures and bodies carry nothing for the
//! adaptive one and its calls are never timed.

use std::time::Duration;

use http_body::Frame;

use crate::BoxError;
use crate::answer::Answer;

use super::adaptive::Signal;
use super::limit::Gate;

/// How a load shedder's limit is set: [`Fixed`] or [`Adaptive`]. Sealed.
pub trait Mode: private::Mode {}

impl<M: private::Mode> Mode for M {}

/// A limit set once, with
/// [`max_in_flight`](super::LoadShedBuilder::max_in_flight): the default. Calls are not
/// timed and their results are not read.
///
/// ```
/// use tower_rampart::load_shed::{Fixed, LoadShedLayer};
///
/// let layer: LoadShedLayer<_, Fixed> = LoadShedLayer::builder().max_in_flight(16).build()?;
/// assert_eq!(layer.limit(), 16);
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Fixed;

/// A limit that moves with the load, chosen with
/// [`adaptive`](super::LoadShedBuilder::adaptive): each call is timed and its result read
/// (see [`AdaptiveLimit`](super::AdaptiveLimit)).
///
/// ```
/// use tower_rampart::load_shed::{Adaptive, AdaptiveLimit, LoadShedLayer};
///
/// let layer: LoadShedLayer<_, Adaptive> =
///     LoadShedLayer::builder().adaptive(AdaptiveLimit::new().initial(8)).build()?;
/// assert_eq!(layer.limit(), 8);
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Adaptive;

pub(crate) mod private {
    use super::*;

    pub trait Mode: Copy + Send + Sync + 'static {
        /// What an admitted call keeps until its answer: nothing, or its [`Timing`].
        type Start: Copy + Send + Sync + 'static;
        /// What an admitted answer's body keeps until it ends: nothing, or when a gRPC call
        /// whose status comes in the trailers started.
        type Deferred: Copy + Send + Sync + 'static;
        /// Nothing deferred.
        const NOTHING: Self::Deferred;

        /// How long a call has left and what calls take now, when the call's deadline is
        /// nearer than that (it would only time out).
        fn too_late(gate: &Gate) -> Option<(Duration, Duration)>;

        /// Notes an admitted call: what is in flight now, and when and what it started.
        fn start<B>(gate: &Gate, req: &http::Request<B>) -> Self::Start;

        /// Judges an answered call, or defers it to the end of the body.
        fn answered<B>(
            gate: &Gate,
            start: Self::Start,
            result: &Result<http::Response<B>, BoxError>,
        ) -> Self::Deferred;

        /// Judges a deferred call at the frame that ends its body (`None`: the body ended).
        fn frame<D, E>(
            gate: &Gate,
            deferred: &mut Self::Deferred,
            frame: Option<&Result<Frame<D>, E>>,
        );
    }

    /// When an adaptive shedder admitted a call, and whether it is a gRPC one.
    #[derive(Clone, Copy, Debug)]
    pub struct Timing {
        at: tokio::time::Instant,
        grpc: bool,
    }

    impl Mode for Fixed {
        type Start = ();
        type Deferred = ();
        const NOTHING: Self::Deferred = ();

        #[inline]
        fn too_late(_: &Gate) -> Option<(Duration, Duration)> {
            None
        }

        #[inline]
        fn start<B>(_: &Gate, _: &http::Request<B>) {}

        #[inline]
        fn answered<B>(_: &Gate, (): (), _: &Result<http::Response<B>, BoxError>) {}

        #[inline]
        fn frame<D, E>(_: &Gate, (): &mut (), _: Option<&Result<Frame<D>, E>>) {}
    }

    impl Mode for Adaptive {
        type Start = Timing;
        type Deferred = Option<tokio::time::Instant>;
        const NOTHING: Self::Deferred = None;

        #[inline]
        fn too_late(gate: &Gate) -> Option<(Duration, Duration)> {
            let typical = gate.controller.as_ref()?.typical()?;
            let left = crate::context::current_deadline()?.remaining();
            (left < typical).then_some((left, typical))
        }

        #[inline]
        fn start<B>(gate: &Gate, req: &http::Request<B>) -> Timing {
            if let Some(controller) = &gate.controller {
                controller.admitted(gate.in_flight());
            }
            Timing {
                at: tokio::time::Instant::now(),
                // A gRPC status may come in the trailers; only HTTP/2 carries gRPC.
                grpc: req.version() == http::Version::HTTP_2 && crate::grpc::is_grpc(req.headers()),
            }
        }

        #[inline]
        fn answered<B>(
            gate: &Gate,
            start: Timing,
            result: &Result<http::Response<B>, BoxError>,
        ) -> Option<tokio::time::Instant> {
            // A gRPC answer without its status in the headers is judged at its trailers.
            let answer = match result {
                Ok(response) => Answer::of_response(response, start.grpc),
                Err(error) => Some(Answer::of_error(error)),
            };
            match answer {
                Some(answer) => {
                    ended(gate, answer, start.at);
                    None
                }
                None => Some(start.at),
            }
        }

        #[inline]
        fn frame<D, E>(
            gate: &Gate,
            deferred: &mut Option<tokio::time::Instant>,
            frame: Option<&Result<Frame<D>, E>>,
        ) {
            let Some(start) = *deferred else {
                return;
            };
            // The call's status: in the trailers, or none (an error, or a body that ended
            // without one).
            let code = match frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => crate::grpc::status_code(trailers),
                    None => return,
                },
                Some(Err(_)) | None => None,
            };
            *deferred = None;
            ended(gate, Answer::of_grpc(code), start);
        }
    }
}

/// Reports the end of an adaptive shedder's call admitted at `start`, with its answer (the
/// clock's second and last read for the call), and moves the limit when it closes a window.
#[inline]
fn ended(gate: &Gate, answer: Answer, start: tokio::time::Instant) {
    let end = tokio::time::Instant::now();
    let latency = crate::clock::duration_nanos(end.saturating_duration_since(start));
    if let Some(closed) = gate
        .controller
        .as_ref()
        .and_then(|controller| controller.complete(signal(answer, latency), end))
    {
        window_closed(gate, closed);
    }
}

/// Moves the limit as a window closes, and says so: once a window, not once a call.
#[cold]
#[inline(never)]
fn window_closed(gate: &Gate, closed: super::adaptive::Closed) {
    let before = gate.limit();
    gate.set_limit(closed.limit);
    let window = closed.window;
    if let Some(controller) = &gate.controller {
        controller.gauges.set(
            closed.limit,
            window.max_in_flight,
            window.p90,
            closed.state.baseline,
        );
    }
    if closed.limit != before {
        tracing::debug!(
            load_shed.name = gate.name,
            load_shed.limit = closed.limit,
            load_shed.previous = before,
            load_shed.p90_ms = window.p90 as f64 / 1e6,
            load_shed.baseline_ms = closed.state.baseline / 1e6,
            load_shed.overloads = window.overloads,
            load_shed.slow_start = closed.state.slow_start,
            "load shedder limit changed"
        );
    }
    if closed.overload_began {
        tracing::info!(
            load_shed.name = gate.name,
            load_shed.limit = closed.limit,
            load_shed.p90_ms = window.p90 as f64 / 1e6,
            load_shed.baseline_ms = closed.state.baseline / 1e6,
            load_shed.overloads = window.overloads,
            "load shedder sees overload; lowering its limit"
        );
    } else if closed.overload_ended {
        tracing::info!(
            load_shed.name = gate.name,
            load_shed.limit = closed.limit,
            "load shedder no longer sees overload"
        );
    }
}

/// What an answer says about load (see [`AdaptiveLimit`](super::AdaptiveLimit)): the
/// circuit breaker's reading of answers, each to its own end.
#[inline]
fn signal(answer: Answer, latency: u64) -> Signal {
    match answer {
        Answer::Ok => Signal::Latency(latency),
        Answer::TooManyRequests
        | Answer::ResourceExhausted
        | Answer::Unavailable
        | Answer::TimedOut
        | Answer::Refused => Signal::Overload,
        // The request's fault, the handler's own failure, or a caller that went away.
        Answer::Rejected | Answer::Failed | Answer::Cancelled => Signal::Neutral,
    }
}
