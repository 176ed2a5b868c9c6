//! The state one limiter shares across every clone and every route: quota, store, clock,
//! and the flags behind its once-per-transition events.

use std::borrow::Cow;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::Clock;
use crate::error::RateLimited;
use crate::sync::{AtomicBool, AtomicU64, Ordering};

use super::gcra::{self, Decision, Quota, Snapshot};
use super::key::{Bucketing, private::Partition};
use super::store::{Slot, Store};

/// What a limiter does with a request it has no capacity for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refuse at once (servers).
    Reject,
    /// Wait for capacity up to this many nanoseconds, then refuse (clients).
    Wait(u64),
    /// Let it through, but log and count it as refused.
    Shadow,
}

/// What happens to a request from which no key can be extracted.
///
/// Never a 500 and never a panic. The first such request of a limiter is logged once at
/// ERROR, and every one is counted in `rampart_rate_limit_missing_key_total` (with the
/// `metrics` feature), because it almost always means a misconfiguration: a server started
/// with `axum::serve(listener, app)` instead of
/// `app.into_make_service_with_connect_info::<SocketAddr>()`, this crate's `axum` feature
/// turned off, or a header key a client did not send.
///
/// The default is [`Shared`](Self::Shared), also for [`PeerIp`](crate::key::PeerIp):
/// a missing peer address is a deployment mistake that hits every request at once, and
/// refusing would turn it into a full outage answered with misleading 429s that make well
/// behaved clients back off. Sharing keeps the service answering at one client's quota
/// while the ERROR and the counter say what to fix. Choose [`Reject`](Self::Reject) where
/// a keyless request must never get through (an API key limiter, for instance).
///
/// ```
/// use tower_rampart::rate_limit::{MissingKey, PeerIp, RateLimitLayer};
///
/// let layer = RateLimitLayer::per_second(10)
///     .with_key(PeerIp)
///     .on_missing_key(MissingKey::Reject)
///     .build()?;
/// # let _ = layer;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingKey {
    /// Keyless requests share one bucket with the limiter's quota (the default). The same
    /// bucket takes new keys while the key map is full.
    #[default]
    Shared,
    /// Keyless requests are not limited.
    Allow,
    /// Keyless requests are refused as rate limited (429), with `Retry-After` set to the
    /// quota's refill time.
    Reject,
}

/// The verdict of [`Limiter::check`]. Kept small: it is built on every request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Call the inner service now.
    Now(Option<Admitted>),
    /// Shadow mode: the limit refused, but call the inner service anyway. Already counted
    /// as a rejection, in the limiter and in its metrics alike.
    Shadowed(Option<Admitted>),
    /// Wait mode: call it after `wait_nanos`, holding `reservation` until then.
    Later {
        wait_nanos: u64,
        reservation: Reservation,
        state: Option<Admitted>,
    },
    /// Refuse; [`Limiter::rejection`] turns this into the rejection. Plain data, so the raw
    /// [`check`](super::RateLimitLayer::check) refuses without allocating.
    Reject(Refusal),
}

/// Why a request was refused: the wait and the bucket's state at that moment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal {
    retry_after_nanos: u64,
    bucket: Admitted,
}

/// Where and what a decision was about.
#[derive(Clone, Copy, Debug)]
struct At {
    now: u64,
    cost: u32,
    bucketing: Bucketing,
}

/// A wait-mode reservation to give back if the request is cancelled before it runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reservation {
    slot: Slot,
    tat: u64,
    increment: u64,
}

/// The state of the bucket that admitted a request, for the optional `RateLimit` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    rate: u32,
    period_nanos: u64,
    remaining: u64,
    next_nanos: u64,
}

// === impl Admitted ===

impl Admitted {
    pub(crate) fn new(quota: &Quota, snapshot: Snapshot) -> Self {
        Self {
            rate: quota.rate(),
            period_nanos: nanos(quota.period()),
            remaining: snapshot.remaining,
            next_nanos: snapshot.next_nanos,
        }
    }

    /// The sustained quota: the quota's `rate`, per [`window`](Self::window).
    pub const fn limit(&self) -> u32 {
        self.rate
    }

    /// The quota's period: the window of `RateLimit-Policy`.
    pub const fn window(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    /// Whole tokens left in the bucket after this request: what may be sent at once now.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time until one more token is there (zero when the bucket is full): the `t` of the
    /// `RateLimit` field.
    pub const fn reset(&self) -> Duration {
        Duration::from_nanos(self.next_nanos)
    }
}

#[derive(Debug)]
pub(crate) struct Limiter<C> {
    pub(crate) quota: Quota,
    pub(crate) mode: Mode,
    pub(crate) missing: MissingKey,
    pub(crate) policy: Cow<'static, str>,
    pub(crate) store: Store,
    pub(crate) clock: C,
    epoch: Instant,
    /// Set while the limiter is refusing; cleared after `quiet_nanos` without a refusal.
    rejecting: AtomicBool,
    last_rejection: AtomicU64,
    quiet_nanos: u64,
    rejected: AtomicU64,
    warned_missing_key: AtomicBool,
    pub(crate) metrics: crate::metrics::RateLimit,
}

impl<C: Clock> Limiter<C> {
    pub(crate) fn new(
        quota: Quota,
        mode: Mode,
        missing: MissingKey,
        policy: Cow<'static, str>,
        max_keys: u64,
        clock: C,
    ) -> Self {
        let epoch = clock.epoch();
        let refill = quota.refill_time();
        let sweep_every = refill.clamp(Duration::from_millis(100), Duration::from_secs(10));
        Self {
            metrics: crate::metrics::RateLimit::new(policy.clone()),
            quota,
            mode,
            missing,
            policy,
            store: Store::new(max_keys, nanos(sweep_every)),
            clock,
            epoch,
            rejecting: AtomicBool::new(false),
            last_rejection: AtomicU64::new(0),
            quiet_nanos: nanos(quota.period().max(Duration::from_secs(1))),
            rejected: AtomicU64::new(0),
            warned_missing_key: AtomicBool::new(false),
        }
    }

    /// Now, in nanoseconds since this limiter's epoch: the one clock read of a decision.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.nanos_since(self.epoch)
    }

    /// The instant `at` nanoseconds after the epoch (for wait-mode deadlines).
    pub(crate) fn instant_at(&self, at: u64) -> Instant {
        self.epoch + Duration::from_nanos(at)
    }

    /// Decides `req` at `now` (ns since epoch); `with_state` asks for the bucket's state on
    /// admission (for headers), which costs a division. A `RAW` decision ignores the wait and
    /// shadow modes: it admits or refuses now. (A const parameter, so each caller's branch
    /// compiles away.)
    #[inline]
    pub(crate) fn check<const RAW: bool, Req, P: Partition<Req>>(
        &self,
        partition: &P,
        req: &Req,
        now: u64,
        with_state: bool,
    ) -> Verdict {
        let mode = if RAW { Mode::Reject } else { self.mode };
        let cost = partition.cost(req);
        if cost == 0 {
            return Verdict::Now(None);
        }
        let max_wait = match mode {
            Mode::Wait(max) => max,
            Mode::Reject | Mode::Shadow => 0,
        };
        let bucketing = partition.bucketing(req, self.store.hasher());
        match bucketing {
            Bucketing::Global => {
                self.decide_shared(mode, bucketing, now, cost, max_wait, with_state)
            }
            Bucketing::Key(hash) => {
                let (slot, quota, decision) = self.store.decide_keyed(
                    hash,
                    now,
                    cost,
                    || partition.quota(req).unwrap_or(self.quota),
                    &self.quota,
                    max_wait,
                );
                let at = At {
                    now,
                    cost,
                    bucketing,
                };
                self.conclude(mode, decision, slot, &quota, at, with_state)
            }
            Bucketing::Missing => {
                self.metrics.missing_key();
                self.report_missing_key_once();
                match self.missing {
                    MissingKey::Shared => {
                        self.decide_shared(mode, bucketing, now, cost, max_wait, with_state)
                    }
                    MissingKey::Allow => Verdict::Now(None),
                    MissingKey::Reject => {
                        let refill = nanos(self.quota.refill_time());
                        let snapshot = Snapshot {
                            remaining: 0,
                            next_nanos: refill,
                        };
                        Verdict::Reject(self.refuse(
                            mode,
                            now,
                            bucketing,
                            &self.quota,
                            refill,
                            snapshot,
                        ))
                    }
                }
            }
        }
    }

    /// Decides against the shared bucket with the limiter's own quota.
    #[inline]
    fn decide_shared(
        &self,
        mode: Mode,
        bucketing: Bucketing,
        now: u64,
        cost: u32,
        max_wait: u64,
        with_state: bool,
    ) -> Verdict {
        let decision = self.store.decide_shared(now, cost, &self.quota, max_wait);
        let at = At {
            now,
            cost,
            bucketing,
        };
        self.conclude(mode, decision, Slot::Shared, &self.quota, at, with_state)
    }

    /// Turns a bucket's decision into the verdict, with the transition bookkeeping. Always
    /// inlined: it is small once `with_state` and the mode are known, and it sits on every
    /// admitted request (12% fewer instructions on the keyed path).
    #[inline(always)]
    fn conclude(
        &self,
        mode: Mode,
        decision: Decision,
        slot: Slot,
        quota: &Quota,
        At {
            now,
            cost,
            bucketing,
        }: At,
        with_state: bool,
    ) -> Verdict {
        match decision {
            Decision::Admit { tat, wait_nanos } => {
                self.note_admission(now);
                let state =
                    with_state.then(|| Admitted::new(quota, gcra::snapshot(tat, now, quota)));
                if wait_nanos == 0 {
                    Verdict::Now(state)
                } else {
                    Verdict::Later {
                        wait_nanos,
                        reservation: Reservation {
                            slot,
                            tat,
                            increment: gcra::increment(cost, quota),
                        },
                        state,
                    }
                }
            }
            Decision::Deny {
                retry_after_nanos,
                snapshot,
            } => {
                let refused = self.refuse(mode, now, bucketing, quota, retry_after_nanos, snapshot);
                if mode == Mode::Shadow {
                    self.metrics
                        .rejected(Duration::from_nanos(refused.retry_after_nanos));
                    return Verdict::Shadowed(with_state.then(|| Admitted::new(quota, snapshot)));
                }
                Verdict::Reject(refused)
            }
        }
    }

    pub(crate) fn refund(&self, reservation: &Reservation) {
        self.store
            .refund(reservation.slot, reservation.tat, reservation.increment);
    }

    /// Non-consuming: how long until `req` would be admitted (zero if now).
    pub(crate) fn time_until_ready<Req, P: Partition<Req>>(
        &self,
        partition: &P,
        req: &Req,
        now: u64,
    ) -> Duration {
        let cost = partition.cost(req);
        if cost == 0 {
            return Duration::ZERO;
        }
        let bucketing = partition.bucketing(req, self.store.hasher());
        let peeked = match bucketing {
            Bucketing::Global => self.store.peek_shared(now, cost, &self.quota),
            Bucketing::Key(hash) => self.store.peek_keyed(hash, now, cost),
            Bucketing::Missing => match self.missing {
                MissingKey::Shared => self.store.peek_shared(now, cost, &self.quota),
                MissingKey::Allow => 0,
                // Never admitted; this is the wait `Retry-After` would advise.
                MissingKey::Reject => nanos(self.quota.refill_time()),
            },
        };
        Duration::from_nanos(peeked)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    fn refuse(
        &self,
        mode: Mode,
        now: u64,
        bucketing: Bucketing,
        quota: &Quota,
        retry_after: u64,
        snapshot: Snapshot,
    ) -> Refusal {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        // Episode tracking needs millisecond precision at most: skip the shared write when
        // the last refusal is that recent (most refusals come in bursts).
        if now.saturating_sub(self.last_rejection.load(Ordering::Relaxed)) >= 1_000_000 {
            self.last_rejection.store(now, Ordering::Relaxed);
        }
        let refusal = Refusal {
            retry_after_nanos: retry_after,
            bucket: Admitted::new(quota, snapshot),
        };
        let retry_after = Duration::from_nanos(retry_after);
        let key_hash = match bucketing {
            Bucketing::Key(hash) => Some(hash),
            Bucketing::Global | Bucketing::Missing => None,
        };
        tracing::debug!(
            rate_limit.policy = %self.policy,
            rate_limit.key_hash = key_hash,
            rate_limit.retry_after_ms = millis(retry_after),
            rate_limit.shadow = mode == Mode::Shadow,
            "request rate limited"
        );
        if !self.rejecting.load(Ordering::Relaxed) && !self.rejecting.swap(true, Ordering::Relaxed)
        {
            tracing::info!(
                rate_limit.policy = %self.policy,
                rate_limit.shadow = mode == Mode::Shadow,
                "rate limiter started rejecting"
            );
        }
        refusal
    }

    /// The rejection for `refusal`, under this limiter's policy name.
    pub(crate) fn rejection(&self, refusal: Refusal) -> RateLimited {
        self.metrics
            .rejected(Duration::from_nanos(refusal.retry_after_nanos));
        self.rate_limited(refusal)
    }

    /// The rejection for `refusal`, not counted in the metrics (the caller counts it).
    pub(crate) fn rate_limited(&self, refusal: Refusal) -> RateLimited {
        let bucket = refusal.bucket;
        let retry_after = Duration::from_nanos(refusal.retry_after_nanos);
        RateLimited::new(retry_after)
            .with_quota(
                self.policy.clone(),
                u64::from(bucket.limit()),
                bucket.window(),
            )
            .with_remaining(bucket.remaining(), bucket.reset())
    }

    #[inline]
    fn note_admission(&self, now: u64) {
        if self.rejecting.load(Ordering::Relaxed)
            && now.saturating_sub(self.last_rejection.load(Ordering::Relaxed)) >= self.quiet_nanos
            && self.rejecting.swap(false, Ordering::Relaxed)
        {
            tracing::info!(
                rate_limit.policy = %self.policy,
                rate_limit.rejected_total = self.rejected(),
                "rate limiter stopped rejecting"
            );
        }
    }

    /// An ERROR, once per limiter: a missing key is almost always a deployment mistake
    /// (every request lacks it), and one that silently merges all clients into one bucket.
    #[cold]
    fn report_missing_key_once(&self) {
        if !self.warned_missing_key.load(Ordering::Relaxed)
            && !self.warned_missing_key.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                rate_limit.policy = %self.policy,
                rate_limit.on_missing_key = ?self.missing,
                "rate limit key missing from a request; PeerIp and ClientIp need the peer address: \
                 serve axum with into_make_service_with_connect_info::<SocketAddr>() \
                 (and keep this crate's `axum` feature on), or insert a SocketAddr extension \
                 from a hyper server; counted in rampart_rate_limit_missing_key_total"
            );
        }
    }
}

use crate::clock::duration_nanos as nanos;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
