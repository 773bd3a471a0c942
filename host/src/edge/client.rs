//! The client address: the peer, unless the peer is a trusted proxy, in
//! which case the nearest untrusted hop of the one forwarding header the
//! proxies are configured to set (`X-Forwarded-For` or `Forwarded`). The
//! other header is never read: a proxy that sets one passes the other
//! through from the client untouched.

use std::net::IpAddr;

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
    let hops = match header {
        ForwardedHeader::XForwardedFor => x_forwarded_for(headers),
        ForwardedHeader::Forwarded => forwarded(headers),
    };
    hops.iter().rev().find(|ip| !is_trusted(ip)).copied().unwrap_or(peer)
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect()
}

fn forwarded(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                if !key.trim().eq_ignore_ascii_case("for") {
                    return None;
                }
                let value = value.trim().trim_matches('"');
                // `[2001:db8::1]:443` or `192.0.2.1:80` or a bare address.
                let host = match value.strip_prefix('[') {
                    Some(rest) => rest.split(']').next()?,
                    None => value.split(':').next()?,
                };
                host.parse().ok()
            })
        })
        .collect()
}

/// The rate-limit key of an address: IPv6 by its /64, which one client
/// usually holds whole.
pub fn limit_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
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
    fn ipv6_keys_by_prefix() {
        let a = limit_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = limit_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(limit_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }
}
