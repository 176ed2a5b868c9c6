use super::*;

fn req(peer: &str, xff: &[&[u8]]) -> Request<()> {
    let mut req = Request::new(());
    for line in xff {
        req.headers_mut().append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(line).unwrap(),
        );
    }
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn forwarded(peer: &str, line: &[u8]) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut()
        .append("forwarded", http::HeaderValue::from_bytes(line).unwrap());
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
    let r = req("203.0.113.50:1234", &[b"1.2.3.4"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("203.0.113.50"));
    assert_eq!(ClientIp::new().key(&r), ip("203.0.113.50"));
}

#[test]
fn chain_through_two_trusted_proxies_resolves_the_client() {
    // client 198.51.100.9 -> proxy A 10.0.0.2 -> proxy B 10.0.0.1 -> us
    let r = req("10.0.0.1:1", &[b"6.6.6.6, 198.51.100.9, 10.0.0.2"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("198.51.100.9"));
}

#[test]
fn multiple_header_lines_are_one_list_in_order() {
    let r = req("10.0.0.1:1", &[b"6.6.6.6, 198.51.100.9", b"10.0.0.2"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("198.51.100.9"));
}

#[test]
fn all_trusted_uses_the_leftmost_entry() {
    let r = req("10.0.0.1:1", &[b"10.0.0.3, 10.0.0.2"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("10.0.0.3"));
    let no_header = req("10.0.0.1:1", &[]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&no_header), ip("10.0.0.1"));
}

/// Regression: the whole line was turned into `&str` first, so one non-ASCII byte anywhere
/// in it dropped the key (with `MissingKey::Allow`, an unlimited client).
#[test]
fn a_byte_that_is_not_text_spoils_its_entry_only() {
    let client = req("10.0.0.1:1", &[b"\xff, 198.51.100.9"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&client), ip("198.51.100.9"));
    let behind_proxy = req("10.0.0.1:1", &[b"1.2.3.4, 198.51.100.9\xff, 10.0.0.2"]);
    assert_eq!(
        trusting(&["10.0.0.0/8"]).key(&behind_proxy),
        ip("10.0.0.2"),
        "the walk ends at the last address a trusted proxy vouched for"
    );
}

#[test]
fn garbage_ends_the_walk_at_the_last_vouched_address_never_no_key() {
    let bad = req("10.0.0.1:1", &[b"1.1.1.1, not-an-ip"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&bad), ip("10.0.0.1"));
    let ok = req("10.0.0.1:1", &[b"<script>, 198.51.100.9"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&ok), ip("198.51.100.9"));
    let empty = req("10.0.0.1:1", &[b"198.51.100.9, , 10.0.0.2"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&empty), ip("10.0.0.2"));
}

#[test]
fn xff_entries_follow_the_address_grammars() {
    let node = |s: &[u8]| parse_xff_node(trim(s));
    assert_eq!(node(b" 1.2.3.4:80 "), ip("1.2.3.4"));
    assert_eq!(node(b"[2001:db8::1]:443"), ip("2001:db8::1"));
    assert_eq!(node(b"[2001:db8::1]"), ip("2001:db8::1"));
    assert_eq!(node(b"2001:db8::1"), ip("2001:db8::1"));
    assert_eq!(node(b"::ffff:10.0.0.1"), ip("10.0.0.1"));
    assert_eq!(node(b"1.2.3.4:65535"), ip("1.2.3.4"));
    // Regression: each of these parsed.
    for bad in [
        &b"[2001:db8::7]junk"[..],
        b"198.51.100.9:+80",
        b":::0",
        b"1.2.3.4:65536",
        b"1.2.3.4:",
        b"[1.2.3.4]",
        b"\"1.2.3.4\"",
        b"unknown",
        b"_hidden",
        b"[2001:db8::1]:",
    ] {
        assert_eq!(node(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

/// Regression: commas inside quoted strings split elements, a duplicate `for=` was
/// accepted, and a port with a sign parsed.
#[test]
fn forwarded_follows_rfc_7239() {
    let element = |s: &[u8]| parse_forwarded_element(s);
    assert_eq!(element(b"proto=https;For=\"[::1]:80\""), ip("::1"));
    assert_eq!(element(b"for=198.51.100.9;by=\"a,b\""), ip("198.51.100.9"));
    assert_eq!(element(b"for=\"198.51.100.9:4711\""), ip("198.51.100.9"));
    assert_eq!(element(b"for=\"[2001:db8::7]:_port\""), ip("2001:db8::7"));
    assert_eq!(element(b"for=\"19\\8.51.100.9\""), ip("198.51.100.9"));
    for bad in [
        &b"proto=https"[..],
        b"for=1.1.1.1;for=2.2.2.2",
        b"for=\"[2001:db8::7]junk\"",
        b"for=\"198.51.100.9:+80\"",
        b"for=[2001:db8::7]",
        b"for=unknown",
        b"for=_hidden",
        b"for=\"198.51.100.9",
        b"for",
        b"=1.2.3.4",
    ] {
        assert_eq!(element(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    let r = forwarded(
        "10.0.0.1:1",
        b"for=203.0.113.1, for=198.51.100.9;by=\"x,y;z\", for=10.0.0.2",
    );
    let client_ip = trusting(&["10.0.0.0/8"]).header(ForwardedHeader::Forwarded);
    assert_eq!(client_ip.key(&r), ip("198.51.100.9"));
    let duplicated = forwarded("10.0.0.1:1", b"for=198.51.100.9;for=6.6.6.6");
    assert_eq!(client_ip.key(&duplicated), ip("10.0.0.1"));
}

#[test]
fn a_mapped_peer_matches_an_ipv4_trust_rule() {
    let r = req("[::ffff:10.0.0.1]:1", &[b"198.51.100.9"]);
    assert_eq!(trusting(&["10.0.0.0/8"]).key(&r), ip("198.51.100.9"));
}

/// Regression: a rule written as an IPv4-mapped IPv6 network never matched, so every
/// client was keyed as the proxy.
#[test]
fn mapped_trust_rules_match_like_mapped_peers() {
    for rule in ["::ffff:10.0.0.0/104", "::ffff:10.0.0.1/128", "::/0"] {
        for peer in ["10.0.0.1:1", "[::ffff:10.0.0.1]:1"] {
            let r = req(peer, &[b"198.51.100.9"]);
            assert_eq!(
                trusting(&[rule]).key(&r),
                ip("198.51.100.9"),
                "rule {rule}, peer {peer}"
            );
        }
    }
    let r = req("10.0.0.1:1", &[b"198.51.100.9"]);
    assert_eq!(trusting(&["::ffff:11.0.0.0/104"]).key(&r), ip("10.0.0.1"));
}

/// Regression: IPv6 clients were keyed per address, so one host with a /64 had 2^64 quotas.
#[test]
fn ipv6_clients_are_grouped_by_prefix() {
    let peer = |addr: &str| {
        let mut r = Request::new(());
        r.extensions_mut()
            .insert(addr.parse::<SocketAddr>().unwrap());
        r
    };
    let a = peer("[2001:db8:1:2::1]:1");
    let b = peer("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1");
    assert_eq!(PeerIp.key(&a), PeerIp.key(&b));
    assert_eq!(ClientIp::new().key(&a), ClientIp::new().key(&b));
    assert_ne!(
        ClientIp::new().ipv6_prefix(128).key(&a),
        ClientIp::new().ipv6_prefix(128).key(&b)
    );
    assert_ne!(PeerIp.key(&a), PeerIp.key(&peer("[2001:db8:1:3::1]:1")));
    // IPv4 stays per address, and the prefixes saturate.
    let v4 = peer("198.51.100.7:1");
    assert_eq!(PeerIp.key(&v4), ip("198.51.100.7"));
    assert_eq!(
        ClientIp::new().ipv4_prefix(200).key(&v4),
        ip("198.51.100.7")
    );
    assert_eq!(ClientIp::new().ipv4_prefix(0).key(&v4), ip("0.0.0.0"));
    // A forwarded IPv6 client is grouped too.
    let via_proxy = req("10.0.0.1:1", &[b"2001:db8:9:9::77"]);
    assert_eq!(
        trusting(&["10.0.0.0/8"]).key(&via_proxy),
        ip("2001:db8:9:9::")
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_forwarding_headers_never_panic_and_always_give_a_key(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)
    ) {
        if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
            for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
                let mut r = req("10.0.0.1:1", &[]);
                r.headers_mut().insert("x-forwarded-for", value.clone());
                r.headers_mut().insert("forwarded", value.clone());
                proptest::prop_assert!(trusting(&["10.0.0.0/8"]).header(header).key(&r).is_some());
            }
        }
    }
}
