//! What a call's answer is, HTTP or gRPC, before a layer decides what that means to it: the
//! circuit breaker reads it as the health of what it calls, the adaptive load shedder as
//! load. Both read answers through this one table, so a status means the same to each.

use crate::grpc::code;
use crate::{BoxError, Rejection};

/// What one answer, or error, is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 1xx to 3xx; gRPC `OK`.
    Ok,
    /// 4xx but 429; gRPC codes that blame the request (`INVALID_ARGUMENT`, `NOT_FOUND`,
    /// `PERMISSION_DENIED`, `UNIMPLEMENTED`, ...).
    Rejected,
    /// HTTP 429.
    TooManyRequests,
    /// gRPC `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
    /// HTTP 503; gRPC `UNAVAILABLE`.
    Unavailable,
    /// HTTP 504; gRPC `DEADLINE_EXCEEDED`; a [`TimedOut`](Rejection::TimedOut) rejection.
    TimedOut,
    /// Any other 5xx; gRPC `UNKNOWN`, `INTERNAL`, `DATA_LOSS`; a gRPC answer without a
    /// status, or whose body failed; any error that is not a rejection of this crate.
    Failed,
    /// gRPC `CANCELLED`: the caller went away.
    Cancelled,
    /// A refusal by one of this crate's layers below: rate limited, circuit open, overloaded.
    Refused,
}

// Inlined always: a few compares on every call's hot path, which the compiler otherwise
// keeps out of line once the breaker and the shedder share one instance.
impl Answer {
    /// An HTTP answer. `grpc` says to read an HTTP 200 as a gRPC answer: its status is then
    /// in the headers (Trailers-Only), or `None` when it comes in the trailers.
    #[inline(always)]
    pub(crate) fn of_response<B>(response: &http::Response<B>, grpc: bool) -> Option<Self> {
        let status = response.status();
        if grpc && status == http::StatusCode::OK {
            return crate::grpc::status_value(response.headers())
                .map(|value| Self::of_grpc(crate::grpc::parse_status(value)));
        }
        Some(Self::of_status(status))
    }

    /// An HTTP answer to a request this layer did not see: a gRPC answer is told by its
    /// content type (HTTP 200 with `application/grpc*`).
    #[inline(always)]
    pub(crate) fn of_response_alone<B>(response: &http::Response<B>) -> Option<Self> {
        let grpc =
            response.status() == http::StatusCode::OK && crate::grpc::is_grpc(response.headers());
        Self::of_response(response, grpc)
    }

    /// An HTTP status.
    #[inline(always)]
    pub(crate) fn of_status(status: http::StatusCode) -> Self {
        match status.as_u16() {
            429 => Self::TooManyRequests,
            503 => Self::Unavailable,
            504 => Self::TimedOut,
            500..=599 => Self::Failed,
            400..=499 => Self::Rejected,
            _ => Self::Ok,
        }
    }

    /// A gRPC status code; `None` for a missing or unknown one.
    #[inline]
    pub(crate) fn of_grpc(status: Option<u8>) -> Self {
        match status {
            Some(0) => Self::Ok,
            Some(code::CANCELLED) => Self::Cancelled,
            Some(code::RESOURCE_EXHAUSTED) => Self::ResourceExhausted,
            Some(code::UNAVAILABLE) => Self::Unavailable,
            Some(code::DEADLINE_EXCEEDED) => Self::TimedOut,
            Some(code::UNKNOWN | code::INTERNAL | code::DATA_LOSS) | None => Self::Failed,
            Some(_) => Self::Rejected,
        }
    }

    /// An error instead of an answer.
    #[inline]
    pub(crate) fn of_error(error: &BoxError) -> Self {
        match Rejection::find(error.as_ref()) {
            Some(Rejection::TimedOut(_)) => Self::TimedOut,
            Some(rejection) if rejection.is_refusal() => Self::Refused,
            _ => Self::Failed,
        }
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use super::*;

    #[test]
    fn http_statuses() {
        let of = |status: u16| Answer::of_status(http::StatusCode::from_u16(status).unwrap());
        assert_eq!(
            [200, 204, 304, 400, 404, 429, 500, 502, 503, 504].map(of),
            [
                Answer::Ok,
                Answer::Ok,
                Answer::Ok,
                Answer::Rejected,
                Answer::Rejected,
                Answer::TooManyRequests,
                Answer::Failed,
                Answer::Failed,
                Answer::Unavailable,
                Answer::TimedOut,
            ]
        );
    }

    #[test]
    fn grpc_codes() {
        let all: Vec<Answer> = (0..=16).map(|c| Answer::of_grpc(Some(c))).collect();
        use Answer::*;
        assert_eq!(
            all,
            [
                Ok,                // OK
                Cancelled,         // CANCELLED
                Failed,            // UNKNOWN
                Rejected,          // INVALID_ARGUMENT
                TimedOut,          // DEADLINE_EXCEEDED
                Rejected,          // NOT_FOUND
                Rejected,          // ALREADY_EXISTS
                Rejected,          // PERMISSION_DENIED
                ResourceExhausted, // RESOURCE_EXHAUSTED
                Rejected,          // FAILED_PRECONDITION
                Rejected,          // ABORTED
                Rejected,          // OUT_OF_RANGE
                Rejected,          // UNIMPLEMENTED
                Failed,            // INTERNAL
                Unavailable,       // UNAVAILABLE
                Failed,            // DATA_LOSS
                Rejected,          // UNAUTHENTICATED
            ]
        );
        assert_eq!(Answer::of_grpc(None), Failed);
    }

    #[test]
    fn a_grpc_answer_is_read_only_when_asked() {
        let answer = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        assert_eq!(
            Answer::of_response(&answer, true),
            Some(Answer::Unavailable)
        );
        assert_eq!(Answer::of_response(&answer, false), Some(Answer::Ok));
        let streamed = http::Response::new(());
        assert_eq!(Answer::of_response(&streamed, true), None);
    }

    #[test]
    fn errors() {
        use crate::error::{Overloaded, RateLimited, TimedOut};
        use std::time::Duration;
        let rejection = |r: Rejection| -> BoxError { Box::new(r) };
        assert_eq!(
            Answer::of_error(&rejection(TimedOut::new(Duration::ZERO).into())),
            Answer::TimedOut
        );
        assert_eq!(
            Answer::of_error(&rejection(RateLimited::new(Duration::ZERO).into())),
            Answer::Refused
        );
        assert_eq!(
            Answer::of_error(&rejection(Overloaded::new(Duration::ZERO, 1).into())),
            Answer::Refused
        );
        assert_eq!(Answer::of_error(&"reset".into()), Answer::Failed);
    }
}
