//! The audit log: an append-only, hash-chained record of security-relevant
//! events, kept in the storage system namespace `audit`.
//!
//! Each record carries the SHA-256 of the record before it, so an edit, a
//! deletion or a reordering breaks the chain. Records live under
//! `r/{id:020}`, and `tail` holds the next id and the last hash; both are
//! written in one atomic batch.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError};

/// The hash that stands before the first record.
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Key of the chain's tail.
const TAIL_KEY: &str = "tail";

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in principal, by account id.
    Principal(String),
    /// Nobody signed in.
    Anonymous,
    /// The host itself.
    System,
    /// An operator at the command line.
    Cli,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Principal(id) => write!(f, "principal:{id}"),
            Actor::Anonymous => f.write_str("anonymous"),
            Actor::System => f.write_str("system"),
            Actor::Cli => f.write_str("cli"),
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed.
    Failure,
    /// It was refused by policy.
    Denied,
}

/// Who and where an event comes from; the same for every event of a request.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Who.
    pub actor: Actor,
    /// The client, when there was one.
    pub client_address: Option<String>,
    /// The request, when there was one.
    pub trace_id: Option<String>,
    /// The plugin involved, when one was.
    pub plugin: Option<String>,
}

impl Envelope {
    /// Events of the host itself, outside any request.
    pub fn system() -> Self {
        Self { actor: Actor::System, client_address: None, trace_id: None, plugin: None }
    }

    /// A draft record in this envelope.
    pub fn draft(&self, action: &str, target: &str, outcome: Outcome, reason: Option<String>) -> RecordDraft {
        RecordDraft { envelope: self.clone(), action: action.to_owned(), target: target.to_owned(), outcome, reason }
    }
}

/// An event before the log assigns id, time and chain hash.
#[derive(Debug, Clone)]
pub struct RecordDraft {
    /// Who, from where.
    pub envelope: Envelope,
    /// Dotted action name, such as `plugin.loaded`.
    pub action: String,
    /// What it was about. Never a secret.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it matters.
    pub reason: Option<String>,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub id: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// `principal:<id>`, `anonymous`, `system` or `cli`.
    pub actor: String,
    /// Dotted action name.
    pub action: String,
    /// What it was about.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why.
    pub reason: Option<String>,
    /// The client address.
    pub client_address: Option<String>,
    /// The request's trace id.
    pub trace_id: Option<String>,
    /// The plugin involved.
    pub plugin: Option<String>,
    /// SHA-256 (hex) of the previous record's stored bytes.
    pub prev_hash: String,
}

/// Where the chain ends; persisted under [`TAIL_KEY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tail {
    next_id: u64,
    last_hash: String,
}

/// Why an append failed; the action it describes must then not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(#[from] StorageError);

/// The audit log, shared by the edge and every plugin.
pub struct AuditLog {
    /// The system namespace holding records and tail.
    ns: Arc<dyn Namespace>,
    /// Appends are serialized: each needs the hash of the one before. An
    /// async mutex because the storage write is awaited while holding it.
    tail: tokio::sync::Mutex<Tail>,
    /// Optional JSON-lines copy; a failed write fails the append.
    mirror: Option<std::sync::Mutex<std::fs::File>>,
    /// Counts appended records, when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The first broken link `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The id where the chain breaks (the record expected there).
    pub id: u64,
    /// What is wrong.
    pub reason: String,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Records read.
    pub records: u64,
    /// Whether the chain is intact.
    pub ok: bool,
    /// The first break, when not.
    pub broken: Option<BrokenLink>,
}

fn record_key(id: u64) -> String {
    format!("r/{id:020}")
}

impl AuditLog {
    /// Opens the log in `storage`, picking up the chain where it ended, with
    /// an optional JSON-lines mirror file appended to alongside.
    pub async fn open(storage: &dyn Storage, mirror: Option<&std::path::Path>) -> Result<Self, AuditError> {
        let mirror = match mirror {
            Some(path) => Some(std::sync::Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| StorageError::Backend(format!("audit mirror {}: {e}", path.display())))?,
            )),
            None => None,
        };
        let ns = storage.namespace(NamespaceId::System("audit"), None)?;
        let tail = match ns.get(TAIL_KEY).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Backend(format!("audit tail is corrupt: {e}")))?,
            None => Tail { next_id: 1, last_hash: GENESIS_HASH.to_owned() },
        };
        Ok(Self { ns, tail: tokio::sync::Mutex::new(tail), mirror, metrics: None })
    }

    /// Counts appended records in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Appends a record and returns it. Durable once storage is flushed,
    /// which the request path does before it answers.
    pub async fn append(&self, draft: RecordDraft) -> Result<AuditRecord, AuditError> {
        let mut tail = self.tail.lock().await;
        let record = AuditRecord {
            id: tail.next_id,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            actor: draft.envelope.actor.to_string(),
            action: draft.action,
            target: draft.target,
            outcome: draft.outcome,
            reason: draft.reason,
            client_address: draft.envelope.client_address,
            trace_id: draft.envelope.trace_id,
            plugin: draft.envelope.plugin,
            prev_hash: tail.last_hash.clone(),
        };
        let bytes = serde_json::to_vec(&record).expect("audit records serialize");
        let next = Tail { next_id: record.id + 1, last_hash: hex::encode(Sha256::digest(&bytes)) };
        let tail_bytes = serde_json::to_vec(&next).expect("audit tail serializes");
        let line = [bytes.as_slice(), b"\n"].concat();
        self.ns.batch(vec![Op::Set(record_key(record.id), bytes), Op::Set(TAIL_KEY.to_owned(), tail_bytes)]).await?;
        *tail = next;
        if let Some(metrics) = &self.metrics {
            metrics.audit_records.inc();
        }
        if let Some(mirror) = &self.mirror {
            use std::io::Write as _;
            let mut file = mirror.lock().expect("audit mirror lock poisoned");
            file.write_all(&line).map_err(|e| AuditError(StorageError::Backend(format!("audit mirror write: {e}"))))?;
        }
        Ok(record)
    }

    /// Walks the whole chain: ids consecutive from 1, each `prev_hash` the
    /// hash of the record before, and the tail matching the last record (so
    /// a cut tail is seen too). Reports the first break.
    pub async fn verify(&self) -> Result<Verification, AuditError> {
        let tail = self.tail.lock().await.clone();
        let mut expected_id = 1;
        let mut expected_hash = GENESIS_HASH.to_owned();
        let mut cursor: Option<String> = None;
        let broken = |id: u64, reason: String| Verification {
            records: id - 1,
            ok: false,
            broken: Some(BrokenLink { id, reason }),
        };
        loop {
            let page = self.ns.scan_prefix("r/", cursor.as_deref(), crate::storage::MAX_SCAN_PAGE).await?;
            for (key, bytes) in &page.entries {
                let Ok(record) = serde_json::from_slice::<AuditRecord>(bytes) else {
                    return Ok(broken(expected_id, format!("{key} is not a valid record")));
                };
                if record.id != expected_id || *key != record_key(record.id) {
                    return Ok(broken(
                        expected_id,
                        format!("expected record {expected_id}, found record {} under {key}", record.id),
                    ));
                }
                if record.prev_hash != expected_hash {
                    return Ok(broken(
                        expected_id,
                        format!(
                            "its prev_hash does not match record {}: that record was changed or replaced",
                            expected_id - 1
                        ),
                    ));
                }
                expected_hash = hex::encode(Sha256::digest(bytes));
                expected_id += 1;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if tail.next_id != expected_id || tail.last_hash != expected_hash {
            return Ok(broken(
                expected_id,
                format!("the log ends before record {} that the tail names", tail.next_id - 1),
            ));
        }
        Ok(Verification { records: expected_id - 1, ok: true, broken: None })
    }

    /// Records with ids greater than `after`, at most `limit`, in order.
    pub async fn records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let start = (after > 0).then(|| record_key(after));
        let page = self.ns.scan_prefix("r/", start.as_deref(), limit).await?;
        page.entries
            .iter()
            .map(|(key, bytes)| {
                serde_json::from_slice(bytes)
                    .map_err(|e| AuditError(StorageError::Backend(format!("audit record {key} is corrupt: {e}"))))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;

    fn draft(action: &str) -> RecordDraft {
        Envelope::system().draft(action, "t", Outcome::Success, None)
    }

    #[tokio::test]
    async fn records_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first_hash;
        {
            let storage = SledStorage::open(dir.path()).unwrap();
            let log = AuditLog::open(&storage, None).await.unwrap();
            let first = log.append(draft("a")).await.unwrap();
            assert_eq!((first.id, first.prev_hash.as_str()), (1, GENESIS_HASH));
            first_hash = hex::encode(Sha256::digest(serde_json::to_vec(&first).unwrap()));
            storage.flush().await.unwrap();
        }
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None).await.unwrap();
        let second = log.append(draft("b")).await.unwrap();
        assert_eq!((second.id, second.prev_hash), (2, first_hash));
        let all = log.records(0, 10).await.unwrap();
        assert_eq!(all.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(log.records(1, 10).await.unwrap().len(), 1);
    }

    async fn tampered(tamper: impl AsyncFnOnce(&dyn Namespace)) -> Verification {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None).await.unwrap();
        for action in ["a", "b", "c", "d", "e"] {
            log.append(draft(action)).await.unwrap();
        }
        assert!(log.verify().await.unwrap().ok);
        let ns = storage.namespace(NamespaceId::System("audit"), None).unwrap();
        tamper(ns.as_ref()).await;
        log.verify().await.unwrap()
    }

    #[tokio::test]
    async fn verify_names_the_first_break() {
        let edit = tampered(async |ns| {
            let bytes = ns.get(&record_key(3)).await.unwrap().unwrap();
            let edited = String::from_utf8(bytes).unwrap().replace("\"target\":\"t\"", "\"target\":\"u\"");
            ns.set(&record_key(3), edited.into_bytes()).await.unwrap();
        })
        .await;
        assert_eq!(edit.broken.unwrap().id, 4);
        let delete = tampered(async |ns| {
            ns.delete(&record_key(3)).await.unwrap();
        })
        .await;
        assert_eq!(delete.broken.unwrap().id, 3);
        let swap = tampered(async |ns| {
            let (two, three) = (ns.get(&record_key(2)).await.unwrap(), ns.get(&record_key(3)).await.unwrap());
            ns.set(&record_key(2), three.unwrap()).await.unwrap();
            ns.set(&record_key(3), two.unwrap()).await.unwrap();
        })
        .await;
        assert_eq!(swap.broken.unwrap().id, 2);
        let cut = tampered(async |ns| {
            ns.delete(&record_key(5)).await.unwrap();
            ns.delete(&record_key(4)).await.unwrap();
        })
        .await;
        let broken = cut.broken.unwrap();
        assert_eq!((broken.id, cut.records), (4, 3));
        assert!(broken.reason.contains("ends before record 5"), "{}", broken.reason);
    }

    #[tokio::test]
    async fn a_failing_mirror_fails_the_append() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, Some(std::path::Path::new("/dev/full"))).await.unwrap();
        assert!(log.append(draft("a")).await.is_err());
        let mirrored = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&storage, Some(&mirrored)).await.unwrap();
        log.append(draft("b\r\nforged: line\u{7}")).await.unwrap();
        let text = std::fs::read_to_string(mirrored).unwrap();
        assert_eq!(text.lines().count(), 1, "control characters are escaped, never raw: {text}");
        assert!(text.contains("\"action\":\"b\\r\\nforged: line\\u0007\""), "{text}");
    }
}
