//! Where the host's own outgoing connections may go: webhooks, and plugins'
//! outgoing HTTP. A URL is `http` or `https` with a host; a host that is,
//! or resolves to, an internal address (loopback, private, link-local and
//! so the cloud metadata address, shared, unique-local, multicast,
//! reserved, or IPv6 forms of those) is refused unless the operator
//! allowed that host by name (`[webhooks] allow_hosts`; plugins get no such
//! exception). The check is made on the addresses the connection then uses
//! (the client's resolver is this one), so a name that resolves to a public
//! address when checked and to an internal one a moment later (DNS
//! rebinding) cannot pass.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use ipnet::IpNet;
use reqwest::Url;

/// Networks no outgoing connection reaches unless its host is allowed.
static INTERNAL: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // shared (carrier-grade NAT)
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, the cloud metadata address among them
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation
        "192.88.99.0/24",  // 6to4 relay
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/4",     // multicast
        "240.0.0.0/4",     // reserved, broadcast
        "::/128",          // unspecified
        "::1/128",         // loopback
        "64:ff9b:1::/48",  // local-use NAT64
        "100::/64",        // discard
        "2001::/23",       // IETF protocol assignments
        "2001:db8::/32",   // documentation
        "fc00::/7",        // unique local
        "fe80::/10",       // link-local
        "fec0::/10",       // site-local (deprecated)
        "ff00::/8",        // multicast
    ]
    .iter()
    .map(|n| n.parse().expect("valid network"))
    .collect()
});

/// Whether `address` is internal: in one of the [`INTERNAL`] networks, or
/// an IPv6 address that carries such an IPv4 address (mapped, compatible,
/// NAT64 or 6to4).
pub fn is_internal(address: IpAddr) -> bool {
    let embedded = match address {
        IpAddr::V6(v6) => embedded_v4(v6),
        IpAddr::V4(_) => None,
    };
    INTERNAL.iter().any(|net| net.contains(&address)) || embedded.is_some_and(|v4| is_internal(IpAddr::V4(v4)))
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible)
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        // 64:ff9b::a.b.c.d (NAT64)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 2002:aabb:ccdd::/48 (6to4)
        [0x2002, high, low16, ..] => {
            Some(Ipv4Addr::new((high >> 8) as u8, high as u8, (low16 >> 8) as u8, low16 as u8))
        }
        _ => None,
    }
}

/// The hosts the operator allowed although internal, lower-cased, each
/// with the one port it is allowed on (`host:port`) or any port (`host`).
#[derive(Debug, Clone, Default)]
pub struct Allowed(Arc<Vec<(String, Option<u16>)>>);

impl Allowed {
    /// From `[webhooks] allow_hosts`: `host`, `host:port`, `[v6]:port`.
    pub fn new(hosts: &[String]) -> Self {
        let entry = |text: &str| {
            let text = text.trim().to_ascii_lowercase();
            let (host, port) = match text.strip_prefix('[') {
                Some(rest) => match rest.split_once(']') {
                    Some((host, tail)) => (host.to_owned(), tail.strip_prefix(':').and_then(|p| p.parse().ok())),
                    None => (rest.to_owned(), None),
                },
                None => match text.rsplit_once(':') {
                    Some((host, port)) if !host.contains(':') => (host.to_owned(), port.parse().ok()),
                    _ => (text.clone(), None),
                },
            };
            (name(&host), port)
        };
        Self(Arc::new(hosts.iter().map(|h| entry(h)).collect()))
    }

    /// Whether `host` is allowed on some port (the resolver knows no port,
    /// so [`Allowed::check_url`] refuses a URL on any other).
    fn allows(&self, host: &str) -> bool {
        let host = name(host);
        self.0.iter().any(|(allowed, _)| *allowed == host)
    }

    /// Whether `host` is allowed on `port`.
    fn allows_on(&self, host: &str, port: Option<u16>) -> bool {
        let host = name(host);
        self.0.iter().any(|(allowed, only)| *allowed == host && only.is_none_or(|only| Some(only) == port))
    }

    /// `url`, if a request may be sent there as far as its text tells: the
    /// scheme, a host, no credentials, and an IP literal only when it is
    /// public or allowed. Names are checked again when they resolve.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        if url.len() > 2048 {
            return Err("a webhook URL is at most 2048 bytes".into());
        }
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}`: a webhook URL is http or https"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!("`{url}`: a webhook URL carries no credentials"));
        }
        let Some(host) = parsed.host_str() else { return Err(format!("`{url}` names no host")) };
        if self.allows_on(host, parsed.port_or_known_default()) {
            return Ok(parsed);
        }
        if self.allows(host) {
            // The resolver lets an allowed name reach its internal
            // addresses whatever the port: another port is refused here.
            return Err(format!("`{url}`: [webhooks] allow_hosts allows this host on another port only"));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if literal.is_some_and(is_internal) {
            return Err(format!(
                "`{url}` is an internal address; an operator may allow its host in [webhooks] allow_hosts"
            ));
        }
        let host = name(host);
        if host == "localhost" || host.ends_with(".localhost") {
            return Err(format!("`{url}` names this machine; an operator may allow it in [webhooks] allow_hosts"));
        }
        Ok(parsed)
    }
}

/// A host as the allow list holds it: lower case, without IPv6 brackets or
/// the trailing dot of a fully qualified name (`localhost.` is `localhost`).
fn name(host: &str) -> String {
    host.trim_matches(['[', ']']).trim_end_matches('.').to_ascii_lowercase()
}

/// A name resolved to no address a connection may use.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` resolves to no address the host may connect to (internal addresses are refused)")]
pub struct NoReachableAddress(pub String);

/// The resolver outgoing connections use: every address a name resolves
/// to is checked, and only the permitted ones are connected to.
#[derive(Debug, Clone)]
pub struct Resolver(pub Allowed);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = if allowed.allows(&host) {
                found
            } else {
                found.into_iter().filter(|a| !is_internal(a.ip())).collect()
            };
            if permitted.is_empty() {
                return Err(Box::new(NoReachableAddress(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_in_every_spelling_are_refused() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_by_scheme_credentials_and_literal_address_unless_allowed() {
        let none = Allowed::new(&[]);
        assert!(none.check_url("https://hooks.example.com/in").is_ok());
        for bad in [
            "ftp://hooks.example.com/",
            "https://user:pw@hooks.example.com/",
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://localhost./",
            "http://API.localhost./",
            "not a url",
        ] {
            assert!(none.check_url(bad).is_err(), "{bad}");
        }
        let loopback = Allowed::new(&["127.0.0.1:9000".into(), "[::1]".into()]);
        assert!(loopback.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(loopback.check_url("http://127.0.0.1:6379/").is_err(), "only the allowed port");
        assert!(loopback.check_url("http://[::1]:9000/hook").is_ok(), "any port when none is named");
        assert!(loopback.check_url("http://127.0.0.2:9000/hook").is_err(), "only the allowed host");
        // A name is let through the resolver to internal addresses on any
        // port, so its port is held at the URL.
        let named = Allowed::new(&["Hooks.Internal:8443".into()]);
        assert!(named.check_url("https://hooks.internal:8443/in").is_ok());
        assert!(named.check_url("https://HOOKS.internal.:8443/in").is_ok(), "spelled otherwise, the same host");
        for other_port in ["https://hooks.internal:6379/", "https://hooks.internal/", "http://hooks.internal.:22/"] {
            assert!(named.check_url(other_port).is_err(), "{other_port}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_are_refused_at_connection() {
        use reqwest::dns::Resolve as _;
        let resolver = Resolver(Allowed::new(&[]));
        let refused = resolver.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err(), "localhost resolves to loopback only");
        let allowed = Resolver(Allowed::new(&["localhost".into()]));
        let found: Vec<SocketAddr> = allowed.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }
}
