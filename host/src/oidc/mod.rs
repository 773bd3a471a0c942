//! Sign-in through external OpenID Connect providers (`[auth]`): the
//! authorization code flow with PKCE (S256), `state` bound to the browser
//! that started it, `nonce`, the `iss` response parameter (RFC 9207, the
//! mix-up defence), and ID tokens checked against an algorithm allow-list
//! and the clock skew. Plugins have no network: the host runs the protocol,
//! then asks the plugin that owns accounts who the person signs in as
//! (`external-sign-in`), and issues the session itself.
//!
//! A sign-in in progress is a record in the system namespace `oidc`
//! (`flow/{state}`: provider, nonce, PKCE verifier, the hash of the
//! browser's binding cookie), taken by a compare-and-swap when the
//! provider sends the browser back, so a state works once. States begin
//! with their creation time, so expired ones are swept oldest first.

pub mod config;
pub mod drift;
pub mod emergency;
pub mod provider;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::drift::{Baseline, Drift};
pub use self::provider::{Provider, Status, Verified};
use crate::audit::{AuditLog, Envelope, Outcome};
use crate::metrics::Metrics;
use crate::storage::{Namespace, NamespaceId, Storage, Swap};

/// How long a sign-in may take between leaving for the provider and
/// coming back.
pub const FLOW_TTL_SECS: u64 = 600;
/// Expired sign-ins removed per new one, at most.
const SWEEP: usize = 64;
/// Sign-ins in progress at once on this server, at most: past it new ones
/// wait (a flood from many addresses fills no disk).
const MAX_PENDING: usize = 100_000;

/// Why a sign-in through a provider failed; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// No provider by that name.
    #[error("there is no sign-in provider `{0}`")]
    UnknownProvider(String),
    /// The provider cannot be used now (unreachable, failing, or changed in
    /// a way that makes it unsafe).
    #[error("{0}")]
    Unavailable(String),
    /// The state is unknown, used, another browser's, or another provider's.
    #[error("this sign-in is unknown, was already used, or was started in another browser; start again")]
    StateInvalid,
    /// The state is older than [`FLOW_TTL_SECS`].
    #[error("this sign-in took longer than {FLOW_TTL_SECS} s; start again")]
    StateExpired,
    /// The `iss` response parameter names another issuer.
    #[error("the response names issuer `{0}`, not this provider's")]
    IssuerMismatch(String),
    /// The provider sent an error instead of a code.
    #[error("the provider refused the sign-in: {0}")]
    Denied(String),
    /// The code was refused by the provider (used, expired, or not ours).
    #[error("the provider refused the authorization code (used or expired); start again")]
    CodeInvalid,
    /// The provider answered the code exchange unexpectedly.
    #[error("{0}")]
    Provider(String),
    /// The ID token failed a check.
    #[error("the ID token was refused: {0}")]
    Token(String),
    /// The subject is in a shape the provider's baseline never saw.
    #[error("{0}")]
    SubjectFormat(String),
    /// The host's storage failed.
    #[error("sign-in storage: {0}")]
    Storage(String),
}

impl OidcError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::UnknownProvider(_) => "not_found",
            OidcError::Unavailable(_) => "provider_unavailable",
            OidcError::StateInvalid => "oidc_state_invalid",
            OidcError::StateExpired => "oidc_state_expired",
            OidcError::IssuerMismatch(_) => "oidc_issuer_mismatch",
            OidcError::Denied(_) => "oidc_denied",
            OidcError::CodeInvalid => "oidc_code_invalid",
            OidcError::Provider(_) => "provider_error",
            OidcError::Token(_) => "oidc_token_invalid",
            OidcError::SubjectFormat(_) => "oidc_subject_format_changed",
            OidcError::Storage(_) => "storage_unavailable",
        }
    }

    /// Worth an audit record: what an attack, or a provider drifting, looks like.
    pub fn is_suspicious(&self) -> bool {
        matches!(
            self,
            OidcError::StateInvalid | OidcError::IssuerMismatch(_) | OidcError::Token(_) | OidcError::SubjectFormat(_)
        )
    }
}

fn storage_error(e: impl std::fmt::Display) -> OidcError {
    OidcError::Storage(e.to_string())
}

/// A sign-in between leaving for the provider and coming back.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    provider: String,
    nonce: String,
    verifier: String,
    /// SHA-256 (hex) of the binding cookie's value.
    binding: String,
    created_at: u64,
}

/// A started sign-in: where to send the browser, and the value of the
/// cookie that binds the sign-in to it.
pub struct Started {
    /// The provider's authorization URL with this sign-in's parameters.
    pub location: String,
    /// The binding cookie's value.
    pub binding: String,
}

/// The providers, and the sign-ins in progress.
pub struct Oidc {
    providers: BTreeMap<String, Arc<Provider>>,
    /// Sign-ins in progress (`flow/`) and accepted baselines (`baseline/`).
    flows: Arc<dyn Namespace>,
    /// Sign-ins started and not yet finished or swept, since start.
    pending: std::sync::atomic::AtomicUsize,
    audit: Arc<AuditLog>,
    /// Switched on when a provider goes down, if so configured.
    emergency: Option<Arc<emergency::Emergency>>,
    /// Where a browser lands once signed in.
    pub landing: String,
    /// The plugin asked who gets in.
    pub accounts_plugin: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn random(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Oidc {
    /// The configured providers (none: `None`), their client secrets read
    /// from their files (relative to plinth.toml) and their baselines from
    /// the system namespace `oidc`.
    pub async fn open(
        config: &crate::Config,
        storage: &dyn Storage,
        (audit, metrics): (Arc<AuditLog>, Arc<Metrics>),
        emergency: Option<Arc<emergency::Emergency>>,
    ) -> anyhow::Result<Option<Self>> {
        let auth = &config.auth;
        if auth.providers.is_empty() {
            return Ok(None);
        }
        let flows = storage.namespace(NamespaceId::System("oidc"), None)?;
        let base = auth.public_base_url.as_ref().expect("checked at load").as_str().trim_end_matches('/').to_owned();
        let dir = config.source.parent().unwrap_or(std::path::Path::new("."));
        let mut providers = BTreeMap::new();
        for (name, provider) in &auth.providers {
            let path = dir.join(&provider.client_secret_file);
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("auth.providers.{name}.client_secret_file {}: {e}", path.display()))?;
            let secret = secret.trim_end().to_owned();
            anyhow::ensure!(!secret.is_empty(), "auth.providers.{name}.client_secret_file {} is empty", path.display());
            let redirect_uri = format!("{base}/v1/auth/oidc/{name}/callback");
            let baseline =
                match flows.get(&baseline_key(name)).await? {
                    Some(bytes) => Some(serde_json::from_slice::<Baseline>(&bytes).map_err(|e| {
                        anyhow::anyhow!("the accepted baseline of provider `{name}` is unreadable: {e}")
                    })?),
                    None => None,
                };
            let provider =
                Provider::new(name.clone(), provider.clone(), (secret, redirect_uri), baseline, metrics.clone());
            providers.insert(name.clone(), Arc::new(provider));
        }
        Ok(Some(Self {
            providers,
            pending: std::sync::atomic::AtomicUsize::new(0),
            flows,
            audit,
            emergency,
            landing: auth.landing.clone(),
            accounts_plugin: auth.accounts_plugin.clone(),
        }))
    }

    /// The providers, by name.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    fn provider(&self, name: &str) -> Result<&Arc<Provider>, OidcError> {
        self.providers.get(name).ok_or_else(|| OidcError::UnknownProvider(name.to_owned()))
    }

    /// A provider's status.
    pub fn status(&self, name: &str) -> Result<Status, OidcError> {
        Ok(self.provider(name)?.status())
    }

    /// Records each new difference from a provider's baseline.
    async fn record_drift(&self, provider: &Provider, drift: &[Drift]) -> Result<(), OidcError> {
        for d in drift {
            let reason = format!("{:?}: {} was `{}`, is `{}`", d.severity, d.field, d.baseline, d.now);
            let target = format!("provider/{}", provider.name);
            let draft = Envelope::system().draft("auth.drift", &target, Outcome::Failure, Some(reason));
            self.audit.append(draft).await.map_err(storage_error)?;
        }
        Ok(())
    }

    /// Probes a provider now; its status after.
    pub async fn probe(&self, name: &str) -> Result<Status, OidcError> {
        let provider = self.provider(name)?;
        let was_down = provider.is_down();
        let drift = provider.probe().await;
        self.record_drift(provider, &drift).await?;
        // Only what this probe found (its failures, its breaking drift)
        // switches emergency mode on, not a sign-in meanwhile.
        let found = provider.failed_probes() >= 3 || drift.iter().any(|d| d.severity == drift::Severity::Breaking);
        if !was_down && provider.is_down() && found {
            self.went_down(provider).await;
        }
        Ok(provider.status())
    }

    /// A provider the probes found going down may switch emergency mode on
    /// (once per fall: an admin who ends the mode is not overruled).
    async fn went_down(&self, provider: &Provider) {
        let why = provider.breaking().unwrap_or_else(|| "its probes keep failing".to_owned());
        if let Some(emergency) = &self.emergency
            && let Err(e) = emergency.provider_down(&provider.name, &why).await
        {
            tracing::error!(provider = %provider.name, error = %e, "emergency mode could not switch on");
        }
    }

    /// Probes every provider at start and then every `probe_interval`, for
    /// as long as the server holds it.
    pub fn spawn_probes(self: &Arc<Self>) {
        for (name, provider) in &self.providers {
            let (weak, name, interval) = (Arc::downgrade(self), name.clone(), provider.config.probe_interval.0);
            tokio::spawn(async move {
                loop {
                    let Some(oidc) = weak.upgrade() else { return };
                    if let Err(e) = oidc.probe(&name).await {
                        tracing::error!(provider = %name, error = %e, "the drift probe could not record its findings");
                    }
                    drop(oidc);
                    tokio::time::sleep(interval).await;
                }
            });
        }
    }

    /// Accepts what provider `name` was seen doing last (probing it first
    /// when nothing was seen) as its baseline, recorded as `envelope`'s actor's.
    pub async fn accept_baseline(&self, name: &str, envelope: &Envelope) -> Result<Baseline, OidcError> {
        let provider = self.provider(name)?;
        if provider.status().observed.is_none() {
            provider.probe().await;
        }
        let baseline = provider.accept(&envelope.actor.to_string()).ok_or_else(|| {
            OidcError::Unavailable(format!("provider `{name}` has not been reached yet; nothing to accept"))
        })?;
        let observed = &baseline.observation;
        let reason = format!("issuer {}, algorithms {:?}", observed.issuer, observed.algorithms);
        let target = format!("provider/{name}");
        let draft = envelope.draft("auth.baseline_accepted", &target, Outcome::Success, Some(reason));
        self.audit.append(draft).await.map_err(storage_error)?;
        let bytes = serde_json::to_vec(&baseline).expect("serializes");
        self.flows.set(&baseline_key(name), bytes).await.map_err(storage_error)?;
        Ok(baseline)
    }

    /// Starts a sign-in at provider `name`: the authorization URL to send
    /// the browser to, and the binding cookie's value.
    pub async fn start(&self, name: &str) -> Result<Started, OidcError> {
        let provider = self.provider(name)?;
        let metadata = provider.metadata().await?;
        if let Some(why) = provider.breaking() {
            return Err(OidcError::Unavailable(why));
        }
        if provider.is_down() {
            return Err(OidcError::Unavailable(format!(
                "provider `{name}` is down: its last probes failed (GET /v1/auth/status)"
            )));
        }
        self.sweep().await?;
        // Counted before the flow is written, so starts racing each other
        // cannot all pass the bound.
        if self.pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= MAX_PENDING {
            self.forget_one();
            return Err(OidcError::Unavailable(format!(
                "{MAX_PENDING} sign-ins are in progress already; try again in a few minutes"
            )));
        }
        let created_at = now();
        let state = format!("{created_at:010x}{}", random(24));
        let (nonce, verifier, binding) = (random(24), random(32), random(32));
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let flow = Flow {
            provider: name.to_owned(),
            nonce: nonce.clone(),
            verifier,
            binding: sha256_hex(&binding),
            created_at,
        };
        let stored = self.flows.set(&format!("flow/{state}"), serde_json::to_vec(&flow).expect("serializes")).await;
        if let Err(e) = stored {
            self.forget_one();
            return Err(storage_error(e));
        }
        let mut scopes = provider.config.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        let mut location = url::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| OidcError::Unavailable(format!("provider `{name}`: its authorization endpoint: {e}")))?;
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.config.client_id)
            .append_pair("redirect_uri", &provider.redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Started { location: location.into(), binding })
    }

    /// Removes a few expired sign-ins, oldest first.
    async fn sweep(&self) -> Result<(), OidcError> {
        let page = self.flows.scan_prefix("flow/", None, SWEEP).await.map_err(storage_error)?;
        let cutoff = now().saturating_sub(FLOW_TTL_SECS);
        for (key, _) in page.entries {
            let created = key.get(5..15).and_then(|hex| u64::from_str_radix(hex, 16).ok());
            if created.is_some_and(|at| at >= cutoff) {
                break;
            }
            if self.flows.delete(&key).await.map_err(storage_error)? {
                self.forget_one();
            }
        }
        Ok(())
    }

    /// One pending sign-in fewer (never below none: those from before a
    /// restart are swept without being counted).
    fn forget_one(&self) {
        let _ = self.pending.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |n| Some(n.saturating_sub(1)),
        );
    }

    /// Finishes a sign-in the provider sent the browser back from, with
    /// the callback's query and the browser's binding cookie: who the
    /// provider says signed in.
    pub async fn finish(&self, name: &str, query: &str, binding: Option<&str>) -> Result<Verified, OidcError> {
        let provider = self.provider(name)?;
        let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let state = params.get("state").ok_or(OidcError::StateInvalid)?;
        if state.len() > 128 {
            return Err(OidcError::StateInvalid);
        }
        let key = format!("flow/{state}");
        let stored = self.flows.get(&key).await.map_err(storage_error)?.ok_or(OidcError::StateInvalid)?;
        // Taken once: a replay, or a race of two, finds it gone.
        match self.flows.compare_and_swap(&key, Some(stored.clone()), None).await.map_err(storage_error)? {
            Swap::Swapped => self.forget_one(),
            Swap::Conflict(_) => return Err(OidcError::StateInvalid),
        }
        let flow: Flow = serde_json::from_slice(&stored).map_err(storage_error)?;
        if flow.provider != name || binding.map(sha256_hex).as_deref() != Some(flow.binding.as_str()) {
            return Err(OidcError::StateInvalid);
        }
        if now().saturating_sub(flow.created_at) > FLOW_TTL_SECS {
            return Err(OidcError::StateExpired);
        }
        let metadata = provider.metadata().await?;
        match params.get("iss") {
            Some(iss) if *iss != provider.config.issuer => return Err(OidcError::IssuerMismatch(iss.clone())),
            None if metadata.authorization_response_iss_parameter_supported => {
                return Err(OidcError::IssuerMismatch("(none)".to_owned()));
            }
            _ => {}
        }
        if let Some(error) = params.get("error") {
            let described = params.get("error_description").map(|d| format!(" ({d})")).unwrap_or_default();
            return Err(OidcError::Denied(format!("{error}{described}")));
        }
        let code = params.get("code").ok_or_else(|| OidcError::Provider("the response carries no code".into()))?;
        // Nothing (the code, the verifier, the secret) goes to a provider
        // that moved since the sign-in started.
        if let Some(why) = provider.breaking() {
            return Err(OidcError::Unavailable(why));
        }
        let token = match provider.exchange(&metadata, code, &flow.verifier).await {
            Err(OidcError::Unavailable(why)) => {
                provider.forget();
                return Err(OidcError::Unavailable(why));
            }
            other => other?,
        };
        let verified = provider.verify(&metadata, &token, &flow.nonce).await?;
        // What the token says about the provider is watched for drift too.
        let format = drift::subject_format(&verified.subject);
        let email_verified = match verified.email {
            Some(_) => provider.note_email_verified(&verified.subject, verified.email_verified_claim),
            None => None,
        };
        let drift = provider.observe(|observed| {
            if !observed.subject_formats.contains(&format) {
                observed.subject_formats.push(format.clone());
                observed.subject_formats.sort();
            }
            if email_verified.is_some() {
                observed.email_verified_claim = email_verified;
            }
        });
        self.record_drift(provider, &drift).await?;
        if let Some(why) = provider.breaking() {
            return Err(OidcError::Unavailable(why));
        }
        if !provider.knows_subject_format(&format) {
            return Err(OidcError::SubjectFormat(format!(
                "provider `{name}` named this person with a subject shaped `{format}`, which its baseline never saw; \
                 an operator checks it and accepts the new behaviour before such sign-ins are taken"
            )));
        }
        Ok(verified)
    }
}

fn baseline_key(provider: &str) -> String {
    format!("baseline/{provider}")
}
