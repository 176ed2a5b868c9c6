//! Keys that mean the same on every replica.

use std::hash::Hasher as _;
use std::net::IpAddr;

/// A rate-limit key written the same way by every process: what a shared store names a
/// bucket by. (The in-memory limiter hashes keys with a hasher keyed at random in each
/// process, which would give each replica different buckets.)
///
/// Implemented for IP addresses (what [`PeerIp`](crate::key::PeerIp) and
/// [`ClientIp`](crate::key::ClientIp) give), byte strings and strings (what
/// [`HeaderKey`](crate::key::HeaderKey) and [`UpstreamHost`](crate::key::UpstreamHost) give),
/// and integers. Implement it for a key type of your own by writing bytes that identify
/// the key, the same on every platform.
///
/// ```
/// use tower_rampart::rate_limit::StableKey;
///
/// struct Tenant(u32);
/// impl StableKey for Tenant {
///     fn write_key(&self, out: &mut Vec<u8>) {
///         out.extend_from_slice(b"tenant-");
///         self.0.write_key(out);
///     }
/// }
/// let mut out = Vec::new();
/// Tenant(7).write_key(&mut out);
/// assert_eq!(out, b"tenant-7");
/// ```
pub trait StableKey {
    /// Appends the key's bytes to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
}

impl StableKey for IpAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        // The canonical text form: readable in `redis-cli`, one spelling per address.
        use std::io::Write as _;
        let _ = write!(out, "{self}");
    }
}

impl StableKey for [u8] {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl StableKey for str {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StableKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StableKey for Vec<u8> {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: StableKey + ?Sized> StableKey for &T {
    fn write_key(&self, out: &mut Vec<u8>) {
        (**self).write_key(out);
    }
}

macro_rules! stable_integers {
    ($($t:ty),*) => {$(
        impl StableKey for $t {
            fn write_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}

stable_integers!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

/// Keys longer than this, or with bytes outside printable ASCII, are stored hashed.
pub(crate) const MAX_PLAIN_KEY: usize = 64;

/// How bucket names are made: `{prefix}:{policy}:{key}:{quota}`, the middle part a Redis
/// Cluster hash tag so that one client's quotas live in one slot.
#[derive(Clone, Debug)]
pub(crate) struct Naming {
    pub(crate) prefix: String,
    pub(crate) secret: [u8; 16],
    pub(crate) hash_all: bool,
}

impl Naming {
    /// The names of the buckets for `key` under `policy`, one per quota.
    pub(crate) fn names(&self, policy: &str, key: &[u8], quotas: usize) -> Vec<Vec<u8>> {
        let mut base = Vec::with_capacity(self.prefix.len() + policy.len() + 48);
        base.extend_from_slice(self.prefix.as_bytes());
        base.extend_from_slice(b":{");
        base.extend_from_slice(policy.as_bytes());
        base.push(b':');
        let plain = !self.hash_all
            && key.len() <= MAX_PLAIN_KEY
            && key
                .iter()
                .all(|b| (b'!'..=b'~').contains(b) && !matches!(b, b'{' | b'}'));
        if plain {
            base.extend_from_slice(key);
        } else {
            // SipHash-2-4 under the store's secret: stable across processes and releases,
            // bounded in length, and not reversible without the secret.
            let (k0, k1) = self.secret.split_at(8);
            let mut hasher = siphasher::sip128::SipHasher24::new_with_keys(
                u64::from_le_bytes(k0.try_into().expect("8 bytes")),
                u64::from_le_bytes(k1.try_into().expect("8 bytes")),
            );
            hasher.write(key);
            let hash = siphasher::sip128::Hasher128::finish128(&hasher).as_u128();
            base.extend_from_slice(b"h-");
            base.extend_from_slice(format!("{hash:032x}").as_bytes());
        }
        base.push(b'}');
        (0..quotas)
            .map(|i| {
                let mut name = base.clone();
                name.push(b':');
                name.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
                name
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(hash_all: bool) -> Naming {
        Naming {
            prefix: "rl".to_owned(),
            secret: [7; 16],
            hash_all,
        }
    }

    #[test]
    fn short_printable_keys_are_kept_and_others_hashed() {
        let names = naming(false).names("per-ip", b"203.0.113.7", 2);
        assert_eq!(
            names,
            [
                b"rl:{per-ip:203.0.113.7}:0".to_vec(),
                b"rl:{per-ip:203.0.113.7}:1".to_vec()
            ]
        );
        for key in [
            &[b'a'; 65][..],
            b"with space",
            b"brace{",
            "caf\u{e9}".as_bytes(),
        ] {
            let name = naming(false).names("p", key, 1).remove(0);
            let text = String::from_utf8(name).unwrap();
            assert!(
                text.starts_with("rl:{p:h-") && text.ends_with("}:0"),
                "{text}"
            );
            assert_eq!(text.len(), "rl:{p:h-}:0".len() + 32);
        }
        let hashed = naming(true).names("p", b"203.0.113.7", 1).remove(0);
        assert!(hashed.starts_with(b"rl:{p:h-"));
    }

    #[test]
    fn hashes_are_stable_and_keyed() {
        let a = naming(true).names("p", b"k", 1);
        assert_eq!(a, naming(true).names("p", b"k", 1));
        let mut other = naming(true);
        other.secret = [8; 16];
        assert_ne!(a, other.names("p", b"k", 1));
    }

    #[test]
    fn stable_keys_of_addresses_and_integers() {
        let mut out = Vec::new();
        "2001:db8::1".parse::<IpAddr>().unwrap().write_key(&mut out);
        assert_eq!(out, b"2001:db8::1");
        out.clear();
        42u64.write_key(&mut out);
        assert_eq!(out, b"42");
    }
}
