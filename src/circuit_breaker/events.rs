//! What a breaker tells the world when its state changes: tracing events (WARN when it
//! opens, INFO otherwise, once per transition), metrics, and the `on_state_change` callback.
//! Apart from the state machine, which only decides.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

use super::state::CircuitState;
use super::transition::MS;

/// A change of state, as passed to an `on_state_change` callback.
///
/// ```
/// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let layer = CircuitBreakerLayer::builder()
///     .name("payments")
///     .on_state_change(move |t| log.lock().unwrap().push((t.name().to_owned(), t.from(), t.to())))
///     .build()?;
/// layer.handle().force_open();
/// assert_eq!(
///     seen.lock().unwrap()[0],
///     ("payments".to_owned(), CircuitState::Closed, CircuitState::ForcedOpen)
/// );
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Transition<'a> {
    name: &'a str,
    key: Option<&'a str>,
    from: CircuitState,
    to: CircuitState,
    open_for: Option<Duration>,
}

impl Transition<'_> {
    /// The breaker's name: the layer's, for every breaker of a keyed layer.
    ///
    /// See [`Transition`] for an example.
    pub const fn name(&self) -> &str {
        self.name
    }

    /// The key of a keyed layer's breaker, as its `Debug` form cut to 64 printable bytes;
    /// `None` for an unkeyed breaker and a keyed layer's shared one.
    ///
    /// ```
    /// use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let keys = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&keys);
    /// let layer = CircuitBreakerLayer::builder()
    ///     .on_state_change(move |t| seen.lock().unwrap().push(t.key().map(str::to_owned)))
    ///     .build()?;
    /// layer.handle().force_open();
    /// assert_eq!(*keys.lock().unwrap(), [None]);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn key(&self) -> Option<&str> {
        self.key
    }

    /// The state left.
    ///
    /// See [`Transition`] for an example.
    pub const fn from(&self) -> CircuitState {
        self.from
    }

    /// The state entered.
    ///
    /// See [`Transition`] for an example.
    pub const fn to(&self) -> CircuitState {
        self.to
    }

    /// For a transition to [`Open`](CircuitState::Open): how long it stays open (after backoff
    /// and jitter).
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::{CircuitBreakerLayer, CircuitState};
    /// # use std::sync::{Arc, Mutex};
    /// let opened = Arc::new(Mutex::new(None));
    /// let slot = Arc::clone(&opened);
    /// let layer = CircuitBreakerLayer::builder()
    ///     .on_state_change(move |t| *slot.lock().unwrap() = Some(t.open_for()))
    ///     .build()?;
    /// layer.handle().force_open();
    /// assert_eq!(*opened.lock().unwrap(), Some(None)); // forced open has no end
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn open_for(&self) -> Option<Duration> {
        self.open_for
    }
}

/// The callback type of `on_state_change`.
pub(crate) type OnChange = Arc<dyn Fn(&Transition<'_>) + Send + Sync>;

/// A breaker's name, key, listeners and transition count.
pub(crate) struct Events {
    pub(crate) name: Cow<'static, str>,
    /// The key of a keyed breaker, bounded and printable, for events and handles.
    pub(crate) key: Option<Box<str>>,
    on_change: Option<OnChange>,
    /// Shared by all the breakers of a keyed layer, so that series never multiply per key.
    metrics: Arc<crate::metrics::Breaker>,
    transitions: AtomicU64,
}

impl Events {
    pub(crate) fn new(
        name: Cow<'static, str>,
        key: Option<Box<str>>,
        on_change: Option<OnChange>,
        metrics: Arc<crate::metrics::Breaker>,
    ) -> Self {
        Self {
            name,
            key,
            on_change,
            metrics,
            transitions: AtomicU64::new(0),
        }
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Breaker {
        &self.metrics
    }

    pub(crate) fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// The breaker opened from `from` for `open_for` ns, because of `reason`.
    pub(crate) fn opened(&self, from: CircuitState, reason: &'static str, open_for: u64) {
        tracing::warn!(
            breaker.name = %self.name,
            breaker.key = self.key.as_deref(),
            breaker.from = from.as_str(),
            breaker.to = "open",
            breaker.reason = reason,
            breaker.open_ms = open_for / MS,
            "circuit opened"
        );
        self.notify(
            from,
            CircuitState::Open,
            Some(Duration::from_nanos(open_for)),
        );
    }

    /// Any other change, from `from` to `to`.
    pub(crate) fn announce(
        &self,
        from: CircuitState,
        to: CircuitState,
        open_for: Option<Duration>,
    ) {
        let (name, key) = (&self.name, self.key.as_deref());
        let (from_name, to_name) = (from.as_str(), to.as_str());
        match to {
            CircuitState::HalfOpen => tracing::info!(
                breaker.name = %name, breaker.key = key, breaker.from = from_name, breaker.to = to_name,
                "circuit half-open"
            ),
            CircuitState::Closed => tracing::info!(
                breaker.name = %name, breaker.key = key, breaker.from = from_name, breaker.to = to_name,
                "circuit closed"
            ),
            CircuitState::Open | CircuitState::ForcedOpen => tracing::warn!(
                breaker.name = %name, breaker.key = key, breaker.from = from_name, breaker.to = to_name,
                "circuit opened"
            ),
            CircuitState::Disabled => tracing::info!(
                breaker.name = %name, breaker.key = key, breaker.from = from_name, breaker.to = to_name,
                "circuit disabled"
            ),
        }
        self.notify(from, to, open_for);
    }

    fn notify(&self, from: CircuitState, to: CircuitState, open_for: Option<Duration>) {
        self.transitions.fetch_add(1, Ordering::Relaxed);
        let level = match to {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
            CircuitState::ForcedOpen => 3.0,
            CircuitState::Disabled => 4.0,
        };
        let open =
            |state: CircuitState| !matches!(state, CircuitState::Closed | CircuitState::Disabled);
        self.metrics
            .transition(from.as_str(), to.as_str(), level, (open(from), open(to)));
        if let Some(on_change) = &self.on_change {
            on_change(&Transition {
                name: &self.name,
                key: self.key.as_deref(),
                from,
                to,
                open_for,
            });
        }
    }
}
