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

/// An event before the log assigns id, time and chain hash.
#[derive(Debug, Clone)]
pub struct RecordDraft {
    /// Who.
    pub actor: Actor,
    /// Dotted action name, such as `plugin.loaded`.
    pub action: String,
    /// What it was about. Never a secret.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, when it matters.
    pub reason: Option<String>,
    /// The client, when there was one.
    pub client_address: Option<String>,
    /// The request, when there was one.
    pub trace_id: Option<String>,
    /// The plugin involved, when one was.
    pub plugin: Option<String>,
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
}

fn record_key(id: u64) -> String {
    format!("r/{id:020}")
}

impl AuditLog {
    /// Opens the log in `storage`, picking up the chain where it ended.
    pub async fn open(storage: &dyn Storage) -> Result<Self, AuditError> {
        let ns = storage.namespace(NamespaceId::System("audit"), None)?;
        let tail = match ns.get(TAIL_KEY).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Backend(format!("audit tail is corrupt: {e}")))?,
            None => Tail { next_id: 1, last_hash: GENESIS_HASH.to_owned() },
        };
        Ok(Self { ns, tail: tokio::sync::Mutex::new(tail) })
    }

    /// Appends a record and returns it. Durable once storage is flushed,
    /// which the request path does before it answers.
    pub async fn append(&self, draft: RecordDraft) -> Result<AuditRecord, AuditError> {
        let mut tail = self.tail.lock().await;
        let record = AuditRecord {
            id: tail.next_id,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            actor: draft.actor.to_string(),
            action: draft.action,
            target: draft.target,
            outcome: draft.outcome,
            reason: draft.reason,
            client_address: draft.client_address,
            trace_id: draft.trace_id,
            plugin: draft.plugin,
            prev_hash: tail.last_hash.clone(),
        };
        let bytes = serde_json::to_vec(&record).expect("audit records serialize");
        let next = Tail { next_id: record.id + 1, last_hash: hex::encode(Sha256::digest(&bytes)) };
        let tail_bytes = serde_json::to_vec(&next).expect("audit tail serializes");
        self.ns.batch(vec![Op::Set(record_key(record.id), bytes), Op::Set(TAIL_KEY.to_owned(), tail_bytes)]).await?;
        *tail = next;
        Ok(record)
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
        RecordDraft {
            actor: Actor::System,
            action: action.to_owned(),
            target: "t".to_owned(),
            outcome: Outcome::Success,
            reason: None,
            client_address: None,
            trace_id: None,
            plugin: None,
        }
    }

    #[tokio::test]
    async fn records_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first_hash;
        {
            let storage = SledStorage::open(dir.path()).unwrap();
            let log = AuditLog::open(&storage).await.unwrap();
            let first = log.append(draft("a")).await.unwrap();
            assert_eq!((first.id, first.prev_hash.as_str()), (1, GENESIS_HASH));
            first_hash = hex::encode(Sha256::digest(serde_json::to_vec(&first).unwrap()));
            storage.flush().await.unwrap();
        }
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage).await.unwrap();
        let second = log.append(draft("b")).await.unwrap();
        assert_eq!((second.id, second.prev_hash), (2, first_hash));
        let all = log.records(0, 10).await.unwrap();
        assert_eq!(all.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(log.records(1, 10).await.unwrap().len(), 1);
    }
}
