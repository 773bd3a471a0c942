//! Keeping the audit log bounded: the oldest records go once past an age or
//! past a size, and the tail moves its start so that what remains still
//! verifies. A background task does this, and checks the whole chain once
//! after start-up (the start-up itself checks only its ends).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::chain::Tail;
use super::{AuditError, AuditLog, AuditRecord, Envelope, Outcome, TAIL_KEY, record_key};
use crate::storage::Op;

/// Records removed per storage batch.
const PRUNE_BATCH: usize = 1000;
/// How often the background task enforces retention.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How long and how much the log keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Records older than this are removed.
    pub max_age: Duration,
    /// Past this many bytes the oldest are removed, down to nine tenths.
    pub max_bytes: u64,
}

impl AuditLog {
    /// Removes the oldest records older than `max_age`, then more while the
    /// log holds over `max_bytes`; records the removal. Returns how many
    /// went.
    pub async fn enforce(&self, retention: Retention) -> Result<u64, AuditError> {
        let cutoff = SystemTime::now().checked_sub(retention.max_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let target = if self.ns.used_bytes() > retention.max_bytes { retention.max_bytes / 10 * 9 } else { u64::MAX };
        let mut removed = 0;
        loop {
            let mut tail = self.tail.lock().await;
            let page = self.ns.scan_prefix("r/", None, PRUNE_BATCH).await?;
            let mut used = self.ns.used_bytes();
            let mut ops = Vec::new();
            let mut next_first: Option<(u64, String)> = None;
            for (key, bytes) in &page.entries {
                let record: AuditRecord = serde_json::from_slice(bytes)
                    .map_err(|e| AuditError(crate::storage::StorageError::Backend(format!("{key}: {e}"))))?;
                let old = humantime::parse_rfc3339(&record.time).is_ok_and(|t| t < cutoff);
                if !old && used <= target {
                    next_first = Some((record.id, record.prev_hash));
                    break;
                }
                used = used.saturating_sub((key.len() + bytes.len()) as u64);
                ops.push(Op::Delete(key.clone()));
            }
            if ops.is_empty() {
                break;
            }
            let batch_removed = ops.len() as u64;
            let reached_young = next_first.is_some();
            let (first_id, first_prev) = match next_first {
                Some(first) => first,
                None if page.next.is_none() => (tail.next_id, tail.last_hash.clone()),
                None => {
                    let id = tail.first_id + batch_removed;
                    let bytes = self.ns.get(&record_key(id)).await?.unwrap_or_default();
                    let prev = serde_json::from_slice::<AuditRecord>(&bytes).map(|r| r.prev_hash).unwrap_or_default();
                    (id, prev)
                }
            };
            let mut next = Tail { first_id, first_prev, ..tail.clone() };
            self.seal(&mut next);
            ops.push(Op::Set(TAIL_KEY.to_owned(), serde_json::to_vec(&next).expect("audit tail serializes")));
            self.ns.batch(ops).await?;
            *tail = next;
            removed += batch_removed;
            if reached_young {
                break;
            }
        }
        if removed > 0 {
            let reason = Some(format!("removed the {removed} oldest records (retention)"));
            self.append(Envelope::system().draft("audit.pruned", "audit", Outcome::Success, reason)).await?;
        }
        Ok(removed)
    }
}

/// Checks the whole chain once, then enforces `retention` every
/// [`UPKEEP_INTERVAL`] until `stop` resolves. A broken chain is logged as an
/// error and recorded, and counted in the metrics.
pub async fn upkeep(log: Arc<AuditLog>, retention: Retention, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    match log.verify().await {
        Ok(v) if v.ok => tracing::info!(records = v.records, "audit chain verified"),
        Ok(v) => {
            let broken = v.broken.expect("a failed verification names its break");
            tracing::error!(id = broken.id, reason = %broken.reason, "the audit chain is broken");
            let reason = Some(format!("record {}: {}", broken.id, broken.reason));
            let _ = log.append(Envelope::system().draft("audit.chain_broken", "audit", Outcome::Failure, reason)).await;
        }
        Err(e) => tracing::error!(error = %e, "the audit chain could not be verified"),
    }
    loop {
        if let Err(e) = log.enforce(retention).await {
            tracing::error!(error = %e, "audit retention failed");
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(UPKEEP_INTERVAL) => {}
        }
    }
}
