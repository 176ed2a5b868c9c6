//! The windows behind the rate-based trip policies: the last N calls (a ring) and the last T
//! of time (buckets, one row per lane).
//!
//! Both are lock-free and O(1) per recorded call. They are written only in the closed state and
//! cleared when the breaker closes again.

use crate::sync::{AtomicU8, AtomicU64, Ordering};

/// Bit of a ring slot: the call failed.
pub(crate) const FAILED: u8 = 1;
/// Bit of a ring slot: the call was slow.
pub(crate) const SLOW: u8 = 2;
/// Bit of a ring slot: the slot holds a call (a cleared slot is 0).
const RECORDED: u8 = 4;

/// What a window holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// The last `N` calls: a true ring, so the oldest call leaves as the newest arrives.
///
/// Recording claims the next position with one `fetch_add` and swaps the slot; the failure
/// and slow totals change only when the outcome differs from the one it replaces, so a
/// healthy stream of successes writes two words per call.
#[derive(Debug)]
pub(crate) struct CountWindow {
    next: AtomicU64,
    slots: Box<[AtomicU8]>,
    // Totals as wrapping two's complement: two recorders can apply their deltas out of order,
    // so a total may dip below zero for an instant; `tally` clamps it.
    failures: AtomicU64,
    slow: AtomicU64,
}

impl CountWindow {
    pub(crate) fn new(size: usize) -> Self {
        Self {
            next: AtomicU64::new(0),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            failures: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    /// Records one call with outcome `bits` (`FAILED` and/or `SLOW`).
    pub(crate) fn record(&self, bits: u8) {
        let position = self.next.fetch_add(1, Ordering::Relaxed);
        // `slots.len()` fits in u64, and the remainder is below it.
        let slot = (position % self.slots.len() as u64) as usize;
        let old = self.slots[slot].swap(bits | RECORDED, Ordering::Relaxed);
        Self::apply(&self.failures, old & FAILED, bits & FAILED);
        Self::apply(&self.slow, old & SLOW, bits & SLOW);
    }

    fn apply(total: &AtomicU64, old: u8, new: u8) {
        if old != new {
            let delta = if new > old { 1 } else { u64::MAX };
            total.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub(crate) fn tally(&self) -> Tally {
        let read = |total: &AtomicU64| {
            let value = total.load(Ordering::Relaxed);
            // A transient dip below zero reads as a huge value: clamp it to zero.
            if value > u64::MAX / 2 { 0 } else { value }
        };
        Tally {
            calls: self
                .next
                .load(Ordering::Relaxed)
                .min(self.slots.len() as u64),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    pub(crate) fn clear(&self) {
        for slot in &*self.slots {
            slot.store(0, Ordering::Relaxed);
        }
        self.failures.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
    }
}

/// Spare cells between two lanes' rows, so that no two rows share a cache line.
const ROW_GAP: usize = 6;

/// One bucket of one lane: three tagged counters.
///
/// Each word holds the bucket's tag (the low 32 bits of its index since the epoch, plus one)
/// in its high half and a count in its low half, so a stale bucket is recognised and restarted
/// by the same compare-and-swap that counts into it: no lock, no lost count at a rollover.
#[derive(Debug, Default)]
struct Cell {
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// The last `T` of time, in `buckets` buckets, one row of buckets per lane.
///
/// Memory is fixed when the breaker is built (lanes × buckets × 24 bytes) whatever the
/// traffic. A recorded call touches one bucket of its own lane, so threads on different lanes
/// never write the same cache line; a tally (only after a failure or a slow call) sums every
/// lane's live buckets.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    width: u64,
    buckets: usize,
    stride: usize,
    lanes: usize,
    cells: Box<[Cell]>,
}

impl TimeWindow {
    /// A window of `buckets` buckets of `width` ns each, for `lanes` lanes.
    pub(crate) fn new(width: u64, buckets: usize, lanes: usize) -> Self {
        let stride = buckets + ROW_GAP;
        Self {
            width: width.max(1),
            buckets,
            stride,
            lanes,
            cells: (0..stride * lanes).map(|_| Cell::default()).collect(),
        }
    }

    fn tag(&self, now: u64) -> u32 {
        // The tag wraps after 2^32 buckets; a bucket untouched for exactly that long could be
        // mistaken for a live one, for one window.
        ((now / self.width) as u32).wrapping_add(1)
    }

    fn cell(&self, lane: usize, tag: u32) -> &Cell {
        let bucket = tag as usize % self.buckets;
        // `lanes` is a power of two (see `Core::new`).
        &self.cells[(lane & (self.lanes - 1)) * self.stride + bucket]
    }

    pub(crate) fn record(&self, lane: usize, now: u64, bits: u8) {
        let tag = self.tag(now);
        let cell = self.cell(lane, tag);
        bump(&cell.calls, tag);
        if bits & FAILED != 0 {
            bump(&cell.failures, tag);
        }
        if bits & SLOW != 0 {
            bump(&cell.slow, tag);
        }
    }

    pub(crate) fn tally(&self, now: u64) -> Tally {
        let newest = self.tag(now);
        let live = |word: u64| {
            let tag = (word >> 32) as u32;
            let age = newest.wrapping_sub(tag);
            if tag != 0 && (age as usize) < self.buckets {
                word & u64::from(u32::MAX)
            } else {
                0
            }
        };
        let mut tally = Tally::default();
        for lane in 0..self.lanes {
            let row = &self.cells[lane * self.stride..lane * self.stride + self.buckets];
            for cell in row {
                tally.calls += live(cell.calls.load(Ordering::Relaxed));
                tally.failures += live(cell.failures.load(Ordering::Relaxed));
                tally.slow += live(cell.slow.load(Ordering::Relaxed));
            }
        }
        tally
    }

    pub(crate) fn clear(&self) {
        for cell in &*self.cells {
            cell.calls.store(0, Ordering::Relaxed);
            cell.failures.store(0, Ordering::Relaxed);
            cell.slow.store(0, Ordering::Relaxed);
        }
    }
}

/// Adds one to a tagged counter, restarting it at 1 if it belongs to an older bucket.
fn bump(word: &AtomicU64, tag: u32) {
    let fresh = (u64::from(tag) << 32) | 1;
    let mut current = word.load(Ordering::Relaxed);
    loop {
        let next = if (current >> 32) as u32 == tag {
            if current & u64::from(u32::MAX) == u64::from(u32::MAX) {
                return; // saturated: 4 billion calls in one bucket
            }
            current + 1
        } else {
            fresh
        };
        match word.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(all(test, not(tower_rampart_loom)))]
mod tests {
    use super::*;

    #[test]
    fn count_window_forgets_the_oldest_call() {
        let ring = CountWindow::new(3);
        ring.record(FAILED);
        ring.record(0);
        ring.record(FAILED | SLOW);
        assert_eq!(
            ring.tally(),
            Tally {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        ring.record(0); // replaces the first failure
        assert_eq!(ring.tally().failures, 1);
        ring.record(0);
        ring.record(0); // replaces the failed and slow call
        assert_eq!(
            ring.tally(),
            Tally {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
        ring.clear();
        assert_eq!(ring.tally(), Tally::default());
    }

    #[test]
    fn time_window_counts_only_live_buckets() {
        const MS: u64 = 1_000_000;
        // 10 buckets of 100 ms: a 1 s window, over 2 lanes.
        let window = TimeWindow::new(100 * MS, 10, 2);
        window.record(0, 0, FAILED);
        window.record(1, 50 * MS, 0);
        window.record(1, 950 * MS, SLOW);
        assert_eq!(
            window.tally(950 * MS),
            Tally {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        // At 1.0 s the first bucket (0..100 ms) has left the window.
        assert_eq!(
            window.tally(1_000 * MS),
            Tally {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        // A bucket reused 1 s later restarts at 1 rather than adding to the old count.
        window.record(0, 1_010 * MS, 0);
        assert_eq!(window.tally(1_010 * MS).calls, 2);
        assert_eq!(window.tally(5_000 * MS), Tally::default());
    }

    #[test]
    fn time_window_memory_does_not_grow_with_traffic() {
        let window = TimeWindow::new(1_000, 4, 1);
        let cells = window.cells.len();
        for now in 0..100_000 {
            window.record(0, now, if now % 2 == 0 { FAILED } else { 0 });
        }
        assert_eq!(window.cells.len(), cells);
        let tally = window.tally(99_999);
        assert_eq!(tally.calls, 4_000);
        assert_eq!(tally.failures, 2_000);
    }
}
