//! Plugins' outgoing HTTP (`wasi:http/outgoing-handler`, grant
//! `outgoing-http`): a request goes out only to a host the plugin's
//! `outgoing_http` lists, never to an internal address (checked on the
//! addresses the connection uses, see [`crate::egress`]), follows no
//! redirect, and is bounded in number, size and time. Everything else is
//! answered to the guest as a `wasi:http` error code, never a trap.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::{Allowed, NoReachableAddress, Resolver, is_internal};
use crate::metrics::{Metrics, OutgoingLabels};

/// Most outgoing requests one plugin call may make.
pub const MAX_REQUESTS_PER_CALL: u32 = 16;
/// Largest outgoing request body.
const MAX_REQUEST_BODY: usize = 8 << 20;
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
        let valid = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !valid {
            return Err(format!(
                "`{entry}` is not a host; name one (`api.example.com`) or its subdomains (`*.example.com`), \
                 never every host"
            ));
        }
        Ok(Self { scheme, host: host.to_owned(), subdomains, port })
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

    /// Whether `uri` may be requested, as far as its text tells (its
    /// addresses are checked when it resolves).
    fn judge(&self, uri: &http::Uri) -> Result<(), Error> {
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).trim_end_matches('.').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !self.allowed.iter().any(|a| a.permits(scheme, &host, port)) {
            return Err(Error::HttpRequestDenied);
        }
        if host.parse().is_ok_and(is_internal) || host == "localhost" || host.ends_with(".localhost") {
            return Err(Error::DestinationIpProhibited);
        }
        Ok(())
    }

    fn count(&self, outcome: &'static str) {
        let labels = OutgoingLabels { plugin: self.plugin.to_string(), outcome: outcome.to_owned() };
        self.metrics.outgoing_http.get_or_create(&labels).inc();
    }

    /// Sends a judged request and hands back the response as it streams in.
    async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let (mut parts, body) = request.into_parts();
        let body = Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
            .map_err(|_| Error::HttpRequestBodySize(Some(MAX_REQUEST_BODY as u64)))?
            .to_bytes();
        // The client sets `host` from the URL, so the request goes to the
        // host that was judged.
        parts.headers.remove(http::header::HOST);
        let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(FIRST_BYTE_TIMEOUT);
        let send = self.client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send();
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
/// grant) and the requests it made so far.
#[derive(Default)]
pub struct OutgoingHooks {
    egress: Option<Arc<Egress>>,
    sent: u32,
}

impl OutgoingHooks {
    /// Hooks for a call of a plugin with `egress`.
    pub fn new(egress: Option<Arc<Egress>>) -> Self {
        Self { egress, sent: 0 }
    }

    fn admit(&mut self, uri: &http::Uri) -> Result<Arc<Egress>, Error> {
        let Some(egress) = self.egress.clone() else { return Err(Error::HttpRequestDenied) };
        self.sent += 1;
        let judged =
            if self.sent > MAX_REQUESTS_PER_CALL { Err(Error::ConnectionLimitReached) } else { egress.judge(uri) };
        if let Err(e) = &judged {
            egress.count("denied");
            tracing::warn!(plugin = %egress.plugin, host = uri.host().unwrap_or_default(), error = %e, "outgoing HTTP request refused");
        }
        judged.map(|()| egress)
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
        Box::new(async move {
            let response = admitted?.send(request, options).await?;
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
        let mut hooks = OutgoingHooks::new(Some(egress(&["api.example.com", "127.0.0.1", "[::1]", "localhost"])));
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        assert!(matches!(hooks.admit(&uri("https://other.example.com/")), Err(Error::HttpRequestDenied)));
        assert!(matches!(hooks.admit(&uri("https://api.example.com.evil.net/")), Err(Error::HttpRequestDenied)));
        for internal in ["http://127.0.0.1/", "http://[::1]/", "http://localhost/"] {
            assert!(matches!(hooks.admit(&uri(internal)), Err(Error::DestinationIpProhibited)), "{internal}");
        }
        assert!(hooks.admit(&uri("https://api.example.com/v1")).is_ok());
        while hooks.sent < MAX_REQUESTS_PER_CALL {
            let _ = hooks.admit(&uri("https://api.example.com/v1"));
        }
        assert!(matches!(hooks.admit(&uri("https://api.example.com/v1")), Err(Error::ConnectionLimitReached)));
        let mut ungranted = OutgoingHooks::default();
        assert!(matches!(ungranted.admit(&uri("https://api.example.com/")), Err(Error::HttpRequestDenied)));
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_internal_addresses_is_never_connected_to() {
        // Past the text check (as a name that resolves to loopback only
        // would be), the resolver still refuses it.
        let egress = egress(&["api.example.com"]);
        let request = http::Request::get("http://localhost/").body(body_of(b"")).unwrap();
        let sent = egress.send(request, None).await;
        assert!(matches!(sent, Err(Error::DestinationIpProhibited)), "{sent:?}");
    }
}
