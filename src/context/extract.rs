//! The axum extractors of the context's values, and their rejection.

/// The rejection of the `Deadline` and `RequestId` axum extractors when the value is neither
/// in scope nor in the request's extensions: the layer that sets it is missing from the
/// route. Answers `500 Internal Server Error`, naming the value and the layer; extract an
/// `Option<Deadline>` or `Option<RequestId>` to handle the absence instead.
///
/// ```
/// use axum::response::IntoResponse;
/// use tower_rampart::context::NotInScope;
///
/// # #[cfg(feature = "timeout")] {
/// let response = NotInScope::deadline().into_response();
/// assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no {value} in scope: is {layer} on this route?")]
pub struct NotInScope {
    value: &'static str,
    layer: &'static str,
}

impl NotInScope {
    /// The rejection for a missing [`Deadline`](super::Deadline).
    ///
    /// See [`NotInScope`] for an example.
    #[cfg(feature = "timeout")]
    pub const fn deadline() -> Self {
        Self {
            value: "Deadline",
            layer: "TimeoutLayer",
        }
    }

    /// The rejection for a missing [`RequestId`](super::RequestId).
    ///
    /// ```
    /// # use tower_rampart::context::NotInScope;
    /// assert!(NotInScope::request_id().to_string().contains("SetRequestIdLayer"));
    /// ```
    #[cfg(feature = "request-id")]
    pub const fn request_id() -> Self {
        Self {
            value: "RequestId",
            layer: "SetRequestIdLayer",
        }
    }
}

impl axum_core::response::IntoResponse for NotInScope {
    /// A 500 with a JSON body like every other answer of this crate's:
    /// `{"error":"not_in_scope","missing":"Deadline","layer":"TimeoutLayer"}`.
    fn into_response(self) -> axum_core::response::Response {
        let body = crate::http::JsonObject::with_capacity(80)
            .str("error", "not_in_scope")
            .str("missing", self.value)
            .str("layer", self.layer)
            .finish();
        (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// `Deadline` and `RequestId` as axum extractors: from the request context (where the layers
/// put them while the route runs), else from the request's extensions.
mod extractors {
    use std::convert::Infallible;

    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use super::NotInScope;

    macro_rules! extractor {
        ($ty:ty, $current:expr, $missing:expr) => {
            impl<S: Send + Sync> FromRequestParts<S> for $ty {
                type Rejection = NotInScope;

                async fn from_request_parts(
                    parts: &mut Parts,
                    _: &S,
                ) -> Result<Self, Self::Rejection> {
                    $current
                        .or_else(|| parts.extensions.get::<$ty>().cloned())
                        .ok_or($missing)
                }
            }

            impl<S: Send + Sync> OptionalFromRequestParts<S> for $ty {
                type Rejection = Infallible;

                async fn from_request_parts(
                    parts: &mut Parts,
                    _: &S,
                ) -> Result<Option<Self>, Self::Rejection> {
                    Ok($current.or_else(|| parts.extensions.get::<$ty>().cloned()))
                }
            }
        };
    }

    #[cfg(feature = "timeout")]
    extractor!(
        crate::context::Deadline,
        crate::context::current_deadline(),
        NotInScope::deadline()
    );
    #[cfg(feature = "request-id")]
    extractor!(
        crate::context::RequestId,
        crate::context::current_request_id(),
        NotInScope::request_id()
    );
}
