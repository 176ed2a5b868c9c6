//! The permit accounting: requests in flight against a limit, by priority. One atomic word
//! for what is in flight, one for the limit; no lock.

use crate::sync::{Arc, AtomicU64, Ordering};

/// How much a request matters when the service is overloaded.
///
/// Under load, [`Sheddable`](Self::Sheddable) requests are refused first, then
/// [`Normal`](Self::Normal) ones; a share of the limit is kept for
/// [`Critical`](Self::Critical) ones (see
/// [`LoadShedBuilder::critical_share`](super::LoadShedBuilder::critical_share)).
///
/// ```
/// use tower_rampart::load_shed::Priority;
///
/// assert_eq!(Priority::from_header_value(b"critical"), Some(Priority::Critical));
/// assert_eq!(Priority::from_header_value(b"batch"), None);
/// assert_eq!(Priority::default(), Priority::Normal);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Shed first: prefetches, retries, batch work.
    Sheddable,
    /// Most requests.
    #[default]
    Normal,
    /// Shed last, and a share of the limit is theirs alone: health checks, payments.
    Critical,
}

impl Priority {
    /// Reads `critical`, `normal` or `sheddable` (ASCII case ignored); anything else is
    /// `None`.
    ///
    /// See [`Priority`] for an example.
    pub fn from_header_value(value: &[u8]) -> Option<Self> {
        [
            (&b"critical"[..], Self::Critical),
            (b"normal", Self::Normal),
            (b"sheddable", Self::Sheddable),
        ]
        .into_iter()
        .find(|(name, _)| value.eq_ignore_ascii_case(name))
        .map(|(_, priority)| priority)
    }

    /// The metrics label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Sheddable => "sheddable",
            Self::Normal => "normal",
            Self::Critical => "critical",
        }
    }
}

/// Requests in flight and the limit they are held to, with what moves the limit.
///
/// In declared order (`repr(C)`): what every call touches comes first, next to the `Arc`'s
/// counts, so that threads sharing the limit contend on one cache line, not two.
#[derive(Debug)]
#[repr(C)]
pub struct Gate {
    in_flight: AtomicU64,
    /// The cap of each priority (sheddable, normal, critical), worked out when the limit is
    /// set: a request's admission reads one of them, never divides.
    caps: [AtomicU64; 3],
    /// Calls waiting for a slot (a waiting shedder's queue), and how they are woken.
    pub(crate) waiters: AtomicU64,
    limit: AtomicU64,
    pub(crate) freed: std::sync::Arc<tokio::sync::Notify>,
    /// The layer's name, for events.
    pub(crate) name: &'static str,
    /// Share of the limit only critical requests may use, in thousandths.
    critical_permille: u64,
    /// Share of what normal requests may use that sheddable ones may, in thousandths.
    sheddable_permille: u64,
    /// The adaptive limit's measurements, when the limit adapts.
    pub(crate) controller: Option<super::adaptive::Controller>,
}

impl Gate {
    pub(crate) fn new(limit: u64, critical_permille: u64, sheddable_permille: u64) -> Self {
        let gate = Self {
            in_flight: AtomicU64::new(0),
            limit: AtomicU64::new(0),
            caps: std::array::from_fn(|_| AtomicU64::new(0)),
            controller: None,
            name: "default",
            waiters: AtomicU64::new(0),
            freed: std::sync::Arc::new(tokio::sync::Notify::new()),
            critical_permille,
            sheddable_permille,
        };
        gate.set_limit(limit);
        gate
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Moves the limit (at least 1), and the caps with it.
    pub(crate) fn set_limit(&self, limit: u64) {
        let limit = limit.max(1);
        let normal = limit
            .saturating_sub((limit * self.critical_permille).div_ceil(1_000))
            .max(1);
        let sheddable = (normal * self.sheddable_permille / 1_000).max(1);
        for (cap, value) in self.caps.iter().zip([sheddable, normal, limit]) {
            cap.store(value, Ordering::Relaxed);
        }
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How many may be in flight when a request of `priority` arrives: the whole limit for
    /// critical ones, less the critical share for normal ones, a part of that for
    /// sheddable ones; never below 1.
    #[inline]
    pub(crate) fn cap(&self, priority: Priority) -> u64 {
        self.caps[priority as usize].load(Ordering::Relaxed)
    }

    /// Takes a slot for a request of `priority`, if one is free: one compare-and-swap.
    #[inline]
    pub(crate) fn try_acquire(gate: &Arc<Self>, priority: Priority) -> Option<Permit> {
        let cap = gate.cap(priority);
        gate.in_flight
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                gate: Arc::clone(gate),
            })
    }
}

/// A request's slot, given back when dropped: when the response body has ended, or when the
/// call is cancelled or fails.
#[derive(Debug)]
pub(crate) struct Permit {
    pub(crate) gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::Release);
        if self.gate.waiters.load(Ordering::Acquire) > 0 {
            self.gate.freed.notify_one();
        }
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use super::*;

    #[test]
    fn caps_by_priority() {
        let gate = Gate::new(100, 100, 500);
        assert_eq!(gate.cap(Priority::Critical), 100);
        assert_eq!(gate.cap(Priority::Normal), 90);
        assert_eq!(gate.cap(Priority::Sheddable), 45);
        let tiny = Gate::new(1, 100, 500);
        assert_eq!(
            [Priority::Critical, Priority::Normal, Priority::Sheddable].map(|p| tiny.cap(p)),
            [1, 1, 1],
            "a limit of 1 still admits one of each"
        );
    }

    #[test]
    fn permits_are_counted_and_given_back() {
        let gate = Arc::new(Gate::new(2, 0, 1_000));
        let a = Gate::try_acquire(&gate, Priority::Normal).unwrap();
        let _b = Gate::try_acquire(&gate, Priority::Normal).unwrap();
        assert!(Gate::try_acquire(&gate, Priority::Critical).is_none());
        drop(a);
        assert_eq!(gate.in_flight(), 1);
        assert!(Gate::try_acquire(&gate, Priority::Normal).is_some());
    }
}

#[cfg(all(test, tower_rampart_loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_two_threads_never_exceed_the_limit_and_give_everything_back() {
        loom::model(|| {
            let gate = Arc::new(Gate::new(1, 0, 1_000));
            let other = Arc::clone(&gate);
            let t = loom::thread::spawn(move || {
                let permit = Gate::try_acquire(&other, Priority::Normal);
                let admitted = permit.is_some();
                assert!(other.in_flight() <= 1);
                drop(permit);
                admitted
            });
            let here = Gate::try_acquire(&gate, Priority::Normal);
            assert!(gate.in_flight() <= 1);
            let admitted_here = here.is_some();
            drop(here);
            let admitted_there = t.join().unwrap();
            assert!(admitted_here || admitted_there, "a free slot is never lost");
            assert_eq!(gate.in_flight(), 0, "every permit is given back");
        });
    }
}
