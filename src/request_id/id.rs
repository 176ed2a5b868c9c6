//! [`RequestId`] and the rules an incoming id must pass.

use std::fmt;

use http::HeaderValue;

/// The longest id accepted or produced, in bytes.
pub const MAX_LEN: usize = 128;

/// A request id: 1 to 128 bytes of a safe charset, stored inline (it is `Copy` and never
/// allocates).
///
/// ```
/// use tower_rampart::request_id::{Rules, RequestId};
///
/// let id = RequestId::parse(b"req-7f3a:01", &Rules::default()).unwrap();
/// assert_eq!(id.as_str(), "req-7f3a:01");
/// assert!(RequestId::parse(b"<script>", &Rules::default()).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl RequestId {
    /// `bytes` as an id if `rules` accept it.
    ///
    /// See [`RequestId`] for an example.
    pub fn parse(bytes: &[u8], rules: &Rules) -> Option<Self> {
        let ok = !bytes.is_empty()
            && bytes.len() <= usize::from(rules.max_len)
            && bytes.iter().all(|&b| rules.allows(b));
        ok.then(|| Self::from_safe(bytes))
    }

    /// An id from bytes already known to be safe (letters, digits and `-_.:~`), at most
    /// 128 of them; longer input is cut.
    pub(crate) fn from_safe(bytes: &[u8]) -> Self {
        let len = bytes.len().min(MAX_LEN);
        let mut id = Self {
            len: len as u8,
            bytes: [0; MAX_LEN],
        };
        id.bytes[..len].copy_from_slice(&bytes[..len]);
        id
    }

    /// The id as text.
    ///
    /// See [`RequestId`] for an example.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes pass the rules (every allowed byte is below 0x80).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The id as a header value (one small allocation).
    ///
    /// ```
    /// # use tower_rampart::request_id::{Rules, RequestId};
    /// let id = RequestId::parse(b"abc", &Rules::default()).unwrap();
    /// assert_eq!(id.to_header_value(), "abc");
    /// ```
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.bytes[..usize::from(self.len)])
            .expect("a request id holds only visible ASCII")
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    max_len: u8,
    // One bit per byte value below 128: allowed or not (letters and digits always are).
    allowed: [u64; 2],
}

impl Default for Rules {
    fn default() -> Self {
        let mut rules = Self {
            max_len: MAX_LEN as u8,
            allowed: [0; 2],
        };
        rules.allow_alphanumerics();
        for b in b"-_.:~" {
            rules.allow(*b);
        }
        rules
    }
}

impl Rules {
    fn allow(&mut self, b: u8) {
        self.allowed[usize::from(b / 64)] |= 1 << (b % 64);
    }

    fn allow_alphanumerics(&mut self) {
        for b in (0u8..128).filter(u8::is_ascii_alphanumeric) {
            self.allow(b);
        }
    }

    #[inline]
    fn allows(&self, b: u8) -> bool {
        b < 128 && self.allowed[usize::from(b / 64)] & (1 << (b % 64)) != 0
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
        self.allowed = [0; 2];
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
