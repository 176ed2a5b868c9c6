//! [`ServiceBuilderExt`]: the rampart layers as `ServiceBuilder` methods.

use tower::ServiceBuilder;
#[cfg(any(
    feature = "http",
    feature = "rate-limit",
    feature = "circuit-breaker",
    feature = "timeout"
))]
use tower::layer::util::Stack;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds one method per rampart layer to [`tower::ServiceBuilder`].
///
/// The trait is sealed: it is implemented for `ServiceBuilder` only, so new methods can be
/// added without breaking anyone.
///
/// ```
/// # #[cfg(feature = "http")] {
/// use axum::{Router, routing::get};
/// use tower::ServiceBuilder;
/// use tower_rampart::ServiceBuilderExt;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "ok" }))
///     .layer(ServiceBuilder::new().rejection_response());
/// # let _ = app;
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`RejectionResponseLayer`](crate::http::RejectionResponseLayer) with the default
    /// JSON body: rejections from the layers below become 429/503/504/502 responses and the
    /// stack becomes `Infallible`.
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_rampart::ServiceBuilderExt;
    ///
    /// let builder = ServiceBuilder::new().rejection_response();
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    fn rejection_response(self) -> ServiceBuilder<Stack<crate::http::RejectionResponseLayer, L>>;

    /// Adds a built [`RateLimitLayer`](crate::rate_limit::RateLimitLayer). The limit's state
    /// lives in the layer value, so every service this builder makes shares it.
    ///
    /// Not named `rate_limit`: `ServiceBuilder` has an inherent `rate_limit(num, per)` (tower's
    /// own limiter, feature `limit`), and an inherent method silently wins over a trait method.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower::ServiceBuilder;
    /// use tower_rampart::{ServiceBuilderExt, rate_limit::RateLimitLayer};
    ///
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
    ///     ServiceBuilder::new()
    ///         .rejection_response()
    ///         .token_bucket(RateLimitLayer::per_second(50).burst(20).build()?),
    /// );
    /// # let _ = app;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn token_bucket<P, C, H>(
        self,
        layer: crate::rate_limit::RateLimitLayer<P, C, H>,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer<P, C, H>, L>>;

    /// Adds a built [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer). The
    /// breaker lives in the layer value, so every service this builder makes shares it.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use tower::ServiceBuilder;
    /// use tower_rampart::{ServiceBuilderExt, circuit_breaker::CircuitBreakerLayer};
    ///
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
    ///     ServiceBuilder::new()
    ///         .rejection_response()
    ///         .circuit_breaker(CircuitBreakerLayer::builder().failure_threshold(5).build()?),
    /// );
    /// # let _ = app;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn circuit_breaker<K, Cl, F>(
        self,
        layer: crate::circuit_breaker::CircuitBreakerLayer<K, Cl, F>,
    ) -> ServiceBuilder<Stack<crate::circuit_breaker::CircuitBreakerLayer<K, Cl, F>, L>>;

    /// Adds a [`TimeoutLayer`](crate::timeout::TimeoutLayer): every request gets a deadline,
    /// shortened by its caller's budget, and a 504 when it passes.
    ///
    /// Not named `timeout`: `ServiceBuilder` has an inherent `timeout(Duration)` (tower's own
    /// `Timeout`, feature `timeout`), and an inherent method silently wins over a trait method.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{Router, routing::get};
    /// use tower::ServiceBuilder;
    /// use tower_rampart::{ServiceBuilderExt, timeout::TimeoutLayer};
    ///
    /// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
    ///     ServiceBuilder::new()
    ///         .rejection_response()
    ///         .deadline(TimeoutLayer::new(Duration::from_secs(2))?),
    /// );
    /// # let _ = app;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    fn deadline<T, I>(
        self,
        layer: crate::timeout::TimeoutLayer<T, I>,
    ) -> ServiceBuilder<Stack<crate::timeout::TimeoutLayer<T, I>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "http")]
    fn rejection_response(self) -> ServiceBuilder<Stack<crate::http::RejectionResponseLayer, L>> {
        self.layer(crate::http::RejectionResponseLayer::new())
    }

    #[cfg(feature = "rate-limit")]
    fn token_bucket<P, C, H>(
        self,
        layer: crate::rate_limit::RateLimitLayer<P, C, H>,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer<P, C, H>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker<K, Cl, F>(
        self,
        layer: crate::circuit_breaker::CircuitBreakerLayer<K, Cl, F>,
    ) -> ServiceBuilder<Stack<crate::circuit_breaker::CircuitBreakerLayer<K, Cl, F>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn deadline<T, I>(
        self,
        layer: crate::timeout::TimeoutLayer<T, I>,
    ) -> ServiceBuilder<Stack<crate::timeout::TimeoutLayer<T, I>, L>> {
        self.layer(layer)
    }
}
