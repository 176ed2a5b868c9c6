//! A breaker with its clock and lanes, the keyed registry, and how a request finds its
//! breaker.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::AtomicUsize;

use foldhash::quality::RandomState;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::key::{KeyFn, PassThrough};
use crate::sync::{Arc, AtomicU64, Ordering};

use super::state::{Core, OnChange, Policy};

/// A breaker as seen by one group of threads: a handle on the shared state plus the clock.
///
/// Every call's future holds an `Arc` of its lane. A breaker has several lanes, picked by
/// thread, so threads on different cores never bump the same reference count: with one `Arc`
/// per breaker, that count would be the one cache line every call writes.
// `pub` only because the sealed `Select` trait names it; the module is private.
#[allow(unreachable_pub)]
pub struct Lane<C> {
    pub(crate) core: Arc<Core>,
    clock: C,
    epoch: Instant,
    pub(crate) index: usize,
}

impl<C: Clock> Lane<C> {
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.nanos_since(self.epoch)
    }
}

impl<C> fmt::Debug for Lane<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane")
            .field("breaker", &self.core.name())
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Lanes per breaker: the machine's parallelism, as a power of two, at most 16.
pub(crate) fn default_lanes() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16)
        .next_power_of_two()
}

std::thread_local! {
    static THREAD_LANE: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);

/// This thread's lane number, assigned round-robin on first use.
#[inline]
fn thread_lane() -> usize {
    THREAD_LANE.with(|lane| {
        let mut index = lane.get();
        if index == usize::MAX {
            index = NEXT_LANE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            lane.set(index);
        }
        index
    })
}

/// One breaker: its lanes (which share one [`Core`]).
pub(crate) struct Breaker<C> {
    lanes: Box<[Arc<Lane<C>>]>,
}

impl<C: Clock> Breaker<C> {
    pub(crate) fn new(core: Core, clock: &C, epoch: Instant, lanes: usize) -> Self {
        let core = Arc::new(core);
        let lanes = (0..lanes.max(1).next_power_of_two())
            .map(|index| {
                Arc::new(Lane {
                    core: Arc::clone(&core),
                    clock: clock.clone(),
                    epoch,
                    index,
                })
            })
            .collect();
        Self { lanes }
    }

    #[inline]
    pub(crate) fn lane(&self) -> &Arc<Lane<C>> {
        &self.lanes[thread_lane() & (self.lanes.len() - 1)]
    }
}

impl<C> Breaker<C> {
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.lanes[0].core
    }
}

impl<C> fmt::Debug for Breaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.core(), f)
    }
}

/// What every breaker of a keyed layer is made from.
pub(crate) struct Template<C> {
    pub(crate) policy: Policy,
    pub(crate) name: Cow<'static, str>,
    pub(crate) on_change: Option<OnChange>,
    pub(crate) clock: C,
    pub(crate) epoch: Instant,
}

impl<C: Clock> Template<C> {
    pub(crate) fn breaker(&self, name: Cow<'static, str>, lanes: usize) -> Breaker<C> {
        let core = Core::new(self.policy.clone(), lanes, name, self.on_change.clone());
        Breaker::new(core, &self.clock, self.epoch, lanes)
    }
}

struct Entry<C> {
    breaker: Breaker<C>,
    /// Last call, in ns since the epoch (updated at most once per millisecond).
    last_used: AtomicU64,
}

/// The breakers of a keyed layer: one per key, bounded, idle ones evicted lazily.
pub(crate) struct Registry<C> {
    map: papaya::HashMap<u64, Entry<C>, PassThrough>,
    len: AtomicU64,
    max_keys: u64,
    idle: u64,
    next_sweep: AtomicU64,
    seed: RandomState,
    template: Template<C>,
    /// For requests without a key, and for new keys while the registry is full.
    shared: Breaker<C>,
}

impl<C> fmt::Debug for Registry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("keys", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// Lanes of each keyed breaker: a key sees a small share of the traffic, and a breaker per
/// key must stay small.
const KEYED_LANES: usize = 1;

impl<C: Clock> Registry<C> {
    pub(crate) fn new(template: Template<C>, max_keys: usize, idle: u64) -> Self {
        let shared = template.breaker(template.name.clone(), default_lanes());
        Self {
            map: papaya::HashMap::builder().hasher(PassThrough).build(),
            len: AtomicU64::new(0),
            max_keys: max_keys as u64,
            idle,
            next_sweep: AtomicU64::new(0),
            seed: RandomState::default(),
            template,
            shared,
        }
    }

    pub(crate) fn shared(&self) -> &Breaker<C> {
        &self.shared
    }

    pub(crate) fn hash<K: Hash>(&self, key: &K) -> u64 {
        self.seed.hash_one(key)
    }

    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// The breaker of `key` (hashed), if one exists.
    pub(crate) fn get(&self, hash: u64) -> Option<Arc<Core>> {
        self.map
            .pin()
            .get(&hash)
            .map(|entry| Arc::clone(entry.breaker.core()))
    }

    /// Runs `f` with the lane of `key`'s breaker, creating the breaker if needed.
    pub(crate) fn with_lane<R>(
        &self,
        key: impl Hash + fmt::Debug,
        f: impl FnOnce(&Arc<Lane<C>>) -> R,
    ) -> R {
        let hash = self.hash(&key);
        let now = self.template.clock.nanos_since(self.template.epoch);
        let map = self.map.pin();
        if let Some(entry) = map.get(&hash) {
            let last = entry.last_used.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= 1_000_000 {
                entry.last_used.store(now, Ordering::Relaxed);
            }
            return f(entry.breaker.lane());
        }
        self.maybe_sweep(now);
        if !self.reserve() {
            // Full: new keys share the shared breaker until a sweep makes room. (Sweeping
            // here, on every new key, would let a flood of new keys scan the map each time.)
            return f(self.shared.lane());
        }
        let created = map.try_insert_with(hash, || Entry {
            breaker: self.template.breaker(
                Cow::Owned(format!("{}[{key:?}]", self.template.name)),
                KEYED_LANES,
            ),
            last_used: AtomicU64::new(now),
        });
        let entry = created.unwrap_or_else(|existing| {
            // Another request created it first.
            self.len.fetch_sub(1, Ordering::Relaxed);
            existing
        });
        f(entry.breaker.lane())
    }

    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |len| {
                (len < self.max_keys).then_some(len + 1)
            })
            .is_ok()
    }

    /// Drops closed breakers idle for the idle time. Runs at most once per quarter of the
    /// idle time, from the call of a new key.
    fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        let next = now.saturating_add(self.idle / 4);
        if now < due
            || self
                .next_sweep
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let removed = AtomicU64::new(0);
        self.map.pin().retain(|_, entry| {
            let idle = now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) >= self.idle;
            let closed = entry.breaker.core().state() == super::CircuitState::Closed;
            let evict = idle && closed;
            if evict {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            !evict
        });
        self.len
            .fetch_sub(removed.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// How a layer finds the breaker of a request: [`Single`] or [`Keyed`]. Sealed.
pub trait Select<Req>: private::Select<Req> {}

impl<Req, K: private::Select<Req>> Select<Req> for K {}

// The sealed half: callers outside the crate name the trait only through `Select`.
pub(crate) mod private {
    use super::*;

    pub trait Select<Req>: Clone + Send + Sync + 'static {
        type Clock: Clock;
        /// Runs `f` with the lane of `req`'s breaker (borrowed: a rejected call never
        /// touches the lane's reference count).
        fn with_lane<R>(&self, req: &Req, f: impl FnOnce(&Arc<Lane<Self::Clock>>) -> R) -> R;
    }
}

/// One breaker for every request (the default).
pub struct Single<C = crate::clock::TokioClock> {
    pub(crate) breaker: Arc<Breaker<C>>,
}

impl<C> Clone for Single<C> {
    fn clone(&self) -> Self {
        Self {
            breaker: Arc::clone(&self.breaker),
        }
    }
}

impl<C> fmt::Debug for Single<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Single").field(&self.breaker).finish()
    }
}

impl<Req, C: Clock> private::Select<Req> for Single<C> {
    type Clock = C;
    #[inline]
    fn with_lane<R>(&self, _: &Req, f: impl FnOnce(&Arc<Lane<C>>) -> R) -> R {
        f(self.breaker.lane())
    }
}

/// A breaker per key, made by
/// [`CircuitBreakerBuilder::with_key`](super::CircuitBreakerBuilder::with_key).
pub struct Keyed<K, C = crate::clock::TokioClock> {
    pub(crate) key: K,
    pub(crate) registry: Arc<Registry<C>>,
}

impl<K: Clone, C> Clone for Keyed<K, C> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<K: fmt::Debug, C> fmt::Debug for Keyed<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("key", &self.key)
            .field("registry", &self.registry)
            .finish()
    }
}

impl<Req, K, C> private::Select<Req> for Keyed<K, C>
where
    K: KeyFn<Req>,
    for<'r> K::Key<'r>: fmt::Debug,
    C: Clock,
{
    type Clock = C;
    fn with_lane<R>(&self, req: &Req, f: impl FnOnce(&Arc<Lane<C>>) -> R) -> R {
        match self.key.key(req) {
            Some(key) => self.registry.with_lane(key, f),
            None => f(self.registry.shared().lane()),
        }
    }
}

/// The upstream's authority (`host:port`) of an outbound `http::Request`: one breaker per
/// backend on a client stack.
///
/// Read from the URI's authority, else from the `Host` header. A request with neither uses
/// the layer's shared breaker.
///
/// ```
/// use tower_rampart::circuit_breaker::{CircuitBreakerLayer, UpstreamHost};
/// use tower_rampart::circuit_breaker::KeyFn;
///
/// let request = http::Request::get("http://billing.internal:8080/charge").body(()).unwrap();
/// assert_eq!(UpstreamHost.key(&request), Some("billing.internal:8080"));
///
/// let layer = CircuitBreakerLayer::builder().with_key(UpstreamHost).build()?;
/// # let _ = layer;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UpstreamHost;

impl<B> KeyFn<http::Request<B>> for UpstreamHost {
    type Key<'r>
        = &'r str
    where
        B: 'r;

    fn key<'r>(&self, req: &'r http::Request<B>) -> Option<&'r str> {
        match req.uri().authority() {
            Some(authority) => Some(authority.as_str()),
            None => req
                .headers()
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok()),
        }
    }
}
