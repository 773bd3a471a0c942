//! Plugins' outgoing HTTP (`wasi:http/outgoing-handler`, grant
//! `outgoing-http`): a request goes out only to a host the plugin's
//! `outgoing_http` lists, never to an internal address (checked on the
//! addresses the connection uses, see [`crate::egress`]), follows no
//! redirect, and is bounded in number, size and time. Everything else is
//! answered to the guest as a `wasi:http` error code, never a trap.
//!
//! Hosts are read once, by the URL parser the client itself uses, so
//! `127.1` or `0x7f.1` is judged as the loopback address it is.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use url::{Host, Url};

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::{Allowed, NoReachableAddress, Resolver, is_internal};
use crate::metrics::{Metrics, OutgoingLabels};

/// Most outgoing requests one plugin call may make.
pub const MAX_REQUESTS_PER_CALL: u32 = 16;
/// Most bytes of outgoing request bodies one plugin call may send, in all.
const MAX_BODY_BYTES_PER_CALL: usize = 8 << 20;
/// Time to connect, and to the response's head, unless the guest asks for
/// less (the plugin's own deadline bounds both in any case).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// One entry of `outgoing_http`: `[scheme://]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Only this scheme (`http` or `https`); either when none.
    scheme: Option<String>,
    /// The host, lower-case.
    host: String,
    /// Written `*.host`: its subdomains, not itself.
    subdomains: bool,
    /// Only this port; the scheme's default when none.
    port: Option<u16>,
}

impl AllowedHost {
    /// Parses an entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let text = entry.trim().to_ascii_lowercase();
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (Some(scheme.to_owned()), rest),
            Some((other, _)) => return Err(format!("`{entry}`: the scheme is http or https, not `{other}`")),
            None => (None, text.as_str()),
        };
        if rest.contains(['/', '@', '?', '#']) {
            return Err(format!("`{entry}` is not a host; write [scheme://]host[:port], such as \"api.example.com\""));
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (host, tail) = v6.split_once(']').ok_or_else(|| format!("`{entry}`: an IPv6 address needs `]`"))?;
                (host, tail.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = port
            .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("`{entry}`: `{p}` is not a port")))
            .transpose()?;
        let (host, subdomains) = match host.strip_prefix("*.") {
            Some(domain) => (domain, true),
            None => (host, false),
        };
        let not_a_host = || {
            format!(
                "`{entry}` is not a host; name one (`api.example.com`) or its subdomains (`*.example.com`), \
                 never every host"
            )
        };
        let bracketed = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let parsed = Url::parse(&format!("http://{bracketed}/")).ok().and_then(|u| u.host().map(|h| h.to_owned()));
        let host = match parsed {
            Some(Host::Domain(domain)) => {
                let labels_ok = domain.len() <= 253
                    && domain.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !labels_ok || host.is_empty() {
                    return Err(not_a_host());
                }
                domain
            }
            Some(Host::Ipv4(_) | Host::Ipv6(_)) if subdomains => return Err(not_a_host()),
            Some(Host::Ipv4(ip)) => public_address(entry, ip.into())?,
            Some(Host::Ipv6(ip)) => public_address(entry, ip.into())?,
            None => return Err(not_a_host()),
        };
        if host == "localhost" || host.ends_with(".localhost") {
            return Err(format!("`{entry}` names this machine; plugins never reach an internal address"));
        }
        Ok(Self { scheme, host, subdomains, port })
    }

    /// Whether a request to `scheme://host:port` is one this entry allows.
    fn permits(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host_matches = if self.subdomains {
            host.strip_suffix(self.host.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        self.scheme.as_deref().is_none_or(|s| s == scheme) && host_matches && self.port.unwrap_or(default_port) == port
    }
}

/// An address entry in its canonical spelling, unless it is internal.
fn public_address(entry: &str, ip: std::net::IpAddr) -> Result<String, String> {
    if is_internal(ip) {
        return Err(format!("`{entry}` is the internal address {ip}; plugins never reach an internal address"));
    }
    Ok(ip.to_string())
}

/// What one plugin's outgoing requests share: its allowlist and a client
/// whose resolver refuses internal addresses.
pub struct Egress {
    plugin: Arc<str>,
    allowed: Vec<AllowedHost>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Egress {
    /// The egress of plugin `plugin`, from its `outgoing_http` (checked when
    /// the config was read).
    pub fn new(plugin: Arc<str>, entries: &[String], metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let allowed = entries.iter().map(|e| AllowedHost::parse(e)).collect::<Result<Vec<_>, _>>();
        let allowed = allowed.map_err(|e| anyhow::anyhow!("plugin `{plugin}`: outgoing_http: {e}"))?;
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(Resolver(Allowed::default())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Self { plugin, allowed, client, metrics })
    }

    /// The URL to request, if `uri` may be requested as far as its text
    /// tells (its addresses are checked again when it resolves). The URL
    /// is what the client sends to, so what was judged is what goes out.
    fn judge(&self, uri: &http::Uri) -> Result<Url, Error> {
        let url = Url::parse(&uri.to_string()).map_err(|_| Error::HttpRequestUriInvalid)?;
        let scheme = url.scheme();
        let port = url.port_or_known_default().ok_or(Error::HttpRequestUriInvalid)?;
        let (host, internal) = match url.host() {
            Some(Host::Domain(domain)) => {
                let domain = domain.trim_end_matches('.').to_owned();
                let local = domain == "localhost" || domain.ends_with(".localhost");
                (domain, local)
            }
            Some(Host::Ipv4(ip)) => (ip.to_string(), is_internal(ip.into())),
            Some(Host::Ipv6(ip)) => (ip.to_string(), is_internal(ip.into())),
            None => return Err(Error::HttpRequestUriInvalid),
        };
        if !self.allowed.iter().any(|a| a.permits(scheme, &host, port)) {
            return Err(Error::HttpRequestDenied);
        }
        if internal {
            return Err(Error::DestinationIpProhibited);
        }
        Ok(url)
    }

    fn count(&self, outcome: &'static str) {
        let labels = OutgoingLabels { plugin: self.plugin.to_string(), outcome: outcome.to_owned() };
        self.metrics.outgoing_http.get_or_create(&labels).inc();
    }

    /// Sends a request to the `url` it was judged by and hands back the
    /// response as it streams in; its body comes out of the call's
    /// `budget` of body bytes.
    async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        url: Url,
        budget: Arc<AtomicUsize>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let (mut parts, body) = request.into_parts();
        let too_large = || Error::HttpRequestBodySize(Some(MAX_BODY_BYTES_PER_CALL as u64));
        let body =
            Limited::new(body, budget.load(Ordering::Relaxed)).collect().await.map_err(|_| too_large())?.to_bytes();
        budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(body.len()))
            .map_err(|_| too_large())?;
        // The client sets `host` from the URL, so the request goes to the
        // host that was judged.
        parts.headers.remove(http::header::HOST);
        let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(FIRST_BYTE_TIMEOUT);
        let send = self.client.request(parts.method, url).headers(parts.headers).body(body).send();
        let response = match tokio::time::timeout(first_byte.min(FIRST_BYTE_TIMEOUT), send).await {
            Err(_) => Err(Error::ConnectionReadTimeout),
            Ok(result) => result.map_err(|e| error_code(&e)),
        };
        match response {
            Ok(response) => {
                self.count("sent");
                let response: http::Response<reqwest::Body> = response.into();
                Ok(response.map(|body| body.map_err(|e| error_code(&e)).boxed_unsync()))
            }
            Err(e) => {
                self.count(if matches!(e, Error::DestinationIpProhibited) { "denied" } else { "failed" });
                tracing::info!(plugin = %self.plugin, error = %e, "outgoing HTTP request failed");
                Err(e)
            }
        }
    }
}

/// The `wasi:http` error code a client error stands for.
fn error_code(e: &reqwest::Error) -> Error {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<NoReachableAddress>().is_some() {
            return Error::DestinationIpProhibited;
        }
        source = err.source();
    }
    if e.is_timeout() {
        Error::ConnectionReadTimeout
    } else if e.is_connect() {
        Error::ConnectionRefused
    } else {
        Error::HttpProtocolError
    }
}

/// One call's `wasi:http` hooks: its plugin's egress (none without the
/// grant), the requests it made so far and the body bytes it has left.
pub struct OutgoingHooks {
    egress: Option<Arc<Egress>>,
    sent: u32,
    budget: Arc<AtomicUsize>,
}

impl OutgoingHooks {
    /// Hooks for a call of a plugin with `egress`.
    pub fn new(egress: Option<Arc<Egress>>) -> Self {
        Self { egress, sent: 0, budget: Arc::new(AtomicUsize::new(MAX_BODY_BYTES_PER_CALL)) }
    }

    fn admit(&mut self, uri: &http::Uri) -> Result<(Arc<Egress>, Url), Error> {
        let Some(egress) = self.egress.clone() else { return Err(Error::HttpRequestDenied) };
        self.sent += 1;
        let judged =
            if self.sent > MAX_REQUESTS_PER_CALL { Err(Error::ConnectionLimitReached) } else { egress.judge(uri) };
        if let Err(e) = &judged {
            egress.count("denied");
            tracing::warn!(plugin = %egress.plugin, host = uri.host().unwrap_or_default(), error = %e, "outgoing HTTP request refused");
        }
        judged.map(|url| (egress, url))
    }
}

/// A boxed future, as the hook's signature has it.
type Boxed<T> = Box<dyn Future<Output = T> + Send>;

impl WasiHttpHooks for OutgoingHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _request_done: Boxed<Result<(), Error>>,
    ) -> Boxed<Result<(http::Response<WasiBody>, Boxed<Result<(), Error>>), Error>> {
        let admitted = self.admit(request.uri());
        let budget = self.budget.clone();
        Box::new(async move {
            let (egress, url) = admitted?;
            let response = egress.send(request, url, budget, options).await?;
            Ok((response, Box::new(async { Ok(()) }) as Boxed<Result<(), Error>>))
        })
    }
}

/// Bytes of an outgoing request body (for tests).
#[cfg(test)]
fn body_of(bytes: &'static [u8]) -> WasiBody {
    http_body_util::Full::new(bytes::Bytes::from_static(bytes)).map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_into_scheme_host_and_port() {
        let cases = [
            ("api.example.com", None, "api.example.com", false, None),
            ("HTTPS://Api.Example.com:8443", Some("https"), "api.example.com", false, Some(8443)),
            ("*.example.org", None, "example.org", true, None),
            ("[2606:4700::1111]:443", None, "2606:4700::1111", false, Some(443)),
            ("http://93.184.216.34", Some("http"), "93.184.216.34", false, None),
        ];
        for (entry, scheme, host, subdomains, port) in cases {
            let parsed = AllowedHost::parse(entry).unwrap();
            assert_eq!(
                parsed,
                AllowedHost { scheme: scheme.map(str::to_owned), host: host.into(), subdomains, port },
                "{entry}"
            );
        }
        for bad in [
            "",
            "*",
            "*.",
            "ftp://a.example",
            "a.example/path",
            "u@a.example",
            "a.example:0",
            "a.example:x",
            "a..b",
            "[::1",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
        // Internal addresses in any spelling the client's URL parser reads
        // as one, and this machine's names, are never an entry.
        for internal in [
            "127.0.0.1",
            "127.1",
            "0x7f.1",
            "2130706433",
            "017700000001",
            "0",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "10.0.0.1:443",
            "169.254.169.254",
            "localhost",
            "api.localhost",
        ] {
            let err = AllowedHost::parse(internal).unwrap_err();
            assert!(err.contains("internal") || err.contains("this machine"), "{internal}: {err}");
        }
        assert_eq!(AllowedHost::parse("http://0x5db8d822").unwrap().host, "93.184.216.34", "the canonical address");
        assert!(AllowedHost::parse("*.93.184.216.34").is_err(), "an address has no subdomains");
    }

    #[test]
    fn an_entry_permits_its_scheme_host_and_port_only() {
        let exact = AllowedHost::parse("https://api.example.com").unwrap();
        assert!(exact.permits("https", "api.example.com", 443));
        assert!(!exact.permits("http", "api.example.com", 80), "only its scheme");
        assert!(!exact.permits("https", "api.example.com", 8443), "only the default port");
        assert!(!exact.permits("https", "evilapi.example.com", 443));
        assert!(!exact.permits("https", "api.example.com.evil.net", 443));
        let any = AllowedHost::parse("*.example.com:8080").unwrap();
        assert!(any.permits("http", "a.example.com", 8080) && any.permits("https", "a.b.example.com", 8080));
        assert!(!any.permits("http", "example.com", 8080), "subdomains, not the domain itself");
        assert!(!any.permits("http", "badexample.com", 8080));
        assert!(!any.permits("http", "a.example.com", 80));
    }

    fn egress(entries: &[&str]) -> Arc<Egress> {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        Arc::new(Egress::new("probe".into(), &entries, Arc::new(Metrics::default())).unwrap())
    }

    #[test]
    fn unlisted_hosts_internal_literals_and_the_call_budget_are_refused() {
        let mut hooks = OutgoingHooks::new(Some(egress(&["api.example.com", "93.184.216.34"])));
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        assert!(matches!(hooks.admit(&uri("https://other.example.com/")), Err(Error::HttpRequestDenied)));
        assert!(matches!(hooks.admit(&uri("https://api.example.com.evil.net/")), Err(Error::HttpRequestDenied)));
        for unlisted in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://[::1]/",
            "http://localhost/",
            "http://api.example.com@127.1/",
        ] {
            assert!(matches!(hooks.admit(&uri(unlisted)), Err(Error::HttpRequestDenied)), "{unlisted}");
        }
        let (_, url) = hooks.admit(&uri("http://0x5db8d822/x")).unwrap();
        assert_eq!(url.as_str(), "http://93.184.216.34/x", "the address judged is the address requested");
        assert!(hooks.admit(&uri("https://api.example.com/v1")).is_ok());
        while hooks.sent < MAX_REQUESTS_PER_CALL {
            let _ = hooks.admit(&uri("https://api.example.com/v1"));
        }
        assert!(matches!(hooks.admit(&uri("https://api.example.com/v1")), Err(Error::ConnectionLimitReached)));
        let mut ungranted = OutgoingHooks::new(None);
        assert!(matches!(ungranted.admit(&uri("https://api.example.com/")), Err(Error::HttpRequestDenied)));
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_internal_addresses_is_never_connected_to() {
        // Past the text check (as a name that resolves to loopback only
        // would be), the resolver still refuses it.
        let egress = egress(&["api.example.com"]);
        let request = http::Request::get("http://localhost/").body(body_of(b"")).unwrap();
        let url = Url::parse("http://localhost/").unwrap();
        let sent = egress.clone().send(request, url, Arc::new(AtomicUsize::new(1024)), None).await;
        assert!(matches!(sent, Err(Error::DestinationIpProhibited)), "{sent:?}");
        // A call's bodies share one budget: what is left bounds the next.
        let budget = Arc::new(AtomicUsize::new(4));
        let request = http::Request::post("http://api.example.com/").body(body_of(b"12345678")).unwrap();
        let url = Url::parse("http://api.example.com/").unwrap();
        let sent = egress.send(request, url, budget.clone(), None).await;
        assert!(matches!(sent, Err(Error::HttpRequestBodySize(_))), "{sent:?}");
        assert_eq!(budget.load(Ordering::Relaxed), 4);
    }
}
