//! [`CircuitBreakerLayer`] and [`CircuitBreakerHandle`].

use std::fmt;
use std::hash::Hash;

use tower_layer::Layer;

use crate::clock::Clock;
use crate::sync::Arc;

use super::breaker::{PerKey, Single};
use super::classify::HttpClassifier;
use super::config::CircuitBreakerBuilder;
use super::fallback::Reject;
use super::service::CircuitBreaker;
use super::state::{CircuitState, Core, Counts};

/// Wraps services in a [`CircuitBreaker`]; every service it makes shares one breaker (or,
/// keyed, one registry of breakers).
///
/// Build it with [`CircuitBreakerLayer::builder`].
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use tower_rampart::circuit_breaker::CircuitBreakerLayer;
/// use tower_rampart::http::RejectionResponseLayer;
///
/// let breaker = CircuitBreakerLayer::builder()
///     .failure_threshold(5)
///     .open_for(Duration::from_secs(10))
///     .build()?;
/// let health = breaker.handle();
/// let app: Router = Router::new()
///     .route("/quote", get(|| async { "42" }))
///     .layer(tower::ServiceBuilder::new().layer(RejectionResponseLayer::new()).layer(breaker));
/// assert_eq!(health.state().as_str(), "closed");
/// # let _ = app;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub struct CircuitBreakerLayer<K = Single, Cl = HttpClassifier, F = Reject> {
    select: K,
    classifier: Cl,
    fallback: F,
}

/// A breaker per key of `K` (for example one per upstream host), the layer
/// [`CircuitBreakerBuilder::with_key`] builds.
///
/// ```
/// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, PerKeyCircuitBreakerLayer};
/// use tower_rampart::key::UpstreamHost;
///
/// let per_host: PerKeyCircuitBreakerLayer<UpstreamHost> =
///     CircuitBreakerLayer::builder().with_key(UpstreamHost).build()?;
/// # let _ = per_host;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
pub type PerKeyCircuitBreakerLayer<K, Cl = HttpClassifier, F = Reject> =
    CircuitBreakerLayer<PerKey<K>, Cl, F>;

// === impl CircuitBreakerLayer ===

impl CircuitBreakerLayer {
    /// Starts a builder with the defaults: open after 5 failures in a row, for 30 s (doubling
    /// per re-open, up to 5 min), then admit 1 probe.
    ///
    /// See [`CircuitBreakerBuilder`] for every setting.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState};
    /// let layer = CircuitBreakerLayer::builder().build()?;
    /// assert_eq!(layer.handle().state(), CircuitState::Closed);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }
}

impl<K, Cl, F> CircuitBreakerLayer<K, Cl, F> {
    pub(crate) fn from_parts(select: K, classifier: Cl, fallback: F) -> Self {
        Self {
            select,
            classifier,
            fallback,
        }
    }
}

impl<C: Clock, Cl, F> CircuitBreakerLayer<Single<C>, Cl, F> {
    /// A handle on the breaker: its state and counters, and manual control.
    ///
    /// See [`CircuitBreakerHandle`].
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState};
    /// let layer = CircuitBreakerLayer::builder().build()?;
    /// let handle = layer.handle();
    /// handle.force_open();
    /// assert_eq!(layer.handle().state(), CircuitState::ForcedOpen);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            core: Arc::clone(self.select.breaker.core()),
        }
    }
}

impl<K, C: Clock, Cl, F> CircuitBreakerLayer<PerKey<K, C>, Cl, F> {
    /// The handle of `key`'s breaker, if it has one now. Pass the key as the extractor
    /// returns it (a `&str` for [`UpstreamHost`](super::UpstreamHost)).
    ///
    /// ```
    /// use tower::{Service, ServiceExt};
    /// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, UpstreamHost};
    ///
    /// # tokio_test::block_on(async {
    /// let layer = CircuitBreakerLayer::builder().with_key(UpstreamHost).build()?;
    /// let mut svc = tower::ServiceBuilder::new().layer(layer.clone()).service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// });
    /// let req = http::Request::get("http://a.internal/").body(()).unwrap();
    /// svc.ready().await?.call(req).await?;
    /// assert_eq!(layer.handle_for("a.internal").unwrap().metrics().calls(), 1);
    /// assert!(layer.handle_for("b.internal").is_none());
    /// # Ok::<(), tower_rampart::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub fn handle_for<Q: Hash + ?Sized>(&self, key: &Q) -> Option<CircuitBreakerHandle> {
        let registry = &self.select.registry;
        registry
            .get(registry.hash(&key))
            .map(|core| CircuitBreakerHandle { core })
    }

    /// The handle of the breaker shared by requests without a key (and by new keys while
    /// the registry is full).
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState, UpstreamHost};
    /// let layer = CircuitBreakerLayer::builder().with_key(UpstreamHost).build()?;
    /// assert_eq!(layer.shared_handle().state(), CircuitState::Closed);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn shared_handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            core: Arc::clone(self.select.registry.shared().core()),
        }
    }

    /// How many keyed breakers exist now.
    ///
    /// See [`CircuitBreakerBuilder::with_key`] for an example.
    pub fn key_count(&self) -> usize {
        usize::try_from(self.select.registry.len()).unwrap_or(usize::MAX)
    }
}

impl<K: Clone, Cl: Clone, F: Clone> Clone for CircuitBreakerLayer<K, Cl, F> {
    fn clone(&self) -> Self {
        Self {
            select: self.select.clone(),
            classifier: self.classifier.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<K: fmt::Debug, Cl: fmt::Debug, F> fmt::Debug for CircuitBreakerLayer<K, Cl, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("select", &self.select)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone, Cl: Clone, F: Clone> Layer<S> for CircuitBreakerLayer<K, Cl, F> {
    type Service = CircuitBreaker<S, K, Cl, F>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(
            inner,
            self.select.clone(),
            self.classifier.clone(),
            self.fallback.clone(),
        )
    }
}

/// A cloneable handle on one breaker: read its state and counters (for health endpoints and
/// metrics), or take manual control.
///
/// ```
/// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState};
///
/// let layer = CircuitBreakerLayer::builder().build()?;
/// let handle = layer.handle();
/// handle.force_open();                 // maintenance: reject everything
/// assert!(handle.state().rejects());
/// handle.force_closed();               // let everything through, count only
/// assert_eq!(handle.state(), CircuitState::Disabled);
/// handle.reset();                      // back to normal, counts cleared
/// assert_eq!(handle.state(), CircuitState::Closed);
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    core: Arc<Core>,
}

impl CircuitBreakerHandle {
    /// The breaker's name.
    ///
    /// See [`CircuitBreakerBuilder::name`] for an example.
    pub fn name(&self) -> &str {
        self.core.name()
    }

    /// The current state. An open breaker whose open time has ended still reads
    /// [`Open`](CircuitState::Open) until the next call moves it to half-open (there is no
    /// timer).
    ///
    /// See [`CircuitBreakerHandle`] for an example.
    pub fn state(&self) -> CircuitState {
        self.core.state()
    }

    /// The counters since the breaker was built.
    ///
    /// See [`Counts`] for an example.
    pub fn metrics(&self) -> Counts {
        self.core.metrics()
    }

    /// Holds the breaker open: every call is rejected until [`reset`](Self::reset) or
    /// [`force_closed`](Self::force_closed).
    ///
    /// See [`CircuitBreakerHandle`] for an example.
    pub fn force_open(&self) {
        self.core.force(CircuitState::ForcedOpen);
    }

    /// Holds the breaker closed ([`Disabled`](CircuitState::Disabled)): every call passes
    /// and is counted, nothing trips, until [`reset`](Self::reset).
    ///
    /// See [`CircuitBreakerHandle`] for an example.
    pub fn force_closed(&self) {
        self.core.force(CircuitState::Disabled);
    }

    /// Closes the breaker and clears its windows and backoff, whatever its state. Calls
    /// started before the reset no longer count.
    ///
    /// See [`CircuitBreakerHandle`] for an example.
    pub fn reset(&self) {
        self.core.force(CircuitState::Closed);
    }
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.core.name())
            .field("state", &self.core.state())
            .finish()
    }
}
