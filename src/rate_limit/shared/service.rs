//! [`SharedRateLimitLayer`], its service and its future.

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::clock::{Clock, TokioClock};
use crate::error::RateLimited;
use crate::key::map::{Evict, KeyedMap};
use crate::sync::{AtomicU64, Ordering};
use crate::{BoxError, Rejection};

use super::super::future::ResponseFuture as RateLimitFuture;
use super::super::gcra::Quota;
use super::super::gcra::Snapshot;
use super::super::headers::{NoHeaders, ResponseHeaders};
use super::super::key::private::Partition;
use super::super::key::{Global, PerKey, WithCost, WithQuota};
use super::super::limiter::{Admitted, Limiter, MissingKey, Verdict};
use super::RedisStore;
use super::key::StableKey;
use super::script::Decision;

/// The margin kept from a request's deadline: a Redis call never takes the last millisecond.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1);

/// Most keys the local refusal cache holds.
const MAX_CACHED_REFUSALS: u64 = 100_000;

/// A refusal Redis made, remembered until it expires: `until` in ns of the limiter's clock.
struct RefusedUntil {
    until: AtomicU64,
}

const CLAIMED: u64 = u64::MAX;

impl Evict for RefusedUntil {
    fn claim(&self, now: u64) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != CLAIMED
            && until <= now
            && self
                .until
                .compare_exchange(until, CLAIMED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Tokens a replica took from Redis ahead of use (lease mode), usable until `expires`.
struct Leased {
    tokens: AtomicU64,
    expires: AtomicU64,
}

impl Leased {
    /// Takes one leased token, if one is left and the lease still holds at `now`.
    fn take(&self, now: u64) -> bool {
        let expires = self.expires.load(Ordering::Relaxed);
        expires != CLAIMED
            && expires > now
            && self
                .tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
                .is_ok()
    }
}

impl Evict for Leased {
    fn claim(&self, now: u64) -> bool {
        let expires = self.expires.load(Ordering::Relaxed);
        let claimed = expires != CLAIMED
            && expires <= now
            && self
                .expires
                .compare_exchange(expires, CLAIMED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if claimed {
            self.tokens.store(0, Ordering::Relaxed);
        }
        claimed
    }
}

/// Everything the clones of a shared limiter share.
pub(crate) struct SharedState<C> {
    /// The limiter's settings (quota, policy, missing keys), its metrics and its clock.
    limiter: Arc<Limiter<C>>,
    /// Quotas the key must also fit ([`and_quota`](crate::rate_limit::RateLimitBuilder::and_quota)).
    more: Vec<Quota>,
    /// The in-memory limiter of [`OnStoreFailure::Local`](super::OnStoreFailure::Local).
    fallback: Option<Limiter<C>>,
    store: RedisStore,
    refused: KeyedMap<RefusedUntil>,
    /// Tokens per round trip ([`lease`](crate::rate_limit::RateLimitBuilder::lease)); 1: none.
    lease: u32,
    leases: KeyedMap<Leased>,
    decisions: crate::metrics::SharedDecisions,
}

/// A rate limiter whose buckets live in Redis, shared by every replica: the layer built by
/// [`RateLimitBuilder::shared`](crate::rate_limit::RateLimitBuilder::shared).
///
/// See the [`shared` module docs](crate::rate_limit::RedisStore) and
/// [`RateLimitBuilder::shared`](crate::rate_limit::RateLimitBuilder::shared) for an example.
pub struct SharedRateLimitLayer<P = Global, C = TokioClock, H = NoHeaders> {
    state: Arc<SharedState<C>>,
    partition: P,
    headers: H,
}

impl<P: Clone, C, H: Clone> Clone for SharedRateLimitLayer<P, C, H> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            partition: self.partition.clone(),
            headers: self.headers.clone(),
        }
    }
}

impl<P: fmt::Debug, C, H> fmt::Debug for SharedRateLimitLayer<P, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimitLayer")
            .field("quota", &self.state.limiter.quota)
            .field("store", &self.state.store)
            .field("partition", &self.partition)
            .finish()
    }
}

impl<P, C: Clock, H> SharedRateLimitLayer<P, C, H> {
    pub(crate) fn new(
        limiter: Arc<Limiter<C>>,
        more: Vec<Quota>,
        lease: u32,
        fallback: Option<Limiter<C>>,
        store: RedisStore,
        partition: P,
        headers: H,
    ) -> Self {
        Self {
            state: Arc::new(SharedState {
                more,
                fallback,
                store,
                refused: KeyedMap::new(MAX_CACHED_REFUSALS, 1_000_000_000),
                lease,
                leases: KeyedMap::new(MAX_CACHED_REFUSALS, 1_000_000_000),
                decisions: crate::metrics::SharedDecisions::new(limiter.policy.clone()),
                limiter,
            }),
            partition,
            headers,
        }
    }

    /// The quota every replica shares.
    ///
    /// See [`RateLimitBuilder::shared`](crate::rate_limit::RateLimitBuilder::shared) for an
    /// example.
    pub fn quota(&self) -> Quota {
        self.state.limiter.quota
    }
}

impl<S, P: Clone, C, H: Clone> Layer<S> for SharedRateLimitLayer<P, C, H> {
    type Service = SharedRateLimit<S, P, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        SharedRateLimit {
            inner,
            state: Arc::clone(&self.state),
            partition: self.partition.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// The service made by [`SharedRateLimitLayer`].
///
/// `call` decides locally when it can (a key Redis refused until later, a request of cost
/// 0); otherwise its future asks Redis first and then calls the inner service, which
/// `poll_ready` made ready. Needs `S: Clone`: the ready service goes with the future.
pub struct SharedRateLimit<S, P = Global, C = TokioClock, H = NoHeaders> {
    inner: S,
    state: Arc<SharedState<C>>,
    partition: P,
    headers: H,
}

impl<S: Clone, P: Clone, C, H: Clone> Clone for SharedRateLimit<S, P, C, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
            partition: self.partition.clone(),
            headers: self.headers.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug, C, H> fmt::Debug for SharedRateLimit<S, P, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimit")
            .field("inner", &self.inner)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

pub(crate) mod private {
    use super::*;

    /// How a shared limiter names a request's bucket: [`StableKey`] bytes, not the
    /// in-memory limiter's seeded hash.
    pub trait SharedPartition<Req>: Partition<Req> {
        /// Writes the request's key into `out`; `false` when it has none.
        fn write_key(&self, req: &Req, out: &mut Vec<u8>) -> bool;
    }

    impl<Req> SharedPartition<Req> for Global {
        fn write_key(&self, _: &Req, out: &mut Vec<u8>) -> bool {
            out.extend_from_slice(b"*");
            true
        }
    }

    impl<Req, K> SharedPartition<Req> for PerKey<K>
    where
        K: crate::key::KeyFn<Req>,
        for<'r> K::Key<'r>: StableKey,
    {
        fn write_key(&self, req: &Req, out: &mut Vec<u8>) -> bool {
            self.0.key(req).map(|key| key.write_key(out)).is_some()
        }
    }

    impl<Req, P, F> SharedPartition<Req> for WithCost<P, F>
    where
        P: SharedPartition<Req>,
        F: Fn(&Req) -> u32 + Clone + Send + Sync + 'static,
    {
        fn write_key(&self, req: &Req, out: &mut Vec<u8>) -> bool {
            self.inner.write_key(req, out)
        }
    }

    impl<Req, P, F> SharedPartition<Req> for WithQuota<P, F>
    where
        P: SharedPartition<Req>,
        F: Fn(&Req) -> Quota + Clone + Send + Sync + 'static,
    {
        fn write_key(&self, req: &Req, out: &mut Vec<u8>) -> bool {
            self.inner.write_key(req, out)
        }
    }
}

/// Which partitions a shared limiter accepts: the in-memory ones whose keys are
/// [`StableKey`]s. Sealed.
pub trait SharedPartition<Req>: private::SharedPartition<Req> {}

impl<Req, P: private::SharedPartition<Req>> SharedPartition<Req> for P {}

type Deciding = Pin<Box<dyn Future<Output = Result<Decision, BoxError>> + Send>>;

impl<S, Req, P, C, H> Service<Req> for SharedRateLimit<S, P, C, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: SharedPartition<Req>,
    C: Clock,
    H: ResponseHeaders<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SharedFuture<S, Req, P, C, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = &self.state;
        let limiter = &state.limiter;
        let cost = self.partition.cost(&req);
        if cost == 0 {
            return SharedFuture::calling(
                self.inner.call(req),
                H::keep(None),
                self.headers.clone(),
            );
        }
        let mut key = Vec::with_capacity(48);
        if !private::SharedPartition::write_key(&self.partition, &req, &mut key) {
            limiter.metrics.missing_key();
            match limiter.missing {
                MissingKey::Allow => {
                    return SharedFuture::calling(
                        self.inner.call(req),
                        H::keep(None),
                        self.headers.clone(),
                    );
                }
                MissingKey::Reject => {
                    let wait = limiter.quota.refill_time();
                    return SharedFuture::refused(
                        RateLimited::new(wait).with_quota(
                            limiter.policy.clone(),
                            u64::from(limiter.quota.rate()),
                            limiter.quota.period(),
                        ),
                        self.headers.clone(),
                    );
                }
                MissingKey::Shared => key.extend_from_slice(b"-"),
            }
        }
        let quota = self.partition.quota(&req).unwrap_or(limiter.quota);
        let now = limiter.now();
        let slot = state.refused.hasher().hash_one(&key);
        // Redis refused this key until `until`: nobody can make room sooner.
        let cached = state
            .refused
            .get(slot, |r| r.until.load(Ordering::Relaxed))
            .filter(|until| *until != CLAIMED && *until > now);
        if let Some(until) = cached {
            let wait = Duration::from_nanos(until - now);
            state.decisions.record(Source::LocalCache as usize, false);
            tracing::debug!(
                rate_limit.policy = %limiter.policy,
                rate_limit.source = "local_cache",
                rate_limit.retry_after_ms = wait.as_millis() as u64,
                "request rate limited"
            );
            limiter.metrics.rejected(wait);
            return SharedFuture::refused(
                RateLimited::new(wait)
                    .with_quota(
                        limiter.policy.clone(),
                        u64::from(quota.rate()),
                        quota.period(),
                    )
                    .with_remaining(0, wait),
                self.headers.clone(),
            );
        }
        // Lease mode: a token this replica already took from Redis.
        let lease = if cost == 1 { state.lease } else { 1 };
        if lease > 1 && state.leases.get(slot, |l| l.take(now)).unwrap_or(false) {
            state.decisions.record(Source::Lease as usize, true);
            limiter.metrics.admitted();
            return SharedFuture::calling(
                self.inner.call(req),
                H::keep(None),
                self.headers.clone(),
            );
        }
        let store = Arc::clone(&state.store.inner);
        let budget = crate::context::current_deadline()
            .map(|deadline| deadline.remaining().saturating_sub(DEADLINE_MARGIN))
            .map_or(store.timeout, |left| left.min(store.timeout));
        let mut quotas = Vec::with_capacity(1 + state.more.len());
        quotas.push(quota);
        quotas.extend_from_slice(&state.more);
        let names = store.naming.names(&limiter.policy, &key, quotas.len());
        let decided_quotas = quotas.clone();
        let mut call_args = Some((names, quotas));
        let breaker = store.breaker.clone();
        let call = tower::service_fn(move |()| {
            let store = Arc::clone(&store);
            let (names, quotas) = call_args.take().unwrap_or_default();
            async move {
                let mut conn = store.conn.clone();
                let decided = store.script.decide(&mut conn, &names, cost, &quotas, lease);
                match tokio::time::timeout(budget, decided).await {
                    Ok(Ok(decision)) => Ok::<_, BoxError>(decision),
                    Ok(Err(err)) => Err(err.into()),
                    Err(_) => Err("rate limit store timed out".into()),
                }
            }
        });
        // `service_fn` is always ready, and the breaker's `poll_ready` only forwards to it:
        // its admission is decided in `call`.
        let decision: Deciding = Box::pin(tower::Layer::layer(&breaker, call).call(()));
        // The ready service goes with the future; a clone takes its place.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        SharedFuture {
            headers: self.headers.clone(),
            kind: Kind::Deciding {
                decision,
                inner: Some(ready),
                req: Some(req),
                state: Arc::clone(state),
                partition: self.partition.clone(),
                slot,
                quotas: decided_quotas,
                now,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`SharedRateLimit`] call: the decision (in Redis, or by the failure
    /// policy), then the inner call.
    pub struct SharedFuture<S: Service<Req>, Req, P, C, H: ResponseHeaders<S::Response>> {
        #[pin]
        kind: Kind<S, Req, P, C, H>,
        headers: H,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<S: Service<Req>, Req, P, C, H: ResponseHeaders<S::Response>> {
        Deciding {
            decision: Deciding,
            inner: Option<S>,
            req: Option<Req>,
            state: Arc<SharedState<C>>,
            partition: P,
            slot: u64,
            quotas: Vec<Quota>,
            now: u64,
        },
        Calling { #[pin] future: RateLimitFuture<S::Future, H, H::State> },
        Refused { rejection: Option<RateLimited> },
    }
}

impl<S: Service<Req>, Req, P, C, H: ResponseHeaders<S::Response>> SharedFuture<S, Req, P, C, H> {
    fn calling(future: S::Future, kept: H::State, headers: H) -> Self {
        Self {
            kind: Kind::Calling {
                future: RateLimitFuture::called(future, kept, headers.clone()),
            },
            headers,
        }
    }

    fn refused(rejection: RateLimited, headers: H) -> Self {
        Self {
            kind: Kind::Refused {
                rejection: Some(rejection),
            },
            headers,
        }
    }
}

impl<S: Service<Req>, Req, P, C, H: ResponseHeaders<S::Response>> fmt::Debug
    for SharedFuture<S, Req, P, C, H>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Deciding { .. } => "deciding",
            Kind::Calling { .. } => "calling",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("SharedFuture")
            .field("state", &state)
            .finish()
    }
}

/// What the decision said, and who made it.
enum Outcome {
    /// Admitted, with the bucket's state when known (for the `RateLimit` fields).
    Admit(Source, Option<Admitted>),
    Refuse(RateLimited, Source),
}

/// Who decided: the metrics' and events' `source`.
#[derive(Clone, Copy, Debug)]
enum Source {
    Redis = 0,
    LocalCache = 1,
    Fallback = 2,
    Lease = 3,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Redis => "redis",
            Source::LocalCache => "local_cache",
            Source::Fallback => "fallback",
            Source::Lease => "lease",
        }
    }
}

impl<S, Req, P, C, H> Future for SharedFuture<S, Req, P, C, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: SharedPartition<Req>,
    C: Clock,
    H: ResponseHeaders<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let headers = this.headers;
            let next = match this.kind.project() {
                KindProj::Calling { future } => {
                    return future.poll(cx);
                }
                KindProj::Refused { rejection } => {
                    let rejection = rejection
                        .take()
                        .expect("SharedFuture polled after completion");
                    return Poll::Ready(Err(Box::new(Rejection::from(rejection))));
                }
                KindProj::Deciding {
                    decision,
                    inner,
                    req,
                    state,
                    partition,
                    slot,
                    quotas,
                    now,
                } => {
                    let decided = ready!(decision.as_mut().poll(cx));
                    let req = req.take().expect("SharedFuture polled after completion");
                    let asked = Asked {
                        slot: *slot,
                        quotas,
                        now: *now,
                        with_state: H::ACTIVE,
                    };
                    let outcome = conclude(state, partition, &req, decided, asked);
                    let limiter = &state.limiter;
                    match outcome {
                        Outcome::Admit(source, admitted) => {
                            state.decisions.record(source as usize, true);
                            tracing::debug!(
                                rate_limit.policy = %limiter.policy,
                                rate_limit.source = source.as_str(),
                                "request admitted"
                            );
                            limiter.metrics.admitted();
                            let mut inner =
                                inner.take().expect("SharedFuture polled after completion");
                            Kind::Calling {
                                future: RateLimitFuture::called(
                                    inner.call(req),
                                    H::keep(admitted),
                                    headers.clone(),
                                ),
                            }
                        }
                        Outcome::Refuse(rejection, source) => {
                            state.decisions.record(source as usize, false);
                            tracing::debug!(
                                rate_limit.policy = %limiter.policy,
                                rate_limit.source = source.as_str(),
                                rate_limit.retry_after_ms = rejection.retry_after().as_millis() as u64,
                                "request rate limited"
                            );
                            limiter.metrics.rejected(rejection.retry_after());
                            Kind::Refused {
                                rejection: Some(rejection),
                            }
                        }
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

/// What a decision was asked about.
struct Asked<'a> {
    /// The key's slot in the local caches.
    slot: u64,
    quotas: &'a [Quota],
    /// When it was asked, ns of the limiter's clock.
    now: u64,
    /// Whether the bucket's state is wanted, for the `RateLimit` fields.
    with_state: bool,
}

/// Turns what Redis answered (or failed to) into an outcome.
fn conclude<C: Clock, Req, P: SharedPartition<Req>>(
    state: &SharedState<C>,
    partition: &P,
    req: &Req,
    decided: Result<Decision, BoxError>,
    asked: Asked<'_>,
) -> Outcome {
    let Asked {
        slot,
        quotas,
        now,
        with_state,
    } = asked;
    let limiter = &state.limiter;
    let quota = &quotas[0];
    match decided {
        Ok(decision) if decision.admitted => {
            if decision.granted > 1 {
                // Leased tokens go unused after the time they would take to come back.
                let spare = decision.granted - 1;
                let expires = now.saturating_add(spare.saturating_mul(quota.interval_nanos()));
                let _ = state.leases.with(
                    slot,
                    limiter.now(),
                    || Leased {
                        tokens: AtomicU64::new(0),
                        expires: AtomicU64::new(0),
                    },
                    |leased| {
                        if leased.expires.load(Ordering::Relaxed) == CLAIMED {
                            return None;
                        }
                        leased.tokens.store(spare, Ordering::Relaxed);
                        leased.expires.store(expires, Ordering::Relaxed);
                        Some(())
                    },
                );
            }
            let admitted = with_state.then(|| {
                Admitted::new(
                    quota,
                    Snapshot {
                        remaining: decision.remaining,
                        next_nanos: crate::clock::duration_nanos(decision.next),
                    },
                )
            });
            Outcome::Admit(Source::Redis, admitted)
        }
        Ok(decision) => {
            // Remembered until Redis's own retry-after, measured from when we asked.
            let until = now.saturating_add(crate::clock::duration_nanos(decision.retry_after));
            let _ = state.refused.with(
                slot,
                limiter.now(),
                || RefusedUntil {
                    until: AtomicU64::new(until),
                },
                |cached| {
                    let mut current = cached.until.load(Ordering::Relaxed);
                    loop {
                        if current == CLAIMED {
                            return None;
                        }
                        if current >= until {
                            return Some(());
                        }
                        match cached.until.compare_exchange_weak(
                            current,
                            until,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => return Some(()),
                            Err(actual) => current = actual,
                        }
                    }
                },
            );
            let refusing = quotas.get(decision.quota).unwrap_or(quota);
            let rejection = RateLimited::new(decision.retry_after)
                .with_quota(
                    limiter.policy.clone(),
                    u64::from(refusing.rate()),
                    refusing.period(),
                )
                .with_remaining(decision.remaining, decision.next);
            Outcome::Refuse(rejection, Source::Redis)
        }
        Err(err) => {
            tracing::debug!(
                rate_limit.policy = %limiter.policy,
                error = %err,
                "rate limit store could not decide; applying the failure policy"
            );
            let store = &state.store.inner;
            match store.on_failure {
                super::OnStoreFailure::Allow => Outcome::Admit(Source::Fallback, None),
                super::OnStoreFailure::Refuse => Outcome::Refuse(
                    RateLimited::new(store.open_for).with_quota(
                        limiter.policy.clone(),
                        u64::from(quota.rate()),
                        quota.period(),
                    ),
                    Source::Fallback,
                ),
                super::OnStoreFailure::Local { .. } => {
                    let fallback = state.fallback.as_ref().expect("a local fallback limiter");
                    match fallback.check::<true, _, _>(partition, req, fallback.now(), with_state) {
                        Verdict::Reject(refusal) => {
                            Outcome::Refuse(fallback.rate_limited(refusal), Source::Fallback)
                        }
                        Verdict::Now(state)
                        | Verdict::Shadowed(state)
                        | Verdict::Later { state, .. } => Outcome::Admit(Source::Fallback, state),
                    }
                }
            }
        }
    }
}
