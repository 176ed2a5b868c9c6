//! The pure GCRA decision: plain data in, decision out. No atomics, no clock, no tokio.
//!
//! State is one number, the *theoretical arrival time* (`tat`): the instant at which the
//! bucket would be full again, in nanoseconds since the limiter's epoch. A request of `cost`
//! at `now` moves it to `max(tat, now) + cost·interval` and is admitted when that stays within
//! `now + burst·interval`. This is exactly a token bucket of `burst` tokens refilled one per
//! `interval`, so over any span of length `t` it admits at most `burst + t / interval`.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::ConfigError;

/// Largest tolerance (`burst · interval`) accepted: a quarter of the `u64` nanosecond range
/// (about 146 years), which leaves room for `now + tolerance` without overflow in practice and
/// saturating arithmetic beyond.
const MAX_TOLERANCE_NANOS: u64 = u64::MAX / 4;

/// A validated rate: `rate` requests per `period`, with room for `burst` at once.
///
/// Build one with [`Quota::new`]; the limiter's builder does it for you from
/// `per_second(..).burst(..)`. Different quotas per class of key come from
/// [`RateLimitBuilder::quota_by`](super::RateLimitBuilder::quota_by).
///
/// ```
/// use std::time::Duration;
/// use tower_rampart::rate_limit::Quota;
///
/// let quota = Quota::new(50, Duration::from_secs(1), 20)?;
/// assert_eq!(quota.interval(), Duration::from_millis(20)); // one token every 20 ms
/// assert_eq!(quota.burst(), 20);
/// assert_eq!(quota.refill_time(), Duration::from_millis(400)); // empty to full
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    rate: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
    interval_nanos: u64,
    tolerance_nanos: u64,
}

// === impl Quota ===

impl Quota {
    /// `rate` requests per `period`, at most `burst` at once.
    ///
    /// The interval between tokens is `period / rate`, rounded **up** to the nanosecond, so
    /// rounding can only make the limiter stricter, never looser.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `rate` or `burst` is 0, `period` is zero, `period / rate` is
    /// below one nanosecond, or `burst · interval` exceeds about 146 years.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_rampart::rate_limit::Quota;
    ///
    /// assert_eq!(Quota::new(0, Duration::from_secs(1), 1).unwrap_err().field(), "rate");
    /// assert_eq!(Quota::new(1, Duration::ZERO, 1).unwrap_err().field(), "period");
    /// assert_eq!(Quota::new(1, Duration::from_secs(1), 0).unwrap_err().field(), "burst");
    /// assert!(Quota::new(3, Duration::from_secs(1), 3).is_ok());
    /// ```
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<Self, ConfigError> {
        let rate = NonZeroU32::new(rate).ok_or(ConfigError::new("rate", "must be at least 1"))?;
        let burst =
            NonZeroU32::new(burst).ok_or(ConfigError::new("burst", "must be at least 1"))?;
        let period_nanos = u64::try_from(period.as_nanos())
            .map_err(|_| ConfigError::new("period", "must be at most 584 years"))?;
        if period_nanos == 0 {
            return Err(ConfigError::new("period", "must be greater than zero"));
        }
        if period_nanos < u64::from(rate.get()) {
            return Err(ConfigError::new(
                "rate",
                "must leave at least one nanosecond between requests",
            ));
        }
        let interval_nanos = period_nanos.div_ceil(u64::from(rate.get()));
        let tolerance_nanos = interval_nanos
            .checked_mul(u64::from(burst.get()))
            .filter(|t| *t <= MAX_TOLERANCE_NANOS)
            .ok_or(ConfigError::new(
                "burst",
                "burst times the token interval must be at most 146 years",
            ))?;
        Ok(Self {
            rate,
            period,
            burst,
            interval_nanos,
            tolerance_nanos,
        })
    }

    /// Requests per [`period`](Self::period).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::Quota;
    /// assert_eq!(Quota::new(50, Duration::from_secs(1), 20)?.rate(), 50);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn rate(&self) -> u32 {
        self.rate.get()
    }

    /// The period the rate is expressed over.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::Quota;
    /// assert_eq!(Quota::new(100, Duration::from_secs(60), 10)?.period(), Duration::from_secs(60));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// How many requests may arrive at once on a full bucket.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::Quota;
    /// assert_eq!(Quota::new(50, Duration::from_secs(1), 20)?.burst(), 20);
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Time between two tokens: `period / rate`, rounded up to the nanosecond.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::Quota;
    /// assert_eq!(Quota::new(3, Duration::from_secs(1), 1)?.interval(), Duration::from_nanos(333_333_334));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    /// Time for an empty bucket to fill up: `burst · interval`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_rampart::rate_limit::Quota;
    /// assert_eq!(Quota::new(10, Duration::from_secs(1), 5)?.refill_time(), Duration::from_millis(500));
    /// # Ok::<(), tower_rampart::ConfigError>(())
    /// ```
    pub const fn refill_time(&self) -> Duration {
        Duration::from_nanos(self.tolerance_nanos)
    }

    #[cfg(any(test, feature = "redis"))]
    pub(crate) const fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }
}

/// What a bucket looks like right after a decision, for headers and rejections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Whole tokens left.
    pub(crate) remaining: u64,
    /// Nanoseconds until one more whole token is there (0 when the bucket is full): the
    /// `t` of the `RateLimit` header field.
    pub(crate) next_nanos: u64,
}

/// The outcome of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admit after waiting `wait_nanos` (0 in reject mode); store `tat`. The bucket's
    /// [`Snapshot`] is left to [`snapshot`], which divides: only headers need it.
    Admit { tat: u64, wait_nanos: u64 },
    /// Refuse; the same request would conform after `retry_after_nanos`.
    Deny {
        retry_after_nanos: u64,
        snapshot: Snapshot,
    },
}

/// The cost actually charged: at least 1 (0 is handled by the caller as free) and at most
/// `burst`, so an oversized request waits for a full bucket and empties it instead of being
/// refused forever.
#[inline]
pub(crate) fn charged(cost: u32, quota: &Quota) -> u64 {
    u64::from(cost.clamp(1, quota.burst()))
}

/// Decides a request of `cost` at `now` against a bucket whose state is `tat`.
///
/// With `max_wait_nanos = 0` this is the reject-mode decision; with more it reserves a
/// future slot when the wait fits (wait mode).
#[inline]
pub(crate) fn decide(
    tat: u64,
    now: u64,
    cost: u32,
    quota: &Quota,
    max_wait_nanos: u64,
) -> Decision {
    let increment = increment(cost, quota);
    let base = tat.max(now);
    let next = base.saturating_add(increment);
    let limit = now.saturating_add(quota.tolerance_nanos);
    let wait = next.saturating_sub(limit);
    if wait <= max_wait_nanos {
        Decision::Admit {
            tat: next,
            wait_nanos: wait,
        }
    } else {
        Decision::Deny {
            retry_after_nanos: wait,
            snapshot: snapshot(base, now, quota),
        }
    }
}

/// The bucket whose state is `tat`, seen at `now`.
pub(crate) fn snapshot(tat: u64, now: u64, quota: &Quota) -> Snapshot {
    let interval = quota.interval_nanos;
    // Bucket time still free: `tolerance - (tat - now)`, which is negative when waiters
    // have reserved beyond the bucket.
    let owed = tat.saturating_sub(now);
    if owed == 0 {
        return Snapshot {
            remaining: u64::from(quota.burst()),
            next_nanos: 0,
        };
    }
    let (remaining, next_nanos) = match quota.tolerance_nanos.checked_sub(owed) {
        Some(free) => (free / interval, interval - free % interval),
        None => (0, (owed - quota.tolerance_nanos).saturating_add(interval)),
    };
    Snapshot {
        remaining,
        next_nanos,
    }
}

/// The `tat` a cancelled reservation of `increment` nanoseconds should restore, if it may:
/// only when no later reservation was stacked on it (`current == reserved`). Refunding under
/// a later reservation would let that one and a new arrival through at the same instant.
pub(crate) fn refund(current: u64, reserved: u64, increment: u64) -> Option<u64> {
    (current == reserved).then(|| reserved - increment)
}

/// Nanoseconds of bucket time a request of `cost` takes.
#[inline]
pub(crate) fn increment(cost: u32, quota: &Quota) -> u64 {
    charged(cost, quota) * quota.interval_nanos
}

#[cfg(test)]
mod tests;
