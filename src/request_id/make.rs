//! Id generators: [`MakeRequestId`], [`UuidV7`] (the default), [`UuidV4`] and [`Counter`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::context::{MAX_LEN, RequestId, Rules};

/// Makes a fresh id for a request that brought none (or an invalid one).
///
/// Closures `Fn() -> RequestId` implement it.
///
/// | generator | id | cost on this project's VM |
/// |---|---|---|
/// | [`UuidV7`] (default) | `0193a5c2-7f3e-7b4c-9d2a-5f1e8c3b6a70`: time-ordered, sorts by arrival | one clock read and a thread-local RNG draw, no syscall |
/// | [`UuidV4`] | random UUID | a thread-local RNG draw, no syscall |
/// | [`Counter`] | `8f3a2c1e-42`: a per-process random prefix and a sequence number | a thread-local increment |
///
/// ```
/// use tower_rampart::request_id::{MakeRequestId, RequestId, Rules};
///
/// let fixed = || RequestId::parse(b"fixed", &Rules::default()).unwrap();
/// assert_eq!(fixed.make_request_id().as_str(), "fixed");
/// ```
pub trait MakeRequestId: Clone + Send + Sync + 'static {
    /// A fresh id.
    fn make_request_id(&self) -> RequestId;
}

impl<F> MakeRequestId for F
where
    F: Fn() -> RequestId + Clone + Send + Sync + 'static,
{
    fn make_request_id(&self) -> RequestId {
        self()
    }
}

/// UUID version 7: 48 bits of milliseconds, then random bits from a thread-local RNG.
///
/// ```
/// use tower_rampart::request_id::{MakeRequestId, UuidV7};
///
/// let (a, b) = (UuidV7.make_request_id(), UuidV7.make_request_id());
/// assert_eq!(a.as_str().len(), 36);
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7;

impl MakeRequestId for UuidV7 {
    fn make_request_id(&self) -> RequestId {
        uuid_id(uuid::Uuid::now_v7())
    }
}

/// UUID version 4: 122 random bits from a thread-local RNG.
///
/// ```
/// use tower_rampart::request_id::{MakeRequestId, UuidV4};
///
/// assert_eq!(UuidV4.make_request_id().as_str().as_bytes()[14], b'4');
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV4;

impl MakeRequestId for UuidV4 {
    fn make_request_id(&self) -> RequestId {
        uuid_id(uuid::Uuid::new_v4())
    }
}

fn uuid_id(uuid: uuid::Uuid) -> RequestId {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    RequestId::from_safe(uuid.hyphenated().encode_lower(&mut text).as_bytes())
}

/// Ids handed to a thread at a time by [`Counter`], so threads do not share a counter.
const BLOCK: u64 = 1_024;
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    // The next sequence number of this thread's block, and the end of the block.
    static SEQUENCE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn next_sequence() -> u64 {
    SEQUENCE.with(|cell| {
        let (mut next, mut end) = cell.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        cell.set((next + 1, end));
        next
    })
}

/// The cheapest ids: a prefix and a process-wide sequence number (`8f3a2c1e-42`). Unique
/// within the process; the default prefix is random per `Counter`, so two processes are
/// unlikely to collide, but these ids carry no time and no global uniqueness guarantee.
///
/// ```
/// use tower_rampart::request_id::{Counter, MakeRequestId};
///
/// let ids = Counter::with_prefix("edge")?;
/// let (a, b) = (ids.make_request_id(), ids.make_request_id());
/// assert!(a.as_str().starts_with("edge-"));
/// assert_ne!(a, b);
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Counter {
    prefix: RequestId,
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

impl Counter {
    /// A counter with a random 8-hex-digit prefix.
    ///
    /// ```
    /// # use tower_rampart::request_id::{Counter, MakeRequestId};
    /// assert_eq!(Counter::new().make_request_id().as_str().as_bytes()[8], b'-');
    /// ```
    pub fn new() -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: RequestId::from_safe(&random.as_bytes()[..8]),
        }
    }

    /// A counter whose ids start with `prefix` and a `-`.
    ///
    /// # Errors
    /// A [`ConfigError`](crate::ConfigError) if `prefix` is empty, longer than 100 bytes, or
    /// not letters, digits and `-_.:~`.
    ///
    /// See [`Counter`] for an example.
    pub fn with_prefix(prefix: &str) -> Result<Self, crate::ConfigError> {
        match RequestId::parse(prefix.as_bytes(), &Rules::default()) {
            Some(prefix) if prefix.as_str().len() <= 100 => Ok(Self { prefix }),
            _ => Err(crate::ConfigError::new(
                "prefix",
                "must be 1 to 100 letters, digits or -_.:~",
            )),
        }
    }
}

impl MakeRequestId for Counter {
    fn make_request_id(&self) -> RequestId {
        let mut text = [0u8; MAX_LEN];
        let prefix = self.prefix.as_str().as_bytes();
        text[..prefix.len()].copy_from_slice(prefix);
        text[prefix.len()] = b'-';
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(next_sequence()).as_bytes();
        let len = prefix.len() + 1 + digits.len();
        text[prefix.len() + 1..len].copy_from_slice(digits);
        RequestId::from_safe(&text[..len])
    }
}
