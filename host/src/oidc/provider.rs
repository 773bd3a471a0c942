//! One provider: its discovery document and signing keys, fetched when
//! first needed and again when they fail or a token names a key we lack,
//! and the checks of an ID token it issued.
//!
//! Nothing is fetched at start: a provider that is down then costs its own
//! sign-ins a 503, not the server its start, and the next sign-in tries
//! again (a failure is remembered only for [`RETRY_AFTER_FAILURE`]). A
//! token naming an unknown key causes at most one refetch of the keys per
//! `key_refetch_cooldown`, however many such tokens arrive (a flood of
//! made-up `kid`s costs the provider nothing).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::OidcError;
use super::config::ProviderConfig;
use super::drift::{Baseline, Drift, Observation, Severity};
use crate::metrics::{DriftLabels, Metrics, ProviderLabels};

/// People whose tokens must lack `email_verified` before it counts as gone.
const MISSING_CLAIM_PEOPLE: usize = 3;

/// A failed fetch is not tried again sooner than this.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// The discovery document's fields plinth uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Must be the configured issuer, exactly.
    pub issuer: String,
    /// Where the browser is sent.
    pub authorization_endpoint: String,
    /// Where the code is traded for tokens.
    pub token_endpoint: String,
    /// Its signing keys.
    pub jwks_uri: String,
    /// PKCE methods; when listed, S256 must be among them.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Algorithms its ID tokens may be signed with.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// It sends `iss` with each authorization response (RFC 9207): then a
    /// response without it is refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// What is cached, and when fetches last happened.
#[derive(Default)]
struct Cached {
    metadata: Option<std::sync::Arc<Metadata>>,
    keys: Option<std::sync::Arc<JwkSet>>,
    failed_at: Option<Instant>,
    keys_fetched_at: Option<Instant>,
}

/// Where a provider stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Probes pass and nothing drifted from the accepted baseline.
    Healthy,
    /// Sign-ins work, with something to look at: no baseline yet, a
    /// warning drift, or a failed probe.
    Degraded,
    /// It fails closed: breaking drift, or three probes failed in a row.
    Down,
}

impl State {
    fn gauge(self) -> i64 {
        match self {
            State::Healthy => 0,
            State::Degraded => 1,
            State::Down => 2,
        }
    }
}

/// One probe's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// When (RFC 3339).
    pub at: String,
    /// What failed; empty when all answered as expected.
    pub problems: Vec<String>,
}

/// What the drift monitor knows of a provider.
#[derive(Debug, Clone, Default)]
struct Health {
    baseline: Option<Baseline>,
    observed: Option<Observation>,
    drift: Vec<Drift>,
    last_probe: Option<Probe>,
    failed_probes: u32,
    /// Hashes of the people whose tokens carried an address without
    /// `email_verified`, since one carried both.
    lacking_email_verified: Vec<String>,
}

impl Health {
    fn state(&self) -> State {
        if self.drift.iter().any(|d| d.severity == Severity::Breaking) || self.failed_probes >= 3 {
            State::Down
        } else if self.baseline.is_none() || !self.drift.is_empty() || self.failed_probes > 0 {
            State::Degraded
        } else {
            State::Healthy
        }
    }
}

/// A provider's status, as `GET /admin/auth/providers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Its name.
    pub name: String,
    /// Its issuer.
    pub issuer: String,
    /// Healthy, degraded or down.
    pub state: State,
    /// The accepted baseline.
    pub baseline: Option<Baseline>,
    /// What was seen last.
    pub observed: Option<Observation>,
    /// Differences from the baseline.
    pub drift: Vec<Drift>,
    /// The last probe.
    pub last_probe: Option<Probe>,
}

/// The claims of a verified ID token plinth reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The configured subject claim.
    pub subject: String,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified` is true (or `"true"`).
    pub email_verified: bool,
    /// The token carried an `email_verified` claim at all.
    pub email_verified_claim: bool,
    /// `name`.
    pub name: Option<String>,
}

/// One configured provider.
pub struct Provider {
    /// Its name in plinth.toml.
    pub name: String,
    /// Its settings.
    pub config: ProviderConfig,
    secret: String,
    /// `{public_base_url}/v1/auth/oidc/{name}/callback`.
    pub redirect_uri: String,
    http: reqwest::Client,
    cached: Mutex<Cached>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    health: Mutex<Health>,
    metrics: std::sync::Arc<Metrics>,
}

impl Provider {
    /// A provider not yet contacted, with its accepted baseline.
    pub fn new(
        name: String,
        config: ProviderConfig,
        (secret, redirect_uri): (String, String),
        baseline: Option<Baseline>,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        let provider = Self {
            name,
            config,
            secret,
            redirect_uri,
            http,
            cached: Mutex::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
            health: Mutex::new(Health { baseline, ..Health::default() }),
            metrics,
        };
        provider.publish(&provider.health());
        provider
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().expect("provider health poisoned")
    }

    fn publish(&self, health: &Health) {
        let labels = ProviderLabels { provider: self.name.clone() };
        self.metrics.auth_provider_state.get_or_create(&labels).set(health.state().gauge());
    }

    /// Merges what was just seen into the observation and compares it with
    /// the baseline; the differences that were not there before.
    pub fn observe(&self, update: impl FnOnce(&mut Observation)) -> Vec<Drift> {
        let mut health = self.health();
        let mut observed = health.observed.clone().unwrap_or_default();
        update(&mut observed);
        let drift = health.baseline.as_ref().map(|b| observed.drift_from(&b.observation)).unwrap_or_default();
        let new: Vec<Drift> = drift.iter().filter(|d| !health.drift.contains(d)).cloned().collect();
        for d in &new {
            let severity = match d.severity {
                Severity::Warning => "warning",
                Severity::Breaking => "breaking",
            };
            let labels = DriftLabels { provider: self.name.clone(), severity: severity.to_owned() };
            self.metrics.auth_drift.get_or_create(&labels).inc();
        }
        health.observed = Some(observed);
        health.drift = drift;
        self.publish(&health);
        new
    }

    fn observe_metadata(&self, metadata: &Metadata) -> Vec<Drift> {
        let seen = Observation::of(metadata, &self.config.algorithms);
        self.observe(|observed| {
            *observed = Observation {
                subject_formats: std::mem::take(&mut observed.subject_formats),
                email_verified_claim: observed.email_verified_claim,
                ..seen
            }
        })
    }

    /// Whether a subject of shape `format` may sign in: any, until a
    /// baseline with subjects in it is accepted; then only the shapes it saw.
    pub fn knows_subject_format(&self, format: &str) -> bool {
        let health = self.health();
        health.baseline.as_ref().is_none_or(|b| {
            b.observation.subject_formats.is_empty() || b.observation.subject_formats.iter().any(|f| f == format)
        })
    }

    /// Notes whether a token that carried an address carried
    /// `email_verified` too; what the observation records: present, or
    /// missing once [`MISSING_CLAIM_PEOPLE`] different people's tokens
    /// lacked it (one person's token cannot fail the provider), or nothing new.
    pub fn note_email_verified(&self, subject: &str, present: bool) -> Option<bool> {
        let mut health = self.health();
        if present {
            health.lacking_email_verified.clear();
            return Some(true);
        }
        use sha2::Digest;
        let person = hex::encode(&sha2::Sha256::digest(subject.as_bytes())[..8]);
        if health.lacking_email_verified.len() < MISSING_CLAIM_PEOPLE
            && !health.lacking_email_verified.contains(&person)
        {
            health.lacking_email_verified.push(person);
        }
        (health.lacking_email_verified.len() >= MISSING_CLAIM_PEOPLE).then_some(false)
    }

    /// Probes failed in a row.
    pub fn failed_probes(&self) -> u32 {
        self.health().failed_probes
    }

    /// Whether it is down now.
    pub fn is_down(&self) -> bool {
        self.health().state() == State::Down
    }

    /// Why it fails closed, when its drift breaks sign-ins.
    pub fn breaking(&self) -> Option<String> {
        let health = self.health();
        let breaking: Vec<String> = health
            .drift
            .iter()
            .filter(|d| d.severity == Severity::Breaking)
            .map(|d| format!("{} was `{}`, is `{}`", d.field, d.baseline, d.now))
            .collect();
        (!breaking.is_empty()).then(|| {
            format!(
                "provider `{}` drifted from its baseline ({}): an operator checks it and accepts the new \
                 behaviour (`plinth auth baseline accept`) before sign-ins resume",
                self.name,
                breaking.join("; ")
            )
        })
    }

    /// Its status.
    pub fn status(&self) -> Status {
        let health = self.health();
        Status {
            name: self.name.clone(),
            issuer: self.config.issuer.clone(),
            state: health.state(),
            baseline: health.baseline.clone(),
            observed: health.observed.clone(),
            drift: health.drift.clone(),
            last_probe: health.last_probe.clone(),
        }
    }

    /// Accepts what was observed last as the baseline (none observed: none
    /// accepted); the baseline.
    pub fn accept(&self, by: &str) -> Option<Baseline> {
        let mut health = self.health();
        let observation = health.observed.clone()?;
        let baseline = Baseline { observation, accepted_at: super::now_rfc3339(), accepted_by: by.to_owned() };
        health.baseline = Some(baseline.clone());
        health.drift.clear();
        self.publish(&health);
        Some(baseline)
    }

    /// Fetches its discovery document and keys and sends its token endpoint
    /// a made-up code (which it must refuse with `invalid_grant`); the new
    /// differences from the baseline.
    pub async fn probe(&self) -> Vec<Drift> {
        let mut problems = Vec::new();
        let mut drift = Vec::new();
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        match self.get_json::<Metadata>(&url).await {
            Err(e) => problems.push(e.to_string()),
            Ok(metadata) => {
                drift = self.observe_metadata(&metadata);
                let checked = match self.check(metadata.clone()) {
                    Ok(checked) => {
                        self.cached().metadata = Some(std::sync::Arc::new(checked));
                        true
                    }
                    Err(e) => {
                        problems.push(e.to_string());
                        self.cached().metadata = None;
                        false
                    }
                };
                // Neither the keys nor the secret are asked of endpoints that moved.
                if !checked || self.breaking().is_some() {
                    return self.probed(problems, drift);
                }
                match self.get_json::<JwkSet>(&metadata.jwks_uri).await {
                    Ok(keys) => {
                        let mut cached = self.cached();
                        cached.keys = Some(std::sync::Arc::new(keys));
                        cached.keys_fetched_at = Some(Instant::now());
                    }
                    Err(e) => problems.push(e.to_string()),
                }
                if let Err(why) = self.token_probe(&metadata).await {
                    problems.push(why);
                }
            }
        }
        self.probed(problems, drift)
    }

    fn probed(&self, problems: Vec<String>, drift: Vec<Drift>) -> Vec<Drift> {
        let mut health = self.health();
        health.failed_probes = if problems.is_empty() { 0 } else { health.failed_probes + 1 };
        health.last_probe = Some(Probe { at: super::now_rfc3339(), problems });
        self.publish(&health);
        drift
    }

    async fn token_probe(&self, metadata: &Metadata) -> Result<(), String> {
        match self.exchange(metadata, "plinth-drift-probe", "plinth-drift-probe-verifier-0123456789abcdef").await {
            Err(OidcError::CodeInvalid) => Ok(()),
            Err(e) => Err(format!("its token endpoint, sent a made-up code: {e}")),
            Ok(_) => Err("its token endpoint took a made-up code".to_owned()),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().expect("provider cache poisoned")
    }

    fn unavailable(&self, why: impl std::fmt::Display) -> OidcError {
        OidcError::Unavailable(format!("provider `{}`: {why}", self.name))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self.http.get(url).send().await.map_err(|e| self.unavailable(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(self.unavailable(format!("{url} answered {}", response.status())));
        }
        response.json().await.map_err(|e| self.unavailable(format!("{url}: {e}")))
    }

    /// Its discovery document, checked, fetched when not yet held.
    pub async fn metadata(&self) -> Result<std::sync::Arc<Metadata>, OidcError> {
        if let Some(metadata) = self.cached().metadata.clone() {
            return Ok(metadata);
        }
        let _one = self.fetching.lock().await;
        if let Some(metadata) = self.cached().metadata.clone() {
            return Ok(metadata);
        }
        if self.cached().failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE) {
            return Err(self.unavailable("it failed a moment ago"));
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let fetched = self.get_json::<Metadata>(&url).await.and_then(|m| self.check(m));
        // Seen before it is used: a document that drifted is never cached.
        let fetched = fetched.and_then(|metadata| {
            self.observe_metadata(&metadata);
            match self.breaking() {
                Some(why) => Err(OidcError::Unavailable(why)),
                None => Ok(metadata),
            }
        });
        let mut cached = self.cached();
        match fetched {
            Ok(metadata) => {
                let metadata = std::sync::Arc::new(metadata);
                cached.metadata = Some(metadata.clone());
                cached.failed_at = None;
                Ok(metadata)
            }
            Err(e) => {
                cached.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// A discovery document plinth can sign people in with: its own
    /// issuer, PKCE with S256, one of our algorithms.
    fn check(&self, metadata: Metadata) -> Result<Metadata, OidcError> {
        if metadata.issuer != self.config.issuer {
            return Err(self.unavailable(format!(
                "its discovery document names issuer `{}`, not `{}`",
                metadata.issuer, self.config.issuer
            )));
        }
        // Endpoints over https, or plain http on loopback beside a loopback issuer.
        let issuer_http = self.config.issuer.starts_with("http://");
        for (name, endpoint) in [
            ("authorization_endpoint", &metadata.authorization_endpoint),
            ("token_endpoint", &metadata.token_endpoint),
            ("jwks_uri", &metadata.jwks_uri),
        ] {
            let url = url::Url::parse(endpoint).map_err(|e| self.unavailable(format!("its {name}: {e}")))?;
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if url.scheme() != "https" && !(issuer_http && loopback && url.scheme() == "http") {
                return Err(self.unavailable(format!("its {name} `{endpoint}` is not https")));
            }
        }
        if let Some(methods) = &metadata.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(self.unavailable("it no longer offers PKCE with S256"));
        }
        if !metadata.id_token_signing_alg_values_supported.is_empty()
            && !self.config.algorithms.iter().any(|a| metadata.id_token_signing_alg_values_supported.contains(a))
        {
            return Err(self.unavailable(format!(
                "it signs ID tokens with {:?}, none of the allowed {:?}",
                metadata.id_token_signing_alg_values_supported, self.config.algorithms
            )));
        }
        Ok(metadata)
    }

    /// Forgets the discovery document and keys, so the next sign-in fetches
    /// them again (after the provider failed us).
    pub fn forget(&self) {
        let mut cached = self.cached();
        cached.metadata = None;
        cached.keys = None;
    }

    /// The key `kid` names (or the one key there is, when the token names
    /// none), refetching the key set once per cooldown when it is not held.
    async fn key(&self, metadata: &Metadata, kid: Option<&str>) -> Result<DecodingKey, OidcError> {
        let find = |keys: &JwkSet| match kid {
            Some(kid) => keys.find(kid).cloned(),
            None if keys.keys.len() == 1 => keys.keys.first().cloned(),
            None => None,
        };
        if let Some(jwk) = self.cached().keys.as_deref().and_then(find) {
            return DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Token(format!("its key is unusable: {e}")));
        }
        let _one = self.fetching.lock().await;
        let (held, fetched_at) = {
            let cached = self.cached();
            (cached.keys.clone(), cached.keys_fetched_at)
        };
        if let Some(jwk) = held.as_deref().and_then(find) {
            return DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Token(format!("its key is unusable: {e}")));
        }
        let cooldown = self.config.key_refetch_cooldown.0;
        if held.is_none() && fetched_at.is_some_and(|at| at.elapsed() < cooldown) {
            return Err(self.unavailable("its key set could not be fetched a moment ago"));
        }
        if fetched_at.is_some_and(|at| at.elapsed() < cooldown) {
            return Err(OidcError::Token(format!(
                "it names key `{}`, which the provider's key set does not hold (fetched less than {} s ago)",
                kid.unwrap_or("(none)"),
                cooldown.as_secs()
            )));
        }
        let keys: JwkSet = match self.get_json(&metadata.jwks_uri).await {
            Ok(keys) => keys,
            Err(e) => {
                // A failing key endpoint is asked again only after the cooldown.
                self.cached().keys_fetched_at = Some(Instant::now());
                return Err(e);
            }
        };
        let jwk = find(&keys);
        {
            let mut cached = self.cached();
            cached.keys = Some(std::sync::Arc::new(keys));
            cached.keys_fetched_at = Some(Instant::now());
        }
        let jwk = jwk.ok_or_else(|| {
            OidcError::Token(format!(
                "it names key `{}`, which the provider's key set does not hold",
                kid.unwrap_or("(none)")
            ))
        })?;
        DecodingKey::from_jwk(&jwk).map_err(|e| OidcError::Token(format!("its key is unusable: {e}")))
    }

    /// Trades an authorization code for tokens (with the PKCE verifier);
    /// the ID token.
    pub async fn exchange(&self, metadata: &Metadata, code: &str, verifier: &str) -> Result<String, OidcError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        // RFC 6749 2.3.1: the id and secret are form-encoded inside Basic.
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .basic_auth(encode(&self.config.client_id), Some(encode(&self.secret)))
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unavailable(format!("its token endpoint: {e}")))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| self.unavailable(format!("its token endpoint answered {status}: {e}")))?;
        if status.is_server_error() {
            return Err(self.unavailable(format!("its token endpoint answered {status}")));
        }
        if let Some(error) = body.get("error").and_then(|e| e.as_str()) {
            return Err(match error {
                "invalid_grant" => OidcError::CodeInvalid,
                other => OidcError::Provider(format!("its token endpoint refused the code: {other}")),
            });
        }
        body.get("id_token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Provider("its token endpoint sent no ID token".to_owned()))
    }

    /// Checks an ID token: an allowed algorithm, a key of the provider's,
    /// its issuer, our client as audience (and authorized party), the time
    /// (within the clock skew), and the nonce of this sign-in.
    pub async fn verify(&self, metadata: &Metadata, token: &str, nonce: &str) -> Result<Verified, OidcError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Token(format!("it is not a JWT: {e}")))?;
        let alg = format!("{:?}", header.alg);
        if !self.config.algorithms.contains(&alg) {
            return Err(OidcError::Token(format!(
                "it is signed with {alg}, not one of the allowed {:?}",
                self.config.algorithms
            )));
        }
        let key = self.key(metadata, header.kid.as_deref()).await?;
        let skew = self.config.clock_skew.0.as_secs();
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = skew;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
            .map_err(|e| OidcError::Token(format!("{e}")))?
            .claims;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let iat = claims.get("iat").and_then(serde_json::Value::as_u64).unwrap_or(u64::MAX);
        if iat > now + skew {
            return Err(OidcError::Token(format!("it was issued {} s in the future", iat - now)));
        }
        if claims.get("nonce").and_then(|n| n.as_str()) != Some(nonce) {
            return Err(OidcError::Token("its nonce is not this sign-in's".to_owned()));
        }
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(self.config.client_id.as_str())
        {
            return Err(OidcError::Token(format!("it was issued to another party ({azp})")));
        }
        // Several audiences: the authorized party must say it is ours.
        if claims.get("aud").and_then(|a| a.as_array()).is_some_and(|a| a.len() > 1) && !claims.contains_key("azp") {
            return Err(OidcError::Token("it names several audiences and no authorized party".to_owned()));
        }
        let subject = match claims.get(&self.config.subject_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
            _ => {
                return Err(OidcError::Token(format!(
                    "its `{}` claim (the subject) is missing or not 1 to 255 bytes of text",
                    self.config.subject_claim
                )));
            }
        };
        let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        // Some providers send "true" as text.
        let email_verified = matches!(claims.get("email_verified"), Some(serde_json::Value::Bool(true)))
            || claims.get("email_verified").and_then(|v| v.as_str()) == Some("true");
        let email_verified_claim = claims.contains_key("email_verified");
        Ok(Verified { subject, email: text("email"), email_verified, email_verified_claim, name: text("name") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        let config: ProviderConfig =
            toml::from_str("issuer = \"http://127.0.0.1:9\"\nclient_id = \"plinth\"\nclient_secret_file = \"s\"\n")
                .unwrap();
        let redirect = ("secret".to_owned(), "http://127.0.0.1:8/cb".to_owned());
        Provider::new("test".into(), config, redirect, None, std::sync::Arc::default())
    }

    fn metadata() -> Metadata {
        Metadata {
            issuer: "http://127.0.0.1:9".into(),
            authorization_endpoint: "http://127.0.0.1:9/auth".into(),
            token_endpoint: "http://127.0.0.1:9/token".into(),
            jwks_uri: "http://127.0.0.1:9/jwks".into(),
            code_challenge_methods_supported: None,
            id_token_signing_alg_values_supported: Vec::new(),
            authorization_response_iss_parameter_supported: false,
        }
    }

    fn token(header: &str) -> String {
        use base64::Engine as _;
        let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let claims = r#"{"iss":"http://127.0.0.1:9","aud":"plinth","sub":"x","exp":9999999999,"iat":1,"nonce":"n"}"#;
        format!("{}.{}.{}", part(header), part(claims), part("sig"))
    }

    #[tokio::test]
    async fn unsigned_and_shared_secret_tokens_are_refused_before_any_key_is_fetched() {
        let provider = provider();
        for (header, why) in [
            (r#"{"alg":"none"}"#, "it is not a JWT"),
            (r#"{"alg":"HS256","kid":"k"}"#, "it is signed with HS256, not one of the allowed"),
            (r#"{"alg":"PS256","kid":"k"}"#, "it is signed with PS256, not one of the allowed"),
        ] {
            let refused = provider.verify(&metadata(), &token(header), "n").await.unwrap_err();
            assert!(matches!(&refused, OidcError::Token(m) if m.contains(why)), "{header}: {refused}");
        }
    }
}
