//! The durable job queue: work plugins hand to worker components
//! (`plinth:platform/jobs`), run off the request path by [`dispatch`].
//!
//! A job record lives in the system namespace `jobs` under
//! `job/{plugin}/{id}`; an unfinished one also has a queue entry
//! `queue/{seq}` (submission order). A job holds the blobs its worker made:
//! each is recorded as it is made (so a crash mid-run cannot leave one
//! unnamed), kept when the job is done, and unlinked when it fails or is
//! forgotten. State changes happen under one lock, so a `forget` racing the
//! end of a run cannot both keep and drop the same blobs.

pub mod dispatch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::blobs::Blobs;
use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError};

/// Most input blobs one job names.
pub const MAX_INPUTS: usize = 16;
/// Most bytes of a job's parameters, and of a worker's answer.
pub const MAX_TEXT: usize = 64 << 10;
/// Times a job is started again after the server stopped while it ran.
const MAX_ATTEMPTS: u32 = 3;
/// Queue entries one dispatcher pass looks at.
const SCAN_PAGE: usize = 256;

/// Why a job call failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job for this plugin.
    #[error("no such job")]
    NotFound,
    /// No worker of that name takes this plugin's jobs.
    #[error("no worker `{0}` takes this plugin's jobs")]
    UnknownWorker(String),
    /// The plugin's, or the owner's, unfinished jobs are at their limit.
    #[error("the {scope} has {limit} unfinished jobs, its limit")]
    QueueFull {
        /// `plugin` or `owner`.
        scope: &'static str,
        /// The limit.
        limit: u32,
    },
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error("job storage failed: {0}")]
    Storage(String),
}

impl From<StorageError> for JobError {
    fn from(e: StorageError) -> Self {
        JobError::Storage(e.to_string())
    }
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its worker.
    Queued,
    /// Its worker is running it.
    Running,
    /// Finished with the worker's answer.
    Done(String),
    /// Failed; why.
    Failed(String),
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The worker it goes to.
    pub worker: String,
    /// Who the blobs it makes belong to.
    pub owner: String,
    /// Blobs of the plugin the worker may read.
    pub inputs: Vec<String>,
    /// The plugin's parameters for the worker.
    pub params: String,
    /// Where it stands.
    pub state: JobState,
    /// Blobs the worker made (kept when done, unlinked otherwise).
    pub made: Vec<String>,
    /// When it was submitted, seconds since the Unix epoch.
    pub submitted: u64,
    /// Times it was started.
    pub attempts: u32,
    /// How its last run went.
    #[serde(default)]
    pub ran: Option<Ran>,
    /// The prefix of the plugin's keys the worker may read (`job-kv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_prefix: Option<String>,
    /// Its queue entry while unfinished.
    queue_key: String,
}

/// What a job is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// Blobs of the plugin the worker may read.
    pub inputs: Vec<String>,
    /// The plugin's parameters for the worker.
    pub params: String,
    /// A prefix of the plugin's keys the worker may read (`job-kv`).
    pub read_prefix: Option<String>,
}

impl Work {
    /// Work over `inputs` with `params`, reading no keys.
    pub fn on(inputs: Vec<String>, params: impl Into<String>) -> Self {
        Self { inputs, params: params.into(), read_prefix: None }
    }
}

/// How a run went, beside its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ran {
    /// Time from instantiation to the answer, in microseconds.
    pub micros: u64,
    /// The largest the instance's memory grew, in bytes.
    pub peak_memory: u64,
}

/// Bounds on a plugin's unfinished (queued or running) jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// All of the plugin's.
    pub plugin: u32,
    /// One owner's.
    pub owner: u32,
}

/// A queue entry: which plugin's job, for which worker.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The submitting plugin.
    pub plugin: String,
    /// The worker it goes to.
    pub worker: String,
    /// The job's id.
    pub id: String,
}

/// A job the dispatcher took from the queue.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The submitting plugin.
    pub plugin: String,
    /// The job's id.
    pub id: String,
    /// The job.
    pub record: JobRecord,
}

mod keys {
    pub fn job(plugin: &str, id: &str) -> String {
        format!("job/{plugin}/{id}")
    }
    pub fn queue(seq: u128) -> String {
        format!("queue/{seq:032x}")
    }
}

/// A queue entry's value (plugin and worker names hold no `/`).
fn queue_entry(plugin: &str, worker: &str, id: &str) -> Vec<u8> {
    format!("{plugin}/{worker}/{id}").into_bytes()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The job store.
pub struct Jobs {
    meta: Arc<dyn Namespace>,
    storage: Arc<dyn Storage>,
    blobs: Arc<Blobs>,
    /// Serializes state changes of records.
    lock: tokio::sync::Mutex<()>,
    /// Unfinished jobs per plugin (owner `None`) and per (plugin, owner),
    /// counted at open and kept since.
    unfinished: std::sync::Mutex<HashMap<(String, Option<String>), u32>>,
    /// Wakes the dispatcher: a job was queued or a worker slot freed.
    pub(crate) wake: tokio::sync::Notify,
    /// Which plugins each worker takes jobs from, as the deployment says.
    takers: std::sync::RwLock<HashMap<String, Vec<String>>>,
    /// The last queue sequence handed out (time-based, strictly rising).
    seq: std::sync::Mutex<u128>,
}

impl Jobs {
    /// Opens the store. Jobs that were running when the server stopped are
    /// queued again (the blobs their run made are unlinked first), at most
    /// [`MAX_ATTEMPTS`] times.
    pub async fn open(storage: Arc<dyn Storage>, blobs: Arc<Blobs>) -> Result<Self, JobError> {
        let meta = storage.namespace(NamespaceId::System("jobs"), None)?;
        let jobs = Self {
            meta,
            storage,
            blobs,
            lock: tokio::sync::Mutex::new(()),
            unfinished: std::sync::Mutex::default(),
            wake: tokio::sync::Notify::new(),
            takers: std::sync::RwLock::default(),
            seq: std::sync::Mutex::new(0),
        };
        jobs.recover().await?;
        Ok(jobs)
    }

    async fn recover(&self) -> Result<(), JobError> {
        let mut after = None;
        loop {
            let page = self.meta.scan_prefix("job/", after.as_deref(), 1000).await?;
            for (key, bytes) in &page.entries {
                let Some((plugin, id)) = key["job/".len()..].split_once('/') else { continue };
                let Ok(mut record) = serde_json::from_slice::<JobRecord>(bytes) else {
                    tracing::error!(key, "an unreadable job record is left alone");
                    continue;
                };
                match record.state {
                    JobState::Queued => {}
                    JobState::Running => {
                        self.unlink_all(plugin, &std::mem::take(&mut record.made)).await;
                        record.state = if record.attempts >= MAX_ATTEMPTS {
                            JobState::Failed(format!("the server stopped while it ran, {} times", record.attempts))
                        } else {
                            JobState::Queued
                        };
                        let mut ops = vec![Op::Set(key.clone(), serde_json::to_vec(&record).expect("serializable"))];
                        if record.state == JobState::Queued {
                            ops.push(Op::Set(record.queue_key.clone(), queue_entry(plugin, &record.worker, id)));
                        }
                        self.meta.batch(ops).await?;
                        if record.state != JobState::Queued {
                            continue;
                        }
                    }
                    JobState::Done(_) | JobState::Failed(_) => continue,
                }
                self.count_one(plugin, &record.owner);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        self.storage.flush().await?;
        Ok(())
    }

    fn next_seq(&self) -> u128 {
        let mut last = self.seq.lock().expect("job sequence");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        *last = now.max(*last + 1);
        *last
    }

    async fn record(&self, plugin: &str, id: &str) -> Result<Option<JobRecord>, JobError> {
        match self.meta.get(&keys::job(plugin, id)).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JobError::Storage(format!("job `{id}` is unreadable: {e}"))),
            None => Ok(None),
        }
    }

    fn set(plugin: &str, id: &str, record: &JobRecord) -> Op {
        Op::Set(keys::job(plugin, id), serde_json::to_vec(record).expect("serializable"))
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<(), JobError> {
        self.meta.batch(ops).await?;
        self.storage.flush().await?;
        Ok(())
    }

    /// Sets which plugins each worker takes jobs from (on every deployment).
    pub fn set_workers(&self, workers: &[crate::config::WorkerConfig]) {
        *self.takers.write().expect("worker table") =
            workers.iter().map(|w| (w.name.clone(), w.plugins.clone())).collect();
    }

    /// Queues a job of `plugin` for `worker`; `limits` bound the plugin's
    /// and the owner's unfinished jobs.
    pub async fn submit(
        &self,
        plugin: &str,
        worker: &str,
        owner: &str,
        work: Work,
        limits: JobLimits,
    ) -> Result<String, JobError> {
        let Work { inputs, params, read_prefix } = work;
        let takes =
            self.takers.read().expect("worker table").get(worker).is_some_and(|p| p.iter().any(|p| p == plugin));
        if !takes {
            return Err(JobError::UnknownWorker(worker.to_owned()));
        }
        if owner.is_empty() || owner.len() > 256 {
            return Err(JobError::Invalid("owner: 1 to 256 bytes".into()));
        }
        let fewest = if read_prefix.is_some() { 0 } else { 1 };
        if inputs.len() < fewest || inputs.len() > MAX_INPUTS {
            return Err(JobError::Invalid(format!("inputs: {fewest} to {MAX_INPUTS} blob ids, not {}", inputs.len())));
        }
        if read_prefix.as_ref().is_some_and(|p| p.is_empty() || p.len() > 1024) {
            return Err(JobError::Invalid("read-prefix: 1 to 1024 bytes".into()));
        }
        if params.len() > MAX_TEXT {
            return Err(JobError::Invalid(format!("params: at most {MAX_TEXT} bytes, not {}", params.len())));
        }
        for input in &inputs {
            self.blobs.info(plugin, input).await.map_err(|e| match e {
                crate::blobs::BlobError::NotFound(_) | crate::blobs::BlobError::Invalid(_) => {
                    JobError::Invalid(format!("inputs: no blob `{input}`"))
                }
                other => JobError::Storage(other.to_string()),
            })?;
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        let _lock = self.lock.lock().await;
        {
            let counts = self.unfinished.lock().expect("job counts");
            let count = |key: (String, Option<String>)| counts.get(&key).copied().unwrap_or(0);
            if count((plugin.to_owned(), None)) >= limits.plugin {
                return Err(JobError::QueueFull { scope: "plugin", limit: limits.plugin });
            }
            if count((plugin.to_owned(), Some(owner.to_owned()))) >= limits.owner {
                return Err(JobError::QueueFull { scope: "owner", limit: limits.owner });
            }
        }
        self.count_one(plugin, owner);
        let queue_key = keys::queue(self.next_seq());
        let record = JobRecord {
            worker: worker.to_owned(),
            owner: owner.to_owned(),
            inputs,
            params,
            state: JobState::Queued,
            made: Vec::new(),
            submitted: now(),
            attempts: 0,
            ran: None,
            queue_key: queue_key.clone(),
            read_prefix,
        };
        let ops = vec![Self::set(plugin, &id, &record), Op::Set(queue_key, queue_entry(plugin, worker, &id))];
        if let Err(e) = self.commit(ops).await {
            self.finished_one(plugin, owner);
            return Err(e);
        }
        self.wake.notify_one();
        Ok(id)
    }

    /// One of a plugin's jobs.
    pub async fn get(&self, plugin: &str, id: &str) -> Result<JobRecord, JobError> {
        check_id(id)?;
        self.record(plugin, id).await?.ok_or(JobError::NotFound)
    }

    /// Drops a job: a queued one leaves the queue, a finished one's blobs
    /// are unlinked, a running one's are unlinked when its run ends.
    pub async fn forget(&self, plugin: &str, id: &str) -> Result<(), JobError> {
        check_id(id)?;
        let _lock = self.lock.lock().await;
        let record = self.record(plugin, id).await?.ok_or(JobError::NotFound)?;
        let mut ops = vec![Op::Delete(keys::job(plugin, id))];
        if record.state == JobState::Queued {
            ops.push(Op::Delete(record.queue_key.clone()));
        }
        self.commit(ops).await?;
        match record.state {
            JobState::Queued => self.finished_one(plugin, &record.owner),
            // A running job's later blobs are unlinked as they are made.
            JobState::Done(_) | JobState::Running => self.unlink_all(plugin, &record.made).await,
            JobState::Failed(_) => {}
        }
        Ok(())
    }

    /// Up to a page of queued jobs, oldest first.
    pub(crate) async fn queued(&self) -> Result<Vec<Queued>, JobError> {
        let page = self.meta.scan_prefix("queue/", None, SCAN_PAGE).await?;
        Ok(page
            .entries
            .into_iter()
            .filter_map(|(_, value)| {
                let text = String::from_utf8(value).ok()?;
                let mut parts = text.splitn(3, '/');
                let (plugin, worker, id) = (parts.next()?, parts.next()?, parts.next()?);
                Some(Queued { plugin: plugin.to_owned(), worker: worker.to_owned(), id: id.to_owned() })
            })
            .collect())
    }

    /// Marks a queued job running and takes it off the queue; `None` when
    /// it is no longer queued (forgotten meanwhile).
    pub(crate) async fn claim(&self, plugin: &str, id: &str) -> Result<Option<Claimed>, JobError> {
        let _lock = self.lock.lock().await;
        let Some(mut record) = self.record(plugin, id).await? else { return Ok(None) };
        if record.state != JobState::Queued {
            return Ok(None);
        }
        record.state = JobState::Running;
        record.attempts += 1;
        self.commit(vec![Self::set(plugin, id, &record), Op::Delete(record.queue_key.clone())]).await?;
        Ok(Some(Claimed { plugin: plugin.to_owned(), id: id.to_owned(), record }))
    }

    /// Records a blob the running job's worker made, before the worker
    /// learns its id. A forgotten job's blob is unlinked at once.
    pub(crate) async fn made(&self, plugin: &str, id: &str, blob: &str) -> Result<(), JobError> {
        let _lock = self.lock.lock().await;
        match self.record(plugin, id).await? {
            Some(mut record) if record.state == JobState::Running => {
                record.made.push(blob.to_owned());
                self.commit(vec![Self::set(plugin, id, &record)]).await
            }
            _ => {
                self.unlink_all(plugin, &[blob.to_owned()]).await;
                Err(JobError::NotFound)
            }
        }
    }

    /// Ends a run: `Ok` keeps the blobs the worker made as the job's
    /// outputs, `Err` unlinks them. A job forgotten while it ran has none
    /// left (`forget` and `made` unlinked them).
    pub(crate) async fn finish(
        &self,
        claimed: &Claimed,
        outcome: Result<String, String>,
        ran: Option<Ran>,
    ) -> Result<(), JobError> {
        let (plugin, id) = (&claimed.plugin, &claimed.id);
        let _lock = self.lock.lock().await;
        self.finished_one(plugin, &claimed.record.owner);
        let Some(mut record) = self.record(plugin, id).await? else { return Ok(()) };
        let failed = outcome.is_err();
        record.ran = ran;
        record.state = match outcome {
            Ok(answer) => JobState::Done(answer),
            Err(why) => JobState::Failed(why),
        };
        let made = if failed { std::mem::take(&mut record.made) } else { Vec::new() };
        self.commit(vec![Self::set(plugin, id, &record)]).await?;
        self.unlink_all(plugin, &made).await;
        Ok(())
    }

    fn count_one(&self, plugin: &str, owner: &str) {
        let mut counts = self.unfinished.lock().expect("job counts");
        *counts.entry((plugin.to_owned(), None)).or_default() += 1;
        *counts.entry((plugin.to_owned(), Some(owner.to_owned()))).or_default() += 1;
    }

    fn finished_one(&self, plugin: &str, owner: &str) {
        let mut counts = self.unfinished.lock().expect("job counts");
        for key in [(plugin.to_owned(), None), (plugin.to_owned(), Some(owner.to_owned()))] {
            if let Some(count) = counts.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
    }

    async fn unlink_all(&self, plugin: &str, blobs: &[String]) {
        for blob in blobs {
            if let Err(e) = self.blobs.unlink(plugin, blob).await {
                tracing::error!(plugin, blob, error = %e, "a job's blob could not be unlinked");
            }
        }
    }
}

fn check_id(id: &str) -> Result<(), JobError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(JobError::NotFound)
    }
}

#[cfg(test)]
mod tests;
