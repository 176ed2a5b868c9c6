//! The bounded keyed map behind every keyed layer: a rate limiter's buckets, a circuit
//! breaker's per-key breakers.
//!
//! Keys are stored as a keyed 64-bit hash, never as themselves. The map holds at most
//! `max_keys` values; when it is full, a new key is refused (the caller falls back to its
//! shared value) until idle values are evicted.
//!
//! Eviction is incremental and needs no background task: the map is split into shards, and
//! a call that meets a new key may sweep **one** shard, on average once per `step_every`
//! across all callers (steps missed while no new key came are made up, one per call, up to
//! one whole pass). No request pays for more than one shard (about [`SHARD_TARGET`] values
//! when full), however large the map, and a whole pass over the map takes `shards ·
//! step_every`. What "idle" means is the value's ([`Evict`]).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use foldhash::quality::RandomState;
use seize::Collector;

use crate::sync::{AtomicU64, Ordering};

use super::PassThrough;

/// Values per shard the map aims at when it is full: small enough that sweeping one shard
/// stays far under a millisecond.
const SHARD_TARGET: usize = 512;
/// Most shards a map has.
const MAX_SHARDS: usize = 1_024;

/// What a value of the map says about its own eviction.
pub(crate) trait Evict {
    /// Claims the value for eviction if it is idle at `now` (ns since the layer's epoch).
    /// A claimed value is removed at once and must never be used again: a lookup that meets
    /// it (see [`KeyedMap::with`]) removes it and starts afresh.
    fn claim(&self, now: u64) -> bool;
}

/// A bounded, lock-free map from key hashes to values, swept incrementally.
pub(crate) struct KeyedMap<V> {
    shards: Box<[papaya::HashMap<u64, V, PassThrough>]>,
    /// `hash >> shift` is the shard: the top bits, which papaya's own index does not use.
    shift: u32,
    /// Values held, reserved before insertion so the cap is exact.
    len: AtomicU64,
    max_keys: u64,
    /// The next shard to sweep.
    cursor: AtomicUsize,
    /// Earliest time of the next sweep step.
    next_step: AtomicU64,
    step_every: u64,
    hasher: RandomState,
}

impl<V> std::fmt::Debug for KeyedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedMap")
            .field("keys", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<V: Evict + Send + Sync + 'static> KeyedMap<V> {
    /// A map of at most `max_keys` values, each shard swept at most once per
    /// `sweep_every / shards` nanoseconds (a whole pass per `sweep_every`).
    pub(crate) fn new(max_keys: u64, sweep_every: u64) -> Self {
        let wanted = usize::try_from(max_keys / SHARD_TARGET as u64).unwrap_or(MAX_SHARDS);
        let shards = wanted.clamp(1, MAX_SHARDS).next_power_of_two();
        let collector = Arc::new(Collector::new());
        Self {
            shards: (0..shards)
                .map(|_| {
                    papaya::HashMap::builder()
                        .hasher(PassThrough)
                        .shared_collector(Arc::clone(&collector))
                        .build()
                })
                .collect(),
            shift: 64 - shards.trailing_zeros(),
            len: AtomicU64::new(0),
            max_keys,
            cursor: AtomicUsize::new(0),
            next_step: AtomicU64::new(0),
            step_every: sweep_every / shards as u64,
            hasher: RandomState::default(),
        }
    }

    /// The hasher keys are hashed with, randomly keyed per map: the same key hashes
    /// differently in two maps, so a client cannot aim collisions at every process alike.
    pub(crate) fn hasher(&self) -> &RandomState {
        &self.hasher
    }

    /// Values held.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    fn shard(&self, hash: u64) -> &papaya::HashMap<u64, V, PassThrough> {
        // With one shard the shift is 64: `checked_shr` gives `None`, shard 0.
        let index = hash.checked_shr(self.shift).unwrap_or(0);
        &self.shards[usize::try_from(index).unwrap_or(0)]
    }

    /// Runs `f` on the value of `hash`, if there is one.
    pub(crate) fn get<R>(&self, hash: u64, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.shard(hash).pin().get(&hash).map(f)
    }

    /// Runs `use_value` on the value of `hash`, creating it with `make` when absent.
    ///
    /// `use_value` returns `None` when it finds the value claimed by eviction: the value is
    /// then removed and the lookup starts again. `Err(())` when the map is full, even after
    /// a sweep step, and the caller must decide without a value of its own.
    pub(crate) fn with<R>(
        &self,
        hash: u64,
        now: u64,
        make: impl Fn() -> V,
        mut use_value: impl FnMut(&V) -> Option<R>,
    ) -> Result<R, ()> {
        let shard = self.shard(hash).pin();
        loop {
            if let Some(value) = shard.get(&hash) {
                match use_value(value) {
                    Some(result) => return Ok(result),
                    None => {
                        self.remove_exactly(&shard, hash, value);
                        continue;
                    }
                }
            }
            self.maybe_step(now);
            if !self.try_reserve() {
                return Err(());
            }
            if shard.try_insert(hash, make()).is_err() {
                // Another call inserted it first: give the slot back and use theirs.
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn try_reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |len| {
                (len < self.max_keys).then_some(len + 1)
            })
            .is_ok()
    }

    /// Sweeps the next shard if a step is due, claiming and removing its idle values.
    /// Returns how many values were removed.
    pub(crate) fn maybe_step(&self, now: u64) -> u64 {
        let due = self.next_step.load(Ordering::Relaxed);
        // Steps missed while no new key came are owed, up to one whole pass: after a jump of
        // the clock the next calls each take one step until the pace is met again, so no
        // call sweeps more than one shard and the map is still swept once per pass.
        let pass = self.step_every.saturating_mul(self.shards.len() as u64);
        let next = due
            .max(now.saturating_sub(pass))
            .saturating_add(self.step_every);
        if now < due
            || self
                .next_step
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return 0;
        }
        let index = self
            .cursor
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shard = self.shards[index & (self.shards.len() - 1)].pin();
        let mut removed = 0;
        for (hash, value) in shard.iter() {
            if value.claim(now) && self.remove_exactly(&shard, *hash, value) {
                removed += 1;
            }
        }
        removed
    }

    /// Removes `value` from under `hash` if it is still the one there, releasing its slot.
    /// Comparing the value itself, not just the key, matters: another call may already have
    /// removed a claimed value and inserted a fresh one, which must stay.
    fn remove_exactly(
        &self,
        shard: &papaya::HashMapRef<'_, u64, V, PassThrough, impl papaya::Guard>,
        hash: u64,
        value: &V,
    ) -> bool {
        let removed = matches!(
            shard.remove_if(&hash, |_, current| std::ptr::eq(current, value)),
            Ok(Some(_))
        );
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Shards of the map (for tests and the sweep-cost figure).
    #[cfg(test)]
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use std::hash::BuildHasher;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A value that is idle from `idle_at` on.
    struct Value {
        idle_at: u64,
        claimed: AtomicBool,
    }

    impl Evict for Value {
        fn claim(&self, now: u64) -> bool {
            now >= self.idle_at
                && !self
                    .claimed
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
        }
    }

    fn value(idle_at: u64) -> impl Fn() -> Value {
        move || Value {
            idle_at,
            claimed: AtomicBool::new(false),
        }
    }

    fn touch(map: &KeyedMap<Value>, key: u64, now: u64, idle_at: u64) -> bool {
        let hash = map.hasher().hash_one(key);
        map.with(hash, now, value(idle_at), |v| {
            (!v.claimed.load(std::sync::atomic::Ordering::Relaxed)).then_some(())
        })
        .is_ok()
    }

    #[test]
    fn holds_at_most_max_keys_and_refuses_new_keys_when_full() {
        let map = KeyedMap::new(100, 0);
        for key in 0..100 {
            assert!(touch(&map, key, 0, u64::MAX));
        }
        assert!(!touch(&map, 1_000, 0, u64::MAX));
        assert!(touch(&map, 5, 0, u64::MAX), "known keys keep their value");
        assert_eq!(map.len(), 100);
    }

    #[test]
    fn a_full_map_makes_room_by_sweeping_idle_values_one_shard_at_a_time() {
        let map = KeyedMap::new(10_000, 0);
        let shards = map.shard_count() as u64;
        assert!(shards > 1);
        for key in 0..10_000 {
            assert!(touch(&map, key, 0, 10));
        }
        // Every value is idle at 10; each new key sweeps one shard, so after one pass over
        // the shards the map has room again.
        let mut admitted = 0;
        for key in 10_000..10_000 + shards {
            if touch(&map, key, 10, u64::MAX) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, shards);
        assert!(map.len() <= shards, "{} left", map.len());
    }

    /// Regression: the sweep at `max_keys` ran over the whole map inside one request (21 ms
    /// at 100 000 keys). Now no call sweeps more than one shard.
    #[test]
    fn no_call_sweeps_more_than_one_shard_of_a_full_map() {
        const KEYS: u64 = 100_000;
        let map = KeyedMap::new(KEYS, 1_000_000);
        for key in 0..KEYS {
            assert!(touch(&map, key, 0, 1));
        }
        let shards = map.shard_count() as u64;
        let biggest = KEYS / shards * 2;
        assert!(biggest <= 2 * SHARD_TARGET as u64, "{shards} shards");
        // Everything is idle now; a flood of new keys, one call each, long after.
        let mut freed = 0;
        for (i, now) in (10_000_000..)
            .step_by(10)
            .take(2 * shards as usize)
            .enumerate()
        {
            let removed = map.maybe_step(now);
            assert!(removed <= biggest, "call {i} swept {removed} values");
            freed += removed;
        }
        assert_eq!(freed, KEYS, "one pass frees every idle value");
    }

    #[test]
    fn sweep_steps_are_spaced_by_step_every() {
        let map: KeyedMap<Value> = KeyedMap::new(10, 1_000);
        assert_eq!(map.shard_count(), 1);
        // Inserting a new key at 0 takes the step due at 0 (before the insertion).
        assert!(touch(&map, 1, 0, 0));
        assert_eq!(map.maybe_step(999), 0, "not due yet");
        assert_eq!(map.maybe_step(1_000), 1);
        assert_eq!(map.maybe_step(1_500), 0, "not due yet");
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn a_claimed_value_is_replaced_on_lookup() {
        let map = KeyedMap::new(10, 1_000_000);
        assert!(touch(&map, 1, 0, 0));
        let hash = map.hasher().hash_one(1u64);
        map.get(hash, |v| v.claim(5)).unwrap();
        assert!(touch(&map, 1, 5, u64::MAX));
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(hash, |v| v.idle_at), Some(u64::MAX));
    }
}
