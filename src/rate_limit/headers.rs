//! Whether admitted responses carry the `RateLimit` header fields.

use std::sync::Arc;

use http::Response;

use super::limiter::Admitted;

/// Admitted responses are left untouched (the default). Any response type.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHeaders;

/// Admitted HTTP responses carry `RateLimit-Policy` and `RateLimit`; made by
/// [`RateLimitBuilder::advertise`](super::RateLimitBuilder::advertise).
#[derive(Clone, Debug)]
pub struct RateLimitHeaders {
    policy: Arc<str>,
}

impl RateLimitHeaders {
    pub(crate) fn new() -> Self {
        Self {
            policy: Arc::from("default"),
        }
    }
}

/// What an admitted response gets: [`NoHeaders`] or [`RateLimitHeaders`]. Sealed.
pub trait ResponseHeaders<Res>: private::Apply<Res> {}

impl<Res, H: private::Apply<Res>> ResponseHeaders<Res> for H {}

/// Takes the validated policy name at `build()`. Sealed.
pub trait WithPolicy: private::WithPolicy {}

impl<H: private::WithPolicy> WithPolicy for H {}

pub(crate) mod private {
    use super::*;

    pub trait WithPolicy: Sized {
        fn with_policy(self, policy: &str) -> Self;
    }

    pub trait Apply<Res>: Clone + Send + Sync + 'static {
        /// `false` when `apply` does nothing, so the future need not keep the state.
        const ACTIVE: bool;
        fn apply(&self, admitted: &Admitted, response: &mut Res);
    }

    impl WithPolicy for NoHeaders {
        fn with_policy(self, _: &str) -> Self {
            self
        }
    }

    impl WithPolicy for RateLimitHeaders {
        fn with_policy(self, policy: &str) -> Self {
            Self {
                policy: Arc::from(policy),
            }
        }
    }

    impl<Res> Apply<Res> for NoHeaders {
        const ACTIVE: bool = false;
        #[inline]
        fn apply(&self, _: &Admitted, _: &mut Res) {}
    }

    impl<B> Apply<Response<B>> for RateLimitHeaders {
        const ACTIVE: bool = true;
        fn apply(&self, admitted: &Admitted, response: &mut Response<B>) {
            crate::http::write_rate_limit_fields(
                response.headers_mut(),
                &self.policy,
                u64::from(admitted.limit()),
                admitted.window(),
                admitted.remaining(),
                admitted.reset(),
            );
        }
    }
}
