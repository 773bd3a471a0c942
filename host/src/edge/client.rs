//! The client address: the peer, unless the peer is a trusted proxy, in
//! which case the nearest untrusted hop of the one forwarding header the
//! proxies are configured to set (`X-Forwarded-For` or `Forwarded`). The
//! other header is never read: a proxy that sets one passes the other
//! through from the client untouched.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::ForwardedHeader;

/// The address requests are attributed to (logs, audit, rate limits).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], header: ForwardedHeader) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Hops in order client, proxy1, proxy2...; the peer appended the last.
    // Walk back over trusted hops; a hop that cannot be read (`unknown`, an
    // obfuscated name, garbage) ends the walk at the peer, since anything
    // left of it may have come from the client.
    let hops = match header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
        ForwardedHeader::Forwarded => forwarded(headers),
    };
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return *ip,
            None => return peer,
        }
    }
    peer
}

/// One hop as proxies write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`; `None` for anything else.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    match text.strip_prefix('[') {
        Some(rest) => {
            let (ip, port) = rest.split_once(']')?;
            (port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok()))
                .then(|| ip.parse().ok())
                .flatten()
        }
        None => {
            let (ip, port) = text.split_once(':')?;
            port.parse::<u16>().ok()?;
            ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
        }
    }
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().ok())
        .flat_map(|v| v.map_or_else(|| vec![None], |v| v.split(',').map(hop).collect()))
        .collect()
}

fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("forwarded")
        .iter()
        .map(|v| v.to_str().ok())
        .flat_map(|v| v.map_or_else(|| vec![None], |v| v.split(',').map(forwarded_for).collect()))
        .collect()
}

/// The `for=` of one `Forwarded` element, read as [`hop`].
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| hop(value)).flatten()
    })
}

/// Whom the per-client limits count: an IPv4 address, or an IPv6 address's
/// /64, which one client usually holds whole. Hashed and compared as it
/// is; written out only for a log or an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address (an IPv4-mapped IPv6 one included).
    V4(Ipv4Addr),
    /// The first four segments of an IPv6 address.
    V6Net([u16; 4]),
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(v4) => v4.fmt(f),
            ClientKey::V6Net([a, b, c, d]) => write!(f, "{a:x}:{b:x}:{c:x}:{d:x}::/64"),
        }
    }
}

/// The key the limits count `ip` under.
pub fn limit_key(ip: IpAddr) -> ClientKey {
    match ip {
        IpAddr::V4(v4) => ClientKey::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ClientKey::V4(v4),
            None => {
                let s = v6.segments();
                ClientKey::V6Net([s[0], s[1], s[2], s[3]])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::test_headers as headers;

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let xff = ForwardedHeader::XForwardedFor;
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4")]);
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_address(stranger, &spoof, &trusted, xff), stranger);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.3")]);
        assert_eq!(client_address(proxy, &chain, &trusted, xff), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted, xff), proxy);
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        // The proxy sets `Forwarded`; the client sent its own X-Forwarded-For.
        let both = headers(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=\"[2001:db8::1]:443\";proto=https")]);
        let forwarded = client_address(proxy, &both, &trusted, ForwardedHeader::Forwarded);
        assert_eq!(forwarded, "2001:db8::1".parse::<IpAddr>().unwrap());
        let spoofed = client_address(proxy, &both, &trusted, ForwardedHeader::XForwardedFor);
        assert_eq!(spoofed, "6.6.6.6".parse::<IpAddr>().unwrap(), "the operator said X-Forwarded-For");
        let several = headers(&[("forwarded", "for=192.0.2.60;proto=http, For = 198.51.100.17:80")]);
        let nearest = client_address(proxy, &several, &trusted, ForwardedHeader::Forwarded);
        assert_eq!(nearest, "198.51.100.17".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_unreadable_hop_ends_the_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let xff = ForwardedHeader::XForwardedFor;
        for (chain, expected) in [
            ("6.6.6.6, 9.9.9.9", "9.9.9.9"),
            ("6.6.6.6, 9.9.9.9:5555", "9.9.9.9"),
            ("6.6.6.6, [2001:db8::9]", "2001:db8::9"),
            ("6.6.6.6, [2001:db8::9]:443", "2001:db8::9"),
            ("6.6.6.6, unknown", "10.0.0.2"),
            ("6.6.6.6, 9.9.9.9:port", "10.0.0.2"),
            ("6.6.6.6, 10.0.0.7", "6.6.6.6"),
        ] {
            let sent = headers(&[("x-forwarded-for", chain)]);
            assert_eq!(client_address(proxy, &sent, &trusted, xff), expected.parse::<IpAddr>().unwrap(), "{chain}");
        }
        let hidden = headers(&[("forwarded", "for=6.6.6.6, for=_hidden")]);
        assert_eq!(client_address(proxy, &hidden, &trusted, ForwardedHeader::Forwarded), proxy);
    }

    #[test]
    fn ipv6_keys_by_prefix() {
        let a = limit_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = limit_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_ne!(a, limit_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(limit_key("::ffff:192.0.2.1".parse().unwrap()), limit_key("192.0.2.1".parse().unwrap()));
        assert_eq!(limit_key("::ffff:192.0.2.1".parse().unwrap()).to_string(), "192.0.2.1");
    }
}
