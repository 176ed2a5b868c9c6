//! How requests are split into buckets: key extractors and the built-in ones.
//!
//! A [`KeyFn`] returns a key for a request, or `None` when it has none (see
//! [`MissingKey`](super::MissingKey) for what happens then). Keys only need `Hash`: the limiter
//! stores a 64-bit keyed hash (SipHash with a per-limiter random seed), never the key itself,
//! so a `String` API key costs no allocation per request and 8 bytes per bucket.

use std::hash::BuildHasher;

use foldhash::quality::RandomState;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, Request};
use ipnet::IpNet;

use super::gcra::Quota;

pub use crate::key::KeyFn;

/// The peer's IP address: the TCP connection's remote address.
///
/// Read from the request extensions: axum's `ConnectInfo<SocketAddr>` (with the `axum`
/// feature; serve with `into_make_service_with_connect_info::<SocketAddr>()`), or a plain
/// `SocketAddr` extension inserted by a hyper server. Behind a reverse proxy every request has
/// the proxy's address: use [`ClientIp`] there.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_rampart::rate_limit::{KeyFn, PeerIp};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("203.0.113.7:5555".parse::<SocketAddr>().unwrap());
/// assert_eq!(PeerIp.key(&req), Some("203.0.113.7".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerIp;

/// The peer address of a request, from the extensions [`PeerIp`] documents.
fn peer_addr<B>(req: &Request<B>) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

impl<B: 'static> KeyFn<Request<B>> for PeerIp {
    type Key<'r> = IpAddr;

    fn key(&self, req: &Request<B>) -> Option<IpAddr> {
        peer_addr(req)
    }
}

/// Which header a [`ClientIp`] reads the proxy chain from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// The client's IP address behind trusted reverse proxies.
///
/// Starts from the peer address ([`PeerIp`]). If the peer is a trusted proxy, walks the
/// forwarding header **right to left** (each proxy appends the address it received from),
/// skipping trusted proxies; the first untrusted address is the client. Entries left of it
/// were written by the client itself and are never believed, so a spoofed
/// `X-Forwarded-For` from an untrusted peer changes nothing. If every entry is trusted, the
/// leftmost is used. A malformed entry in the part of the chain that must be read yields no
/// key (see [`MissingKey`](super::MissingKey)).
///
/// The default trusts no proxy and so is the same as [`PeerIp`].
///
/// ```
/// use std::net::SocketAddr;
/// use tower_rampart::rate_limit::{ClientIp, KeyFn};
///
/// let client_ip = ClientIp::new().trust_proxies(["10.0.0.0/8".parse().unwrap()]);
///
/// let mut req = http::Request::builder()
///     .header("x-forwarded-for", "1.1.1.1, 198.51.100.9, 10.0.0.2")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert("10.0.0.1:40000".parse::<SocketAddr>().unwrap());
/// // 10.0.0.1 (peer) and 10.0.0.2 are trusted; 198.51.100.9 is the client; 1.1.1.1 is ignored.
/// assert_eq!(client_ip.key(&req), Some("198.51.100.9".parse().unwrap()));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

// === impl ClientIp ===

impl ClientIp {
    /// A client-IP extractor that trusts no proxy. Default header: `X-Forwarded-For`.
    ///
    /// ```
    /// # use tower_rampart::rate_limit::ClientIp;
    /// let client_ip = ClientIp::new();
    /// # let _ = client_ip;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds networks whose addresses are trusted proxies. Default: none.
    ///
    /// Parse CIDRs with [`ipnet::IpNet`]'s `FromStr` (`"10.0.0.0/8".parse()`); a single
    /// address is a `/32` or `/128`.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_rampart::rate_limit::{ClientIp, KeyFn};
    ///
    /// let client_ip = ClientIp::new().trust_proxies(["192.168.0.0/16".parse().unwrap()]);
    /// let mut req = http::Request::builder().header("x-forwarded-for", "203.0.113.1").body(()).unwrap();
    /// req.extensions_mut().insert("192.168.1.1:1".parse::<SocketAddr>().unwrap());
    /// assert_eq!(client_ip.key(&req), Some("203.0.113.1".parse().unwrap()));
    /// ```
    pub fn trust_proxies(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted.extend(networks.into_iter().map(|n| n.trunc()));
        self
    }

    /// Reads the chain from `header`. Default: [`ForwardedHeader::XForwardedFor`].
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_rampart::rate_limit::{ClientIp, ForwardedHeader, KeyFn};
    ///
    /// let client_ip = ClientIp::new()
    ///     .trust_proxies(["10.0.0.0/8".parse().unwrap()])
    ///     .header(ForwardedHeader::Forwarded);
    /// let mut req = http::Request::builder()
    ///     .header("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)
    ///     .body(())
    ///     .unwrap();
    /// req.extensions_mut().insert("10.1.2.3:1".parse::<SocketAddr>().unwrap());
    /// assert_eq!(client_ip.key(&req), Some("2001:db8::7".parse().unwrap()));
    /// ```
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    fn client<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = canonical(peer_addr(req)?);
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => &X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => &http::header::FORWARDED,
        };
        let mut leftmost = peer;
        // Later header lines were appended later: walk lines, then entries, right to left.
        for line in req.headers().get_all(name).iter().rev() {
            let line = line.to_str().ok()?;
            for entry in line.rsplit(',') {
                let ip = match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(entry)?,
                    ForwardedHeader::Forwarded => parse_forwarded_element(entry)?,
                };
                if !self.is_trusted(ip) {
                    return Some(ip);
                }
                leftmost = ip;
            }
        }
        Some(leftmost)
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// IPv4-mapped IPv6 addresses (dual-stack sockets) compare as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`, optionally quoted.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, _port) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<IpAddr>().ok().map(canonical)
}

/// The `for=` address of one RFC 7239 element (`for=...;proto=...;by=...`).
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value))
            .flatten()
    })
}

impl<B: 'static> KeyFn<Request<B>> for ClientIp {
    type Key<'r> = IpAddr;

    fn key(&self, req: &Request<B>) -> Option<IpAddr> {
        self.client(req)
    }
}

/// The value of a request header, such as an API key or a user id.
///
/// Requests without the header have no key. The value is hashed in place, never copied.
///
/// ```
/// use tower_rampart::rate_limit::{HeaderKey, KeyFn};
///
/// let api_key = HeaderKey::new(http::HeaderName::from_static("x-api-key"));
/// let req = http::Request::builder().header("x-api-key", "k-123").body(()).unwrap();
/// assert_eq!(api_key.key(&req), Some(&b"k-123"[..]));
/// assert_eq!(api_key.key(&http::Request::new(())), None);
/// ```
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the value of the header `name`.
    ///
    /// ```
    /// # use tower_rampart::rate_limit::HeaderKey;
    /// let user = HeaderKey::new(http::HeaderName::from_static("x-user-id"));
    /// # let _ = user;
    /// ```
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl<B: 'static> KeyFn<Request<B>> for HeaderKey {
    type Key<'r> = &'r [u8];

    fn key<'r>(&self, req: &'r Request<B>) -> Option<&'r [u8]> {
        req.headers().get(&self.name).map(|v| v.as_bytes())
    }
}

/// One limit for all requests: the default, with no key at all.
///
/// ```
/// use tower_rampart::rate_limit::{Global, RateLimitLayer};
///
/// let layer: RateLimitLayer<Global> = RateLimitLayer::per_second(100).build()?;
/// # let _ = layer;
/// # Ok::<(), tower_rampart::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Global;

/// Requests partitioned by a [`KeyFn`]; made by
/// [`RateLimitBuilder::with_key`](super::RateLimitBuilder::with_key).
#[derive(Clone, Debug)]
pub struct Keyed<K>(pub(crate) K);

/// A partition whose cost per request comes from a closure; made by
/// [`RateLimitBuilder::cost`](super::RateLimitBuilder::cost).
#[derive(Clone, Debug)]
pub struct WithCost<P, F> {
    pub(crate) inner: P,
    pub(crate) cost: F,
}

/// A partition whose quota per new key comes from a closure over the request; made by
/// [`RateLimitBuilder::quota_by`](super::RateLimitBuilder::quota_by).
#[derive(Clone, Debug)]
pub struct WithQuota<P, F> {
    pub(crate) inner: P,
    pub(crate) quota: F,
}

/// Where a request's tokens come from.
#[derive(Clone, Copy, Debug)]
pub enum Bucketing {
    /// The limiter's single bucket.
    Global,
    /// The bucket of this key hash.
    Key(u64),
    /// No key could be extracted.
    Missing,
}

/// How a limiter splits requests into buckets and charges them: [`Global`], [`Keyed`], and
/// the [`WithCost`] / [`WithQuota`] wrappers. Sealed; build one through the limiter's builder.
pub trait Partition<Req>: private::Partition<Req> {}

impl<Req, P: private::Partition<Req>> Partition<Req> for P {}

pub(crate) mod private {
    use super::*;

    pub trait Partition<Req>: Clone + Send + Sync + 'static {
        fn bucketing(&self, req: &Req, seed: &RandomState) -> Bucketing;
        fn cost(&self, _req: &Req) -> u32 {
            1
        }
        fn quota(&self, _req: &Req) -> Option<Quota> {
            None
        }
    }

    impl<Req> Partition<Req> for Global {
        #[inline]
        fn bucketing(&self, _: &Req, _: &RandomState) -> Bucketing {
            Bucketing::Global
        }
    }

    impl<Req, K: KeyFn<Req>> Partition<Req> for Keyed<K> {
        #[inline]
        fn bucketing(&self, req: &Req, seed: &RandomState) -> Bucketing {
            match self.0.key(req) {
                Some(key) => Bucketing::Key(seed.hash_one(key)),
                None => Bucketing::Missing,
            }
        }
    }

    impl<Req, P, F> Partition<Req> for WithCost<P, F>
    where
        P: Partition<Req>,
        F: Fn(&Req) -> u32 + Clone + Send + Sync + 'static,
    {
        #[inline]
        fn bucketing(&self, req: &Req, seed: &RandomState) -> Bucketing {
            self.inner.bucketing(req, seed)
        }
        #[inline]
        fn cost(&self, req: &Req) -> u32 {
            (self.cost)(req)
        }
        fn quota(&self, req: &Req) -> Option<Quota> {
            self.inner.quota(req)
        }
    }

    impl<Req, P, F> Partition<Req> for WithQuota<P, F>
    where
        P: Partition<Req>,
        F: Fn(&Req) -> Quota + Clone + Send + Sync + 'static,
    {
        #[inline]
        fn bucketing(&self, req: &Req, seed: &RandomState) -> Bucketing {
            self.inner.bucketing(req, seed)
        }
        #[inline]
        fn cost(&self, req: &Req) -> u32 {
            self.inner.cost(req)
        }
        fn quota(&self, req: &Req) -> Option<Quota> {
            Some((self.quota)(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, xff: &[&str]) -> Request<()> {
        let mut builder = Request::builder();
        for line in xff {
            builder = builder.header("x-forwarded-for", *line);
        }
        let mut req = builder.body(()).unwrap();
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        req
    }

    fn trusting(nets: &[&str]) -> ClientIp {
        ClientIp::new().trust_proxies(nets.iter().map(|n| n.parse().unwrap()))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn spoofed_xff_from_an_untrusted_peer_is_ignored() {
        let r = req("203.0.113.50:1234", &["1.2.3.4"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("203.0.113.50"));
        assert_eq!(ClientIp::new().key(&r), ip("203.0.113.50"));
    }

    #[test]
    fn chain_through_two_trusted_proxies_resolves_the_client() {
        // client 198.51.100.9 -> proxy A 10.0.0.2 -> proxy B 10.0.0.1 -> us
        let r = req("10.0.0.1:1", &["6.6.6.6, 198.51.100.9, 10.0.0.2"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("198.51.100.9"));
    }

    #[test]
    fn multiple_header_lines_are_one_list_in_order() {
        let r = req("10.0.0.1:1", &["6.6.6.6, 198.51.100.9", "10.0.0.2"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("198.51.100.9"));
    }

    #[test]
    fn all_trusted_uses_the_leftmost_entry() {
        let r = req("10.0.0.1:1", &["10.0.0.3, 10.0.0.2"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("10.0.0.3"));
        let no_header = req("10.0.0.1:1", &[]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&no_header), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_in_the_chain_yields_no_key_but_garbage_beyond_the_client_is_never_read() {
        let bad = req("10.0.0.1:1", &["1.1.1.1, not-an-ip"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&bad), None);
        let ok = req("10.0.0.1:1", &["<script>, 198.51.100.9"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&ok), ip("198.51.100.9"));
    }

    #[test]
    fn ports_brackets_quotes_and_mapped_addresses_are_understood() {
        assert_eq!(parse_node(" 1.2.3.4:80 "), ip("1.2.3.4"));
        assert_eq!(parse_node("[2001:db8::1]:443"), ip("2001:db8::1"));
        assert_eq!(parse_node("\"[2001:db8::1]\""), ip("2001:db8::1"));
        assert_eq!(parse_node("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_node("::ffff:10.0.0.1"), ip("10.0.0.1"));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(
            parse_forwarded_element("proto=https;For=\"[::1]:80\""),
            ip("::1")
        );
        assert_eq!(parse_forwarded_element("proto=https"), None);
    }

    #[test]
    fn a_mapped_peer_matches_an_ipv4_trust_rule() {
        let r = req("[::ffff:10.0.0.1]:1", &["198.51.100.9"]);
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("198.51.100.9"));
    }

    #[test]
    fn header_values_that_are_not_text_never_panic() {
        let mut r = req("10.0.0.1:1", &[]);
        r.headers_mut().insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 1.2.3.4").unwrap(),
        );
        assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_forwarding_headers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
                    let mut r = req("10.0.0.1:1", &[]);
                    r.headers_mut().insert("x-forwarded-for", value.clone());
                    r.headers_mut().insert("forwarded", value.clone());
                    let _ = trusting(&["10.0.0.0/8"]).header(header).key(&r);
                }
            }
        }
    }
}
