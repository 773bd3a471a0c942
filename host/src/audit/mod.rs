//! The audit log: an append-only, keyed hash chain of security-relevant
//! events, kept in the storage system namespace `audit`.
//!
//! Records live under `r/{id:020}`; `tail` says where the chain starts and
//! ends (see [`chain`]), and each append writes its record and the new
//! tail in one atomic batch. [`retention`] removes the oldest records past
//! an age or a size, keeping the rest verifiable.

mod chain;
mod retention;

pub use chain::{AuditKey, KeyError};
pub use retention::{Retention, upkeep};

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use self::chain::Tail;
use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError};

/// Key of the chain's tail.
const TAIL_KEY: &str = "tail";

/// Where a chain ends: the id its next record gets and the link that
/// record must carry. A backup names its chain's end, and a restore links
/// the restored chain to the end of the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEnd {
    /// The id the next record gets.
    pub next_id: u64,
    /// The link the next record must carry.
    pub last_hash: String,
}

impl ChainEnd {
    /// The end named by a stored tail (an entry of the `audit` namespace
    /// under `tail`); `None` for any other entry.
    pub fn from_entry(key: &[u8], value: &[u8]) -> Option<Self> {
        if key != TAIL_KEY.as_bytes() {
            return None;
        }
        let tail: Tail = serde_json::from_slice(value).ok()?;
        Some(Self { next_id: tail.next_id, last_hash: tail.last_hash })
    }
}

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
    /// The link to the previous record: HMAC-SHA256 (hex) of its stored
    /// bytes under the audit key.
    pub prev_hash: String,
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
    /// What the chain is MAC'd with.
    key: AuditKey,
    /// The tail was not sealed by `key` when opened: it stays unsealed, so
    /// appending cannot launder a forged or cut chain into a valid one.
    tainted: std::sync::atomic::AtomicBool,
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

impl Verification {
    fn broken(first_id: u64, id: u64, reason: String) -> Self {
        Self { records: id - first_id, ok: false, broken: Some(BrokenLink { id, reason }) }
    }
}

fn record_key(id: u64) -> String {
    format!("r/{id:020}")
}

/// The highest record id stored, by walking every record (only when the
/// tail is missing).
async fn newest_id(ns: &dyn Namespace) -> Result<Option<u64>, StorageError> {
    let mut newest = None;
    let mut cursor: Option<String> = None;
    loop {
        let page = ns.scan_prefix("r/", cursor.as_deref(), crate::storage::MAX_SCAN_PAGE).await?;
        newest = page.entries.last().and_then(|(key, _)| key[2..].parse().ok()).or(newest);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(newest),
        }
    }
}

impl AuditLog {
    /// Opens the log in `storage`, picking up the chain where it ended, MAC'd
    /// with `key`, with an optional JSON-lines mirror file appended to
    /// alongside. A tail that is not sealed by `key` (forged, missing while
    /// records exist, written with another key or before keys existed) is
    /// kept as found, and [`AuditLog::check_ends`] reports it; a log from
    /// before keys is sealed by [`AuditLog::seal_unkeyed`] on an operator's
    /// word (`plinth audit seal`), never by itself.
    pub async fn open(
        storage: &dyn Storage,
        mirror: Option<&std::path::Path>,
        key: AuditKey,
    ) -> Result<Self, AuditError> {
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
            None => match newest_id(ns.as_ref()).await? {
                // Records without a tail: it was deleted. Appending must not
                // overwrite them, and the missing seal is reported.
                Some(newest) => Tail { next_id: newest + 1, mac: None, ..Tail::empty(&key) },
                None => Tail::empty(&key),
            },
        };
        let tainted = std::sync::atomic::AtomicBool::new(!tail.sealed_by(&key));
        Ok(Self { ns, tail: tokio::sync::Mutex::new(tail), key, tainted, mirror, metrics: None })
    }

    /// The key the chain is linked with (a rehearsal checks the chain of
    /// the backup it restores with it).
    pub fn key(&self) -> AuditKey {
        self.key.clone()
    }

    /// Where the chain ends now.
    pub async fn end(&self) -> ChainEnd {
        let tail = self.tail.lock().await;
        ChainEnd { next_id: tail.next_id, last_hash: tail.last_hash.clone() }
    }

    /// Seals a chain written before keys existed, if it verifies with its
    /// SHA-256 links: those records keep them and the key covers everything
    /// after. Only an operator can vouch that such a chain was not forged
    /// with the key's protection stripped, so only the CLI calls this.
    pub async fn seal_unkeyed(&self) -> Result<Verification, AuditError> {
        let mut tail = self.tail.lock().await;
        if tail.sealed_by(&self.key) {
            return self.walk(&tail).await;
        }
        let mut unkeyed = tail.clone();
        unkeyed.keyed_from = u64::MAX;
        let verification = self.walk(&unkeyed).await?;
        if !verification.ok {
            return Ok(verification);
        }
        let mut sealed = tail.clone();
        sealed.keyed_from = tail.next_id;
        if tail.next_id > tail.first_id {
            let last = self.ns.get(&record_key(tail.next_id - 1)).await?.unwrap_or_default();
            sealed.last_hash = sealed.link(&self.key, sealed.next_id, &last);
        }
        sealed.seal(&self.key);
        let bytes = serde_json::to_vec(&sealed).expect("audit tail serializes");
        self.ns.set(TAIL_KEY, bytes).await?;
        *tail = sealed;
        self.tainted.store(false, std::sync::atomic::Ordering::Release);
        Ok(verification)
    }

    /// Seals a new tail, unless the chain was opened unsealed.
    fn seal(&self, tail: &mut Tail) {
        if self.tainted.load(std::sync::atomic::Ordering::Acquire) {
            tail.mac = None;
        } else {
            tail.seal(&self.key);
        }
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
        let mut next = tail.clone();
        next.next_id = record.id + 1;
        next.last_hash = next.link(&self.key, next.next_id, &bytes);
        self.seal(&mut next);
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

    /// The quick check made at start-up: the tail is sealed by the key, and
    /// the first and last records are where it says, with the links it
    /// names. It reads two records, whatever the length of the chain.
    pub async fn check_ends(&self) -> Result<Result<(), BrokenLink>, AuditError> {
        let tail = self.tail.lock().await.clone();
        let broken = |id: u64, reason: String| Ok(Err(BrokenLink { id, reason }));
        if !tail.sealed_by(&self.key) {
            return broken(
                tail.next_id,
                "the tail is not sealed by this audit key: it was forged or cut, \
                 or the key is not the one the log was written with"
                    .into(),
            );
        }
        if tail.next_id == tail.first_id {
            return Ok(Ok(()));
        }
        match self.ns.get(&record_key(tail.first_id)).await? {
            Some(bytes)
                if serde_json::from_slice::<AuditRecord>(&bytes).is_ok_and(|r| r.prev_hash == tail.first_prev) => {}
            _ => return broken(tail.first_id, "the oldest record is missing or changed".into()),
        }
        let last_id = tail.next_id - 1;
        match self.ns.get(&record_key(last_id)).await? {
            Some(bytes) if tail.link(&self.key, tail.next_id, &bytes) == tail.last_hash => Ok(Ok(())),
            _ => broken(last_id, "the newest record is missing or changed".into()),
        }
    }

    /// Walks the whole chain: the tail sealed by the key, ids consecutive
    /// from the oldest kept, each link right, and the tail matching the
    /// last record (so a cut tail is seen too). Reports the first break.
    pub async fn verify(&self) -> Result<Verification, AuditError> {
        let tail = self.tail.lock().await.clone();
        if !tail.sealed_by(&self.key) {
            let reason = "the tail is not sealed by this audit key: it was forged or cut, \
                          or the key is not the one the log was written with";
            return Ok(Verification::broken(tail.first_id, tail.first_id, reason.into()));
        }
        self.walk(&tail).await
    }

    /// Checks every record against `tail`.
    async fn walk(&self, tail: &Tail) -> Result<Verification, AuditError> {
        let first = tail.first_id;
        let mut expected_id = first;
        let mut expected_hash = tail.first_prev.clone();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.ns.scan_prefix("r/", cursor.as_deref(), crate::storage::MAX_SCAN_PAGE).await?;
            for (key, bytes) in &page.entries {
                let Ok(record) = serde_json::from_slice::<AuditRecord>(bytes) else {
                    return Ok(Verification::broken(first, expected_id, format!("{key} is not a valid record")));
                };
                if record.id != expected_id || *key != record_key(record.id) {
                    return Ok(Verification::broken(
                        first,
                        expected_id,
                        format!("expected record {expected_id}, found record {} under {key}", record.id),
                    ));
                }
                if record.prev_hash != expected_hash {
                    let reason = if expected_id == first {
                        "it is not the oldest record the tail names: records were added or removed before it".to_owned()
                    } else {
                        format!(
                            "its link does not match record {}: that record was changed or replaced",
                            expected_id - 1
                        )
                    };
                    return Ok(Verification::broken(first, expected_id, reason));
                }
                expected_id += 1;
                expected_hash = tail.link(&self.key, expected_id, bytes);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if tail.next_id != expected_id || tail.last_hash != expected_hash {
            return Ok(Verification::broken(
                first,
                expected_id,
                format!("the log ends before record {} that the tail names", tail.next_id - 1),
            ));
        }
        Ok(Verification { records: expected_id - first, ok: true, broken: None })
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
    use sha2::{Digest, Sha256};

    use super::chain::GENESIS;
    use super::*;
    use crate::storage::SledStorage;

    fn draft(action: &str) -> RecordDraft {
        Envelope::system().draft(action, "t", Outcome::Success, None)
    }

    fn key() -> AuditKey {
        AuditKey::from_bytes([42; 32])
    }

    #[tokio::test]
    async fn records_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first_link;
        {
            let storage = SledStorage::open(dir.path()).unwrap();
            let log = AuditLog::open(&storage, None, key()).await.unwrap();
            let first = log.append(draft("a")).await.unwrap();
            assert_eq!((first.id, first.prev_hash.as_str()), (1, GENESIS));
            first_link = key().mac(&[&serde_json::to_vec(&first).unwrap()]);
            storage.flush().await.unwrap();
        }
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        assert_eq!(log.check_ends().await.unwrap(), Ok(()));
        let second = log.append(draft("b")).await.unwrap();
        assert_eq!((second.id, second.prev_hash), (2, first_link));
        let all = log.records(0, 10).await.unwrap();
        assert_eq!(all.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(log.records(1, 10).await.unwrap().len(), 1);
        let elsewhere = AuditLog::open(&storage, None, AuditKey::from_bytes([7; 32])).await.unwrap();
        assert!(elsewhere.check_ends().await.unwrap().is_err(), "another key does not verify this chain");
    }

    /// Five records, then `tamper` on the namespace; the log reopened.
    async fn tampered(tamper: impl AsyncFnOnce(&dyn Namespace)) -> (Verification, Result<(), BrokenLink>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        for action in ["a", "b", "c", "d", "e"] {
            log.append(draft(action)).await.unwrap();
        }
        assert!(log.verify().await.unwrap().ok);
        let ns = storage.namespace(NamespaceId::System("audit"), None).unwrap();
        tamper(ns.as_ref()).await;
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        (log.verify().await.unwrap(), log.check_ends().await.unwrap())
    }

    /// Rewrites records from `from` on and the tail with plain SHA-256
    /// links, as someone without the key would have to.
    async fn relink_without_key(ns: &dyn Namespace, from: u64, edit: impl Fn(AuditRecord) -> AuditRecord) {
        let mut records = Vec::new();
        for id in 1..=5 {
            if let Some(bytes) = ns.get(&record_key(id)).await.unwrap() {
                records.push(serde_json::from_slice::<AuditRecord>(&bytes).unwrap());
            }
        }
        let mut prev: Option<Vec<u8>> = None;
        for record in records {
            let mut record = if record.id >= from { edit(record) } else { record };
            if record.id >= from {
                record.prev_hash = prev.as_ref().map_or(GENESIS.to_owned(), |p| hex::encode(Sha256::digest(p)));
            }
            let bytes = serde_json::to_vec(&record).unwrap();
            ns.set(&record_key(record.id), bytes.clone()).await.unwrap();
            prev = Some(bytes);
        }
        let tail = serde_json::json!({ "next_id": 6, "last_hash": hex::encode(Sha256::digest(prev.unwrap())) });
        ns.set(TAIL_KEY, tail.to_string().into_bytes()).await.unwrap();
    }

    #[tokio::test]
    async fn verify_names_the_first_break() {
        let (edit, _) = tampered(async |ns| {
            let bytes = ns.get(&record_key(3)).await.unwrap().unwrap();
            let edited = String::from_utf8(bytes).unwrap().replace("\"target\":\"t\"", "\"target\":\"u\"");
            ns.set(&record_key(3), edited.into_bytes()).await.unwrap();
        })
        .await;
        assert_eq!(edit.broken.unwrap().id, 4);
        let (delete, _) = tampered(async |ns| {
            ns.delete(&record_key(3)).await.unwrap();
        })
        .await;
        assert_eq!(delete.broken.unwrap().id, 3);
        let (swap, _) = tampered(async |ns| {
            let (two, three) = (ns.get(&record_key(2)).await.unwrap(), ns.get(&record_key(3)).await.unwrap());
            ns.set(&record_key(2), three.unwrap()).await.unwrap();
            ns.set(&record_key(3), two.unwrap()).await.unwrap();
        })
        .await;
        assert_eq!(swap.broken.unwrap().id, 2);
        let (cut, ends) = tampered(async |ns| {
            ns.delete(&record_key(5)).await.unwrap();
            ns.delete(&record_key(4)).await.unwrap();
        })
        .await;
        let broken = cut.broken.unwrap();
        assert_eq!((broken.id, cut.records), (4, 3));
        assert!(broken.reason.contains("ends before record 5"), "{}", broken.reason);
        assert_eq!(ends.unwrap_err().id, 5, "start-up sees the cut too");
    }

    #[tokio::test]
    async fn without_the_key_history_cannot_be_rewritten_or_cut() {
        // Rewrite record 3 and recompute every later link and the tail.
        let (rewritten, ends) = tampered(async |ns| {
            relink_without_key(ns, 3, |r| AuditRecord { outcome: Outcome::Failure, ..r }).await;
        })
        .await;
        assert!(!rewritten.ok && ends.is_err(), "{rewritten:?}");
        assert!(rewritten.broken.unwrap().reason.contains("not sealed"));
        // Cut the last two records and point the tail at the new end, copying
        // the link the next record carried.
        let (cut, ends) = tampered(async |ns| {
            let four: AuditRecord = serde_json::from_slice(&ns.get(&record_key(4)).await.unwrap().unwrap()).unwrap();
            ns.delete(&record_key(4)).await.unwrap();
            ns.delete(&record_key(5)).await.unwrap();
            let mut tail: serde_json::Value =
                serde_json::from_slice(&ns.get(TAIL_KEY).await.unwrap().unwrap()).unwrap();
            tail["next_id"] = 4.into();
            tail["last_hash"] = four.prev_hash.into();
            ns.set(TAIL_KEY, tail.to_string().into_bytes()).await.unwrap();
        })
        .await;
        assert!(!cut.ok && ends.is_err(), "{cut:?}");
        // Remove the oldest records and claim the log starts later.
        let (prefix, ends) = tampered(async |ns| {
            ns.delete(&record_key(1)).await.unwrap();
            ns.delete(&record_key(2)).await.unwrap();
        })
        .await;
        assert_eq!(prefix.broken.unwrap().id, 1);
        assert_eq!(ends.unwrap_err().id, 1);
        // Delete the tail: the records are not overwritten, and it shows.
        let (no_tail, ends) = tampered(async |ns| {
            ns.delete(TAIL_KEY).await.unwrap();
        })
        .await;
        assert!(!no_tail.ok && ends.is_err());
    }

    #[tokio::test]
    async fn a_log_missing_its_tail_is_appended_to_after_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        for action in ["a", "b"] {
            log.append(draft(action)).await.unwrap();
        }
        storage.namespace(NamespaceId::System("audit"), None).unwrap().delete(TAIL_KEY).await.unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        assert_eq!(log.append(draft("c")).await.unwrap().id, 3, "records 1 and 2 are kept");
    }

    #[tokio::test]
    async fn an_unkeyed_log_is_sealed_only_on_request_and_only_if_intact() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        for action in ["a", "b", "c", "d", "e"] {
            log.append(draft(action)).await.unwrap();
        }
        let ns = storage.namespace(NamespaceId::System("audit"), None).unwrap();
        relink_without_key(ns.as_ref(), 1, |r| r).await;
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        assert!(log.check_ends().await.unwrap().is_err(), "not sealed by itself");
        let sealed = log.seal_unkeyed().await.unwrap();
        assert!(sealed.ok && sealed.records == 5, "{sealed:?}");
        log.append(draft("f")).await.unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        assert_eq!(log.check_ends().await.unwrap(), Ok(()));
        let verified = log.verify().await.unwrap();
        assert!(verified.ok && verified.records == 6, "{verified:?}");
    }

    #[tokio::test]
    async fn retention_removes_the_oldest_and_what_remains_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        for i in 0..50 {
            log.append(draft(&format!("event.{i}"))).await.unwrap();
        }
        let young = Retention { max_age: std::time::Duration::from_secs(3600), max_bytes: u64::MAX };
        assert_eq!(log.enforce(young).await.unwrap(), 0);
        let small = Retention { max_age: std::time::Duration::from_secs(3600), max_bytes: log.ns.used_bytes() / 2 };
        let removed = log.enforce(small).await.unwrap();
        assert!(removed >= 25, "{removed}");
        assert!(log.ns.used_bytes() <= small.max_bytes, "{} > {}", log.ns.used_bytes(), small.max_bytes);
        let verified = log.verify().await.unwrap();
        assert!(verified.ok, "{verified:?}");
        let first = log.records(0, 1).await.unwrap().remove(0);
        assert_eq!(first.id, removed + 1);
        let last = log.records(50, 10).await.unwrap();
        assert_eq!(last[0].action, "audit.pruned", "the removal is itself recorded");
        let log = AuditLog::open(&storage, None, key()).await.unwrap();
        assert_eq!(log.check_ends().await.unwrap(), Ok(()));
        let everything = Retention { max_age: std::time::Duration::ZERO, max_bytes: u64::MAX };
        log.enforce(everything).await.unwrap();
        assert!(log.verify().await.unwrap().ok);
    }

    #[tokio::test]
    async fn a_failing_mirror_fails_the_append() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::open(&storage, Some(std::path::Path::new("/dev/full")), key()).await.unwrap();
        assert!(log.append(draft("a")).await.is_err());
        let mirrored = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&storage, Some(&mirrored), key()).await.unwrap();
        log.append(draft("b\r\nforged: line\u{7}")).await.unwrap();
        let text = std::fs::read_to_string(mirrored).unwrap();
        assert_eq!(text.lines().count(), 1, "control characters are escaped, never raw: {text}");
        assert!(text.contains("\"action\":\"b\\r\\nforged: line\\u0007\""), "{text}");
    }
}
