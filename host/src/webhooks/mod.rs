//! Webhooks the host delivers for plugins (a plugin has no network): each
//! message is queued durably, signed with its endpoint's secret by the
//! Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`),
//! retried with exponential backoff, and parked after `max_attempts`; an
//! endpoint whose messages fail `disable_after` times in a row is switched
//! off, with an audit record, until an admin switches it on again. Every
//! attempt goes into the endpoint's delivery log (the last [`LOG_KEPT`]).
//!
//! Layout of the `webhooks` system namespace: `ep/{id}` endpoints (URL,
//! secret, state), `q/{due ms}/{id}` queued messages by when they are due,
//! `done/{id}` and `failed/{id}` finished ones (without their payload,
//! kept [`RETENTION`]), `log/{endpoint}/{seq}` attempts.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::egress::{Allowed, is_internal};

use crate::audit::{AuditLog, Envelope, Outcome};
use crate::config::WebhooksConfig;
use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError};

/// Largest payload, in bytes.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Attempts kept in an endpoint's delivery log.
pub const LOG_KEPT: u64 = 100;
/// How long finished messages are kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest backoff between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often the worker looks for due messages when nothing wakes it.
const POLL: Duration = Duration::from_millis(250);
/// Messages taken per pass.
const BATCH: usize = 64;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;

/// An endpoint a plugin sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ep_` and 32 hex digits, from the plugin and the URL.
    pub id: String,
    /// The plugin it belongs to.
    pub plugin: String,
    /// Where messages go.
    pub url: String,
    /// `whsec_` and the base64 of 32 random bytes: what receivers verify with.
    pub secret: String,
    /// Messages are delivered.
    pub enabled: bool,
    /// Messages in a row that used up every attempt.
    pub failures: u32,
    /// Why it was switched off.
    pub disabled_reason: Option<String>,
    /// Attempts logged so far (the log's next sequence number).
    pub logged: u64,
}

/// One delivery attempt, as the endpoint's log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message.
    pub message_id: String,
    /// Its event type.
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When (Unix seconds).
    pub at: u64,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u32,
}

/// A queued or finished message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_` and a sortable id.
    pub id: String,
    /// The endpoint.
    pub endpoint: String,
    /// Such as `form.submitted`.
    pub event_type: String,
    /// The JSON body; dropped once the message is finished.
    pub payload: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When it was queued (Unix milliseconds).
    pub queued_ms: u64,
}

/// Why a webhook call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The URL may not be sent to; the text says why.
    #[error("{0}")]
    InvalidUrl(String),
    /// No such endpoint of this plugin.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint is switched off.
    #[error("the endpoint is switched off")]
    Disabled,
    /// The payload is larger than this many bytes, or not JSON.
    #[error("the payload must be JSON of at most {0} bytes")]
    InvalidPayload(u64),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StorageError> for WebhookError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e.to_string())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Backend(format!("webhooks record {key}: {e}")))
}

/// The Standard Webhooks signature of `body` sent as message `id` at `timestamp`.
pub fn signature(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secrets are made base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The endpoints, the queue and the delivery worker.
pub struct Webhooks {
    ns: Arc<dyn Namespace>,
    storage: Arc<dyn Storage>,
    audit: Arc<AuditLog>,
    config: WebhooksConfig,
    allowed: Allowed,
    client: reqwest::Client,
    /// Endpoint records change under this lock (their failure counts and log).
    endpoints: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

impl Webhooks {
    /// Opens the namespace and builds the HTTP client (its resolver
    /// refuses internal addresses; no proxy from the environment; no
    /// redirects followed).
    pub fn open(storage: Arc<dyn Storage>, audit: Arc<AuditLog>, config: WebhooksConfig) -> anyhow::Result<Self> {
        let allowed = Allowed::new(&config.allow_hosts);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(crate::egress::Resolver(allowed.clone())))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0.min(Duration::from_secs(5)))
            .user_agent(concat!("plinth-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            ns: storage.namespace(NamespaceId::System("webhooks"), None)?,
            storage,
            audit,
            config,
            allowed,
            client,
            endpoints: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn endpoint_id(plugin: &str, url: &str) -> String {
        format!("ep_{}", &hex(&Sha256::digest(format!("{plugin}\0{url}").as_bytes()))[..32])
    }

    /// `plugin`'s endpoint for `url`, made (with a new secret) when first asked.
    pub async fn endpoint(&self, plugin: &str, url: &str) -> Result<Endpoint, WebhookError> {
        let url = self.allowed.check_url(url).map_err(WebhookError::InvalidUrl)?.to_string();
        let id = Self::endpoint_id(plugin, &url);
        let _one = self.endpoints.lock().await;
        if let Some(found) = self.load(&id).await? {
            return Ok(found);
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let endpoint = Endpoint {
            id: id.clone(),
            plugin: plugin.to_owned(),
            url,
            secret: format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(secret)),
            enabled: true,
            failures: 0,
            disabled_reason: None,
            logged: 0,
        };
        self.save(&endpoint).await?;
        Ok(endpoint)
    }

    async fn load(&self, id: &str) -> Result<Option<Endpoint>, StorageError> {
        let key = format!("ep/{id}");
        self.ns.get(&key).await?.map(|bytes| decode(&key, &bytes)).transpose()
    }

    async fn save(&self, endpoint: &Endpoint) -> Result<(), StorageError> {
        self.ns.set(&format!("ep/{}", endpoint.id), serde_json::to_vec(endpoint).expect("serializes")).await
    }

    /// `plugin`'s endpoint `id`.
    pub async fn get(&self, plugin: Option<&str>, id: &str) -> Result<Endpoint, WebhookError> {
        let endpoint = self.load(id).await?.ok_or(WebhookError::NotFound)?;
        if plugin.is_some_and(|p| p != endpoint.plugin) {
            return Err(WebhookError::NotFound);
        }
        Ok(endpoint)
    }

    /// Every endpoint, of every plugin.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, StorageError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.ns.scan_prefix("ep/", after.as_deref(), 1000).await?;
            for (key, value) in &page.entries {
                all.push(decode(key, value)?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Queues `payload` (JSON) as `event_type` to `plugin`'s endpoint `id`.
    pub async fn send(&self, plugin: &str, id: &str, event_type: &str, payload: &[u8]) -> Result<String, WebhookError> {
        if payload.len() > MAX_PAYLOAD || serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
            return Err(WebhookError::InvalidPayload(MAX_PAYLOAD as u64));
        }
        let valid_type = (1..=128).contains(&event_type.len())
            && event_type.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_type {
            return Err(WebhookError::InvalidUrl(format!(
                "`{event_type}` is not an event type (1 to 128 of A-Z a-z 0-9 . _ -)"
            )));
        }
        let endpoint = self.get(Some(plugin), id).await?;
        if !endpoint.enabled {
            return Err(WebhookError::Disabled);
        }
        let mut suffix = [0u8; 6];
        rand::rng().fill_bytes(&mut suffix);
        let now = now_ms();
        let message = Message {
            id: format!("msg_{now:016}{}", hex(&suffix)),
            endpoint: id.to_owned(),
            event_type: event_type.to_owned(),
            payload: Some(String::from_utf8_lossy(payload).into_owned()),
            attempts: 0,
            queued_ms: now,
        };
        let key = format!("q/{now:016}/{}", message.id);
        self.ns.set(&key, serde_json::to_vec(&message).expect("serializes")).await?;
        self.wake.notify_one();
        Ok(message.id)
    }

    /// The last attempts to endpoint `id`, newest first.
    pub async fn deliveries(&self, plugin: Option<&str>, id: &str) -> Result<Vec<Delivery>, WebhookError> {
        let endpoint = self.get(plugin, id).await?;
        let page = self.ns.scan_prefix(&format!("log/{}/", endpoint.id), None, LOG_KEPT as usize).await?;
        let mut log: Vec<Delivery> = page.entries.iter().map(|(k, v)| decode(k, v)).collect::<Result<_, _>>()?;
        log.reverse();
        Ok(log)
    }

    /// Switches endpoint `id` on again, its failures forgotten.
    pub async fn enable(&self, plugin: Option<&str>, id: &str, envelope: &Envelope) -> Result<Endpoint, WebhookError> {
        let _one = self.endpoints.lock().await;
        let mut endpoint = self.get(plugin, id).await?;
        endpoint.enabled = true;
        endpoint.failures = 0;
        endpoint.disabled_reason = None;
        self.audit
            .append(envelope.draft("webhook.enabled", &endpoint.id, Outcome::Success, Some(endpoint.url.clone())))
            .await
            .map_err(|e| WebhookError::Storage(e.to_string()))?;
        self.save(&endpoint).await?;
        self.storage.flush().await?;
        Ok(endpoint)
    }

    /// Delivers due messages until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::error!(error = %e, "webhook pass failed");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass: every due message attempted (at most [`CONCURRENCY`] at
    /// once), each outcome recorded.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<(), StorageError> {
        let now = now_ms();
        let page = self.ns.scan_prefix("q/", None, BATCH).await?;
        let due: Vec<(String, Message)> = page
            .entries
            .iter()
            .take_while(|(key, _)| key.get(2..18).and_then(|t| t.parse::<u64>().ok()).is_some_and(|t| t <= now))
            .map(|(key, value)| Ok((key.clone(), decode(key, value)?)))
            .collect::<Result<_, StorageError>>()?;
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut attempts = tokio::task::JoinSet::new();
        for (key, message) in due {
            let (this, permits) = (self.clone(), permits.clone());
            attempts.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                this.attempt(key, message).await
            });
        }
        let mut changed = false;
        while let Some(done) = attempts.join_next().await {
            done.expect("a delivery task panicked")?;
            changed = true;
        }
        changed |= self.prune(now).await?;
        if changed {
            self.storage.flush().await?;
        }
        Ok(())
    }

    /// Attempts one message and records how it went.
    async fn attempt(&self, key: String, mut message: Message) -> Result<(), StorageError> {
        let endpoint = self.load(&message.endpoint).await?;
        message.attempts += 1;
        let started = std::time::Instant::now();
        let (status, error) = match &endpoint {
            None => (None, Some("the endpoint no longer exists".to_owned())),
            Some(endpoint) if !endpoint.enabled => (None, Some("the endpoint is switched off".to_owned())),
            Some(endpoint) => self.post(endpoint, &message).await,
        };
        let delivered = error.is_none();
        let gave_up = !delivered
            && (message.attempts >= self.config.max_attempts || endpoint.as_ref().is_none_or(|e| !e.enabled));
        let mut ops = vec![Op::Delete(key)];
        if delivered || gave_up {
            message.payload = None;
            let state = if delivered { "done" } else { "failed" };
            ops.push(Op::Set(format!("{state}/{}", message.id), serde_json::to_vec(&message).expect("serializes")));
        } else {
            let backoff = (self.config.retry_base.0 * (1 << (message.attempts - 1).min(16))).min(MAX_BACKOFF);
            let due = now_ms() + backoff.as_millis() as u64;
            ops.push(Op::Set(format!("q/{due:016}/{}", message.id), serde_json::to_vec(&message).expect("serializes")));
        }
        let Some(endpoint) = endpoint else { return self.ns.batch(ops).await };
        let _one = self.endpoints.lock().await;
        let Some(mut endpoint) = self.load(&endpoint.id).await? else { return self.ns.batch(ops).await };
        let delivery = Delivery {
            message_id: message.id.clone(),
            event_type: message.event_type.clone(),
            attempt: message.attempts,
            at: now_ms() / 1000,
            status,
            error: error.clone(),
            duration_ms: started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32,
        };
        ops.push(Op::Set(
            format!("log/{}/{:016}", endpoint.id, endpoint.logged),
            serde_json::to_vec(&delivery).expect("serializes"),
        ));
        if endpoint.logged >= LOG_KEPT {
            ops.push(Op::Delete(format!("log/{}/{:016}", endpoint.id, endpoint.logged - LOG_KEPT)));
        }
        endpoint.logged += 1;
        let mut disabled = false;
        if delivered {
            endpoint.failures = 0;
        } else if gave_up && endpoint.enabled {
            endpoint.failures += 1;
            if endpoint.failures >= self.config.disable_after {
                endpoint.enabled = false;
                endpoint.disabled_reason = Some(format!(
                    "{} messages in a row failed every attempt; the last: {}",
                    endpoint.failures,
                    error.unwrap_or_default()
                ));
                disabled = true;
            }
        }
        if disabled {
            let envelope = Envelope { plugin: Some(endpoint.plugin.clone()), ..Envelope::system() };
            let reason = endpoint.disabled_reason.clone();
            self.audit
                .append(envelope.draft("webhook.disabled", &endpoint.id, Outcome::Failure, reason))
                .await
                .map_err(|e| StorageError::Backend(e.to_string()))?;
            tracing::warn!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint switched off");
        }
        ops.push(Op::Set(format!("ep/{}", endpoint.id), serde_json::to_vec(&endpoint).expect("serializes")));
        self.ns.batch(ops).await
    }

    /// POSTs a message; the receiver's status and what went wrong, if anything.
    async fn post(&self, endpoint: &Endpoint, message: &Message) -> (Option<u16>, Option<String>) {
        // The URL is checked again: an operator may have narrowed `allow_hosts`.
        if let Err(why) = self.allowed.check_url(&endpoint.url) {
            return (None, Some(why));
        }
        let body = message.payload.clone().unwrap_or_default().into_bytes();
        let timestamp = now_ms() / 1000;
        let request = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&endpoint.secret, &message.id, timestamp, &body))
            .body(body);
        match request.send().await {
            Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), Some(format!("the receiver answered {status}")))
            }
            Err(e) => (None, Some(error_chain(&e))),
        }
    }

    /// Removes finished messages older than [`RETENTION`].
    async fn prune(&self, now: u64) -> Result<bool, StorageError> {
        let cutoff = now.saturating_sub(RETENTION.as_millis() as u64);
        let mut ops = Vec::new();
        for prefix in ["done/", "failed/"] {
            let page = self.ns.scan_prefix(prefix, None, BATCH).await?;
            for (key, _) in page.entries {
                let queued = key.get(prefix.len() + 4..prefix.len() + 20).and_then(|t| t.parse::<u64>().ok());
                if queued.is_none_or(|t| t >= cutoff) {
                    break;
                }
                ops.push(Op::Delete(key));
            }
        }
        let pruned = !ops.is_empty();
        if pruned {
            self.ns.batch(ops).await?;
        }
        Ok(pruned)
    }
}

/// An error with its causes, for the delivery log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
