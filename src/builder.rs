//! [`ServiceBuilderExt`]: the rejection mapping as a `ServiceBuilder` method.

use tower::ServiceBuilder;
#[cfg(feature = "http")]
use tower::layer::util::Stack;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds [`rejection_response`](Self::rejection_response) to [`tower::ServiceBuilder`]:
/// the one layer that takes no configuration. The other layers are built from their
/// builders and added with `.layer(..)`.
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
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "http")]
    fn rejection_response(self) -> ServiceBuilder<Stack<crate::http::RejectionResponseLayer, L>> {
        self.layer(crate::http::RejectionResponseLayer::new())
    }
}
