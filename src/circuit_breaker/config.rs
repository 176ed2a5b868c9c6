//! [`CircuitBreakerBuilder`]: every setting of a breaker, validated once by `build()`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::clock::{Clock, TokioClock, duration_nanos};
use crate::error::{CircuitOpen, ConfigError};
use crate::sync::Arc;

use super::breaker::{Breaker, PerKey, Registry, Single, Template, default_lanes};
use super::classify::HttpClassifier;
use super::events::{OnChange, Transition};
use super::fallback::{FallbackFn, FallbackService, Reject};
use super::layer::CircuitBreakerLayer;
use super::state::Core;
use super::transition::{MAX_PROBES, Policy, Window};

const MS: Duration = Duration::from_millis(1);
const MAX_WINDOW: u32 = 1_000_000;
const MAX_BUCKETS: u32 = 1_000;

#[derive(Clone, Copy, Debug)]
enum WindowSetting {
    Count(u32),
    Time(Duration, u32),
}

#[derive(Clone)]
struct Settings {
    name: Cow<'static, str>,
    failure_threshold: Option<u32>,
    failure_rate: Option<f64>,
    slow: Option<(Duration, f64)>,
    window: WindowSetting,
    minimum_calls: u32,
    open_for: Duration,
    backoff: u32,
    max_open_for: Option<Duration>,
    jitter: f64,
    probes: u32,
    probe_timeout: Duration,
    max_keys: usize,
    idle_timeout: Duration,
    on_change: Option<OnChange>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("failure_threshold", &self.failure_threshold)
            .field("failure_rate", &self.failure_rate)
            .field("slow", &self.slow)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_for", &self.open_for)
            .field("backoff", &self.backoff)
            .field("max_open_for", &self.max_open_for)
            .field("jitter", &self.jitter)
            .field("probes", &self.probes)
            .field("probe_timeout", &self.probe_timeout)
            .field("on_state_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}

/// The key of a keyed builder; made by [`CircuitBreakerBuilder::with_key`].
#[derive(Clone, Copy, Debug)]
pub struct ByKey<K>(K);

/// Builds a [`CircuitBreakerLayer`]; start from [`CircuitBreakerLayer::builder`].
///
/// Nothing is checked until [`build`](Self::build), which validates everything in one place.
/// With no setting at all, the breaker opens after 5 failures in a row, stays open 30 s
/// (doubling on each re-open up to 5 min) and then lets one probe through.
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::circuit_breaker::CircuitBreakerLayer;
///
/// let layer = CircuitBreakerLayer::builder()
///     .name("billing")
///     .failure_threshold(5)                      // 5 failures in a row...
///     .failure_rate(50.0)                        // ...or half of...
///     .count_window(100)                         // ...the last 100 calls...
///     .minimum_calls(20)                         // ...once there are 20
///     .open_for(Duration::from_secs(10))
///     .half_open_probes(3)
///     .build()?;
/// assert_eq!(layer.handle().name(), "billing");
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CircuitBreakerBuilder<K = (), Cl = HttpClassifier, F = Reject, C = TokioClock> {
    settings: Settings,
    key: K,
    classifier: Cl,
    fallback: F,
    clock: C,
}

impl<K: fmt::Debug, Cl: fmt::Debug, F, C: fmt::Debug> fmt::Debug
    for CircuitBreakerBuilder<K, Cl, F, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("settings", &self.settings)
            .field("key", &self.key)
            .field("classifier", &self.classifier)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

// === impl CircuitBreakerBuilder ===

impl CircuitBreakerBuilder {
    pub(crate) fn new() -> Self {
        Self {
            settings: Settings {
                name: Cow::Borrowed("circuit_breaker"),
                failure_threshold: Some(5),
                failure_rate: None,
                slow: None,
                window: WindowSetting::Count(100),
                minimum_calls: 20,
                open_for: Duration::from_secs(30),
                backoff: 2,
                max_open_for: None,
                jitter: 0.0,
                probes: 1,
                probe_timeout: Duration::from_secs(10),
                max_keys: 1_024,
                idle_timeout: Duration::from_secs(600),
                on_change: None,
            },
            key: (),
            classifier: HttpClassifier::new(),
            fallback: Reject,
            clock: TokioClock,
        }
    }
}

impl<K, Cl, F, C> CircuitBreakerBuilder<K, Cl, F, C> {
    /// The breaker's name, in events (`breaker.name`) and transitions. Default:
    /// `"circuit_breaker"`. A keyed breaker appends the key: `billing["10.0.0.7:80"]`.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// let layer = CircuitBreakerLayer::builder().name("search").build()?;
    /// assert_eq!(layer.handle().name(), "search");
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Opens after this many failures in a row (a success resets the run). Default: 5.
    ///
    /// # Errors
    /// `build()` rejects 0.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().failure_threshold(0).build().is_err());
    /// assert!(CircuitBreakerLayer::builder().failure_threshold(3).build().is_ok());
    /// ```
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.settings.failure_threshold = Some(failures);
        self
    }

    /// Turns the consecutive-failures policy off, for a breaker driven by rates only.
    ///
    /// # Errors
    /// `build()` fails if no trip policy is left.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().no_failure_threshold().build().is_err());
    /// assert!(CircuitBreakerLayer::builder().no_failure_threshold().failure_rate(50.0).build().is_ok());
    /// ```
    pub fn no_failure_threshold(mut self) -> Self {
        self.settings.failure_threshold = None;
        self
    }

    /// Opens when at least `percent` of the calls in the window failed. Default: off.
    ///
    /// # Errors
    /// `build()` rejects values outside `(0, 100]` and NaN.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().failure_rate(50.0).build().is_ok());
    /// assert!(CircuitBreakerLayer::builder().failure_rate(0.0).build().is_err());
    /// assert!(CircuitBreakerLayer::builder().failure_rate(f64::NAN).build().is_err());
    /// ```
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.settings.failure_rate = Some(percent);
        self
    }

    /// A call taking `threshold` or longer is slow; opens when at least `percent` of the calls
    /// in the window were slow. A slow half-open probe fails. Default: off. Detecting slow
    /// calls reads the clock when a call starts and when it ends.
    ///
    /// # Errors
    /// `build()` rejects a zero threshold and a percentage outside `(0, 100]`.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # use std::time::Duration;
    /// let layer = CircuitBreakerLayer::builder()
    ///     .slow_call_rate(Duration::from_secs(2), 80.0)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn slow_call_rate(mut self, threshold: Duration, percent: f64) -> Self {
        self.settings.slow = Some((threshold, percent));
        self
    }

    /// The rates are measured over the last `calls` calls (a ring). This is the default
    /// window, with 100 calls.
    ///
    /// # Errors
    /// `build()` rejects 0, more than 1 000 000, and a window smaller than
    /// [`minimum_calls`](Self::minimum_calls).
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// let b = || CircuitBreakerLayer::builder().failure_rate(50.0).minimum_calls(10);
    /// assert!(b().count_window(50).build().is_ok());
    /// assert!(b().count_window(5).build().is_err()); // could never hold 10 calls
    /// ```
    pub fn count_window(mut self, calls: u32) -> Self {
        self.settings.window = WindowSetting::Count(calls);
        self
    }

    /// The rates are measured over the last `span` of time, kept in `buckets` buckets: the
    /// window slides one bucket at a time, and its memory is fixed whatever the traffic.
    /// Default: a count window.
    ///
    /// # Errors
    /// `build()` rejects 0 or more than 1 000 buckets, and buckets shorter than 1 ms.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # use std::time::Duration;
    /// let b = || CircuitBreakerLayer::builder().failure_rate(25.0);
    /// assert!(b().time_window(Duration::from_secs(60), 12).build().is_ok()); // 5 s buckets
    /// assert!(b().time_window(Duration::from_millis(5), 10).build().is_err());
    /// ```
    pub fn time_window(mut self, span: Duration, buckets: u32) -> Self {
        self.settings.window = WindowSetting::Time(span, buckets);
        self
    }

    /// The rate policies trip only once the window holds this many calls. Default: 20.
    ///
    /// # Errors
    /// `build()` rejects 0.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().minimum_calls(0).build().is_err());
    /// ```
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.settings.minimum_calls = calls;
        self
    }

    /// How long the breaker stays open after its first trip. Default: 30 s.
    ///
    /// # Errors
    /// `build()` rejects less than 1 ms.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # use std::time::Duration;
    /// assert!(CircuitBreakerLayer::builder().open_for(Duration::ZERO).build().is_err());
    /// ```
    pub fn open_for(mut self, open_for: Duration) -> Self {
        self.settings.open_for = open_for;
        self
    }

    /// Each re-open without a close in between multiplies the open time by `factor`, up to
    /// [`max_open_for`](Self::max_open_for); closing resets it. Default: 2. `1` turns backoff
    /// off.
    ///
    /// # Errors
    /// `build()` rejects 0 and more than 100.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().backoff(1).build().is_ok());
    /// assert!(CircuitBreakerLayer::builder().backoff(0).build().is_err());
    /// ```
    pub fn backoff(mut self, factor: u32) -> Self {
        self.settings.backoff = factor;
        self
    }

    /// The longest open time under backoff. Default: 5 min, or the open time if longer.
    ///
    /// # Errors
    /// `build()` rejects a value below [`open_for`](Self::open_for).
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # use std::time::Duration;
    /// let b = CircuitBreakerLayer::builder()
    ///     .open_for(Duration::from_secs(10))
    ///     .max_open_for(Duration::from_secs(5));
    /// assert!(b.build().is_err());
    /// ```
    pub fn max_open_for(mut self, max: Duration) -> Self {
        self.settings.max_open_for = Some(max);
        self
    }

    /// Adds a random extra of up to `fraction` × the open time to each open time, so that
    /// many clients of one dependency do not probe it in step. Default: 0.
    ///
    /// # Errors
    /// `build()` rejects values outside `[0, 1]`.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().jitter(0.2).build().is_ok());
    /// assert!(CircuitBreakerLayer::builder().jitter(1.5).build().is_err());
    /// ```
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.settings.jitter = fraction;
        self
    }

    /// Calls admitted in half-open; the breaker closes when all of them succeed and re-opens
    /// at the first failure. Default: 1.
    ///
    /// # Errors
    /// `build()` rejects 0 and more than 65 535.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// assert!(CircuitBreakerLayer::builder().half_open_probes(0).build().is_err());
    /// ```
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.settings.probes = probes;
        self
    }

    /// How long half-open waits for its probes, counted from the newest one. A probe that
    /// has not answered by then counts as failed: the next call re-opens the breaker, so a
    /// hung probe never pins it half-open. Default: 10 s.
    ///
    /// # Errors
    /// `build()` rejects less than 1 ms.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// # use std::time::Duration;
    /// assert!(CircuitBreakerLayer::builder().probe_timeout(Duration::from_secs(2)).build().is_ok());
    /// ```
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.settings.probe_timeout = timeout;
        self
    }

    /// Calls `f` on every state change, after the change (from the thread that made it, so
    /// keep it quick). Events are also emitted as tracing events either way.
    ///
    /// See [`Transition`] for an example.
    pub fn on_state_change(mut self, f: impl Fn(&Transition<'_>) + Send + Sync + 'static) -> Self {
        self.settings.on_change = Some(std::sync::Arc::new(f));
        self
    }

    /// Uses `classifier` to decide what each result counts as. Default: [`HttpClassifier`].
    ///
    /// See [`Classify`](super::Classify) for an example.
    pub fn with_classifier<Cl2>(self, classifier: Cl2) -> CircuitBreakerBuilder<K, Cl2, F, C> {
        CircuitBreakerBuilder {
            settings: self.settings,
            key: self.key,
            classifier,
            fallback: self.fallback,
            clock: self.clock,
        }
    }

    /// Reads time from `clock`. Default: [`TokioClock`].
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// use tower_rampart::clock::ManualClock;
    ///
    /// let layer = CircuitBreakerLayer::builder().with_clock(ManualClock::new()).build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn with_clock<C2: Clock>(self, clock: C2) -> CircuitBreakerBuilder<K, Cl, F, C2> {
        CircuitBreakerBuilder {
            settings: self.settings,
            key: self.key,
            classifier: self.classifier,
            fallback: self.fallback,
            clock,
        }
    }

    /// Answers rejected calls with `f(request, rejection)` instead of a
    /// [`CircuitOpen`](crate::Rejection::CircuitOpen) error. Annotate the closure's argument
    /// types.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// use tower_rampart::error::CircuitOpen;
    ///
    /// let layer = CircuitBreakerLayer::builder()
    ///     .fallback(|_req: http::Request<String>, _open: CircuitOpen| {
    ///         http::Response::new("served from cache".to_owned())
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn fallback<F2, Req, T>(self, f: F2) -> CircuitBreakerBuilder<K, Cl, FallbackFn<F2>, C>
    where
        F2: Fn(Req, CircuitOpen) -> T + Clone + Send + Sync + 'static,
    {
        self.with_fallback(FallbackFn::new(f))
    }

    /// Answers rejected calls by calling `service` with the request.
    ///
    /// See [`FallbackService`] for an example of the service.
    pub fn fallback_service<S>(
        self,
        service: S,
    ) -> CircuitBreakerBuilder<K, Cl, FallbackService<S>, C> {
        self.with_fallback(FallbackService::new(service))
    }

    fn with_fallback<F2>(self, fallback: F2) -> CircuitBreakerBuilder<K, Cl, F2, C> {
        CircuitBreakerBuilder {
            settings: self.settings,
            key: self.key,
            classifier: self.classifier,
            fallback,
            clock: self.clock,
        }
    }

    /// One breaker per key (upstream host, route, tenant), so that one failing backend does
    /// not cut off the healthy ones. Requests without a key share one breaker.
    ///
    /// The breakers live in a registry bounded by [`max_keys`](Self::max_keys); closed
    /// breakers idle for [`idle_timeout`](Self::idle_timeout) are dropped during later calls.
    /// Keys need `Hash` and `Debug` (for the breaker's name).
    ///
    /// ```
    /// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, UpstreamHost};
    ///
    /// let layer = CircuitBreakerLayer::builder().with_key(UpstreamHost).max_keys(256).build()?;
    /// assert_eq!(layer.key_count(), 0);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn with_key<K2>(self, key: K2) -> CircuitBreakerBuilder<ByKey<K2>, Cl, F, C> {
        CircuitBreakerBuilder {
            settings: self.settings,
            key: ByKey(key),
            classifier: self.classifier,
            fallback: self.fallback,
            clock: self.clock,
        }
    }

    fn policy(&self) -> Result<Policy, ConfigError> {
        let s = &self.settings;
        let percent = |field, value: f64| {
            if value.is_finite() && value > 0.0 && value <= 100.0 {
                // In (0, 100], so in (0, 1e6] parts per million.
                Ok((value * 10_000.0).round().max(1.0) as u64)
            } else {
                Err(ConfigError::new(field, "must be a percentage in (0, 100]"))
            }
        };
        let consecutive = match s.failure_threshold {
            Some(0) => {
                return Err(ConfigError::new("failure_threshold", "must be at least 1"));
            }
            other => other.map(u64::from),
        };
        let failure_ppm = s
            .failure_rate
            .map(|rate| percent("failure_rate", rate))
            .transpose()?;
        let (slow_after, slow_ppm) = match s.slow {
            None => (None, None),
            Some((threshold, _)) if threshold.is_zero() => {
                return Err(ConfigError::new(
                    "slow_call_rate",
                    "threshold must be above zero",
                ));
            }
            Some((threshold, rate)) => (
                Some(duration_nanos(threshold)),
                Some(percent("slow_call_rate", rate)?),
            ),
        };
        if consecutive.is_none() && failure_ppm.is_none() && slow_ppm.is_none() {
            return Err(ConfigError::new(
                "failure_threshold",
                "at least one trip policy (failure threshold, failure rate, slow-call rate) is needed",
            ));
        }
        if s.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be at least 1"));
        }
        let window = match s.window {
            WindowSetting::Count(calls) if calls == 0 || calls > MAX_WINDOW => {
                return Err(ConfigError::new(
                    "count_window",
                    "must be 1 to 1 000 000 calls",
                ));
            }
            WindowSetting::Count(calls) if calls < s.minimum_calls => {
                return Err(ConfigError::new(
                    "count_window",
                    "must hold at least minimum_calls calls",
                ));
            }
            WindowSetting::Count(calls) => Window::Count(calls as usize),
            WindowSetting::Time(_, buckets) if buckets == 0 || buckets > MAX_BUCKETS => {
                return Err(ConfigError::new(
                    "time_window",
                    "must have 1 to 1 000 buckets",
                ));
            }
            WindowSetting::Time(span, buckets) if span / buckets < MS => {
                return Err(ConfigError::new(
                    "time_window",
                    "buckets must be at least 1 ms",
                ));
            }
            WindowSetting::Time(span, buckets) => Window::Time {
                width: duration_nanos(span / buckets),
                buckets: buckets as usize,
            },
        };
        let at_least_ms = |field, d: Duration| {
            if d < MS {
                Err(ConfigError::new(field, "must be at least 1 ms"))
            } else {
                Ok(duration_nanos(d))
            }
        };
        let open_for = at_least_ms("open_for", s.open_for)?;
        let max_open_for = match s.max_open_for {
            Some(max) if max < s.open_for => {
                return Err(ConfigError::new(
                    "max_open_for",
                    "must be at least open_for",
                ));
            }
            Some(max) => duration_nanos(max),
            None => duration_nanos(Duration::from_secs(300)).max(open_for),
        };
        if !(1..=100).contains(&s.backoff) {
            return Err(ConfigError::new(
                "backoff",
                "must be a factor from 1 to 100",
            ));
        }
        if !(s.jitter.is_finite() && (0.0..=1.0).contains(&s.jitter)) {
            return Err(ConfigError::new("jitter", "must be a fraction in [0, 1]"));
        }
        if s.probes == 0 || u64::from(s.probes) > MAX_PROBES {
            return Err(ConfigError::new("half_open_probes", "must be 1 to 65 535"));
        }
        Ok(Policy {
            consecutive,
            failure_ppm,
            slow_ppm,
            slow_after,
            minimum_calls: u64::from(s.minimum_calls),
            window,
            open_for,
            max_open_for,
            backoff: s.backoff,
            jitter_ppm: (s.jitter * 1_000_000.0).round() as u64,
            probes: u64::from(s.probes),
            probe_timeout: at_least_ms("probe_timeout", s.probe_timeout)?,
        })
    }

    fn check_name(&self) -> Result<(), ConfigError> {
        let name = &self.settings.name;
        if name.is_empty() || name.len() > 64 {
            return Err(ConfigError::new("name", "must be 1 to 64 bytes"));
        }
        Ok(())
    }
}

impl<K, Cl, F, C> CircuitBreakerBuilder<ByKey<K>, Cl, F, C> {
    /// The most breakers a keyed layer keeps. When full, idle closed breakers are dropped;
    /// if none is idle, new keys share the layer's shared breaker until room frees up.
    /// Default: 1 024.
    ///
    /// # Errors
    /// `build()` rejects 0.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::{CircuitBreakerLayer, UpstreamHost};
    /// assert!(CircuitBreakerLayer::builder().with_key(UpstreamHost).max_keys(0).build().is_err());
    /// ```
    pub fn max_keys(mut self, max: usize) -> Self {
        self.settings.max_keys = max;
        self
    }

    /// A closed breaker unused for this long may be dropped (its key starts afresh, closed,
    /// on its next call). Open and half-open breakers are kept. Default: 10 min.
    ///
    /// # Errors
    /// `build()` rejects less than 1 ms.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::{CircuitBreakerLayer, UpstreamHost};
    /// # use std::time::Duration;
    /// let layer = CircuitBreakerLayer::builder()
    ///     .with_key(UpstreamHost)
    ///     .idle_timeout(Duration::from_secs(60))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.settings.idle_timeout = idle;
        self
    }

    /// Validates the settings and builds the keyed layer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    ///
    /// See [`with_key`](Self::with_key) for an example.
    pub fn build(self) -> Result<CircuitBreakerLayer<PerKey<K, C>, Cl, F>, ConfigError>
    where
        C: Clock,
    {
        self.check_name()?;
        let policy = self.policy()?;
        let s = self.settings;
        if s.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if s.idle_timeout < MS {
            return Err(ConfigError::new("idle_timeout", "must be at least 1 ms"));
        }
        let template = Template {
            policy,
            name: s.name,
            on_change: s.on_change,
            epoch: self.clock.epoch(),
            clock: self.clock,
        };
        let registry = Registry::new(template, s.max_keys, duration_nanos(s.idle_timeout));
        Ok(CircuitBreakerLayer::from_parts(
            PerKey {
                key: self.key.0,
                registry: Arc::new(registry),
            },
            self.classifier,
            self.fallback,
        ))
    }
}

impl<Cl, F, C> CircuitBreakerBuilder<(), Cl, F, C> {
    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first invalid setting.
    ///
    /// ```
    /// # use tower_rampart::circuit_breaker::CircuitBreakerLayer;
    /// let err = CircuitBreakerLayer::builder().half_open_probes(0).build().unwrap_err();
    /// assert_eq!(err.field(), "half_open_probes");
    /// ```
    pub fn build(self) -> Result<CircuitBreakerLayer<Single<C>, Cl, F>, ConfigError>
    where
        C: Clock,
    {
        self.check_name()?;
        let policy = self.policy()?;
        let lanes = default_lanes();
        let s = self.settings;
        let metrics = std::sync::Arc::new(crate::metrics::Breaker::new(s.name.clone()));
        let core = Core::new(policy, lanes, s.name, None, s.on_change, metrics);
        let breaker = Breaker::new(core, &self.clock, self.clock.epoch(), lanes);
        Ok(CircuitBreakerLayer::from_parts(
            Single {
                breaker: Arc::new(breaker),
            },
            self.classifier,
            self.fallback,
        ))
    }
}
