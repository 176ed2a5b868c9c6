//! Untrusted bytes (header values sent by a client) as they may appear in a log line.
//!
//! A log line must never carry a client's bytes as they came: a 64 KiB header would make a
//! 64 KiB line, and a raw TAB, newline or escape sequence could forge fields or lines in a
//! log pipeline. [`Untrusted`] shows at most [`SHOWN`] bytes, each outside printable ASCII
//! escaped as `\xNN`, and says how many more there were.

use std::fmt;

/// Bytes of a header value shown before the rest is summarised.
pub(crate) const SHOWN: usize = 32;

/// A short, escaped prefix of untrusted bytes: `Display` writes `abc\x09def…(+1200 bytes)`.
pub(crate) struct Untrusted<'a>(pub(crate) &'a [u8]);

impl<'a> Untrusted<'a> {
    /// At most `max` bytes of `bytes`, escaped: for longer texts, such as an error message
    /// that may quote what a client sent.
    #[cfg(feature = "http")]
    pub(crate) fn up_to(bytes: &'a [u8], max: usize) -> Bounded<'a> {
        Bounded(bytes, max)
    }
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escaped(self.0, SHOWN, f)
    }
}

/// [`Untrusted`] with a longer prefix; made by [`Untrusted::up_to`].
#[cfg(feature = "http")]
pub(crate) struct Bounded<'a>(&'a [u8], usize);

#[cfg(feature = "http")]
impl fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escaped(self.0, self.1, f)
    }
}

/// The first `max` bytes of `bytes`, escaped, then how many more there were.
fn escaped(bytes: &[u8], max: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let shown = &bytes[..bytes.len().min(max)];
    for &b in shown {
        if (b' '..=b'~').contains(&b) && b != b'\\' {
            fmt::Write::write_char(f, char::from(b))?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    let rest = bytes.len() - shown.len();
    if rest > 0 {
        write!(f, "…(+{rest} bytes)")?;
    }
    Ok(())
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_control_bytes_escaped() {
        let mut value = b"ab\tc\\".to_vec();
        value.extend(std::iter::repeat_n(b'x', 70_000));
        let shown = Untrusted(&value).to_string();
        assert!(shown.starts_with(r"ab\x09c\x5c"), "{shown}");
        assert!(shown.ends_with("…(+69973 bytes)"), "{shown}");
        assert!(shown.len() < 80, "{} bytes", shown.len());
        assert!(shown.bytes().all(|b| b >= b' ' || b >= 0x80));
    }

    #[test]
    fn short_printable_values_are_shown_as_they_are() {
        assert_eq!(Untrusted(b"250m").to_string(), "250m");
        assert_eq!(Untrusted(b"").to_string(), "");
    }
}
