//! What the layers record through the [`metrics`](https://docs.rs/metrics) facade, with the
//! `metrics` feature; without it every call here compiles to nothing.
//!
//! Counters on a request's path are registered once, when a layer is built, and only
//! incremented per request (no key built, no lookup). Rare events (a transition, a timeout,
//! a degraded part) are recorded by name when they happen. Install the recorder (for
//! example `metrics-exporter-prometheus`) *before* building the layers: handles registered
//! earlier stay no-ops.
//!
//! | name | kind | labels | when |
//! |---|---|---|---|
//! | `rampart_rate_limit_requests_total` | counter | `policy`, `outcome` = `admitted` / `delayed` / `rejected` | every decision; in shadow mode a request the limit refuses still goes through and counts as `rejected` |
//! | `rampart_rate_limit_missing_key_total` | counter | `policy` | a keyed limiter met a request with no key (for `PeerIp`: no peer address, see [`key`](crate::key)) |
//! | `rampart_load_shed_limit` | gauge | `name` | an adaptive load shedder's limit, set as each window closes |
//! | `rampart_load_shed_in_flight_max` | gauge | `name` | the most calls in flight during the last window |
//! | `rampart_load_shed_latency_p90_seconds` | gauge | `name` | the last window's 90th percentile latency |
//! | `rampart_load_shed_latency_baseline_seconds` | gauge | `name` | the baseline latency the limit compares with |
//! | `rampart_load_shed_shed_total` | counter | `name`, `priority` = `sheddable` / `normal` / `critical`, `reason` = `limit` / `deadline` | a load shedder refused a request: at its limit, or with a deadline nearer than a typical call |
//! | `rampart_rate_limit_decisions_total` | counter | `policy`, `source` = `redis` / `local_cache` / `lease` / `fallback`, `outcome` = `admitted` / `rejected` | every decision of a limiter shared through Redis (feature `redis`) |
//! | `rampart_rate_limit_retry_after_seconds` | histogram | `policy` | every rejection: the wait it announces |
//! | `rampart_circuit_breaker_calls_total` | counter | `breaker`, `outcome` = `success` / `failure` / `ignored` | every completed call |
//! | `rampart_circuit_breaker_rejected_total` | counter | `breaker` | every call refused |
//! | `rampart_circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` | every state change |
//! | `rampart_circuit_breaker_state` | gauge | `breaker` | 0 closed, 1 half-open, 2 open, 3 forced open, 4 disabled (a keyed layer: its shared breaker) |
//! | `rampart_circuit_breaker_open_keys` | gauge | `breaker` | a keyed layer: how many of its per-key breakers are not closed |
//! | `rampart_timeout_expired_total` | counter | `side` = `server` / `client` | a deadline passed during a call |
//! | `rampart_timeout_budget_spent_total` | counter | `side` = `server` / `client` | a call refused before it started: no budget left |
//! | `rampart_fan_out_degraded_total` | counter | `part`, `status` (`timed_out`, `rejected`, `failed`, `cancelled`) | a part did not answer, or was dropped when an essential part failed |
//! | `rampart_fan_out_failed_total` | counter | `part` | an essential part failed the fan-out |
//! | `rampart_request_ids_total` | counter | `source` = `accepted` / `generated` / `traceparent` | every request |
//! | `rampart_request_ids_rejected_total` | counter | | an incoming id failed the rules (and was replaced) |
//! | `rampart_http_requests_total` | counter | `method`, `status` (`2xx`…`5xx`, `error`) | every request through an [`HttpMetricsLayer`] |
//! | `rampart_http_request_duration_seconds` | histogram | `method`, `status` | the same, time to the response head |
//!
//! The per-key breakers of a keyed layer count into the layer's own series (label `breaker`
//! = the layer's name), so a keyed layer exports the same handful of series whatever its
//! number of keys; their keys appear only in DEBUG/INFO/WARN events (`breaker.key`, cut to
//! 64 printable bytes). No label carries a key or a client address.

#[cfg(feature = "metrics")]
mod enabled {
    #![allow(unused_imports)] // each layer's feature uses some of them

    use std::borrow::Cow;
    use std::time::Duration;

    use ::metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

    /// A rate limiter's handles.
    #[cfg(feature = "rate-limit")]
    #[derive(Debug)]
    pub(crate) struct RateLimit {
        admitted: Counter,
        delayed: Counter,
        rejected: Counter,
        missing_key: Counter,
        retry_after: Histogram,
    }

    #[cfg(feature = "rate-limit")]
    impl RateLimit {
        pub(crate) fn new(policy: Cow<'static, str>) -> Self {
            let requests = |outcome: &'static str| counter!("rampart_rate_limit_requests_total", "policy" => policy.clone(), "outcome" => outcome);
            Self {
                admitted: requests("admitted"),
                delayed: requests("delayed"),
                rejected: requests("rejected"),
                missing_key: counter!("rampart_rate_limit_missing_key_total", "policy" => policy.clone()),
                retry_after: histogram!("rampart_rate_limit_retry_after_seconds", "policy" => policy.clone()),
            }
        }

        #[inline]
        pub(crate) fn admitted(&self) {
            self.admitted.increment(1);
        }

        #[inline]
        pub(crate) fn delayed(&self) {
            self.delayed.increment(1);
        }

        #[inline]
        pub(crate) fn missing_key(&self) {
            self.missing_key.increment(1);
        }

        pub(crate) fn rejected(&self, retry_after: Duration) {
            self.rejected.increment(1);
            self.retry_after.record(retry_after.as_secs_f64());
        }
    }

    /// A circuit breaker's handles.
    #[cfg(feature = "circuit-breaker")]
    #[derive(Debug)]
    pub(crate) struct Breaker {
        name: Cow<'static, str>,
        success: Counter,
        failure: Counter,
        ignored: Counter,
        rejected: Counter,
        /// The breaker's state, or for the breakers of a keyed layer how many are not
        /// closed: one series per layer, whatever the number of keys.
        level: Level,
    }

    #[cfg(feature = "circuit-breaker")]
    #[derive(Debug)]
    enum Level {
        State(Gauge),
        OpenKeys(Gauge),
    }

    #[cfg(feature = "circuit-breaker")]
    impl Breaker {
        /// The handles of one breaker, with its state gauge.
        pub(crate) fn new(name: Cow<'static, str>) -> Self {
            let state = gauge!("rampart_circuit_breaker_state", "breaker" => name.clone());
            state.set(0.0);
            Self::with_level(name, Level::State(state))
        }

        /// The handles shared by every per-key breaker of a keyed layer: their calls count
        /// in the layer's series, and a gauge counts the keys whose breaker is not closed.
        pub(crate) fn keyed(name: Cow<'static, str>) -> Self {
            let open = gauge!("rampart_circuit_breaker_open_keys", "breaker" => name.clone());
            open.set(0.0);
            Self::with_level(name, Level::OpenKeys(open))
        }

        fn with_level(name: Cow<'static, str>, level: Level) -> Self {
            let calls = |outcome: &'static str| counter!("rampart_circuit_breaker_calls_total", "breaker" => name.clone(), "outcome" => outcome);
            Self {
                success: calls("success"),
                failure: calls("failure"),
                ignored: calls("ignored"),
                rejected: counter!("rampart_circuit_breaker_rejected_total", "breaker" => name.clone()),
                level,
                name,
            }
        }

        #[inline]
        pub(crate) fn success(&self) {
            self.success.increment(1);
        }

        #[inline]
        pub(crate) fn failure(&self) {
            self.failure.increment(1);
        }

        #[inline]
        pub(crate) fn ignored(&self) {
            self.ignored.increment(1);
        }

        #[inline]
        pub(crate) fn rejected(&self) {
            self.rejected.increment(1);
        }

        /// A change from `from` to `to` (whose state gauge level is `level`); `open` says
        /// whether each side counts as not closed.
        pub(crate) fn transition(
            &self,
            from: &'static str,
            to: &'static str,
            level: f64,
            open: (bool, bool),
        ) {
            counter!(
                "rampart_circuit_breaker_transitions_total",
                "breaker" => self.name.clone(), "from" => from, "to" => to
            )
            .increment(1);
            match &self.level {
                Level::State(state) => state.set(level),
                Level::OpenKeys(gauge) => match open {
                    (false, true) => gauge.increment(1.0),
                    (true, false) => gauge.decrement(1.0),
                    _ => {}
                },
            }
        }
    }

    /// A request-id layer's handles.
    #[cfg(feature = "request-id")]
    #[derive(Clone, Debug)]
    pub(crate) struct RequestIds {
        accepted: Counter,
        generated: Counter,
        traceparent: Counter,
        rejected: Counter,
    }

    #[cfg(feature = "request-id")]
    impl RequestIds {
        pub(crate) fn new() -> Self {
            let ids =
                |source: &'static str| counter!("rampart_request_ids_total", "source" => source);
            Self {
                accepted: ids("accepted"),
                generated: ids("generated"),
                traceparent: ids("traceparent"),
                rejected: counter!("rampart_request_ids_rejected_total"),
            }
        }

        #[inline]
        pub(crate) fn accepted(&self) {
            self.accepted.increment(1);
        }

        #[inline]
        pub(crate) fn generated(&self) {
            self.generated.increment(1);
        }

        #[inline]
        pub(crate) fn traceparent(&self) {
            self.traceparent.increment(1);
        }

        pub(crate) fn rejected(&self) {
            self.rejected.increment(1);
        }
    }

    #[cfg(feature = "timeout")]
    pub(crate) fn timeout_expired(side: &'static str) {
        counter!("rampart_timeout_expired_total", "side" => side).increment(1);
    }

    #[cfg(feature = "timeout")]
    pub(crate) fn timeout_budget_spent(side: &'static str) {
        counter!("rampart_timeout_budget_spent_total", "side" => side).increment(1);
    }

    #[cfg(feature = "fan-out")]
    pub(crate) fn fan_out_degraded(part: &'static str, status: &'static str) {
        counter!("rampart_fan_out_degraded_total", "part" => part, "status" => status).increment(1);
    }

    #[cfg(feature = "fan-out")]
    pub(crate) fn fan_out_failed(part: &'static str) {
        counter!("rampart_fan_out_failed_total", "part" => part).increment(1);
    }

    /// A load shedder's refusals by priority.
    #[cfg(feature = "load-shed")]
    #[derive(Debug)]
    pub(crate) struct LoadShed {
        shed: [Counter; 3],
        too_late: [Counter; 3],
    }

    #[cfg(feature = "load-shed")]
    impl LoadShed {
        pub(crate) fn new(name: &'static str) -> Self {
            let shed = |priority: &'static str, reason: &'static str| counter!("rampart_load_shed_shed_total", "name" => name, "priority" => priority, "reason" => reason);
            Self {
                shed: [
                    shed("sheddable", "limit"),
                    shed("normal", "limit"),
                    shed("critical", "limit"),
                ],
                too_late: [
                    shed("sheddable", "deadline"),
                    shed("normal", "deadline"),
                    shed("critical", "deadline"),
                ],
            }
        }

        #[inline]
        pub(crate) fn shed(&self, priority: crate::load_shed::Priority) {
            self.shed[priority as usize].increment(1);
        }

        pub(crate) fn too_late(&self, priority: crate::load_shed::Priority) {
            self.too_late[priority as usize].increment(1);
        }
    }

    /// What an adaptive load shedder's windows measured, registered once when it is built:
    /// closing a window then sets four gauges and allocates nothing.
    #[cfg(feature = "load-shed")]
    #[derive(Debug)]
    pub(crate) struct LoadShedWindow {
        limit: Gauge,
        in_flight: Gauge,
        p90: Gauge,
        baseline: Gauge,
    }

    #[cfg(feature = "load-shed")]
    impl LoadShedWindow {
        pub(crate) fn new(name: &'static str) -> Self {
            Self {
                limit: gauge!("rampart_load_shed_limit", "name" => name),
                in_flight: gauge!("rampart_load_shed_in_flight_max", "name" => name),
                p90: gauge!("rampart_load_shed_latency_p90_seconds", "name" => name),
                baseline: gauge!("rampart_load_shed_latency_baseline_seconds", "name" => name),
            }
        }

        pub(crate) fn set(&self, limit: u64, in_flight: u64, p90_nanos: u64, baseline_nanos: f64) {
            self.limit.set(limit as f64);
            self.in_flight.set(in_flight as f64);
            self.p90.set(p90_nanos as f64 / 1e9);
            self.baseline.set(baseline_nanos / 1e9);
        }
    }

    /// A shared limiter's decisions by source and outcome.
    #[cfg(feature = "redis")]
    #[derive(Debug)]
    pub(crate) struct SharedDecisions {
        counters: [Counter; 8],
    }

    #[cfg(feature = "redis")]
    impl SharedDecisions {
        pub(crate) fn new(policy: Cow<'static, str>) -> Self {
            let decision = |source: &'static str, outcome: &'static str| counter!("rampart_rate_limit_decisions_total", "policy" => policy.clone(), "source" => source, "outcome" => outcome);
            Self {
                counters: [
                    decision("redis", "admitted"),
                    decision("redis", "rejected"),
                    decision("local_cache", "admitted"),
                    decision("local_cache", "rejected"),
                    decision("fallback", "admitted"),
                    decision("fallback", "rejected"),
                    decision("lease", "admitted"),
                    decision("lease", "rejected"),
                ],
            }
        }

        /// Counts one decision: `source` 0 redis, 1 local cache, 2 fallback, 3 lease.
        #[inline]
        pub(crate) fn record(&self, source: usize, admitted: bool) {
            self.counters[source * 2 + usize::from(!admitted)].increment(1);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    // The same calls as `enabled`, doing nothing.

    macro_rules! noop {
        (#[$cfg:meta] $ty:ident ($($new:ty),*) { $($method:ident($($arg:ty),*)),* $(,)? }) => {
            #[$cfg]
            #[derive(Clone, Debug)]
            pub(crate) struct $ty;

            #[$cfg]
            impl $ty {
                #[inline(always)]
                pub(crate) fn new($(_: $new),*) -> Self {
                    Self
                }
                $(
                    #[inline(always)]
                    pub(crate) fn $method(&self, $(_: $arg),*) {}
                )*
            }
        };
    }

    noop!(#[cfg(feature = "rate-limit")] RateLimit (std::borrow::Cow<'static, str>) {
        admitted(), delayed(), missing_key(), rejected(std::time::Duration)
    });
    noop!(#[cfg(feature = "circuit-breaker")] Breaker (std::borrow::Cow<'static, str>) {
        success(), failure(), ignored(), rejected(), transition(&'static str, &'static str, f64, (bool, bool))
    });

    #[cfg(feature = "circuit-breaker")]
    impl Breaker {
        #[inline(always)]
        pub(crate) fn keyed(_: std::borrow::Cow<'static, str>) -> Self {
            Self
        }
    }
    noop!(#[cfg(feature = "request-id")] RequestIds () {
        accepted(), generated(), traceparent(), rejected()
    });

    #[cfg(feature = "timeout")]
    #[inline(always)]
    pub(crate) fn timeout_expired(_: &'static str) {}
    #[cfg(feature = "timeout")]
    #[inline(always)]
    pub(crate) fn timeout_budget_spent(_: &'static str) {}
    #[cfg(feature = "fan-out")]
    #[inline(always)]
    pub(crate) fn fan_out_degraded(_: &'static str, _: &'static str) {}
    #[cfg(feature = "fan-out")]
    #[inline(always)]
    pub(crate) fn fan_out_failed(_: &'static str) {}
    noop!(#[cfg(feature = "load-shed")] LoadShedWindow (&'static str) {
        set(u64, u64, u64, f64)
    });
    noop!(#[cfg(feature = "load-shed")] LoadShed (&'static str) {
        shed(crate::load_shed::Priority), too_late(crate::load_shed::Priority)
    });
    noop!(#[cfg(feature = "redis")] SharedDecisions (std::borrow::Cow<'static, str>) {
        record(usize, bool)
    });
}

// Unused only when no layer is compiled in.
#[cfg(not(feature = "metrics"))]
#[allow(unused_imports)]
pub(crate) use disabled::*;
#[cfg(feature = "metrics")]
#[allow(unused_imports)]
pub(crate) use enabled::*;

#[cfg(all(feature = "metrics", feature = "http"))]
mod http;

#[cfg(all(feature = "metrics", feature = "http"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "metrics", feature = "http"))))]
pub use http::{HttpMetrics, HttpMetricsLayer, ResponseFuture};
