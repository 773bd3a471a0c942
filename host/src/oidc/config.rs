//! `[auth]` in plinth.toml: the external OpenID Connect providers people
//! may sign in through.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::HumanDuration;

/// ID token signature algorithms a provider may be allowed. Shared-secret
/// (`HS*`) and `none` are never among them: anyone holding the client
/// secret, or no one at all, could sign.
pub const KNOWN_ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// This deployment's address as browsers reach it (`https://app.example.com`):
    /// each provider's redirect URI is `{public_base_url}/v1/auth/oidc/{name}/callback`.
    pub public_base_url: Option<url::Url>,
    /// Where a browser lands after signing in through a provider: a path on this host.
    pub landing: String,
    /// The plugin that decides who gets in (it exports `external-sign-in`).
    pub accounts_plugin: String,
    /// The providers, by name (a-z, 0-9, `-`; part of their URLs).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// When the plugins' own credentials (passwords) may sign people in.
    pub password_sign_in: PasswordSignIn,
    /// The credentials-only emergency mode.
    pub emergency: EmergencyConfig,
}

/// When a plugin's own credential check may end in a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSignIn {
    /// Always (the default).
    #[default]
    Always,
    /// Only in emergency mode, and only for accounts holding the
    /// break-glass role: people sign in through the providers.
    EmergencyOnly,
}

/// `[auth.emergency]`: credentials-only sign-in while the providers fail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergencyConfig {
    /// The longest it stays on; it ends by itself then (`"4h"`).
    pub max_duration: HumanDuration,
    /// Admins who must ask for it, each in their own session (1 or 2).
    pub approvals: u8,
    /// How long a session issued in emergency mode lasts at most (`"1h"`).
    pub session_ttl: HumanDuration,
    /// The role of accounts that may sign in with a password in it.
    pub break_glass_role: String,
    /// It switches on by itself when a provider goes down (fails closed).
    pub on_provider_down: bool,
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        Self {
            max_duration: HumanDuration(Duration::from_secs(4 * 3600)),
            approvals: 1,
            session_ttl: HumanDuration(Duration::from_secs(3600)),
            break_glass_role: "break-glass".to_owned(),
            on_provider_down: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_base_url: None,
            landing: "/".to_owned(),
            accounts_plugin: "accounts".to_owned(),
            providers: BTreeMap::new(),
            password_sign_in: PasswordSignIn::Always,
            emergency: EmergencyConfig::default(),
        }
    }
}

/// `[auth.providers.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The issuer (`https://id.example.com`): its discovery document is at
    /// `{issuer}/.well-known/openid-configuration` and must name it exactly,
    /// as must its ID tokens.
    pub issuer: String,
    /// This deployment's client id at the provider.
    pub client_id: String,
    /// A file holding the client secret (trailing whitespace ignored),
    /// relative to plinth.toml.
    pub client_secret_file: PathBuf,
    /// The claim that names a person for good (`sub`; some providers' `oid`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The signature algorithms its ID tokens may use.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Scopes asked for; `openid` is always among them.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// How far the provider's clock may be from ours (`"60s"`).
    #[serde(default = "default_clock_skew")]
    pub clock_skew: HumanDuration,
    /// How long after a refetch of its signing keys another may happen,
    /// however many tokens name a key it does not have (`"60s"`).
    #[serde(default = "default_refetch_cooldown")]
    pub key_refetch_cooldown: HumanDuration,
    /// How often the drift monitor probes it (discovery, keys, the token
    /// endpoint); the first probe runs at start (`"5m"`).
    #[serde(default = "default_probe_interval")]
    pub probe_interval: HumanDuration,
}

fn default_probe_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(str::to_owned).to_vec()
}

fn default_clock_skew() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_refetch_cooldown() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl AuthConfig {
    /// The first thing wrong with it: the dotted key, and what is wrong.
    pub fn problem(&self) -> Option<(String, String)> {
        if !self.landing.starts_with('/')
            || self.landing.starts_with("//")
            || self.landing.chars().any(|c| c == '\\' || c.is_control() || c.is_whitespace())
        {
            return Some((
                "auth.landing".into(),
                format!("`{}` is not a path on this host, such as \"/\"", self.landing),
            ));
        }
        let emergency = &self.emergency;
        if !(1..=2).contains(&emergency.approvals) {
            return Some(("auth.emergency.approvals".into(), "is 1 or 2 admins".into()));
        }
        if emergency.max_duration.0.is_zero() || emergency.session_ttl.0.is_zero() {
            return Some(("auth.emergency".into(), "max_duration and session_ttl are above zero".into()));
        }
        if emergency.break_glass_role.is_empty() {
            return Some(("auth.emergency.break_glass_role".into(), "is empty".into()));
        }
        if self.providers.is_empty() {
            return None;
        }
        match &self.public_base_url {
            None => return Some(("auth.public_base_url".into(), "is needed for the providers' redirect URIs".into())),
            Some(url) if !matches!(url.scheme(), "https" | "http") || url.path() != "/" || url.query().is_some() => {
                return Some((
                    "auth.public_base_url".into(),
                    format!("`{url}`: scheme and host only, such as https://app.example.com"),
                ));
            }
            Some(_) => {}
        }
        self.providers.iter().find_map(|(name, provider)| provider_problem(name, provider))
    }
}

fn provider_problem(name: &str, provider: &ProviderConfig) -> Option<(String, String)> {
    let at = |key: &str| format!("auth.providers.{name}{key}");
    if name.is_empty()
        || name.len() > 32
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some((at(""), "a provider's name is 1 to 32 of a-z, 0-9 and `-`".into()));
    }
    match url::Url::parse(&provider.issuer) {
        Err(e) => return Some((at(".issuer"), format!("`{}` is not a URL ({e})", provider.issuer))),
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            return Some((at(".issuer"), format!("`{}`: an issuer has no query or fragment", provider.issuer)));
        }
        Ok(url) => {
            let loopback = url.host_str().is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Some((at(".issuer"), format!("`{}`: an issuer is reached over https", provider.issuer)));
            }
        }
    }
    if provider.probe_interval.0 < Duration::from_secs(1) {
        return Some((at(".probe_interval"), "is at least \"1s\"".into()));
    }
    if provider.client_id.is_empty() {
        return Some((at(".client_id"), "is empty".into()));
    }
    if provider.subject_claim.is_empty() {
        return Some((at(".subject_claim"), "is empty".into()));
    }
    if provider.algorithms.is_empty() {
        return Some((at(".algorithms"), format!("allow at least one of {KNOWN_ALGORITHMS:?}")));
    }
    provider
        .algorithms
        .iter()
        .find(|alg| !KNOWN_ALGORITHMS.contains(&alg.as_str()))
        .map(|alg| (at(".algorithms"), format!("`{alg}` is not one of {KNOWN_ALGORITHMS:?}")))
}
