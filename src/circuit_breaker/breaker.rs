//! A breaker with its clock and lanes, the keyed registry, and how a request finds its
//! breaker.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::AtomicUsize;

use tokio::time::Instant;

use crate::clock::Clock;
use crate::key::KeyFn;
use crate::key::map::{Evict, KeyedMap};
use crate::sync::{Arc, AtomicU64, Ordering};

use super::events::OnChange;
use super::state::Core;
use super::transition::Policy;

/// A breaker as seen by one group of threads: a handle on the shared state plus the clock.
///
/// Every call's future holds an `Arc` of its lane. A breaker has several lanes, picked by
/// thread, so threads on different cores never bump the same reference count: with one `Arc`
/// per breaker, that count would be the one cache line every call writes.
///
/// Measured by `bench/benches/circuit_breaker.rs`, group `circuit_breaker/two_threads`: two
/// threads sharing one breaker cost about what one thread does alone, where one shared count
/// costs several times more.
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

/// Longest key shown in a keyed breaker's events and handle: keys can come from clients.
const MAX_KEY_LABEL: usize = 64;

/// A key as events show it: its `Debug` form, at most [`MAX_KEY_LABEL`] bytes, printable
/// ASCII only.
fn key_label(key: &impl fmt::Debug) -> Box<str> {
    struct Bounded(String);
    impl fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.0.len() >= MAX_KEY_LABEL {
                    return Err(fmt::Error);
                }
                self.0.push(if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                });
            }
            Ok(())
        }
    }
    let mut label = Bounded(String::new());
    let _ = fmt::write(&mut label, format_args!("{key:?}"));
    label.0.into_boxed_str()
}

struct Entry<C> {
    breaker: Breaker<C>,
    /// Last call, in ns since the epoch (updated at most once per millisecond).
    last_used: AtomicU64,
    /// How long without a call makes a closed breaker evictable.
    idle: u64,
}

impl<C> Evict for Entry<C> {
    /// Only a closed breaker idle for the idle time goes: an open one remembers that its key
    /// is failing.
    fn claim(&self, now: u64) -> bool {
        now.saturating_sub(self.last_used.load(Ordering::Relaxed)) >= self.idle
            && self.breaker.core().state() == super::CircuitState::Closed
    }
}

/// The breakers of a keyed layer: one per key, bounded, idle ones evicted a shard at a time.
pub(crate) struct Registry<C> {
    map: KeyedMap<Entry<C>>,
    idle: u64,
    template: Template<C>,
    /// Shared by every keyed breaker: their series are the layer's, never one per key.
    metrics: std::sync::Arc<crate::metrics::Breaker>,
    /// For requests without a key, and for new keys while the registry is full.
    shared: Breaker<C>,
}

impl<C> fmt::Debug for Registry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

/// Lanes of each keyed breaker: a key sees a small share of the traffic, and a breaker per
/// key must stay small.
const KEYED_LANES: usize = 1;

impl<C: Clock> Registry<C> {
    pub(crate) fn new(template: Template<C>, max_keys: usize, idle: u64) -> Self {
        let lanes = default_lanes();
        let shared_core = Core::new(
            template.policy.clone(),
            lanes,
            template.name.clone(),
            None,
            template.on_change.clone(),
            std::sync::Arc::new(crate::metrics::Breaker::new(template.name.clone())),
        );
        let shared = Breaker::new(shared_core, &template.clock, template.epoch, lanes);
        Self {
            // Every breaker is checked for idleness about four times per idle time.
            map: KeyedMap::new(max_keys as u64, idle / 4),
            idle,
            metrics: std::sync::Arc::new(crate::metrics::Breaker::keyed(template.name.clone())),
            template,
            shared,
        }
    }

    pub(crate) fn shared(&self) -> &Breaker<C> {
        &self.shared
    }

    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.map.hasher().hash_one(key)
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len()
    }

    /// The breaker of `key` (hashed), if one exists.
    pub(crate) fn get(&self, hash: u64) -> Option<Arc<Core>> {
        self.map.get(hash, |entry| Arc::clone(entry.breaker.core()))
    }

    /// Runs `f` with the lane of `key`'s breaker, creating the breaker if needed; with the
    /// shared breaker's when the registry is full.
    pub(crate) fn with_lane<R>(
        &self,
        key: impl Hash + fmt::Debug,
        f: impl FnOnce(&Arc<Lane<C>>) -> R,
    ) -> R {
        let hash = self.hash(&key);
        let now = self.template.clock.nanos_since(self.template.epoch);
        let make = || {
            let core = Core::new(
                self.template.policy.clone(),
                KEYED_LANES,
                self.template.name.clone(),
                Some(key_label(&key)),
                self.template.on_change.clone(),
                std::sync::Arc::clone(&self.metrics),
            );
            Entry {
                breaker: Breaker::new(core, &self.template.clock, self.template.epoch, KEYED_LANES),
                last_used: AtomicU64::new(now),
                idle: self.idle,
            }
        };
        let mut f = Some(f);
        let found = self.map.with(hash, now, make, |entry| {
            let last = entry.last_used.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= 1_000_000 {
                entry.last_used.store(now, Ordering::Relaxed);
            }
            let f = f
                .take()
                .expect("called once: the breaker entry is never claimed mid-call");
            Some(f(entry.breaker.lane()))
        });
        match found {
            Ok(result) => result,
            Err(()) => {
                let f = f.take().expect("not called when the map is full");
                f(self.shared.lane())
            }
        }
    }
}

/// How a layer finds the breaker of a request: [`Single`] or [`PerKey`]. Sealed.
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
pub struct PerKey<K, C = crate::clock::TokioClock> {
    pub(crate) key: K,
    pub(crate) registry: Arc<Registry<C>>,
}

impl<K: Clone, C> Clone for PerKey<K, C> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<K: fmt::Debug, C> fmt::Debug for PerKey<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerKey")
            .field("key", &self.key)
            .field("registry", &self.registry)
            .finish()
    }
}

impl<Req, K, C> private::Select<Req> for PerKey<K, C>
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
