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

/// The claims of a verified ID token plinth reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The configured subject claim.
    pub subject: String,
    /// `email`.
    pub email: Option<String>,
    /// `email_verified` is true (or `"true"`).
    pub email_verified: bool,
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
}

impl Provider {
    /// A provider not yet contacted.
    pub fn new(name: String, config: ProviderConfig, secret: String, redirect_uri: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Self {
            name,
            config,
            secret,
            redirect_uri,
            http,
            cached: Mutex::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
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
        if held.is_some() && fetched_at.is_some_and(|at| at.elapsed() < cooldown) {
            return Err(OidcError::Token(format!(
                "it names key `{}`, which the provider's key set does not hold (fetched less than {} s ago)",
                kid.unwrap_or("(none)"),
                cooldown.as_secs()
            )));
        }
        let keys: JwkSet = self.get_json(&metadata.jwks_uri).await?;
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
        Ok(Verified { subject, email: text("email"), email_verified, name: text("name") })
    }
}
