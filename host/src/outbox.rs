//! The outbox: e-mail plugins queue durably; a worker delivers it to a sink
//! (a JSON-lines file by default, SMTP when configured) with retries and
//! exponential backoff. Messages that keep failing are parked as `failed`
//! and listed at `GET /admin/outbox`.
//!
//! Layout of the `outbox` system namespace, by state: `q/{id}` queued,
//! `s/{id}` sent, `f/{id}` failed; ids sort by queue time.
//!
//! A message's body (which may carry a live single-use link) is kept only
//! while it waits for delivery: a sent or parked message keeps its
//! envelope, never its body, and no admin view shows a body. Sent and
//! failed records are deleted after [`RETENTION`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::SmtpConfig;
use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError};

/// How often the worker looks for due messages when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);
/// Messages handled per worker pass.
const BATCH: usize = 100;
/// Longest backoff between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest subject and body accepted, in bytes.
const MAX_SUBJECT: usize = 256;
const MAX_BODY: usize = 64 * 1024;
/// How long sent and failed records are kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for (another) delivery attempt.
    Queued,
    /// Delivered to the sink.
    Sent,
    /// Gave up after the configured number of attempts.
    Failed,
}

impl State {
    fn prefix(self) -> &'static str {
        match self {
            State::Queued => "q/",
            State::Sent => "s/",
            State::Failed => "f/",
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Sortable id.
    pub id: String,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body; only while queued (`None` once sent or parked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `verify`, `invite`, `reset`, `notice`...
    pub kind: String,
    /// The plugin that queued it.
    pub plugin: String,
    /// State.
    pub state: State,
    /// Attempts made.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt.
    pub next_attempt_ms: u64,
    /// The last delivery error.
    pub last_error: Option<String>,
}

/// Where messages go.
pub enum Sink {
    /// Append each message as a JSON line (development, tests).
    File(PathBuf),
    /// Send over SMTP.
    Smtp(Box<SmtpSink>),
}

/// An SMTP relay.
pub struct SmtpSink {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Sink {
    /// An SMTP sink from config.
    pub fn smtp(config: &SmtpConfig) -> anyhow::Result<Self> {
        use lettre::transport::smtp::authentication::Credentials;
        let mut builder =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&config.host).port(config.port);
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = config.from.parse().map_err(|e| anyhow::anyhow!("mail.smtp.from: `{}`: {e}", config.from))?;
        Ok(Sink::Smtp(Box::new(SmtpSink { transport: builder.build(), from })))
    }

    async fn deliver(&self, message: &Message) -> Result<(), String> {
        match self {
            Sink::File(path) => {
                let mut line = serde_json::to_vec(message).expect("messages serialize");
                line.push(b'\n');
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    use std::io::Write as _;
                    std::fs::OpenOptions::new().create(true).append(true).open(&path)?.write_all(&line)
                })
                .await
                .expect("the file sink task panicked")
                .map_err(|e| e.to_string())
            }
            Sink::Smtp(smtp) => {
                use lettre::AsyncTransport as _;
                let to = message.to.parse().map_err(|e| format!("recipient `{}`: {e}", message.to))?;
                let email = lettre::Message::builder()
                    .from(smtp.from.clone())
                    .to(to)
                    .subject(&message.subject)
                    .body(message.body.clone().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                smtp.transport.send(email).await.map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn key(state: State, id: &str) -> String {
    format!("{}{id}", state.prefix())
}

/// When to retry and when to give up.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts before a message is parked as failed.
    pub max_attempts: u32,
    /// The wait after the first failure; doubles each time.
    pub base: Duration,
}

/// The queue and its sink.
pub struct Outbox {
    ns: Arc<dyn Namespace>,
    storage: Arc<dyn Storage>,
    sink: Sink,
    retry: Retry,
    /// Wakes the worker when a message is queued.
    wake: tokio::sync::Notify,
}

impl Outbox {
    /// Opens the queue in `storage`, delivering to `sink`, retrying failures.
    pub fn open(storage: Arc<dyn Storage>, sink: Sink, retry: Retry) -> Result<Self, StorageError> {
        Ok(Self {
            ns: storage.namespace(NamespaceId::System("outbox"), None)?,
            storage,
            sink,
            retry,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Queues a message; durable once storage is flushed (the request path
    /// flushes before it answers).
    pub async fn queue(&self, plugin: &str, to: &str, subject: &str, body: &str, kind: &str) -> Result<String, String> {
        if to.is_empty() || to.len() > 320 || to.contains(['\r', '\n']) {
            return Err("the recipient must be one address".into());
        }
        if subject.len() > MAX_SUBJECT || subject.contains(['\r', '\n']) {
            return Err(format!("the subject must be one line of at most {MAX_SUBJECT} bytes"));
        }
        if body.len() > MAX_BODY {
            return Err(format!("the body must be at most {MAX_BODY} bytes"));
        }
        let mut suffix = [0u8; 4];
        rand::rng().fill_bytes(&mut suffix);
        let now = now_ms();
        let message = Message {
            id: format!("{now:016}-{}", hex::encode(suffix)),
            to: to.to_owned(),
            subject: subject.to_owned(),
            body: Some(body.to_owned()),
            kind: kind.to_owned(),
            plugin: plugin.to_owned(),
            state: State::Queued,
            attempts: 0,
            next_attempt_ms: now,
            last_error: None,
        };
        let bytes = serde_json::to_vec(&message).expect("messages serialize");
        self.ns.set(&key(State::Queued, &message.id), bytes).await.map_err(|e| e.to_string())?;
        self.wake.notify_one();
        Ok(message.id)
    }

    /// Messages in a state, oldest first, at most `limit`, without bodies:
    /// what an operator may see.
    pub async fn envelopes(&self, state: State, limit: usize) -> Result<Vec<Message>, StorageError> {
        let mut messages = self.list(state, limit).await?;
        for message in &mut messages {
            message.body = None;
        }
        Ok(messages)
    }

    /// Messages in a state, oldest first, at most `limit`.
    pub async fn list(&self, state: State, limit: usize) -> Result<Vec<Message>, StorageError> {
        let page = self.ns.scan_prefix(state.prefix(), None, limit).await?;
        page.entries
            .iter()
            .map(|(k, v)| {
                serde_json::from_slice(v).map_err(|e| StorageError::Backend(format!("outbox message {k}: {e}")))
            })
            .collect()
    }

    /// Delivers until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::error!(error = %e, "outbox pass failed");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass: tries every due queued message once.
    pub async fn deliver_due(&self) -> Result<(), StorageError> {
        let now = now_ms();
        let mut changed = false;
        for mut message in self.list(State::Queued, BATCH).await? {
            if message.next_attempt_ms > now {
                continue;
            }
            message.attempts += 1;
            let result = self.sink.deliver(&message).await;
            let old_key = key(State::Queued, &message.id);
            match result {
                Ok(()) => {
                    message.state = State::Sent;
                    message.last_error = None;
                    tracing::info!(id = %message.id, kind = %message.kind, plugin = %message.plugin, "mail delivered");
                }
                Err(error) => {
                    tracing::warn!(id = %message.id, attempt = message.attempts, %error, "mail delivery failed");
                    message.last_error = Some(error);
                    if message.attempts >= self.retry.max_attempts {
                        message.state = State::Failed;
                    } else {
                        let backoff = (self.retry.base * (1 << (message.attempts - 1).min(16))).min(MAX_BACKOFF);
                        message.next_attempt_ms = now + backoff.as_millis() as u64;
                    }
                }
            }
            if message.state != State::Queued {
                message.body = None;
            }
            let bytes = serde_json::to_vec(&message).expect("messages serialize");
            let mut ops = vec![Op::Set(key(message.state, &message.id), bytes)];
            if message.state != State::Queued {
                ops.push(Op::Delete(old_key));
            }
            self.ns.batch(ops).await?;
            changed = true;
        }
        changed |= self.prune(now).await?;
        if changed {
            self.storage.flush().await?;
        }
        Ok(())
    }

    /// Deletes sent and failed records older than [`RETENTION`] (ids start
    /// with their queue time, so each scan stops at the first young one).
    async fn prune(&self, now: u64) -> Result<bool, StorageError> {
        let cutoff = now.saturating_sub(RETENTION.as_millis() as u64);
        let mut ops = Vec::new();
        for state in [State::Sent, State::Failed] {
            let page = self.ns.scan_prefix(state.prefix(), None, BATCH).await?;
            for (key, _) in page.entries {
                let queued_at = key[state.prefix().len()..].split('-').next().and_then(|t| t.parse::<u64>().ok());
                if queued_at.is_none_or(|t| t >= cutoff) {
                    break;
                }
                ops.push(Op::Delete(key));
            }
        }
        if ops.is_empty() {
            return Ok(false);
        }
        self.ns.batch(ops).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;

    #[tokio::test]
    async fn delivered_mail_keeps_no_body_and_old_records_go() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let sink = Sink::File(dir.path().join("outbox.jsonl"));
        let outbox = Outbox::open(storage, sink, Retry { max_attempts: 1, base: Duration::from_secs(1) }).unwrap();
        outbox.queue("accounts", "a@example.com", "Reset", "https://x/reset?token=secret", "reset").await.unwrap();
        assert!(outbox.envelopes(State::Queued, 10).await.unwrap()[0].body.is_none(), "admins never see a body");
        outbox.deliver_due().await.unwrap();
        let delivered = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
        assert!(delivered.contains("token=secret"), "the sink got the body");
        let sent = outbox.list(State::Sent, 10).await.unwrap();
        assert_eq!((sent.len(), sent[0].body.as_deref()), (1, None), "the stored record has none");

        let old = Message { id: format!("{:016}-00000000", 1_000), ..sent[0].clone() };
        outbox.ns.set(&key(State::Failed, &old.id), serde_json::to_vec(&old).unwrap()).await.unwrap();
        outbox.deliver_due().await.unwrap();
        assert!(outbox.list(State::Failed, 10).await.unwrap().is_empty(), "older than the retention");
        assert_eq!(outbox.list(State::Sent, 10).await.unwrap().len(), 1, "a recent record stays");
    }
}
