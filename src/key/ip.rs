//! Client addresses as keys: the TCP peer ([`PeerIp`]) and the client behind trusted
//! proxies ([`ClientIp`]), grouped by network prefix.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderName, Request};
use ipnet::{IpNet, Ipv4Net};

use super::KeyFn;

/// Default IPv6 grouping: one key per /64, the smallest network a host is usually given.
const DEFAULT_V6_PREFIX: u8 = 64;

/// The peer's IP address: the TCP connection's remote address, IPv6 grouped by /64.
///
/// Read from the request extensions: axum's `ConnectInfo<SocketAddr>` (needs this crate's
/// `axum` feature, on by default, **and** serving with
/// `into_make_service_with_connect_info::<SocketAddr>()`; plain `axum::serve(listener, app)`
/// provides no peer address), tonic's `TcpConnectInfo` (feature `grpc`: every
/// `tonic::transport::Server` inserts it), or a plain `SocketAddr` extension inserted by a
/// hyper server.
/// A request without either has no key: the layer logs an ERROR once and counts
/// `rampart_rate_limit_missing_key_total`, and [`MissingKey`](crate::rate_limit::MissingKey)
/// decides what happens to it.
///
/// IPv6 peers are keyed by their /64 network, so that one host holding a /64 cannot spread
/// its requests over 2^64 keys; IPv4 peers by their address. IPv4-mapped IPv6 peers
/// (dual-stack sockets) count as their IPv4 address. For another grouping use
/// [`ClientIp::new().ipv6_prefix(..)`](ClientIp::ipv6_prefix), which without trusted
/// proxies keys by the peer too. Behind a reverse proxy every request has the proxy's
/// address: use [`ClientIp`] there.
///
/// ```
/// use std::net::SocketAddr;
/// use tower_rampart::key::{KeyFn, PeerIp};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("203.0.113.7:5555".parse::<SocketAddr>().unwrap());
/// assert_eq!(PeerIp.key(&req), Some("203.0.113.7".parse().unwrap()));
///
/// // Two addresses of one /64 are one client.
/// let mut other = http::Request::new(());
/// other.extensions_mut().insert("[2001:db8:1:2::99]:443".parse::<SocketAddr>().unwrap());
/// assert_eq!(PeerIp.key(&other), Some("2001:db8:1:2::".parse().unwrap()));
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
    #[cfg(feature = "grpc")]
    if let Some(info) = req
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
    {
        return info.remote_addr().map(|addr| addr.ip());
    }
    req.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

impl<B: 'static> KeyFn<Request<B>> for PeerIp {
    type Key<'r> = IpAddr;

    fn key(&self, req: &Request<B>) -> Option<IpAddr> {
        peer_addr(req).map(|ip| Prefixes::DEFAULT.group(canonical(ip)))
    }
}

/// How many leading bits of an address make one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prefixes {
    v4: u8,
    v6: u8,
}

impl Prefixes {
    const DEFAULT: Self = Self {
        v4: 32,
        v6: DEFAULT_V6_PREFIX,
    };

    fn group(self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.v4)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.v6)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
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

/// The client's IP address behind trusted reverse proxies, grouped like [`PeerIp`].
///
/// Starts from the peer address ([`PeerIp`]). If the peer is a trusted proxy, walks the
/// forwarding header **right to left** (each proxy appends the address it received from),
/// skipping trusted proxies; the first untrusted address is the client. Entries left of it
/// were written by the client itself and are never believed, so a spoofed
/// `X-Forwarded-For` from an untrusted peer changes nothing. If every entry is trusted, the
/// leftmost is used. An entry that is not an address (garbage, `unknown`, an obfuscated
/// RFC 7239 identifier, bytes that are not text) ends the walk: the key is then the last
/// address a trusted proxy vouched for, never "no key".
///
/// The walk reads bytes, entry by entry, so one bad byte spoils one entry, not the header.
/// `X-Forwarded-For` entries are an IPv4 address with an optional `:port`, or an IPv6
/// address bare or in brackets with an optional `:port`. `Forwarded` follows RFC 7239:
/// `for=` once per element, quoted strings (commas and semicolons inside them do not split),
/// IPv6 in brackets.
///
/// The default trusts no proxy and so is the same as [`PeerIp`].
///
/// ```
/// use std::net::SocketAddr;
/// use tower_rampart::key::{ClientIp, KeyFn};
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
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    prefixes: Prefixes,
}

impl Default for ClientIp {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            header: ForwardedHeader::default(),
            prefixes: Prefixes::DEFAULT,
        }
    }
}

// === impl ClientIp ===

impl ClientIp {
    /// A client-IP extractor that trusts no proxy. Default header: `X-Forwarded-For`.
    ///
    /// ```
    /// # use tower_rampart::key::ClientIp;
    /// let client_ip = ClientIp::new();
    /// # let _ = client_ip;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds networks whose addresses are trusted proxies. Default: none.
    ///
    /// Parse CIDRs with [`ipnet::IpNet`]'s `FromStr` (`"10.0.0.0/8".parse()`); a single
    /// address is a `/32` or `/128`. Rules are read the way addresses are: an IPv4-mapped
    /// IPv6 rule (`::ffff:10.0.0.0/104`) is the IPv4 rule `10.0.0.0/8`, and an IPv6 rule
    /// that covers all of `::ffff:0:0/96` (such as `::/0`) trusts every IPv4 address too.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_rampart::key::{ClientIp, KeyFn};
    ///
    /// let client_ip = ClientIp::new().trust_proxies(["::ffff:192.168.0.0/112".parse().unwrap()]);
    /// let mut req = http::Request::builder().header("x-forwarded-for", "203.0.113.1").body(()).unwrap();
    /// req.extensions_mut().insert("192.168.1.1:1".parse::<SocketAddr>().unwrap());
    /// assert_eq!(client_ip.key(&req), Some("203.0.113.1".parse().unwrap()));
    /// ```
    pub fn trust_proxies(mut self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        for net in networks {
            self.trusted.extend(canonical_rule(net.trunc()));
        }
        self
    }

    /// Reads the chain from `header`. Default: [`ForwardedHeader::XForwardedFor`].
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_rampart::key::{ClientIp, ForwardedHeader, KeyFn};
    ///
    /// let client_ip = ClientIp::new()
    ///     .trust_proxies(["10.0.0.0/8".parse().unwrap()])
    ///     .header(ForwardedHeader::Forwarded);
    /// let mut req = http::Request::builder()
    ///     .header("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)
    ///     .body(())
    ///     .unwrap();
    /// req.extensions_mut().insert("10.1.2.3:1".parse::<SocketAddr>().unwrap());
    /// assert_eq!(client_ip.key(&req), Some("2001:db8::".parse().unwrap()));
    /// ```
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Keys IPv6 clients by their first `bits` bits (0 to 128). Default: 64.
    ///
    /// A host is usually given a whole /64 and can use any address in it: keyed per
    /// address, one host would get 2^64 quotas. Use 48 or 56 where a site gets one prefix,
    /// 128 only where every client has one fixed address. Values over 128 are read as 128.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_rampart::key::{ClientIp, KeyFn};
    ///
    /// let per_site = ClientIp::new().ipv6_prefix(48);
    /// let mut req = http::Request::new(());
    /// req.extensions_mut().insert("[2001:db8:7:1::5]:80".parse::<SocketAddr>().unwrap());
    /// assert_eq!(per_site.key(&req), Some("2001:db8:7::".parse().unwrap()));
    /// ```
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.prefixes.v6 = bits.min(128);
        self
    }

    /// Keys IPv4 clients by their first `bits` bits (0 to 32). Default: 32, one key per
    /// address. Values over 32 are read as 32.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_rampart::key::{ClientIp, KeyFn};
    ///
    /// let per_24 = ClientIp::new().ipv4_prefix(24);
    /// let mut req = http::Request::new(());
    /// req.extensions_mut().insert("198.51.100.77:80".parse::<SocketAddr>().unwrap());
    /// assert_eq!(per_24.key(&req), Some("198.51.100.0".parse().unwrap()));
    /// ```
    pub fn ipv4_prefix(mut self, bits: u8) -> Self {
        self.prefixes.v4 = bits.min(32);
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, canonical and not yet grouped.
    fn client<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = canonical(peer_addr(req)?);
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => &X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => &http::header::FORWARDED,
        };
        // The last address a trusted proxy vouched for.
        let mut vouched = peer;
        // Later header lines were appended later: walk lines, then entries, right to left.
        for line in req.headers().get_all(name).iter().rev() {
            let bytes = line.as_bytes();
            let ended = match self.header {
                ForwardedHeader::XForwardedFor => {
                    self.walk(&mut vouched, split_plain(bytes), |e| {
                        parse_xff_node(trim(e))
                    })
                }
                ForwardedHeader::Forwarded => {
                    self.walk(&mut vouched, split_quoted(bytes), parse_forwarded_element)
                }
            };
            if let Some(client) = ended {
                return Some(client);
            }
        }
        Some(vouched)
    }

    /// Walks one line's entries, right to left: `Some(client)` once the walk ends (an
    /// untrusted address, or an entry that is not one), `None` to go on to the next line.
    fn walk<'a>(
        &self,
        vouched: &mut IpAddr,
        entries: impl Iterator<Item = &'a [u8]>,
        parse: impl Fn(&'a [u8]) -> Option<IpAddr>,
    ) -> Option<IpAddr> {
        for entry in entries {
            let Some(ip) = parse(entry) else {
                return Some(*vouched);
            };
            if !self.is_trusted(ip) {
                return Some(ip);
            }
            *vouched = ip;
        }
        None
    }
}

impl<B: 'static> KeyFn<Request<B>> for ClientIp {
    type Key<'r> = IpAddr;

    fn key(&self, req: &Request<B>) -> Option<IpAddr> {
        self.client(req).map(|ip| self.prefixes.group(ip))
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

/// A trust rule as addresses are compared: IPv4-mapped IPv6 networks become IPv4 ones, and
/// an IPv6 network covering all mapped addresses also covers IPv4.
fn canonical_rule(net: IpNet) -> Vec<IpNet> {
    const MAPPED_BITS: u8 = 96;
    let IpNet::V6(v6) = net else {
        return vec![net];
    };
    let mapped_range = Ipv6Addr::from(0xffff_u128 << 32);
    if v6.prefix_len() >= MAPPED_BITS {
        if let Some(v4) = v6.network().to_ipv4_mapped() {
            let v4 = Ipv4Net::new(v4, v6.prefix_len() - MAPPED_BITS)
                .expect("a prefix of at most 32 bits");
            return vec![IpNet::V4(v4)];
        }
        return vec![net];
    }
    if v6.contains(&mapped_range) {
        let everything = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("prefix 0 is valid");
        return vec![net, IpNet::V4(everything)];
    }
    vec![net]
}

/// Optional white space (RFC 9110 OWS) trimmed from both ends.
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The comma-separated entries of a line, right to left.
fn split_plain(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.rsplit(|b| *b == b',')
}

/// The comma-separated elements of an RFC 7239 line, right to left, where commas inside
/// quoted strings do not split. An unterminated quote makes the rest one element (which
/// then fails to parse).
fn split_quoted(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_outside_quotes(line, b',').into_iter().rev()
}

/// `bytes` split at every `separator` that is not inside a quoted string (RFC 9110
/// quoted-string, with backslash escapes).
fn split_outside_quotes(bytes: &[u8], separator: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b) if b == separator => {
                parts.push(&bytes[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&bytes[start..]);
    parts
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`. Nothing else: no quotes, no junk after a bracket, no port on a bare
/// IPv6 address.
fn parse_xff_node(entry: &[u8]) -> Option<IpAddr> {
    if let Some(rest) = entry.strip_prefix(b"[") {
        let close = rest.iter().position(|b| *b == b']')?;
        let (inside, after) = (&rest[..close], &rest[close + 1..]);
        if !(after.is_empty() || after.strip_prefix(b":").is_some_and(is_port)) {
            return None;
        }
        return text(inside)?
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| canonical(v6.into()));
    }
    let entry = text(entry)?;
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let (host, port) = entry.rsplit_once(':')?;
    is_port(port.as_bytes())
        .then(|| host.parse::<Ipv4Addr>().ok())
        .flatten()
        .map(IpAddr::V4)
}

/// The `for=` address of one RFC 7239 element (`for=...;proto=...;by=...`). `None` when the
/// element is malformed, has no `for`, has two, or names no address (`unknown`, `_hidden`).
fn parse_forwarded_element(element: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_outside_quotes(element, b';') {
        let pair = trim(pair);
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        if name.is_empty() || !name.iter().all(is_tchar) {
            return None;
        }
        let value = unquote(value)?;
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    parse_forwarded_node(&found?)
}

/// A token or a quoted-string (RFC 9110 §5.6.4), its escapes resolved.
fn unquote(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let Some(inner) = value.strip_prefix(b"\"") else {
        return (!value.is_empty() && value.iter().all(is_tchar)).then_some(Cow::Borrowed(value));
    };
    let inner = inner.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        // The usual quoted value has no escape: borrowed, not copied.
        return (!inner.contains(&b'"')).then_some(Cow::Borrowed(inner));
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.push(*bytes.next()?),
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(Cow::Owned(out))
}

/// An RFC 7239 node: `IPv4`, `IPv4:port`, `[IPv6]`, `[IPv6]:port` (port: 1 to 5 digits, or
/// an obfuscated `_port`). `unknown` and obfuscated names are not addresses.
fn parse_forwarded_node(node: &[u8]) -> Option<IpAddr> {
    let port_ok = |port: &[u8]| is_port(port) || is_obfuscated(port);
    if let Some(rest) = node.strip_prefix(b"[") {
        let close = rest.iter().position(|b| *b == b']')?;
        let (inside, after) = (&rest[..close], &rest[close + 1..]);
        if !(after.is_empty() || after.strip_prefix(b":").is_some_and(port_ok)) {
            return None;
        }
        return text(inside)?
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| canonical(v6.into()));
    }
    let (host, port) = match node.iter().position(|b| *b == b':') {
        Some(colon) => (&node[..colon], Some(&node[colon + 1..])),
        None => (node, None),
    };
    if port.is_some_and(|p| !port_ok(p)) {
        return None;
    }
    text(host)?.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// 1 to 5 ASCII digits, at most 65535.
fn is_port(port: &[u8]) -> bool {
    (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
        && text(port)
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p <= u32::from(u16::MAX))
}

/// RFC 7239 `obfnode` / `obfport`: `_` then letters, digits, `.`, `_` or `-`.
fn is_obfuscated(value: &[u8]) -> bool {
    value.len() > 1
        && value[0] == b'_'
        && value[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b)
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests;
