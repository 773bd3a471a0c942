//! `plinth.toml`: parsing, defaults and validation.
//!
//! Unknown keys are refused. Every error names the file, the key and what
//! would be valid. Relative paths in the file are resolved against the
//! directory that holds it, so a config works from any working directory.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::Policy;
use crate::routes::{Route, RouteTable};

/// A config that failed to load; the message is meant for an operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message, which names the key and the valid ones.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The dotted key, such as `plugins[0].component`.
        key: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

/// The whole deployment as the operator described it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, TLS and request bounds.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where data lives.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The plugins to load, each with its routes and grants.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// Worker components that run plugins' jobs off the request path.
    #[serde(default)]
    pub workers: Vec<WorkerConfig>,
    /// The route policy file.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// Session lifetimes and cookie settings.
    #[serde(default)]
    pub sessions: SessionConfig,
    /// Which peers may set the client address.
    #[serde(default)]
    pub proxies: ProxyConfig,
    /// Rate limits per route class.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// Largest request body per route class, over `server.max_body`. A
    /// class allowed more than `server.max_body` gets its bodies streamed:
    /// the plugin reads them whole (up to `server.max_body`) or sends them
    /// to a blob.
    #[serde(default)]
    pub body_limits: BTreeMap<String, ByteSize>,
    /// Security header values.
    #[serde(default)]
    pub headers: HeadersConfig,
    /// Audit log options.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Outgoing mail.
    #[serde(default)]
    pub mail: MailConfig,
    /// Live change streams (Server-Sent Events); fixed at start.
    #[serde(default)]
    pub streams: StreamsConfig,
    /// Virus scanning of stored files; fixed at start.
    #[serde(default)]
    pub scanner: ScannerConfig,
    /// The locales requests are served in.
    #[serde(default)]
    pub i18n: I18nConfig,
    /// Webhook delivery; fixed at start.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// Service level objectives per route class.
    #[serde(default)]
    pub slo: SloConfig,
    /// Sign-in through external OpenID Connect providers; fixed at start.
    #[serde(default)]
    pub auth: crate::oidc::config::AuthConfig,
    /// The file this was read from, for messages; not a key.
    #[serde(skip)]
    pub source: PathBuf,
    /// The parsed policy file; not a key.
    #[serde(skip)]
    pub policy: Policy,
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies/routes.toml")
}

/// The locales of the deployment (`[i18n]`): the host picks one per
/// request from them and plugins' message files are linted against them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct I18nConfig {
    /// BCP 47 language tags, such as `["en", "pl", "ar"]`.
    pub locales: Vec<String>,
    /// The locale when nothing the client asks for is enabled; one of
    /// `locales`, and the one every other locale's messages are checked
    /// against.
    pub default: String,
}

impl Default for I18nConfig {
    fn default() -> Self {
        Self { locales: vec!["en".to_owned()], default: "en".to_owned() }
    }
}

/// Virus scanning of the files plugins store (`[scanner]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerConfig {
    /// clamd's address: its Unix socket (`LocalSocket`, a path) or
    /// `host:port` (`TCPSocket`). Every new file is streamed to it
    /// (`INSTREAM`); its `StreamMaxLength` must cover the largest file.
    pub clamd: Option<String>,
    /// Without a scanner: `"hold"` new files (never served until a scanner
    /// has passed them) or `"serve"` them unscanned.
    pub unscanned: Unscanned,
}

/// What happens to files when no scanner is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unscanned {
    /// Kept, not served, until a scanner passes them.
    #[default]
    Hold,
    /// Served without a scan.
    Serve,
}

/// Session settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session unused this long expires (`"30m"`).
    pub idle_timeout: HumanDuration,
    /// A session expires this long after sign-in, however used (`"12h"`).
    pub absolute_timeout: HumanDuration,
    /// Drops `Secure` and the `__Host-` prefix from the cookie, for plain-HTTP
    /// localhost development only; ignored over TLS. Logged loudly when on.
    pub dev_insecure_cookies: bool,
    /// Origins (`https://app.example.com`) whose pages may send
    /// state-changing requests besides the server's own host.
    pub allowed_origins: Vec<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: HumanDuration(Duration::from_secs(30 * 60)),
            absolute_timeout: HumanDuration(Duration::from_secs(12 * 3600)),
            dev_insecure_cookies: false,
            allowed_origins: Vec::new(),
        }
    }
}

/// Trusted reverse proxies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Networks whose forwarding header is believed, such as
    /// `"10.0.0.0/8"`. Empty: the peer address is the client address.
    pub trusted: Vec<ipnet::IpNet>,
    /// The header those proxies set: `"x-forwarded-for"` (default) or
    /// `"forwarded"`. Only that one is read.
    pub header: ForwardedHeader,
}

/// The header trusted proxies use to pass on the client address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// Rate limits: GCRA quotas per route class.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Most keys remembered per limiter; the least recently seen are
    /// forgotten first, so memory stays bounded under any key flood.
    pub max_tracked_keys: usize,
    /// Quotas by class name, merged over the built-in classes (`default`,
    /// `login`, `password_reset`, `email`, `admin`, `upload`, `media`,
    /// `form_submit`, `page`), each replaceable.
    pub classes: BTreeMap<String, ClassLimits>,
}

/// The quotas of one route class.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassLimits {
    /// Requests per client address, such as `"10/min"` (burst = the count).
    pub per_address: Rate,
    /// Requests per signed-in principal; none for classes used anonymously.
    pub per_principal: Option<Rate>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let class = |addr: &str, principal: Option<&str>| ClassLimits {
            per_address: Rate::parse(addr).expect("valid built-in rate"),
            per_principal: principal.map(|p| Rate::parse(p).expect("valid built-in rate")),
        };
        Self {
            max_tracked_keys: 100_000,
            classes: BTreeMap::from([
                (crate::policy::DEFAULT_CLASS.to_owned(), class("600/min", Some("1200/min"))),
                ("login".to_owned(), class("10/min", None)),
                ("password_reset".to_owned(), class("5/min", None)),
                ("email".to_owned(), class("5/min", Some("10/h"))),
                ("admin".to_owned(), class("300/min", Some("300/min"))),
                // Chunks of resumable uploads, and files served.
                ("upload".to_owned(), class("600/min", Some("1200/min"))),
                ("media".to_owned(), class("1200/min", Some("2400/min"))),
                // Form submissions: a person sends a few a minute.
                (crate::edge::headers::FORM_SUBMIT_CLASS.to_owned(), class("10/min", Some("30/min"))),
                // HTML pages with their own script (a CSP of their own too).
                (crate::edge::headers::PAGE_CLASS.to_owned(), class("600/min", Some("1200/min"))),
            ]),
        }
    }
}

/// A rate such as `"10/min"`: that many requests per period, in a burst or spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period (also the burst).
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/min` or `N/h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid rate `{text}`: expected N/s, N/min or N/h with N at least 1");
        let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().ok().filter(|&n| n > 0).ok_or_else(invalid)?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        Ok(Self { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rate::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A duration written as `"30m"`, `"12h"`, `"90s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map(HumanDuration).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}` ({e}): expected e.g. \"90s\", \"30m\", \"12h\""
            ))
        })
    }
}

/// Security header values: `set` applies to every response, `classes`
/// replace some for one route class. A value `""` removes the header.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    /// Header name → value, over the built-in defaults.
    pub set: BTreeMap<String, String>,
    /// Class name → (header name → value).
    pub classes: BTreeMap<String, BTreeMap<String, String>>,
}

/// Outgoing mail: a JSON-lines file unless SMTP is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The file sink; default `outbox.jsonl` in the data directory.
    pub file: Option<PathBuf>,
    /// Deliver over SMTP instead.
    pub smtp: Option<SmtpConfig>,
    /// Attempts before a message is parked as failed.
    pub max_attempts: u32,
    /// The first retry waits this long; each next one twice as long (at most 5 min).
    pub retry_base: HumanDuration,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self { file: None, smtp: None, max_attempts: 6, retry_base: HumanDuration(Duration::from_secs(2)) }
    }
}

/// Service level objectives (`[slo]`): `default` for every route class,
/// `classes.{class}` for one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// The objective of classes not listed.
    pub default: Objective,
    /// Objectives by route class.
    pub classes: BTreeMap<String, Objective>,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            default: Objective { availability: 99.9, latency_ms: 500, latency_target: 99.0 },
            classes: BTreeMap::new(),
        }
    }
}

/// One class's objective.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// Percent of requests answered without a 5xx (such as 99.9).
    pub availability: f64,
    /// A request slower than this many milliseconds is slow.
    pub latency_ms: u64,
    /// Percent of requests answered within `latency_ms` (such as 99).
    pub latency_target: f64,
}

/// Webhooks the host delivers for plugins (`[webhooks]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Hosts (names or IP literals, as URLs spell them), each alone (any
    /// port) or as `host:port` (that port only), that may be delivered to
    /// although they are or resolve to loopback, private, link-local or
    /// other internal addresses; every other such destination is refused.
    pub allow_hosts: Vec<String>,
    /// Attempts per message before it is parked as failed.
    pub max_attempts: u32,
    /// The first retry waits this long; each next one twice as long (at most 1 h).
    pub retry_base: HumanDuration,
    /// Messages in a row an endpoint fails (every attempt used) before it
    /// is switched off, with an audit record.
    pub disable_after: u32,
    /// One delivery's whole time, connection included.
    pub timeout: HumanDuration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            max_attempts: 8,
            retry_base: HumanDuration(Duration::from_secs(5)),
            disable_after: 3,
            timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// Live change streams the host serves for plugins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Streams open at once on the whole server; past it, 503.
    pub max_total: usize,
    /// Streams one principal (or, signed out, one client address) may hold; past it, 429.
    pub max_per_client: usize,
    /// How often a stream sends a heartbeat and re-checks its session and
    /// access (`"15s"`).
    pub heartbeat: HumanDuration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self { max_total: 10_000, max_per_client: 16, heartbeat: HumanDuration(Duration::from_secs(15)) }
    }
}

/// An SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name or address.
    pub host: String,
    /// Relay port.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The sender, such as `"plinth <noreply@example.com>"`.
    pub from: String,
    /// Login, when the relay wants one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

/// Audit log options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Also append each record as a JSON line to this file.
    pub mirror: Option<PathBuf>,
    /// The key the chain is MAC'd with (64 hex digits), created on first
    /// start. Keep it outside the data directory and its backups: with the
    /// key, whoever holds the data could rewrite history unseen.
    pub key_file: PathBuf,
    /// What start-up does when the chain's ends do not check out:
    /// `"refuse"` (default) or `"warn"`.
    pub on_broken: OnBroken,
    /// Records older than this are removed (`"400days"`).
    pub retention: HumanDuration,
    /// Past this size the oldest records are removed.
    pub max_bytes: ByteSize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            mirror: None,
            key_file: PathBuf::from("audit.key"),
            on_broken: OnBroken::Refuse,
            retention: HumanDuration(Duration::from_secs(400 * 24 * 3600)),
            max_bytes: ByteSize(1 << 30),
        }
    }
}

/// What start-up does with a broken audit chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBroken {
    /// Do not start.
    Refuse,
    /// Start, logging the break as an error.
    Warn,
}

/// Listener and the bounds every request lives within.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Open connections at most; past it the longest-idle connection is
    /// closed to make room, or, when none is idle, the new one is refused.
    pub max_connections: usize,
    /// Open connections from one client address at most (IPv6 by /64;
    /// trusted proxies are exempt, as every client arrives through them).
    /// Default: 32, or `max_connections` when smaller.
    pub max_connections_per_client: Option<usize>,
    /// Requests being handled at most; more get 503 at once.
    pub max_in_flight: usize,
    /// Requests from one client address in progress at most (body upload
    /// included); more get 429 at once. Default: 32, or `max_in_flight`
    /// when smaller.
    pub max_in_flight_per_client: Option<usize>,
    /// Concurrent HTTP/2 streams one connection may open. Default: 32, or
    /// the per-client in-flight cap when smaller.
    pub max_streams_per_connection: Option<usize>,
    /// Requests streaming a large body (a `[body_limits]` class) at once;
    /// more get 503. Each holds a plugin instance while its body arrives,
    /// so this keeps slow uploads from taking every in-flight permit.
    /// Default: a quarter of `max_in_flight`.
    pub max_streamed_bodies: Option<usize>,
    /// A new connection must send its first request's headers within this
    /// many milliseconds (TLS handshake included), and every request's
    /// headers must arrive within it once they start.
    pub header_timeout_ms: u64,
    /// A connection with no request in flight for this many milliseconds is
    /// closed (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout_ms: u64,
    /// After a grace of `BODY_RATE_GRACE`, a request body must bring this
    /// many bytes per second, judged over spans of `BODY_RATE_WINDOW`, or
    /// the request gets 408.
    pub min_body_rate: ByteSize,
    /// Largest request body accepted; larger gets 413.
    pub max_body: ByteSize,
    /// Most request headers accepted; more gets 431.
    pub max_headers: usize,
    /// Largest total size of request headers; larger gets 431.
    pub max_header_bytes: ByteSize,
    /// Whole-request deadline in milliseconds, body upload included.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            max_connections: 1024,
            max_connections_per_client: None,
            max_in_flight: 256,
            max_in_flight_per_client: None,
            max_streams_per_connection: None,
            max_streamed_bodies: None,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            min_body_rate: ByteSize(1024),
            max_body: ByteSize(1024 * 1024),
            max_headers: 64,
            max_header_bytes: ByteSize(16 * 1024),
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl ServerConfig {
    /// The whole-request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The shutdown drain bound.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Open connections one client address may hold.
    pub fn connections_per_client(&self) -> usize {
        self.max_connections_per_client.unwrap_or(DEFAULT_CLIENT_SHARE.min(self.max_connections))
    }

    /// Requests one client address may have in progress.
    pub fn in_flight_per_client(&self) -> usize {
        self.max_in_flight_per_client.unwrap_or(DEFAULT_CLIENT_SHARE.min(self.max_in_flight))
    }

    /// Requests that may stream a large body at once.
    pub fn streamed_bodies(&self) -> usize {
        self.max_streamed_bodies.unwrap_or((self.max_in_flight / 4).max(1))
    }

    /// HTTP/2 streams one connection may have open.
    pub fn streams_per_connection(&self) -> usize {
        self.max_streams_per_connection.unwrap_or(DEFAULT_CLIENT_SHARE.min(self.in_flight_per_client()))
    }

    /// Time to send headers, and a new connection's first request.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// Time a connection may sit with no request in flight.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// PEM files for rustls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Storage location.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The data directory; the sled database lives here.
    pub path: PathBuf,
    /// Where backups are written (default: `backups` beside the data
    /// directory, so that a restore, which replaces the data directory,
    /// leaves them in place).
    pub backups: Option<PathBuf>,
    /// Records a migration window's backfill copies per second at most (0:
    /// as fast as it goes). Its writes share the disk's flushes with the
    /// requests': measured on 2 cores, 2,000/s keeps their p99 within 1.3×
    /// of idle, unpaced (~9,000–11,000/s) costs 18–28× (BENCHMARKS.md).
    pub backfill_rate: u32,
    /// Where compiled components are cached (default: `compiled` in the
    /// data directory). Servers may share one: entries are named by the
    /// component's digest and the engine's settings, and written whole.
    pub compiled: Option<PathBuf>,
}

impl StorageConfig {
    /// The compiled-component cache directory.
    pub fn compiled_dir(&self) -> PathBuf {
        self.compiled.clone().unwrap_or_else(|| self.path.join("compiled"))
    }

    /// The backup directory.
    pub fn backups_dir(&self) -> PathBuf {
        self.backups.clone().unwrap_or_else(|| match self.path.parent() {
            Some(parent) => parent.join("backups"),
            None => PathBuf::from("backups"),
        })
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { path: PathBuf::from("data"), backups: None, backfill_rate: 2000, compiled: None }
    }
}

/// One plugin: its component, what it serves and what it may reach.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name; also the name of its storage namespace.
    pub name: String,
    /// Path of the wasm component.
    pub component: PathBuf,
    /// Routes it serves, such as `"GET /v1/hello"` or `"/v1/things/**"`.
    pub routes: Vec<String>,
    /// Host interfaces it may import.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Resource limits.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Settings the plugin reads through `plinth:platform/settings`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// A second version that takes a share of the requests.
    pub canary: Option<CanaryConfig>,
    /// The crate that builds `component`, for `plinth dev` (which rebuilds
    /// it on change); the server itself never reads it.
    pub source: Option<PathBuf>,
    /// Directories of Fluent messages, each with `{locale}/*.ftl` for each
    /// of `[i18n] locales` (such as the plugin's own and the deployment's),
    /// that the plugin formats through `plinth:platform/messages`; linted
    /// when the deployment loads. One path or a list.
    #[serde(default, deserialize_with = "one_or_many")]
    pub messages: Vec<PathBuf>,
    /// A directory of read-only files the plugin reads through
    /// `plinth:platform/assets`, such as form definitions.
    pub assets: Option<PathBuf>,
    /// The directory of the plugin's data migration steps
    /// (`0001-{name}.toml`, …: description, families, fixtures); needed
    /// when its component declares steps.
    pub migrations: Option<PathBuf>,
    /// The hosts its outgoing HTTP (`wasi:http/outgoing-handler`, grant
    /// `outgoing-http`) may reach: `[scheme://]host[:port]`, the host
    /// `*.example.com` for its subdomains. Internal addresses are refused
    /// whatever this lists.
    #[serde(default)]
    pub outgoing_http: Vec<String>,
    /// For a `wasi:http` component: the leading path its routes share,
    /// removed before the component sees the path (a component written to
    /// serve `/v1/hello` served at `/wasi/v1/hello`).
    pub strip_prefix: Option<String>,
}

/// One path, or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Paths {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match Paths::deserialize(d)? {
        Paths::One(path) => vec![path],
        Paths::Many(paths) => paths,
    })
}

/// A worker: a component (world `plinth:platform/worker`) that runs the
/// jobs plugins submit, a fresh instance per job, in its own limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Unique name; plugins submit jobs to it by this name.
    pub name: String,
    /// Path of the wasm component.
    pub component: PathBuf,
    /// Plugins whose jobs it takes (each needs grants `jobs` and `blobs`).
    pub plugins: Vec<String>,
    /// Resource limits of one job.
    #[serde(default)]
    pub limits: WorkerLimits,
}

/// Bounds of a worker's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerLimits {
    /// Linear memory one job's instance may grow to.
    pub memory: ByteSize,
    /// Wall-clock time one job may take, in milliseconds.
    pub timeout_ms: u64,
    /// Jobs it runs at once.
    pub concurrency: u32,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        Self { memory: ByteSize(64 << 20), timeout_ms: 30_000, concurrency: 1 }
    }
}

/// Most jobs all workers together run at once; the runtime's instance pool
/// holds this many slots beside those of requests.
pub const MAX_WORKER_SLOTS: u32 = 16;

/// A canary version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Its component file.
    pub component: PathBuf,
    /// Percent of requests it serves, 0 to 100; sticky per session.
    pub weight: u8,
    /// Settings over the plugin's own, for this version only.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A host interface a plugin can be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// `plinth:platform/kv`: its own storage namespace.
    Kv,
    /// `plinth:platform/log`: linked for every plugin (the plugin kit logs
    /// its host failures); still accepted here for older configs.
    Log,
    /// `plinth:platform/audit`: domain events into the audit log.
    Audit,
    /// `plinth:platform/principals`: the account registry.
    Principals,
    /// `plinth:platform/sessions`: issue and revoke sessions.
    Sessions,
    /// `plinth:platform/passwords`: argon2id hash and verify.
    Passwords,
    /// `plinth:platform/outbox`: queue e-mail.
    Outbox,
    /// `plinth:platform/signing`: tokens signed with the plugin's own key.
    Signing,
    /// `plinth:platform/events`: versioned writes that publish changes, and
    /// live streams of them (needs `kv`: the writes go to its namespace).
    Events,
    /// `plinth:platform/blobs`: files in the blob store, request bodies
    /// streamed into them, responses served from them.
    Blobs,
    /// `plinth:platform/jobs`: work handed to the `[[workers]]` that take
    /// the plugin's jobs (needs `blobs`: jobs read and make blobs).
    Jobs,
    /// `plinth:platform/webhooks`: signed HTTP notifications the host
    /// delivers to endpoints outside, with retries.
    Webhooks,
    /// `wasi:http/outgoing-handler`: HTTP requests to the hosts the plugin's
    /// `outgoing_http` lists, never to an internal address.
    OutgoingHttp,
}

impl Grant {
    /// The name used in config.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Kv => "kv",
            Grant::Log => "log",
            Grant::Audit => "audit",
            Grant::Principals => "principals",
            Grant::Sessions => "sessions",
            Grant::Passwords => "passwords",
            Grant::Outbox => "outbox",
            Grant::Signing => "signing",
            Grant::Events => "events",
            Grant::Blobs => "blobs",
            Grant::Jobs => "jobs",
            Grant::Webhooks => "webhooks",
            Grant::OutgoingHttp => "outgoing-http",
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-plugin bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory one instance may grow to.
    pub memory: ByteSize,
    /// Wall-clock time one request may spend in the plugin, in milliseconds.
    pub timeout_ms: u64,
    /// Bytes (keys plus values) its kv namespace may hold.
    pub kv_bytes: ByteSize,
    /// Bytes its blobs and upload reservations may take (with `blobs`).
    pub blob_bytes: ByteSize,
    /// Bytes one owner's blobs and reservations may take (with `blobs`).
    pub blob_bytes_per_owner: ByteSize,
    /// Jobs it may have queued or running at once (with `jobs`).
    pub jobs: u32,
    /// Jobs one owner may have queued or running at once (with `jobs`).
    pub jobs_per_owner: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory: ByteSize(64 * 1024 * 1024),
            timeout_ms: 2_000,
            kv_bytes: ByteSize(64 * 1024 * 1024),
            blob_bytes: ByteSize(1 << 30),
            blob_bytes_per_owner: ByteSize(256 << 20),
            jobs: 1000,
            jobs_per_owner: 10,
        }
    }
}

/// Default share of connections, in-flight requests and HTTP/2 streams one
/// client (or connection) may hold.
pub const DEFAULT_CLIENT_SHARE: usize = 32;

/// Routes the host serves itself; no plugin route may overlap them.
pub const HOST_ROUTES: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/admin/**"];

/// Largest memory cap a plugin may ask for; the pooling allocator reserves
/// address space for this much per instance slot.
pub const MAX_PLUGIN_MEMORY: u64 = 1024 * 1024 * 1024;

/// A plugin or worker name: 1 to 64 of a-z, 0-9, `-`, `_` (a storage
/// namespace and a path segment).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A byte count written as an integer or as `"64MiB"`, `"512 KiB"`, `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses a size with an optional unit.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let unit_multiplier = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => 0,
        };
        digits
            .parse::<u64>()
            .ok()
            .filter(|_| unit_multiplier != 0)
            .and_then(|n| n.checked_mul(unit_multiplier))
            .map(ByteSize)
            .ok_or_else(|| {
                format!("invalid size `{text}`: expected bytes as an integer, or a number with a unit B, KiB, MiB, GiB, KB, MB or GB")
            })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: an integer of bytes or a string such as \"64MiB\"")
        })? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file; relative paths inside it
    /// become relative to its directory.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.to_owned(), source })?;
        Self::parse(&text, file)
    }

    /// Parses and validates config text that came from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        config.source = file.to_owned();
        let base = file.parent().unwrap_or(Path::new(""));
        config.storage.path = base.join(&config.storage.path);
        config.storage.backups = config.storage.backups.as_ref().map(|dir| base.join(dir));
        config.storage.compiled = config.storage.compiled.as_ref().map(|dir| base.join(dir));
        if let Some(tls) = &mut config.server.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        for plugin in &mut config.plugins {
            plugin.component = base.join(&plugin.component);
            if let Some(source) = &mut plugin.source {
                *source = base.join(&*source);
            }
            if let Some(canary) = &mut plugin.canary {
                canary.component = base.join(&canary.component);
            }
            for dir in plugin.messages.iter_mut().chain(&mut plugin.assets).chain(&mut plugin.migrations) {
                *dir = base.join(&*dir);
            }
        }
        for worker in &mut config.workers {
            worker.component = base.join(&worker.component);
        }
        config.policies = base.join(&config.policies);
        // Configured classes add to the built-in ones or replace them one by one.
        for (name, limits) in RateLimitConfig::default().classes {
            config.rate_limits.classes.entry(name).or_insert(limits);
        }
        if let Some(file) = &mut config.mail.file {
            *file = base.join(&*file);
        }
        config.audit.key_file = base.join(&config.audit.key_file);
        if let Some(mirror) = &mut config.audit.mirror {
            *mirror = base.join(&*mirror);
        }
        config.validate()?;
        let table = config.route_table()?;
        let policy = Policy::load(&config.policies).map_err(|e| match e {
            ConfigError::Read { file, source } => {
                config.invalid("policies", format!("cannot read policy file `{}`: {source}", file.display()))
            }
            other => other,
        })?;
        match policy {
            Some(policy) => config.policy = policy,
            None if config.plugins.is_empty() => {}
            None => {
                return Err(config.invalid(
                    "policies",
                    format!(
                        "policy file `{}` does not exist; every plugin route needs a rule there",
                        config.policies.display()
                    ),
                ));
            }
        }
        config.policy.check_coverage(&table, |&i| config.plugins[i].name.clone())?;
        for class in config.body_limits.keys() {
            if !config.rate_limits.classes.contains_key(class) {
                return Err(config.invalid(
                    format!("body_limits.{class}"),
                    format!(
                        "unknown class `{class}`; classes are those of [rate_limits.classes]: {}",
                        config.rate_limits.classes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        for (i, rule) in config.policy.rules().iter().enumerate() {
            if !config.rate_limits.classes.contains_key(&rule.class) {
                return Err(ConfigError::Invalid {
                    file: config.policy.source().to_owned(),
                    key: format!("route[{i}].class"),
                    message: format!(
                        "unknown class `{}`; classes are those of [rate_limits.classes]: {}",
                        rule.class,
                        config.rate_limits.classes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        Ok(config)
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: self.source.clone(), key: key.into(), message: message.into() }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        crate::i18n::Locales::from_config(&self.i18n).map_err(|(key, message)| self.invalid(key, message))?;
        if let Some((key, message)) = self.auth.problem() {
            return Err(self.invalid(key, message));
        }
        if !self.auth.providers.is_empty() && !self.plugins.iter().any(|p| p.name == self.auth.accounts_plugin) {
            return Err(self.invalid(
                "auth.accounts_plugin",
                format!("no plugin `{}` decides who signs in through the providers", self.auth.accounts_plugin),
            ));
        }
        let objectives = std::iter::once(("slo.default".to_owned(), &self.slo.default))
            .chain(self.slo.classes.iter().map(|(class, o)| (format!("slo.classes.{class}"), o)));
        for (key, objective) in objectives {
            for (field, percent) in
                [("availability", objective.availability), ("latency_target", objective.latency_target)]
            {
                if !(percent > 0.0 && percent < 100.0) {
                    return Err(
                        self.invalid(format!("{key}.{field}"), "is a percentage above 0 and below 100, such as 99.9")
                    );
                }
            }
            if objective.latency_ms == 0 {
                return Err(self.invalid(format!("{key}.latency_ms"), "is a number of milliseconds above 0"));
            }
        }
        if self.scanner.clamd.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(self.invalid("scanner.clamd", "is clamd's socket path or `host:port`; leave it out for none"));
        }
        let server = &self.server;
        for (key, value) in [
            ("server.max_connections", server.max_connections as u64),
            ("server.max_connections_per_client", server.connections_per_client() as u64),
            ("server.max_in_flight", server.max_in_flight as u64),
            ("server.max_in_flight_per_client", server.in_flight_per_client() as u64),
            ("server.max_streamed_bodies", server.streamed_bodies() as u64),
            ("server.max_streams_per_connection", server.streams_per_connection() as u64),
            ("server.header_timeout_ms", server.header_timeout_ms),
            ("server.idle_timeout_ms", server.idle_timeout_ms),
            ("server.min_body_rate", server.min_body_rate.0),
            ("server.max_body", server.max_body.0),
            ("server.max_headers", server.max_headers as u64),
            ("server.max_header_bytes", server.max_header_bytes.0),
            ("server.request_timeout_ms", server.request_timeout_ms),
        ] {
            if value == 0 {
                return Err(self.invalid(key, "must be greater than zero"));
            }
        }
        for (key, share, whole, whole_key) in [
            (
                "server.max_connections_per_client",
                server.connections_per_client(),
                server.max_connections,
                "max_connections",
            ),
            ("server.max_in_flight_per_client", server.in_flight_per_client(), server.max_in_flight, "max_in_flight"),
            ("server.max_streamed_bodies", server.streamed_bodies(), server.max_in_flight, "max_in_flight"),
            (
                "server.max_streams_per_connection",
                server.streams_per_connection(),
                server.in_flight_per_client(),
                "max_in_flight_per_client",
            ),
        ] {
            if share > whole {
                return Err(self.invalid(
                    key,
                    format!("{share} is more than {whole_key} ({whole}); one client's share is at most the whole"),
                ));
            }
        }
        if let Some(tls) = &server.tls {
            for (key, path) in [("server.tls.cert", &tls.cert), ("server.tls.key", &tls.key)] {
                if !path.is_file() {
                    return Err(self.invalid(key, format!("file `{}` does not exist", path.display())));
                }
            }
        }
        for (i, origin) in self.sessions.allowed_origins.iter().enumerate() {
            let well_formed = origin.split_once("://").is_some_and(|(scheme, authority)| {
                matches!(scheme, "http" | "https")
                    && !authority.is_empty()
                    && !authority.contains(['/', '?', '#', '@', ' '])
            });
            if !well_formed {
                return Err(self.invalid(
                    format!("sessions.allowed_origins[{i}]"),
                    format!(
                        "`{origin}` is not an origin; write scheme://host[:port], such as \"https://app.example.com\""
                    ),
                ));
            }
        }
        if self.sessions.idle_timeout.0.is_zero() || self.sessions.absolute_timeout.0 < self.sessions.idle_timeout.0 {
            return Err(self.invalid(
                "sessions.absolute_timeout",
                "sessions need a non-zero idle_timeout and an absolute_timeout at least as long",
            ));
        }
        if self.mail.max_attempts == 0 || self.mail.retry_base.0.is_zero() {
            return Err(self.invalid("mail", "max_attempts and retry_base must be greater than zero"));
        }
        let hooks = &self.webhooks;
        if hooks.max_attempts == 0
            || hooks.retry_base.0.is_zero()
            || hooks.disable_after == 0
            || hooks.timeout.0.is_zero()
        {
            return Err(self
                .invalid("webhooks", "max_attempts, retry_base, disable_after and timeout must be greater than zero"));
        }
        if self.streams.max_total == 0 || self.streams.max_per_client == 0 || self.streams.heartbeat.0.is_zero() {
            return Err(self.invalid("streams", "max_total, max_per_client and heartbeat must be greater than zero"));
        }
        if self.streams.max_per_client > self.streams.max_total {
            return Err(self.invalid("streams.max_per_client", "is more than streams.max_total"));
        }
        if self.rate_limits.max_tracked_keys == 0 {
            return Err(self.invalid("rate_limits.max_tracked_keys", "must be greater than zero"));
        }
        crate::edge::headers::SecurityHeaders::from_config(&self.headers, &self.rate_limits)
            .map_err(|(key, message)| self.invalid(key, message))?;
        let mut names = std::collections::HashSet::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            let key = |field: &str| format!("plugins[{i}].{field}");
            self.check_component(&key, "plugin", &plugin.name, &mut names, &plugin.component)?;
            if plugin.grants.contains(&Grant::Events) && !plugin.grants.contains(&Grant::Kv) {
                return Err(self.invalid(
                    key("grants"),
                    "grant `events` writes to the plugin's kv namespace, so it needs grant `kv` too",
                ));
            }
            if let Some(canary) = &plugin.canary {
                if canary.weight > 100 {
                    return Err(self.invalid(key("canary.weight"), "a percentage, 0 to 100"));
                }
                if !canary.component.is_file() {
                    return Err(self.invalid(
                        key("canary.component"),
                        format!("component file `{}` does not exist", canary.component.display()),
                    ));
                }
            }
            if plugin.routes.is_empty() {
                return Err(self.invalid(key("routes"), "a plugin needs at least one route"));
            }
            self.check_limits(&key, plugin.limits.memory, plugin.limits.timeout_ms)?;
            if plugin.grants.contains(&Grant::Jobs) && !plugin.grants.contains(&Grant::Blobs) {
                return Err(
                    self.invalid(key("grants"), "grant `jobs` reads and makes blobs, so it needs grant `blobs` too")
                );
            }
            self.check_outgoing_http(&key, plugin)?;
            if let Some(prefix) = &plugin.strip_prefix {
                self.check_strip_prefix(&key, prefix, &plugin.routes)?;
            }
        }
        self.validate_workers()
    }

    /// A plugin's outgoing HTTP: the grant and the hosts it may reach come
    /// together, and each host entry is well formed.
    fn check_outgoing_http(&self, key: &dyn Fn(&str) -> String, plugin: &PluginConfig) -> Result<(), ConfigError> {
        let granted = plugin.grants.contains(&Grant::OutgoingHttp);
        if granted && plugin.outgoing_http.is_empty() {
            return Err(self.invalid(
                key("outgoing_http"),
                "grant `outgoing-http` needs the hosts it may reach, such as outgoing_http = [\"api.example.com\"]",
            ));
        }
        if !granted && !plugin.outgoing_http.is_empty() {
            return Err(self.invalid(
                key("grants"),
                "`outgoing_http` lists hosts, but the plugin lacks grant `outgoing-http` to reach them",
            ));
        }
        for (j, entry) in plugin.outgoing_http.iter().enumerate() {
            crate::runtime::outgoing::AllowedHost::parse(entry)
                .map_err(|message| self.invalid(key(&format!("outgoing_http[{j}]")), message))?;
        }
        Ok(())
    }

    /// A `strip_prefix`: a path of whole segments that every route of the
    /// plugin starts with.
    fn check_strip_prefix(
        &self,
        key: &dyn Fn(&str) -> String,
        prefix: &str,
        routes: &[String],
    ) -> Result<(), ConfigError> {
        let segments_ok = prefix.len() > 1
            && prefix.starts_with('/')
            && !prefix.ends_with('/')
            && prefix[1..].split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['{', '}', '*']));
        if !segments_ok {
            return Err(self.invalid(
                key("strip_prefix"),
                format!("`{prefix}` is not a path prefix; write literal segments such as \"/wasi\" (no trailing `/`)"),
            ));
        }
        for route in routes {
            let path = route.rsplit(' ').next().unwrap_or(route);
            let under = path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if !under {
                return Err(self.invalid(
                    key("strip_prefix"),
                    format!("route `{route}` does not start with `{prefix}`; every route of the plugin must"),
                ));
            }
        }
        Ok(())
    }

    /// A plugin's or worker's name (valid, not taken) and component file.
    fn check_component<'a>(
        &self,
        key: &dyn Fn(&str) -> String,
        kind: &str,
        name: &'a str,
        names: &mut std::collections::HashSet<&'a str>,
        component: &Path,
    ) -> Result<(), ConfigError> {
        if !valid_name(name) {
            return Err(
                self.invalid(key("name"), format!("`{name}` is not a {kind} name: use 1 to 64 of a-z, 0-9, `-`, `_`"))
            );
        }
        if !names.insert(name) {
            return Err(self.invalid(key("name"), format!("{kind} `{name}` is defined twice")));
        }
        if !component.is_file() {
            return Err(
                self.invalid(key("component"), format!("component file `{}` does not exist", component.display()))
            );
        }
        Ok(())
    }

    /// An instance's memory cap and deadline.
    fn check_limits(&self, key: &dyn Fn(&str) -> String, memory: ByteSize, timeout_ms: u64) -> Result<(), ConfigError> {
        if memory.0 == 0 || memory.0 > MAX_PLUGIN_MEMORY {
            return Err(self
                .invalid(key("limits.memory"), format!("must be between 1 byte and {} MiB", MAX_PLUGIN_MEMORY >> 20)));
        }
        if timeout_ms == 0 {
            return Err(self.invalid(key("limits.timeout_ms"), "must be greater than zero"));
        }
        Ok(())
    }

    fn validate_workers(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut slots = 0u32;
        for (i, worker) in self.workers.iter().enumerate() {
            let key = |field: &str| format!("workers[{i}].{field}");
            self.check_component(&key, "worker", &worker.name, &mut names, &worker.component)?;
            for (j, name) in worker.plugins.iter().enumerate() {
                let Some(plugin) = self.plugins.iter().find(|p| &p.name == name) else {
                    return Err(
                        self.invalid(format!("workers[{i}].plugins[{j}]"), format!("there is no plugin `{name}`"))
                    );
                };
                if !plugin.grants.contains(&Grant::Jobs) {
                    return Err(self.invalid(
                        format!("workers[{i}].plugins[{j}]"),
                        format!("plugin `{name}` cannot submit jobs: add \"jobs\" (and \"blobs\") to its grants"),
                    ));
                }
            }
            let limits = &worker.limits;
            self.check_limits(&key, limits.memory, limits.timeout_ms)?;
            slots += limits.concurrency;
            if limits.concurrency == 0 || slots > MAX_WORKER_SLOTS {
                return Err(self.invalid(
                    key("limits.concurrency"),
                    format!(
                        "each worker runs at least 1 job at once, and all workers together at most {MAX_WORKER_SLOTS}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every plugin route in one table of plugin indexes; refuses a route
    /// that is malformed or that overlaps another, naming both.
    pub fn route_table(&self) -> Result<RouteTable<usize>, ConfigError> {
        let mut table = RouteTable::default();
        for (i, plugin) in self.plugins.iter().enumerate() {
            for (j, text) in plugin.routes.iter().enumerate() {
                let key = format!("plugins[{i}].routes[{j}]");
                let route = Route::parse(text).map_err(|e| self.invalid(&key, e.to_string()))?;
                if let Some(host) = HOST_ROUTES.iter().find(|h| Route::parse(h).expect("valid").overlaps(&route)) {
                    return Err(self.invalid(key, format!("route `{text}` overlaps the host's own route `{host}`")));
                }
                if let Err((&owner, existing)) = table.insert(route, i) {
                    let owner_name = &self.plugins[owner].name;
                    let message = if owner == i {
                        format!("route `{text}` overlaps route `{existing}` of the same plugin `{owner_name}`")
                    } else {
                        format!(
                            "route `{text}` of plugin `{}` overlaps route `{existing}` of plugin `{owner_name}`",
                            plugin.name
                        )
                    };
                    return Err(self.invalid(key, message));
                }
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("2KB"), Ok(ByteSize(2000)));
        assert_eq!(ByteSize::parse("17"), Ok(ByteSize(17)));
        assert!(ByteSize::parse("12 parsecs").unwrap_err().contains("KiB, MiB"));
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
    }

    #[test]
    fn unknown_key_names_the_key_and_the_valid_ones() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x.toml: "), "{err}");
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("max_in_flight"), "{err}");
    }

    #[test]
    fn unknown_grant_lists_the_valid_grants() {
        let text = "[[plugins]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\ngrants = [\"network\"]\n";
        let err = Config::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("network") && err.contains("`kv`"), "{err}");
    }
}
