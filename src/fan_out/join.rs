//! Running the parts: one [`PartTask`] per part, joined in place by a future generated for
//! each number of parts (no spawn, no box).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::outcome::{Answers, MAX_PARTS, PartReport, PartResult, Status};
use super::part::{MapRequest, Part, PartFallback};
use crate::error::PartFailed;
use crate::oneshot::Oneshot;
use crate::timeout::Deadline;
use crate::timeout::future::timed_out;
use crate::{BoxError, Rejection, context};

/// One part's call as it runs: readiness then the call, with the part's deadline in scope
/// (for the part's own outbound layers). The deadline itself is enforced by the fan-out's
/// one timer, and the part's `fan_out.part` span is its task's.
pub(super) type PartFuture<S, R> = context::Scoped<Oneshot<S, R>, Option<Deadline>>;

pin_project_lite::pin_project! {
    /// One part of a running fan-out: its call, then its result.
    pub struct PartTask<F, T, Fb> {
        name: &'static str,
        essential: bool,
        deadline: Instant,
        budget: Duration,
        fallback: Fb,
        // Entered around every poll of the call; `None` when no subscriber wants it, so a
        // disabled span costs nothing at all.
        span: Option<tracing::Span>,
        #[pin]
        state: TaskState<F, T>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum TaskState<F, T> {
        Running { #[pin] call: F },
        Done { result: Option<PartResult<T>>, status: Status, fallback: bool },
    }
}

impl<F, T, Fb> fmt::Debug for PartTask<F, T, Fb> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartTask")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a part's error means for it.
fn status_of(err: &BoxError) -> Status {
    match Rejection::find(err.as_ref()) {
        Some(Rejection::TimedOut(_)) => Status::TimedOut,
        Some(rejection) if rejection.is_refusal() => Status::Rejected,
        _ => Status::Failed,
    }
}

impl<F, T, Fb> PartTask<F, T, Fb>
where
    F: Future<Output = Result<T, BoxError>>,
    Fb: PartFallback<T>,
{
    /// Drives the part; `Ready(Err)` when an essential part failed with no fallback.
    fn poll_part(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), PartFailed>> {
        let mut this = self.as_mut().project();
        let StateProj::Running { call } = this.state.as_mut().project() else {
            return Poll::Ready(Ok(()));
        };
        let polled = {
            let _entered = this.span.as_ref().map(tracing::Span::enter);
            call.poll(cx)
        };
        let Poll::Ready(answer) = polled else {
            return Poll::Pending;
        };
        Poll::Ready(self.end(answer.map_err(Some)))
    }

    /// Ends the part if it is still running at `now` and its deadline has come.
    fn expire(self: Pin<&mut Self>, now: Instant) -> Result<(), PartFailed> {
        match self.state {
            TaskState::Running { .. } if self.deadline <= now => self.end(Err(None)),
            _ => Ok(()),
        }
    }

    /// The deadline of a part still running.
    fn running_deadline(&self) -> Option<Instant> {
        matches!(self.state, TaskState::Running { .. }).then_some(self.deadline)
    }

    /// Records how the part ended: its answer, or `Err(None)` when it ran out of time.
    fn end(self: Pin<&mut Self>, answer: Result<T, Option<BoxError>>) -> Result<(), PartFailed> {
        let mut this = self.project();
        let (result, status, fallback) = match answer {
            Ok(value) => (PartResult::Ok(value), Status::Ok, false),
            Err(err) => {
                let status = err.as_ref().map_or(Status::TimedOut, status_of);
                crate::metrics::fan_out_degraded(this.name, status.as_str());
                tracing::debug!(
                    part = *this.name,
                    essential = *this.essential,
                    status = status.as_str(),
                    "fan-out part degraded"
                );
                match this.fallback.fallback() {
                    Some(value) => (PartResult::Fallback(value), status, true),
                    None if *this.essential => {
                        this.state.set(TaskState::Done {
                            result: None,
                            status,
                            fallback: false,
                        });
                        crate::metrics::fan_out_failed(this.name);
                        let cause = err.unwrap_or_else(|| timed_out(*this.budget));
                        return Err(PartFailed::new(*this.name, cause));
                    }
                    None => match err {
                        None => (PartResult::TimedOut, status, false),
                        Some(err) if status == Status::Rejected => {
                            (PartResult::Rejected(err), status, false)
                        }
                        Some(err) if status == Status::TimedOut => {
                            drop(err);
                            (PartResult::TimedOut, status, false)
                        }
                        Some(err) => (PartResult::Failed(err), status, false),
                    },
                }
            }
        };
        this.state.set(TaskState::Done {
            result: Some(result),
            status,
            fallback,
        });
        Ok(())
    }

    /// Drops the call if it is still running.
    fn cancel(self: Pin<&mut Self>) {
        let mut this = self.project();
        if let StateProj::Running { .. } = this.state.as_mut().project() {
            let status = Status::Cancelled;
            crate::metrics::fan_out_degraded(this.name, status.as_str());
            tracing::debug!(
                part = *this.name,
                status = status.as_str(),
                "fan-out part cancelled"
            );
            this.state.set(TaskState::Done {
                result: None,
                status,
                fallback: false,
            });
        }
    }

    /// The part's report (once it is done).
    fn report(&self) -> PartReport {
        let (status, fallback) = match &self.state {
            TaskState::Done {
                status, fallback, ..
            } => (*status, *fallback),
            TaskState::Running { .. } => (Status::Cancelled, false),
        };
        PartReport::new(self.name, self.essential, status, fallback)
    }

    /// Takes the part's result (once it is done).
    fn take(self: Pin<&mut Self>) -> PartResult<T> {
        match self.project().state.project() {
            StateProj::Done { result, .. } => result.take(),
            StateProj::Running { .. } => None,
        }
        .expect("a fan-out part's result is taken once, after it is done")
    }

    /// The part's failure as a rejection naming it, for a fan-out where no part answered.
    fn failure(self: Pin<&mut Self>) -> PartFailed {
        let (name, budget) = (self.name, self.budget);
        let cause: BoxError = match self.take() {
            PartResult::Rejected(err) | PartResult::Failed(err) => err,
            _ => timed_out(budget),
        };
        PartFailed::new(name, cause)
    }
}

impl<S, M, Fb> Part<S, M, Fb> {
    /// Starts this part's call for `req`, with `overall` as what remains of the fan-out's
    /// budget at `now`.
    fn start<Req>(
        &self,
        req: &Req,
        now: Instant,
        overall: Duration,
    ) -> PartTask<PartFuture<S, M::Request>, S::Response, Fb>
    where
        M: MapRequest<Req>,
        S: Service<M::Request> + Clone,
        S::Error: Into<BoxError>,
        Fb: Clone,
    {
        // Durations, not instants: one addition per part, no subtraction.
        let budget = self.timeout.map_or(overall, |limit| limit.min(overall));
        let deadline = Deadline::starting(now, budget);
        let call = Oneshot::new(self.service.clone(), self.map.map(req));
        // Checked first: with tracing's `log` feature on (axum's default) and no subscriber, a
        // disabled span still costs its hand-off to `log`, hundreds of instructions a part.
        let span = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            tracing::debug_span!("fan_out.part", part = self.name, essential = self.essential)
        });
        PartTask {
            name: self.name,
            essential: self.essential,
            deadline: deadline.instant(),
            budget,
            fallback: self.fallback.clone(),
            span,
            state: TaskState::Running {
                call: context::scoped(Some(deadline), call),
            },
        }
    }
}

/// The parts of a fan-out, a tuple of 1 to 8 [`Part`]s, for requests of type `Req`.
/// Sealed; implemented for the tuples [`FanOutBuilder`](super::FanOutBuilder) builds.
pub trait Parts<Req>: private::Parts<Req> {}

impl<Req, P: private::Parts<Req>> Parts<Req> for P {}

/// The parts added so far, in a [`FanOutBuilder`](super::FanOutBuilder). Sealed.
pub trait PartList: private::PartList {}

impl<P: private::PartList> PartList for P {}

pub(crate) mod private {
    use super::*;

    pub trait PartList {
        /// The list with `part` added at the end.
        type With<P>;
        fn with<P>(self, part: P) -> Self::With<P>;
        /// Each part's name and timeout.
        fn describe(&self) -> Vec<(&'static str, Option<Duration>)>;
    }

    pub trait Parts<Req> {
        /// Each part's [`PartResult`], in a tuple.
        type Output;
        /// The joined calls.
        type Future: Future<Output = Result<Answers<Self::Output>, Rejection>>;
        fn start(&self, req: &Req, now: Instant, overall: Duration) -> Self::Future;
    }
}

impl private::PartList for () {
    type With<P> = (P,);

    fn with<P>(self, part: P) -> (P,) {
        (part,)
    }

    fn describe(&self) -> Vec<(&'static str, Option<Duration>)> {
        Vec::new()
    }
}

pin_project_lite::pin_project! {
    /// The fan-out's one timer, armed only when a part is still running after a poll, and
    /// moved to the earliest deadline of the parts still running.
    #[project = TimerProj]
    enum Timer {
        Idle,
        Armed { #[pin] sleep: Sleep },
    }
}

impl Timer {
    /// Waits for `deadline`; `Ready` once it has come.
    fn poll_until(mut self: Pin<&mut Self>, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if let TimerProj::Idle = self.as_mut().project() {
            self.set(Timer::Armed {
                sleep: tokio::time::sleep_until(deadline),
            });
        }
        match self.project() {
            TimerProj::Armed { mut sleep } => {
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                sleep.poll(cx)
            }
            TimerProj::Idle => Poll::Pending,
        }
    }
}

macro_rules! join {
    ($join:ident, $n:literal; $($T:ident $S:ident $M:ident $F:ident $field:ident $idx:tt),+) => {
        pin_project_lite::pin_project! {
            /// The joined calls of a fan-out's parts, polled in place in the caller's task,
            /// with one timer for all their deadlines.
            pub struct $join<$($T),+> {
                // When the fan-out was called: parts whose deadline had already passed end
                // before their first poll.
                started: Option<Instant>,
                #[pin]
                timer: Timer,
                $( #[pin] $field: $T, )+
            }
        }

        impl<$($T),+> fmt::Debug for $join<$($T),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($join)).finish_non_exhaustive()
            }
        }

        impl<$($S, $M, $F),+> private::PartList for ($(Part<$S, $M, $F>,)+) {
            type With<P> = ($(Part<$S, $M, $F>,)+ P,);

            fn with<P>(self, part: P) -> Self::With<P> {
                ($(self.$idx,)+ part,)
            }

            fn describe(&self) -> Vec<(&'static str, Option<Duration>)> {
                vec![$((self.$idx.name, self.$idx.timeout)),+]
            }
        }

        impl<Req, $($S, $M, $F),+> private::Parts<Req> for ($(Part<$S, $M, $F>,)+)
        where
            $(
                $M: MapRequest<Req>,
                $S: Service<$M::Request> + Clone,
                $S::Error: Into<BoxError>,
                $F: PartFallback<$S::Response>,
            )+
        {
            type Output = ($(PartResult<$S::Response>,)+);
            type Future = $join<$(PartTask<PartFuture<$S, $M::Request>, $S::Response, $F>),+>;

            fn start(&self, req: &Req, now: Instant, overall: Duration) -> Self::Future {
                $join {
                    started: Some(now),
                    timer: Timer::Idle,
                    $( $field: self.$idx.start(req, now, overall), )+
                }
            }
        }

        impl<$($T, $F, $M),+> Future for $join<$(PartTask<$T, $F, $M>),+>
        where
            $(
                $T: Future<Output = Result<$F, BoxError>>,
                $M: PartFallback<$F>,
            )+
        {
            type Output = Result<Answers<($(PartResult<$F>,)+)>, Rejection>;

            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
                let mut this = self.project();
                let mut failed = None;
                if let Some(started) = this.started.take() {
                    $(
                        if failed.is_none() {
                            failed = this.$field.as_mut().expire(started).err();
                        }
                    )+
                }
                loop {
                    let mut next: Option<Instant> = None;
                    $(
                        if failed.is_none() {
                            if let Poll::Ready(Err(part)) = this.$field.as_mut().poll_part(cx) {
                                failed = Some(part);
                            }
                            if let Some(deadline) = this.$field.running_deadline() {
                                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                            }
                        }
                    )+
                    if let Some(part) = failed {
                        // Decided: the other parts are dropped now, not when the caller
                        // drops this future.
                        $( this.$field.as_mut().cancel(); )+
                        return Poll::Ready(Err(Rejection::PartFailed(part)));
                    }
                    let Some(next) = next else { break };
                    if this.timer.as_mut().poll_until(next, cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The earliest deadline has come: end the parts it belongs to, then look
                    // again (the others may have answered meanwhile).
                    $(
                        if failed.is_none() {
                            failed = this.$field.as_mut().expire(next).err();
                        }
                    )+
                }
                let mut reports = [PartReport::EMPTY; MAX_PARTS];
                $( reports[$idx] = this.$field.report(); )+
                let reports_len = $n;
                let none_essential = reports[..reports_len].iter().all(|r| !r.is_essential());
                let none_answered = reports[..reports_len]
                    .iter()
                    .all(|r| r.is_degraded() && !r.used_fallback());
                if none_essential && none_answered {
                    // Nothing to show: the caller gets the first part's error, not an empty
                    // success.
                    crate::metrics::fan_out_failed(reports[0].name());
                    let [first, ..] = [$(this.$field.failure()),+];
                    return Poll::Ready(Err(Rejection::PartFailed(first)));
                }
                let parts = ($(this.$field.as_mut().take(),)+);
                Poll::Ready(Ok(Answers::new(parts, reports, reports_len)))
            }
        }
    };
}

join!(Join1, 1; A0 S0 M0 F0 p0 0);
join!(Join2, 2; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1);
join!(Join3, 3; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1, A2 S2 M2 F2 p2 2);
join!(Join4, 4; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1, A2 S2 M2 F2 p2 2, A3 S3 M3 F3 p3 3);
join!(Join5, 5; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1, A2 S2 M2 F2 p2 2, A3 S3 M3 F3 p3 3,
    A4 S4 M4 F4 p4 4);
join!(Join6, 6; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1, A2 S2 M2 F2 p2 2, A3 S3 M3 F3 p3 3,
    A4 S4 M4 F4 p4 4, A5 S5 M5 F5 p5 5);
join!(Join7, 7; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1, A2 S2 M2 F2 p2 2, A3 S3 M3 F3 p3 3,
    A4 S4 M4 F4 p4 4, A5 S5 M5 F5 p5 5, A6 S6 M6 F6 p6 6);
join!(Join8, 8; A0 S0 M0 F0 p0 0, A1 S1 M1 F1 p1 1, A2 S2 M2 F2 p2 2, A3 S3 M3 F3 p3 3,
    A4 S4 M4 F4 p4 4, A5 S5 M5 F5 p5 5, A6 S6 M6 F6 p6 6, A7 S7 M7 F7 p7 7);
