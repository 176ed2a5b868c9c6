//! Where bucket state lives: the seam between the layer and its storage.
//!
//! The layer asks a [`Store`] to decide for a key hash at `now`; it never touches atomics or
//! maps itself, so another store (a remote one, later) can sit behind the same calls. The
//! in-memory store is synchronous, lock-free and allocation-free except when a new key is
//! inserted.

use foldhash::quality::RandomState;

use crate::key::map::{Evict, KeyedMap};
use crate::sync::{AtomicU64, Ordering};

use super::gcra::{self, Decision, Quota};

/// Marks a bucket that eviction has claimed: no decision may use it any more.
const TOMBSTONE: u64 = u64::MAX;

/// One GCRA bucket: its theoretical arrival time, updated by CAS.
#[derive(Debug)]
pub(crate) struct Bucket {
    tat: AtomicU64,
}

impl Bucket {
    pub(crate) fn new() -> Self {
        Self {
            tat: AtomicU64::new(0),
        }
    }

    /// Decides and, on admission, commits. `None` when the bucket was tombstoned.
    ///
    /// Relaxed ordering is enough: the decision depends on this one word only, and a CAS on
    /// one location is linearizable whatever the ordering.
    #[inline]
    pub(crate) fn decide(
        &self,
        now: u64,
        cost: u32,
        quota: &Quota,
        max_wait: u64,
    ) -> Option<Decision> {
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            if current == TOMBSTONE {
                return None;
            }
            let decision = gcra::decide(current, now, cost, quota, max_wait);
            let Decision::Admit { tat, .. } = decision else {
                return Some(decision);
            };
            match self
                .tat
                .compare_exchange_weak(current, tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(decision),
                Err(actual) => current = actual,
            }
        }
    }

    fn peek(&self, now: u64, cost: u32, quota: &Quota) -> u64 {
        match self.tat.load(Ordering::Relaxed) {
            TOMBSTONE => 0,
            tat => match gcra::decide(tat, now, cost, quota, 0) {
                Decision::Admit { .. } => 0,
                Decision::Deny {
                    retry_after_nanos, ..
                } => retry_after_nanos,
            },
        }
    }

    /// Gives a cancelled reservation back if nothing was reserved after it.
    pub(crate) fn refund(&self, reserved: u64, increment: u64) {
        let current = self.tat.load(Ordering::Relaxed);
        if let Some(previous) = gcra::refund(current, reserved, increment) {
            // Losing this race means a later reservation now sits on ours: keep it spent.
            let _ =
                self.tat
                    .compare_exchange(reserved, previous, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Claims the bucket for eviction if it is full (idle) at `now`.
    fn try_tombstone(&self, now: u64) -> bool {
        let current = self.tat.load(Ordering::Relaxed);
        current <= now
            && self
                .tat
                .compare_exchange(current, TOMBSTONE, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A keyed bucket and the quota it was created with.
#[derive(Debug)]
struct Entry {
    bucket: Bucket,
    quota: Quota,
}

impl Evict for Entry {
    /// A bucket that is full again is the same as an absent one: tombstone it, so that a
    /// concurrent decision sees the tombstone and starts afresh instead of being lost.
    fn claim(&self, now: u64) -> bool {
        self.bucket.try_tombstone(now)
    }
}

/// Which bucket a decision used, so a cancelled reservation can find it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The single bucket of an unkeyed limiter, or the shared bucket of a keyed one.
    Shared,
    /// The bucket of this key hash.
    Key(u64),
}

/// A bucket on a cache line of its own: every admission writes it, and the limiter's
/// read-mostly fields must not share its line (false sharing between threads).
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Bucket);

/// The in-memory store: one shared bucket, plus keyed buckets when the limiter is keyed.
#[derive(Debug)]
pub(crate) struct Store {
    shared: Padded,
    keys: KeyedMap<Entry>,
}

impl Store {
    /// A store of at most `max_keys` keyed buckets, all of them checked for idleness once
    /// per `sweep_every` nanoseconds, a shard at a time.
    pub(crate) fn new(max_keys: u64, sweep_every: u64) -> Self {
        Self {
            shared: Padded(Bucket::new()),
            keys: KeyedMap::new(max_keys, sweep_every),
        }
    }

    /// The hasher keys are hashed with.
    pub(crate) fn hasher(&self) -> &RandomState {
        self.keys.hasher()
    }

    /// Decides against the shared bucket.
    #[inline]
    pub(crate) fn decide_shared(
        &self,
        now: u64,
        cost: u32,
        quota: &Quota,
        max_wait: u64,
    ) -> Decision {
        // The shared bucket is never tombstoned.
        self.shared
            .0
            .decide(now, cost, quota, max_wait)
            .unwrap_or(Decision::Deny {
                retry_after_nanos: 0,
                snapshot: gcra::Snapshot {
                    remaining: 0,
                    next_nanos: 0,
                },
            })
    }

    /// Decides against the bucket of `key`, creating it with `quota()` when absent. When the
    /// key cap is reached and nothing is idle, the request is decided by the shared bucket
    /// instead (`Slot::Shared`): strangers share one quota, known keys keep theirs.
    pub(crate) fn decide_keyed(
        &self,
        key: u64,
        now: u64,
        cost: u32,
        quota: impl Fn() -> Quota,
        shared_quota: &Quota,
        max_wait: u64,
    ) -> (Slot, Quota, Decision) {
        let fresh = || Entry {
            bucket: Bucket::new(),
            quota: quota(),
        };
        let decided = self.keys.with(key, now, fresh, |entry| {
            // `None` when tombstoned: the map replaces the entry and asks again.
            let decision = entry.bucket.decide(now, cost, &entry.quota, max_wait)?;
            Some((Slot::Key(key), entry.quota, decision))
        });
        decided.unwrap_or_else(|()| {
            (
                Slot::Shared,
                *shared_quota,
                self.decide_shared(now, cost, shared_quota, max_wait),
            )
        })
    }

    /// Nanoseconds until `cost` would be admitted by the shared bucket; commits nothing.
    pub(crate) fn peek_shared(&self, now: u64, cost: u32, quota: &Quota) -> u64 {
        self.shared.0.peek(now, cost, quota)
    }

    /// Nanoseconds until `cost` would be admitted for `key`; an absent key is ready now.
    pub(crate) fn peek_keyed(&self, key: u64, now: u64, cost: u32) -> u64 {
        self.keys
            .get(key, |entry| entry.bucket.peek(now, cost, &entry.quota))
            .unwrap_or(0)
    }

    /// Gives a cancelled wait-mode reservation back (see [`Bucket::refund`]).
    pub(crate) fn refund(&self, slot: Slot, reserved: u64, increment: u64) {
        match slot {
            Slot::Shared => self.shared.0.refund(reserved, increment),
            Slot::Key(key) => {
                self.keys
                    .get(key, |entry| entry.bucket.refund(reserved, increment));
            }
        }
    }

    /// Number of keyed buckets held.
    pub(crate) fn key_count(&self) -> u64 {
        self.keys.len()
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use std::time::Duration;

    use super::*;

    fn quota() -> Quota {
        Quota::new(10, Duration::from_secs(1), 2).unwrap()
    }

    #[test]
    fn keys_have_independent_buckets() {
        let store = Store::new(10, 0);
        let q = quota();
        for key in [1, 2] {
            for expect_admit in [true, true, false] {
                let (slot, _, d) = store.decide_keyed(key, 0, 1, quota, &q, 0);
                assert_eq!(slot, Slot::Key(key));
                assert_eq!(matches!(d, Decision::Admit { .. }), expect_admit);
            }
        }
        assert_eq!(store.key_count(), 2);
    }

    #[test]
    fn full_map_sends_new_keys_to_the_shared_bucket_until_idle_keys_are_swept() {
        let store = Store::new(2, 0);
        let q = quota();
        store.decide_keyed(1, 0, 1, quota, &q, 0);
        store.decide_keyed(2, 0, 1, quota, &q, 0);
        let (slot, _, _) = store.decide_keyed(3, 0, 1, quota, &q, 0);
        assert_eq!(slot, Slot::Shared);
        assert_eq!(store.key_count(), 2);
        // 100 ms later both buckets are full again: they are swept and key 3 gets its own.
        let (slot, _, _) = store.decide_keyed(3, 100_000_000, 1, quota, &q, 0);
        assert_eq!(slot, Slot::Key(3));
        assert_eq!(store.key_count(), 1);
    }

    #[test]
    fn a_swept_key_comes_back_with_a_full_bucket() {
        let store = Store::new(1, 0);
        let q = quota();
        store.decide_keyed(1, 0, 2, quota, &q, 0);
        assert_eq!(
            store.keys.get(1, |e| e.bucket.try_tombstone(u64::MAX - 1)),
            Some(true)
        );
        let (slot, _, d) = store.decide_keyed(1, 0, 2, quota, &q, 0);
        assert_eq!(slot, Slot::Key(1));
        assert!(matches!(d, Decision::Admit { .. }));
    }

    #[test]
    fn refund_returns_the_last_reservation_only() {
        let store = Store::new(1, 0);
        let q = Quota::new(10, Duration::from_secs(1), 1).unwrap();
        store.decide_shared(0, 1, &q, 0);
        let Decision::Admit { tat: first, .. } = store.decide_shared(0, 1, &q, u64::MAX) else {
            panic!()
        };
        let Decision::Admit { tat: second, .. } = store.decide_shared(0, 1, &q, u64::MAX) else {
            panic!()
        };
        let one = gcra::increment(1, &q);
        store.refund(Slot::Shared, first, one); // a later reservation exists: kept
        assert_eq!(store.shared.0.tat.load(Ordering::Relaxed), second);
        store.refund(Slot::Shared, second, one);
        assert_eq!(store.shared.0.tat.load(Ordering::Relaxed), first);
    }
}

#[cfg(all(test, tower_rampart_loom))]
mod loom_tests {
    use std::time::Duration;

    use super::*;
    use crate::sync::Arc;

    #[test]
    fn loom_two_threads_never_admit_past_the_burst() {
        loom::model(|| {
            let quota = Quota::new(1, Duration::from_secs(1), 1).unwrap();
            let bucket = Arc::new(Bucket::new());
            let other = Arc::clone(&bucket);
            let t = loom::thread::spawn(move || {
                matches!(other.decide(0, 1, &quota, 0), Some(Decision::Admit { .. }))
            });
            let here = matches!(bucket.decide(0, 1, &quota, 0), Some(Decision::Admit { .. }));
            let there = t.join().unwrap();
            assert!(
                here ^ there,
                "exactly one of two concurrent requests is admitted"
            );
        });
    }

    #[test]
    fn loom_a_refund_never_undoes_a_later_reservation() {
        loom::model(|| {
            let quota = Quota::new(1, Duration::from_secs(1), 1).unwrap();
            let bucket = Arc::new(Bucket::new());
            let increment = gcra::increment(1, &quota);
            // The bucket's token is spent; a waiter reserves the next slot.
            bucket.decide(0, 1, &quota, 0);
            let Some(Decision::Admit { tat: reserved, .. }) = bucket.decide(0, 1, &quota, u64::MAX)
            else {
                panic!("reservation fits")
            };
            let other = Arc::clone(&bucket);
            // Concurrently: another request reserves after it, while the waiter is cancelled.
            let t = loom::thread::spawn(move || other.decide(0, 1, &quota, u64::MAX));
            bucket.refund(reserved, increment);
            let later = t.join().unwrap();
            let Some(Decision::Admit { tat: later_tat, .. }) = later else {
                panic!()
            };
            let final_tat = bucket.tat.load(Ordering::Relaxed);
            // Either the refund came first (the later request took the freed slot) or it lost
            // to the later reservation and changed nothing. Never below the later one's slot.
            assert_eq!(final_tat, later_tat);
        });
    }

    #[test]
    fn loom_eviction_never_loses_a_concurrent_admission() {
        loom::model(|| {
            let quota = Quota::new(1, Duration::from_secs(1), 1).unwrap();
            let bucket = Arc::new(Bucket::new());
            let other = Arc::clone(&bucket);
            // The sweeper sees a full bucket at t=0 and tries to claim it.
            let t = loom::thread::spawn(move || other.try_tombstone(0));
            let decided = bucket.decide(0, 1, &quota, 0);
            let tombstoned = t.join().unwrap();
            match decided {
                // Admitted first: the bucket is no longer idle, so the sweep must have failed.
                Some(Decision::Admit { .. }) => assert!(!tombstoned),
                // Tombstoned first: the request saw it and will retry on a fresh bucket.
                None => assert!(tombstoned),
                Some(Decision::Deny { .. }) => panic!("a full bucket never denies"),
            }
        });
    }
}
