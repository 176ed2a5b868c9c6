//! [`RequestId`] and the rules an incoming id must pass.

use std::fmt;

use http::HeaderValue;

/// The longest id accepted or produced, in bytes.
pub const MAX_LEN: usize = 128;

/// A request id: 1 to 128 bytes of a safe charset, held as a shared [`HeaderValue`]. Cloning
/// it, putting it on a request or a response, or into the [request context](crate::context)
/// copies no bytes and allocates nothing: a kept incoming id shares the caller's header, a
/// generated one is allocated once.
///
/// ```
/// use tower_rampart::request_id::{Rules, RequestId};
///
/// let id = RequestId::parse(b"req-7f3a:01", &Rules::default()).unwrap();
/// assert_eq!(id.as_str(), "req-7f3a:01");
/// assert!(RequestId::parse(b"<script>", &Rules::default()).is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

/// The bytes behind a generated id: one allocation, shared by every clone.
struct Inline {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl RequestId {
    /// `bytes` as an id if `rules` accept it (the bytes are copied once).
    ///
    /// See [`RequestId`] for an example.
    pub fn parse(bytes: &[u8], rules: &Rules) -> Option<Self> {
        rules.accepts(bytes).then(|| Self::from_safe(bytes))
    }

    /// `value` as an id if `rules` accept it, sharing its bytes (nothing is copied).
    ///
    /// ```
    /// use http::HeaderValue;
    /// use tower_rampart::request_id::{Rules, RequestId};
    ///
    /// let rules = Rules::default();
    /// let id = RequestId::from_header_value(&HeaderValue::from_static("abc-1"), &rules).unwrap();
    /// assert_eq!(id.as_str(), "abc-1");
    /// assert!(RequestId::from_header_value(&HeaderValue::from_static("a b"), &rules).is_none());
    /// ```
    pub fn from_header_value(value: &HeaderValue, rules: &Rules) -> Option<Self> {
        rules.accepts(value.as_bytes()).then(|| Self(value.clone()))
    }

    /// An id from bytes already known to be safe (letters, digits and `-_.:~`), at most
    /// 128 of them; longer input is cut. One allocation.
    pub(crate) fn from_safe(bytes: &[u8]) -> Self {
        let len = bytes.len().min(MAX_LEN);
        let mut inline = Inline {
            len: len as u8,
            bytes: [0; MAX_LEN],
        };
        inline.bytes[..len].copy_from_slice(&bytes[..len]);
        Self(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(inline))
                .expect("a request id holds only visible ASCII"),
        )
    }

    /// The id of the request being handled, from the [request context](crate::context):
    /// `None` outside a [`SetRequestIdLayer`](crate::request_id::SetRequestIdLayer)'s scope (for example
    /// in a task spawned with `tokio::spawn` rather than
    /// [`context::spawn`](crate::context::spawn)).
    ///
    /// ```
    /// use tower_rampart::{context, request_id::{MakeRequestId, RequestId, UuidV7}};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let id = UuidV7.make_request_id();
    /// let seen = context::scope(context::Context::new().with_request_id(id.clone()), async {
    ///     RequestId::current()
    /// })
    /// .await;
    /// assert_eq!(seen, Some(id));
    /// assert_eq!(RequestId::current(), None);
    /// # }
    /// ```
    pub fn current() -> Option<Self> {
        crate::context::current_request_id()
    }

    /// The id as text.
    ///
    /// See [`RequestId`] for an example.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes pass the rules (every allowed byte is below 0x80).
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// The id as a header value: a clone of the shared value, no allocation.
    ///
    /// ```
    /// # use tower_rampart::request_id::{Rules, RequestId};
    /// let id = RequestId::parse(b"abc", &Rules::default()).unwrap();
    /// assert_eq!(id.to_header_value(), "abc");
    /// ```
    pub fn to_header_value(&self) -> HeaderValue {
        self.0.clone()
    }

    /// The id as its header value, without a clone.
    pub(crate) fn into_header_value(self) -> HeaderValue {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

/// What an incoming id must be to be kept: at most `max_len` bytes (default 128), each a
/// letter, a digit or one of the extra characters (default `-_.:~`).
///
/// ```
/// use tower_rampart::request_id::{Rules, RequestId};
///
/// let strict = Rules::default().max_len(16)?.extra_chars("-")?;
/// assert!(RequestId::parse(b"abc-123", &strict).is_some());
/// assert!(RequestId::parse(b"abc:123", &strict).is_none());
/// assert!(RequestId::parse(&[b'a'; 17], &strict).is_none());
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    max_len: u8,
    // One bit per byte value: allowed or not (letters and digits always are). Checking an
    // id is a load and a shift per byte, with no branch until the end; 32 bytes keep the
    // service small (axum clones it for every request).
    allowed: [u64; 4],
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: String = (0u8..128)
            .filter(|b| self.bit(*b) != 0 && !b.is_ascii_alphanumeric())
            .map(char::from)
            .collect();
        f.debug_struct("Rules")
            .field("max_len", &self.max_len)
            .field("extra_chars", &extra)
            .finish()
    }
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            max_len: MAX_LEN as u8,
            allowed: DEFAULT_ALLOWED,
        }
    }
}

/// The default charset's bitmap (see [`Rules::bit`]).
const DEFAULT_ALLOWED: [u64; 4] = {
    let mut allowed = [0u64; 4];
    let mut b = 0u8;
    while b < 128 {
        if default_charset(b) {
            allowed[(b >> 6) as usize] |= 1 << (b & 63);
        }
        b += 1;
    }
    allowed
};

/// The default charset, one byte per value: 1 if allowed.
static DEFAULT_TABLE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0u8;
    while b < 128 {
        table[b as usize] = default_charset(b) as u8;
        b += 1;
    }
    table
};

/// Letters, digits and `-_.:~`, without a branch.
#[inline]
const fn default_charset(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10)
        | ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b == b'-')
        | (b == b'_')
        | (b == b'.')
        | (b == b':')
        | (b == b'~')
}

impl Rules {
    fn allow(&mut self, b: u8) {
        self.allowed[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    /// 1 if `b` is allowed, else 0.
    #[inline]
    fn bit(&self, b: u8) -> u64 {
        (self.allowed[usize::from(b >> 6)] >> (b & 63)) & 1
    }

    fn allow_alphanumerics(&mut self) {
        for b in (0u8..128).filter(u8::is_ascii_alphanumeric) {
            self.allow(b);
        }
    }

    /// Whether `bytes` is an acceptable id.
    #[inline]
    fn accepts(&self, bytes: &[u8]) -> bool {
        if bytes.is_empty() || bytes.len() > usize::from(self.max_len) {
            return false;
        }
        if self.allowed == DEFAULT_ALLOWED {
            // The default charset from a byte table: a load and an `and` per byte
            // (callgrind, a 36-byte UUID: fewer instructions than comparisons or the bitmap).
            bytes
                .iter()
                .fold(1, |ok, &b| ok & DEFAULT_TABLE[usize::from(b)])
                == 1
        } else {
            bytes.iter().fold(1, |ok, &b| ok & self.bit(b)) == 1
        }
    }

    /// The longest id kept, 1 to 128 bytes. Default: 128.
    ///
    /// # Errors
    /// A [`ConfigError`](crate::ConfigError) outside 1 to 128.
    ///
    /// See [`Rules`] for an example.
    pub fn max_len(mut self, max: usize) -> Result<Self, crate::ConfigError> {
        if !(1..=MAX_LEN).contains(&max) {
            return Err(crate::ConfigError::new("max_len", "must be 1 to 128 bytes"));
        }
        self.max_len = max as u8;
        Ok(self)
    }

    /// The characters allowed besides letters and digits. Default: `-_.:~`.
    ///
    /// # Errors
    /// A [`ConfigError`](crate::ConfigError) if `chars` holds anything but visible ASCII
    /// punctuation (no space, no control byte, nothing that breaks a header or a log line).
    ///
    /// See [`Rules`] for an example.
    pub fn extra_chars(mut self, chars: &str) -> Result<Self, crate::ConfigError> {
        self.allowed = [0; 4];
        self.allow_alphanumerics();
        for b in chars.bytes() {
            if !b.is_ascii_punctuation() || matches!(b, b'"' | b'\\' | b',' | b';') {
                return Err(crate::ConfigError::new(
                    "extra_chars",
                    "must be visible ASCII punctuation other than quotes, backslash, comma and semicolon",
                ));
            }
            self.allow(b);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_charset_is_letters_digits_and_five_marks() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-_.:~".contains(&b);
            assert_eq!(default_charset(b), expected, "{b}");
            assert_eq!(Rules::default().bit(b) == 1, expected, "{b}");
            assert_eq!(DEFAULT_TABLE[usize::from(b)] == 1, expected, "{b}");
        }
        // Other rules take the bitmap path.
        let dashes = Rules::default().extra_chars("-").unwrap();
        assert!(dashes.accepts(b"a-b") && !dashes.accepts(b"a_b"));
    }
}
