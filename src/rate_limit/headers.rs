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
        /// `false` when `apply` does nothing, so the limiter need not compute the state.
        const ACTIVE: bool;
        /// What the response future keeps until the response arrives: nothing for
        /// [`NoHeaders`], so its futures carry no state at all.
        type State;
        fn keep(admitted: Option<Admitted>) -> Self::State;
        fn apply(&self, state: &Self::State, response: &mut Res);
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
        type State = ();
        #[inline]
        fn keep(_: Option<Admitted>) {}
        #[inline]
        fn apply(&self, _: &(), _: &mut Res) {}
    }

    impl<B> Apply<Response<B>> for RateLimitHeaders {
        const ACTIVE: bool = true;
        type State = Option<Admitted>;
        fn keep(admitted: Option<Admitted>) -> Option<Admitted> {
            admitted
        }
        fn apply(&self, admitted: &Option<Admitted>, response: &mut Response<B>) {
            let Some(admitted) = admitted else { return };
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
