//! The blob store: files under `data/blobs`, with their records, reference
//! counts, byte quotas and resumable uploads in the system namespace `blobs`.
//!
//! A blob is named by a BLAKE3 hash of its bytes keyed per (plugin, owner):
//! the same bytes stored twice by one owner are one file with two
//! references, while another owner's copy is another name and another
//! file, so nothing an owner sees (id, timing, quota) says whether someone
//! else holds the same bytes. Bytes are written to a file under `partial/`,
//! made durable, hashed, and only then renamed into `objects/` and recorded:
//! a blob that has a record is whole.
//!
//! Quotas (per plugin and per owner) count stored bytes plus reservations;
//! an upload reserves its whole length when it is created, so concurrent
//! uploads cannot together pass a quota. Record, usage and reservation
//! changes happen under one lock and commit in one batch.

mod chunks;
mod files;
mod scan;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::chunks::{Checksum, ChecksumAlgorithm, Chunks, Whole};
pub use self::files::object_path;
pub use self::scan::{Clamd, ScanState};
use crate::audit::{AuditLog, Envelope, Outcome};
use crate::config::{ScannerConfig, Unscanned};
use crate::error::ApiError;
use crate::storage::{NamespaceId, Op, Storage, StorageError};

/// Longest owner name, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;
/// Most bytes one `read` returns.
pub const MAX_READ_BYTES: u64 = 1 << 20;
/// Longest an upload may wait for its bytes.
pub const MAX_UPLOAD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Hex digits of a blob id (a 32-byte hash).
const BLOB_ID_LEN: usize = 64;
/// Hex digits of an upload id (16 random bytes).
const UPLOAD_ID_LEN: usize = 32;
/// Key under which the hashing secret lives.
const SECRET_KEY: &str = "secret";
/// How long an upload lives before its first bytes: a reservation that
/// brings no data holds the quotas for at most this long.
const EMPTY_UPLOAD_TTL: Duration = Duration::from_secs(3600);
/// How long an upload made for one request (`ingest`, `create`) lives if
/// the request is lost without its drop running (a crash); normally it
/// ends with its request.
const INGEST_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long the scanner waits before asking an unreachable clamd again.
const SCAN_RETRY: Duration = Duration::from_secs(5);
/// How often expired uploads are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Domain of the per-owner hashing keys.
const OWNER_KEY_CONTEXT: &str = "plinth 2026-11 blob owner key";

/// Why a blob call failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No such blob or upload in this plugin's store.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The upload's time ran out.
    #[error("the upload expired")]
    Expired,
    /// The write did not start where the upload stands.
    #[error("the upload is at offset {current}, not {requested}")]
    OffsetMismatch {
        /// Bytes the upload holds.
        current: u64,
        /// Where the write wanted to start.
        requested: u64,
    },
    /// More bytes than the upload (or the call) allows.
    #[error("more than {limit} bytes")]
    TooLarge {
        /// The most bytes allowed.
        limit: u64,
    },
    /// Storing this would pass a quota.
    #[error(
        "the {scope} quota of {limit} bytes would be passed: {used} bytes used or reserved, {requested} more needed"
    )]
    QuotaExceeded {
        /// `plugin` or `owner`.
        scope: &'static str,
        /// The quota.
        limit: u64,
        /// Stored plus reserved now.
        used: u64,
        /// What the call needed.
        requested: u64,
    },
    /// The bytes received do not have the checksum the client sent.
    #[error("the {0} checksum of the received bytes does not match")]
    ChecksumMismatch(&'static str),
    /// Another request is writing to this upload now.
    #[error("another request is writing to this upload")]
    Busy,
    /// The upload does not hold all its bytes yet.
    #[error("the upload holds {offset} of {length} bytes")]
    Incomplete {
        /// Bytes held.
        offset: u64,
        /// Bytes declared.
        length: u64,
    },
    /// An argument the caller could have checked.
    #[error("{0}")]
    Invalid(String),
    /// The disk is full; nothing of this write was kept.
    #[error("the disk is full")]
    DiskFull,
    /// Reading the request body failed (too slow, too large, cut off).
    #[error("the request body failed: {}", .0.message)]
    Body(ApiError),
    /// The file system or the metadata store failed.
    #[error("blob storage failed: {0}")]
    Storage(String),
}

impl From<StorageError> for BlobError {
    fn from(e: StorageError) -> Self {
        BlobError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for BlobError {
    /// No room, whichever bound says so: the file system (`ENOSPC`), a disk
    /// quota (`EDQUOT`) or the process's file size limit (`EFBIG`).
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
        if matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge) {
            BlobError::DiskFull
        } else {
            BlobError::Storage(e.to_string())
        }
    }
}

/// A plugin's part of the store and the quotas it is held to.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The plugin; it reaches only its own blobs and uploads.
    pub plugin: &'a str,
    /// Bytes all its blobs and reservations may take.
    pub plugin_bytes: u64,
    /// Bytes one owner's blobs and reservations may take.
    pub owner_bytes: u64,
}

/// What the store knows about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// 64 hex digits; names the bytes within their owner's files.
    pub id: String,
    /// Who the plugin said owns it.
    pub owner: String,
    /// Its length.
    pub size: u64,
    /// How many times it is linked; it goes with the last unlink.
    pub refs: u64,
    /// Seconds since the epoch it was first stored.
    pub created: u64,
    /// Where it stands with the scanner; only a clean (or knowingly
    /// unscanned) blob is served.
    pub scan: ScanState,
}

/// A resumable upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// 32 hex digits.
    #[serde(skip)]
    pub id: String,
    /// Who it is for.
    pub owner: String,
    /// Bytes it will hold when complete (reserved against the quotas).
    pub length: u64,
    /// Bytes it holds, durably.
    pub offset: u64,
    /// Seconds since the epoch after which it is removed.
    pub expires: u64,
    /// Seconds it lives from its first bytes; until they come it lives at
    /// most [`EMPTY_UPLOAD_TTL`].
    #[serde(default)]
    pub lifetime: u64,
}

/// A blob's stored record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlobRecord {
    owner: String,
    size: u64,
    refs: u64,
    created: u64,
    #[serde(default)]
    scan: ScanState,
}

impl BlobRecord {
    fn info(self, id: &str) -> BlobInfo {
        BlobInfo {
            id: id.to_owned(),
            owner: self.owner,
            size: self.size,
            refs: self.refs,
            created: self.created,
            scan: self.scan,
        }
    }
}

/// Bytes stored and reserved, for a plugin or an owner.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Usage {
    stored: u64,
    reserved: u64,
}

impl Usage {
    fn check(self, scope: &'static str, limit: u64, requested: u64) -> Result<(), BlobError> {
        let used = self.stored + self.reserved;
        if used.saturating_add(requested) > limit {
            return Err(BlobError::QuotaExceeded { scope, limit, used, requested });
        }
        Ok(())
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_blob_id(id: &str) -> Result<(), BlobError> {
    if is_hex(id, BLOB_ID_LEN) { Ok(()) } else { Err(BlobError::NotFound("blob")) }
}

fn check_upload_id(id: &str) -> Result<(), BlobError> {
    if is_hex(id, UPLOAD_ID_LEN) { Ok(()) } else { Err(BlobError::NotFound("upload")) }
}

fn check_owner(owner: &str) -> Result<(), BlobError> {
    if owner.is_empty() || owner.len() > MAX_OWNER_BYTES || owner.chars().any(char::is_control) {
        return Err(BlobError::Invalid(format!("an owner is 1 to {MAX_OWNER_BYTES} bytes without control characters")));
    }
    Ok(())
}

/// The keys of the `blobs` namespace.
mod keys {
    pub fn blob(plugin: &str, id: &str) -> String {
        format!("blob/{plugin}/{id}")
    }
    pub fn plugin_usage(plugin: &str) -> String {
        format!("usage/{plugin}")
    }
    pub fn owner_usage(plugin: &str, owner: &str) -> String {
        format!("owner/{plugin}/{owner}")
    }
    pub fn upload(plugin: &str, id: &str) -> String {
        format!("upload/{plugin}/{id}")
    }
    pub const EXPIRY_PREFIX: &str = "expiry/";
    pub fn expiry(expires: u64, plugin: &str, id: &str) -> String {
        format!("expiry/{expires:016x}/{plugin}/{id}")
    }
}

/// An upload made for one request, removed if the request is dropped
/// before it ends (hyper drops a request whose stream is reset).
struct Abandoned {
    /// Taken when the request ends on its own.
    blobs: Option<Arc<Blobs>>,
    plugin: String,
    id: String,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let (Some(blobs), Ok(runtime)) = (self.blobs.take(), tokio::runtime::Handle::try_current()) else { return };
        let (plugin, id) = (std::mem::take(&mut self.plugin), std::mem::take(&mut self.id));
        runtime.spawn(async move {
            if let Err(e) = blobs.cancel_upload(&plugin, &id).await {
                tracing::warn!(plugin, error = %e, "an abandoned upload could not be removed yet; it expires");
            }
        });
    }
}

/// File removals put off for a backup; [`FileHold::release`] ends it
/// (dropped without it, the release runs on its own task).
pub struct FileHold {
    blobs: Option<Arc<Blobs>>,
}

impl FileHold {
    /// The store's root directory.
    pub fn root(&self) -> &std::path::Path {
        self.blobs.as_ref().expect("held until released").files.root()
    }

    /// Ends the hold and removes what it put off.
    pub async fn release(mut self) {
        if let Some(blobs) = self.blobs.take() {
            blobs.release_files().await;
        }
    }
}

impl Drop for FileHold {
    fn drop(&mut self) {
        let (Some(blobs), Ok(runtime)) = (self.blobs.take(), tokio::runtime::Handle::try_current()) else { return };
        runtime.spawn(async move { blobs.release_files().await });
    }
}

/// The file, and how many of its bytes, that an entry of the `blobs`
/// namespace needs (a blob's whole file, an upload's recorded bytes), as a
/// path under the store's root.
pub fn file_of_record(key: &str, value: &[u8]) -> Option<(std::path::PathBuf, u64)> {
    if let Some(rest) = key.strip_prefix("blob/") {
        let (plugin, id) = rest.split_once('/')?;
        check_blob_id(id).ok()?;
        let record: BlobRecord = serde_json::from_slice(value).ok()?;
        return Some((files::object_path(plugin, id), record.size));
    }
    let (plugin, id) = key.strip_prefix("upload/")?.split_once('/')?;
    check_upload_id(id).ok()?;
    let upload: UploadInfo = serde_json::from_slice(value).ok()?;
    Some((files::partial_path(plugin, id), upload.offset))
}

/// Marks an upload as being written until dropped.
struct BusyMark<'a> {
    busy: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for BusyMark<'_> {
    fn drop(&mut self) {
        self.busy.lock().expect("busy set").remove(&self.key);
    }
}

/// The blob store of one data directory.
pub struct Blobs {
    files: files::Files,
    meta: Arc<dyn crate::storage::Namespace>,
    storage: Arc<dyn Storage>,
    secret: [u8; 32],
    /// Serialises every change to records and usage.
    lock: tokio::sync::Mutex<()>,
    /// Uploads a request is writing to or finishing now.
    busy: Mutex<HashSet<String>>,
    /// Uploads' keyed hashes so far, with the offset each has reached.
    hashing: Mutex<std::collections::HashMap<String, (u64, blake3::Hasher)>>,
    /// The scanner new files go to, if one is configured.
    clamd: Option<Clamd>,
    /// What becomes of new files without one.
    unscanned: Unscanned,
    /// New files waiting for the scanner: (plugin, blob id).
    to_scan: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    /// The scanner's end of that queue, taken when it starts.
    scan_queue: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>>,
}

impl Blobs {
    /// Opens the store under `root` (created if missing), with its records
    /// in `storage` and new files scanned as `scanner` says; the hashing
    /// secret is made at first start.
    pub async fn open(root: PathBuf, storage: Arc<dyn Storage>, scanner: &ScannerConfig) -> Result<Self, BlobError> {
        let meta = storage.namespace(NamespaceId::System("blobs"), None)?;
        let secret = match meta.get(SECRET_KEY).await? {
            Some(bytes) => {
                bytes.try_into().map_err(|_| BlobError::Storage("the blob hashing secret is not 32 bytes".into()))?
            }
            None => {
                let secret: [u8; 32] = rand::random();
                meta.set(SECRET_KEY, secret.to_vec()).await?;
                storage.flush().await?;
                secret
            }
        };
        let files = files::Files::open(root).await?;
        let (to_scan, scan_queue) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            files,
            meta,
            storage,
            secret,
            lock: tokio::sync::Mutex::new(()),
            busy: Mutex::default(),
            hashing: Mutex::default(),
            clamd: scanner.clamd.as_deref().map(Clamd::new),
            unscanned: scanner.unscanned,
            to_scan,
            scan_queue: Mutex::new(Some(scan_queue)),
        })
    }

    /// Puts off every removal of a file until the hold is released, so
    /// that a backup finds each file its snapshot of the records names.
    /// One hold at a time.
    pub fn hold_files(self: &Arc<Self>) -> Result<FileHold, BlobError> {
        if !self.files.hold() {
            return Err(BlobError::Busy);
        }
        Ok(FileHold { blobs: Some(self.clone()) })
    }

    /// Removes what a hold put off: partial files, and blobs' files unless
    /// a record names them again (the same bytes stored anew meanwhile).
    async fn release_files(&self) {
        let deferred = {
            let _lock = self.lock.lock().await;
            let deferred = self.files.release();
            let mut gone = Vec::new();
            for (plugin, id) in deferred.objects {
                match self.meta.get(&keys::blob(&plugin, &id)).await {
                    Ok(None) => gone.push((plugin, id)),
                    Ok(Some(_)) => {}
                    Err(e) => tracing::error!(plugin, error = %e, "a blob file held for a backup is left in place"),
                }
            }
            for (plugin, id) in &gone {
                self.files.remove_object(plugin, id).await;
            }
            deferred.partials
        };
        for path in deferred {
            self.files.remove_deferred(&path).await;
        }
    }

    /// The hasher that names one owner's blobs.
    fn hasher(&self, plugin: &str, owner: &str) -> blake3::Hasher {
        let mut material = Vec::with_capacity(32 + plugin.len() + 1 + owner.len());
        material.extend_from_slice(&self.secret);
        material.extend_from_slice(plugin.as_bytes());
        material.push(0);
        material.extend_from_slice(owner.as_bytes());
        blake3::Hasher::new_keyed(&blake3::derive_key(OWNER_KEY_CONTEXT, &material))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, BlobError> {
        match self.meta.get(key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| BlobError::Storage(format!("record `{key}` is unreadable: {e}"))),
            None => Ok(None),
        }
    }

    async fn usage(&self, key: &str) -> Result<Usage, BlobError> {
        Ok(self.get_json(key).await?.unwrap_or_default())
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<(), BlobError> {
        self.meta.batch(ops).await?;
        self.storage.flush().await?;
        Ok(())
    }

    fn mark_busy(&self, plugin: &str, id: &str) -> Result<BusyMark<'_>, BlobError> {
        let key = keys::upload(plugin, id);
        if !self.busy.lock().expect("busy set").insert(key.clone()) {
            return Err(BlobError::Busy);
        }
        Ok(BusyMark { busy: &self.busy, key })
    }

    /// A blob of this plugin's.
    pub async fn info(&self, plugin: &str, id: &str) -> Result<BlobInfo, BlobError> {
        check_blob_id(id)?;
        let record: BlobRecord = self.get_json(&keys::blob(plugin, id)).await?.ok_or(BlobError::NotFound("blob"))?;
        Ok(record.info(id))
    }

    /// Up to [`MAX_READ_BYTES`] of a blob from `offset` (fewer at its end).
    pub async fn read(&self, plugin: &str, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        if len > MAX_READ_BYTES {
            return Err(BlobError::Invalid(format!("a read returns at most {MAX_READ_BYTES} bytes")));
        }
        let info = self.info(plugin, id).await?;
        let len = len.min(info.size.saturating_sub(offset));
        self.files.read(plugin, id, offset, len).await
    }

    /// A blob's file, open for serving, with its record.
    pub async fn open_blob(&self, plugin: &str, id: &str) -> Result<(tokio::fs::File, BlobInfo), BlobError> {
        let info = self.info(plugin, id).await?;
        Ok((self.files.open_object(plugin, id).await?, info))
    }

    /// One more reference to a blob.
    pub async fn link(&self, plugin: &str, id: &str) -> Result<BlobInfo, BlobError> {
        check_blob_id(id)?;
        let _lock = self.lock.lock().await;
        let key = keys::blob(plugin, id);
        let mut record: BlobRecord = self.get_json(&key).await?.ok_or(BlobError::NotFound("blob"))?;
        record.refs += 1;
        self.commit(vec![Op::Set(key, serde_json::to_vec(&record).expect("serializable"))]).await?;
        Ok(record.info(id))
    }

    /// One reference fewer; at none the blob and its bytes go and its size
    /// leaves the quotas. Returns the references left.
    pub async fn unlink(&self, plugin: &str, id: &str) -> Result<u64, BlobError> {
        check_blob_id(id)?;
        let _lock = self.lock.lock().await;
        let key = keys::blob(plugin, id);
        let mut record: BlobRecord = self.get_json(&key).await?.ok_or(BlobError::NotFound("blob"))?;
        record.refs = record.refs.saturating_sub(1);
        if record.refs > 0 {
            self.commit(vec![Op::Set(key, serde_json::to_vec(&record).expect("serializable"))]).await?;
            return Ok(record.refs);
        }
        let plugin_key = keys::plugin_usage(plugin);
        let owner_key = keys::owner_usage(plugin, &record.owner);
        let mut plugin_usage = self.usage(&plugin_key).await?;
        let mut owner_usage = self.usage(&owner_key).await?;
        plugin_usage.stored = plugin_usage.stored.saturating_sub(record.size);
        owner_usage.stored = owner_usage.stored.saturating_sub(record.size);
        self.commit(vec![
            Op::Delete(key),
            Op::Set(plugin_key, serde_json::to_vec(&plugin_usage).expect("serializable")),
            usage_op(owner_key, owner_usage),
        ])
        .await?;
        // The record is gone first: a crash here leaves a file no record
        // names, never a record without its file.
        self.files.remove_object(plugin, id).await;
        Ok(0)
    }

    /// Starts a resumable upload of `length` bytes for `owner`, reserving
    /// them against both quotas; it expires after `ttl`.
    pub async fn create_upload(
        &self,
        scope: &Scope<'_>,
        owner: &str,
        length: u64,
        ttl: Duration,
    ) -> Result<UploadInfo, BlobError> {
        check_owner(owner)?;
        if ttl.is_zero() || ttl > MAX_UPLOAD_TTL {
            return Err(BlobError::Invalid(format!("an upload lives 1 s to {} s", MAX_UPLOAD_TTL.as_secs())));
        }
        let id = hex::encode(rand::random::<[u8; UPLOAD_ID_LEN / 2]>());
        let lifetime = ttl.as_secs();
        let expires = now() + lifetime.min(EMPTY_UPLOAD_TTL.as_secs());
        let upload = UploadInfo { id, owner: owner.to_owned(), length, offset: 0, expires, lifetime };
        let mut swept = false;
        loop {
            let _lock = self.lock.lock().await;
            let mut ops = match self.reserve(scope, owner, length).await {
                Ok(ops) => ops,
                Err(e @ BlobError::QuotaExceeded { .. }) => {
                    drop(_lock);
                    if swept || self.sweep_expired().await? == 0 {
                        return Err(e);
                    }
                    swept = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.files.create_partial(scope.plugin, &upload.id).await?;
            ops.push(Op::Set(
                keys::upload(scope.plugin, &upload.id),
                serde_json::to_vec(&upload).expect("serializable"),
            ));
            ops.push(Op::Set(keys::expiry(upload.expires, scope.plugin, &upload.id), Vec::new()));
            if let Err(e) = self.commit(ops).await {
                self.files.remove_partial(scope.plugin, &upload.id).await;
                return Err(e);
            }
            return Ok(upload);
        }
    }

    /// The writes that reserve `bytes` for `owner`, after checking both
    /// quotas. The caller holds the lock.
    async fn reserve(&self, scope: &Scope<'_>, owner: &str, bytes: u64) -> Result<Vec<Op>, BlobError> {
        let plugin_key = keys::plugin_usage(scope.plugin);
        let owner_key = keys::owner_usage(scope.plugin, owner);
        let mut plugin_usage = self.usage(&plugin_key).await?;
        let mut owner_usage = self.usage(&owner_key).await?;
        plugin_usage.check("plugin", scope.plugin_bytes, bytes)?;
        owner_usage.check("owner", scope.owner_bytes, bytes)?;
        plugin_usage.reserved += bytes;
        owner_usage.reserved += bytes;
        Ok(vec![
            Op::Set(plugin_key, serde_json::to_vec(&plugin_usage).expect("serializable")),
            usage_op(owner_key, owner_usage),
        ])
    }

    /// The writes that give back a reservation of `reserved` bytes and
    /// count `stored` bytes in its place. The caller holds the lock.
    async fn settle(&self, plugin: &str, owner: &str, reserved: u64, stored: u64) -> Result<Vec<Op>, BlobError> {
        let plugin_key = keys::plugin_usage(plugin);
        let owner_key = keys::owner_usage(plugin, owner);
        let mut plugin_usage = self.usage(&plugin_key).await?;
        let mut owner_usage = self.usage(&owner_key).await?;
        for usage in [&mut plugin_usage, &mut owner_usage] {
            usage.reserved = usage.reserved.saturating_sub(reserved);
            usage.stored += stored;
        }
        Ok(vec![
            Op::Set(plugin_key, serde_json::to_vec(&plugin_usage).expect("serializable")),
            usage_op(owner_key, owner_usage),
        ])
    }

    /// An upload of this plugin's that has not expired.
    pub async fn upload(&self, plugin: &str, id: &str) -> Result<UploadInfo, BlobError> {
        check_upload_id(id)?;
        let mut upload: UploadInfo =
            self.get_json(&keys::upload(plugin, id)).await?.ok_or(BlobError::NotFound("upload"))?;
        if upload.expires <= now() {
            return Err(BlobError::Expired);
        }
        id.clone_into(&mut upload.id);
        Ok(upload)
    }

    /// Appends the body to an upload that holds exactly `offset` bytes,
    /// never past its length. Without a checksum, bytes that arrived before
    /// the body failed are kept (the client resumes from there); with one,
    /// the write is all or nothing. Returns the new offset.
    pub async fn append(
        &self,
        plugin: &str,
        id: &str,
        offset: u64,
        body: &mut dyn Chunks,
        checksum: Option<Checksum>,
    ) -> Result<u64, BlobError> {
        let _busy = self.mark_busy(plugin, id)?;
        let upload = self.upload(plugin, id).await?;
        if upload.offset != offset {
            return Err(BlobError::OffsetMismatch { current: upload.offset, requested: offset });
        }
        let mut file = self.files.open_partial(plugin, id, upload.offset).await?;
        let limit = upload.length - upload.offset;
        // The owner's hash of the bytes so far, carried from write to write
        // so that finishing need not read the file again (after a restart,
        // or a write that kept other bytes than it saw, it does).
        let key = keys::upload(plugin, id);
        let carried = self.hashing.lock().expect("hashing").remove(&key).filter(|(at, _)| *at == upload.offset);
        let hasher = carried.map(|(_, hasher)| hasher).or_else(|| {
            let first = upload.offset == 0;
            first.then(|| self.hasher(plugin, &upload.owner))
        });
        if let Some(hasher) = hasher {
            file.hash_with(hasher);
        }
        let checked = checksum.is_some();
        let received = file.receive(body, limit, checksum).await;
        let kept = match &received {
            Ok(n) => *n,
            Err(chunks::ReceiveError::Body { kept, .. }) => *kept,
            Err(_) => 0,
        };
        let new_offset = upload.offset + kept;
        file.finish(new_offset).await?;
        // Without a checksum a cut body keeps every byte it wrote.
        let kept_what_it_wrote =
            received.is_ok() || !checked && matches!(received, Err(chunks::ReceiveError::Body { .. }));
        if let Some(hasher) = file.hasher().filter(|_| kept_what_it_wrote) {
            self.hashing.lock().expect("hashing").insert(key, (new_offset, hasher));
        }
        if kept > 0 {
            let _lock = self.lock.lock().await;
            let key = keys::upload(plugin, id);
            // Gone or replaced while the body came: nothing to record.
            let mut current: UploadInfo = self.get_json(&key).await?.ok_or(BlobError::NotFound("upload"))?;
            let mut ops = Vec::new();
            // Its first bytes: from now on it lives its whole lifetime.
            if current.offset == 0 && current.lifetime > 0 {
                ops.push(Op::Delete(keys::expiry(current.expires, plugin, id)));
                current.expires = current.expires.max(now() + current.lifetime);
                ops.push(Op::Set(keys::expiry(current.expires, plugin, id), Vec::new()));
            }
            current.offset = new_offset;
            ops.push(Op::Set(key, serde_json::to_vec(&current).expect("serializable")));
            self.commit(ops).await?;
        }
        match received {
            Ok(_) => Ok(new_offset),
            Err(e) => Err(e.into_blob_error(limit)),
        }
    }

    /// Turns a complete upload into a blob (or one more reference to the
    /// owner's identical blob) and gives back its reservation.
    pub async fn finish_upload(&self, plugin: &str, id: &str) -> Result<BlobInfo, BlobError> {
        self.finish(plugin, id, None).await
    }

    /// Appends `bytes` the host holds (a worker's piece) to an upload that
    /// holds exactly `offset` bytes; returns the new offset.
    pub async fn append_bytes(
        &self,
        plugin: &str,
        id: &str,
        offset: u64,
        bytes: bytes::Bytes,
    ) -> Result<u64, BlobError> {
        self.append(plugin, id, offset, &mut chunks::Whole(Some(bytes)), None).await
    }

    /// Finishes an upload of unknown length at the `size` bytes it holds:
    /// the blob is that long and the rest of the reservation is given back.
    pub async fn finish_at(&self, plugin: &str, id: &str, size: u64) -> Result<BlobInfo, BlobError> {
        self.finish(plugin, id, Some(size)).await
    }

    /// Finishes an upload that holds all its bytes, or (`ended_at`, for a
    /// body of unknown length) exactly that many: the blob is that long and
    /// the rest of the reservation is given back.
    async fn finish(&self, plugin: &str, id: &str, ended_at: Option<u64>) -> Result<BlobInfo, BlobError> {
        let _busy = self.mark_busy(plugin, id)?;
        let upload = self.upload(plugin, id).await?;
        let size = ended_at.unwrap_or(upload.length);
        if upload.offset != size {
            return Err(BlobError::Incomplete { offset: upload.offset, length: size });
        }
        let carried = self.hashing.lock().expect("hashing").remove(&keys::upload(plugin, id));
        let blob_id = match carried.filter(|(at, _)| *at == size) {
            Some((_, hasher)) => hasher.finalize().to_hex().to_string(),
            None => self.files.hash_partial(plugin, id, self.hasher(plugin, &upload.owner)).await?,
        };
        let extra = vec![Op::Delete(keys::upload(plugin, id)), Op::Delete(keys::expiry(upload.expires, plugin, id))];
        self.store(plugin, &upload.owner, id, &blob_id, size, upload.length, extra).await
    }

    /// Stores the body as a new blob for `owner` in one go: at most `max`
    /// bytes (`declared` reserves less when the client said its length).
    /// It is an upload of its own while the body arrives, so a request lost
    /// on the way (a reset stream, a crash) gives its reservation and
    /// partial file back: at once when the request is dropped, else when
    /// the upload expires.
    pub async fn ingest(
        self: &Arc<Self>,
        scope: &Scope<'_>,
        owner: &str,
        body: &mut dyn Chunks,
        declared: Option<u64>,
        max: u64,
    ) -> Result<BlobInfo, BlobError> {
        if declared.is_some_and(|d| d > max) {
            return Err(BlobError::TooLarge { limit: max });
        }
        let upload = self.create_upload(scope, owner, declared.unwrap_or(max), INGEST_TTL).await?;
        let mut abandoned = Abandoned { blobs: Some(self.clone()), plugin: scope.plugin.to_owned(), id: upload.id };
        let stored = async {
            let received = self.append(scope.plugin, &abandoned.id, 0, body, None).await?;
            self.finish(scope.plugin, &abandoned.id, Some(received)).await
        }
        .await;
        let blobs = abandoned.blobs.take().expect("set above");
        if stored.is_err()
            && let Err(e) = blobs.cancel_upload(scope.plugin, &abandoned.id).await
        {
            tracing::error!(plugin = scope.plugin, error = %e, "a failed upload could not be removed; it expires");
        }
        stored
    }

    /// Stores bytes the plugin made as a new blob for `owner`.
    pub async fn create(
        self: &Arc<Self>,
        scope: &Scope<'_>,
        owner: &str,
        bytes: bytes::Bytes,
    ) -> Result<BlobInfo, BlobError> {
        let size = bytes.len() as u64;
        let mut body = chunks::Whole(Some(bytes));
        self.ingest(scope, owner, &mut body, Some(size), size).await
    }

    /// Moves the hashed partial file `partial` into place as `blob_id` (or
    /// drops it when the owner has that blob already), settles the
    /// reservation, and commits with `extra`.
    #[allow(clippy::too_many_arguments, reason = "one internal step shared by three callers")]
    async fn store(
        &self,
        plugin: &str,
        owner: &str,
        partial: &str,
        blob_id: &str,
        size: u64,
        reserved: u64,
        mut extra: Vec<Op>,
    ) -> Result<BlobInfo, BlobError> {
        let _lock = self.lock.lock().await;
        let key = keys::blob(plugin, blob_id);
        let existing: Option<BlobRecord> = self.get_json(&key).await?;
        let (record, stored) = match existing {
            Some(mut record) => {
                record.refs += 1;
                (record, 0)
            }
            None => {
                self.files.promote(plugin, partial, blob_id).await?;
                let scan = match (&self.clamd, self.unscanned) {
                    (None, Unscanned::Serve) => ScanState::Unscanned,
                    _ => ScanState::Pending,
                };
                (BlobRecord { owner: owner.to_owned(), size, refs: 1, created: now(), scan }, size)
            }
        };
        let mut ops = self.settle(plugin, owner, reserved, stored).await?;
        ops.push(Op::Set(key, serde_json::to_vec(&record).expect("serializable")));
        ops.append(&mut extra);
        self.commit(ops).await?;
        if stored == 0 {
            self.files.remove_partial(plugin, partial).await;
        } else if self.clamd.is_some() {
            let _ = self.to_scan.send((plugin.to_owned(), blob_id.to_owned()));
        }
        Ok(record.info(blob_id))
    }

    /// Ends an upload before it completes and gives back its reservation.
    pub async fn cancel_upload(&self, plugin: &str, id: &str) -> Result<(), BlobError> {
        let _busy = self.mark_busy(plugin, id)?;
        let upload = match self.upload(plugin, id).await {
            Ok(upload) => upload,
            Err(BlobError::Expired) => {
                let mut upload: UploadInfo =
                    self.get_json(&keys::upload(plugin, id)).await?.ok_or(BlobError::NotFound("upload"))?;
                id.clone_into(&mut upload.id);
                upload
            }
            Err(e) => return Err(e),
        };
        self.drop_upload(plugin, &upload).await
    }

    async fn drop_upload(&self, plugin: &str, upload: &UploadInfo) -> Result<(), BlobError> {
        {
            let _lock = self.lock.lock().await;
            let mut ops = self.settle(plugin, &upload.owner, upload.length, 0).await?;
            ops.push(Op::Delete(keys::upload(plugin, &upload.id)));
            ops.push(Op::Delete(keys::expiry(upload.expires, plugin, &upload.id)));
            self.commit(ops).await?;
        }
        self.hashing.lock().expect("hashing").remove(&keys::upload(plugin, &upload.id));
        self.files.remove_partial(plugin, &upload.id).await;
        Ok(())
    }

    /// Removes uploads whose time ran out (but not one being written to
    /// now) and gives back their reservations; returns how many went.
    pub async fn sweep_expired(&self) -> Result<usize, BlobError> {
        let cutoff = keys::expiry(now(), "", "");
        let mut removed = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.meta.scan_prefix(keys::EXPIRY_PREFIX, after.as_deref(), 256).await?;
            for (key, _) in &page.entries {
                if *key >= cutoff {
                    return Ok(removed);
                }
                let mut parts = key[keys::EXPIRY_PREFIX.len()..].splitn(3, '/');
                let (Some(_), Some(plugin), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(_busy) = self.mark_busy(plugin, id) else { continue };
                let Some(mut upload) = self.get_json::<UploadInfo>(&keys::upload(plugin, id)).await? else {
                    self.meta.delete(key).await?;
                    continue;
                };
                id.clone_into(&mut upload.id);
                self.drop_upload(plugin, &upload).await?;
                removed += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(removed),
            }
        }
    }

    /// Sweeps expired uploads every [`SWEEP_EVERY`] until `stop` resolves.
    /// (A quota check that fails sweeps first too, so an expired upload
    /// never holds a quota until the next round.)
    pub async fn sweep_until(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = every.tick() => match self.sweep_expired().await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "expired uploads removed"),
                    Err(e) => tracing::error!(error = %e, "expired uploads could not be removed"),
                },
            }
        }
    }

    /// Scans new files, and those still pending from before, until `stop`
    /// resolves; an infected one is audited. Returns at once without a
    /// scanner.
    pub async fn scan_until(self: Arc<Self>, audit: Arc<AuditLog>, stop: impl std::future::Future<Output = ()>) {
        let Some(clamd) = self.clamd.clone() else { return };
        let Some(mut queue) = self.scan_queue.lock().expect("scan queue").take() else { return };
        if let Err(e) = self.queue_pending().await {
            tracing::error!(error = %e, "files pending a scan could not be listed");
        }
        tokio::pin!(stop);
        loop {
            let (plugin, id) = tokio::select! {
                () = &mut stop => return,
                next = queue.recv() => match next {
                    Some(next) => next,
                    None => return,
                },
            };
            let verdict = match clamd.scan(&self.files.object(&plugin, &id)).await {
                Ok(verdict) => verdict,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.info(&plugin, &id).await.is_err() => {
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "clamd cannot be reached; the scan waits");
                    let _ = self.to_scan.send((plugin, id));
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(SCAN_RETRY) => continue,
                    }
                }
            };
            if let Err(e) = self.record_scan(&audit, &plugin, &id, verdict).await {
                tracing::error!(plugin, error = %e, "a scan's verdict could not be recorded");
            }
        }
    }

    /// Queues every blob still pending a scan (after a restart, or once a
    /// scanner is configured for files held without one).
    async fn queue_pending(&self) -> Result<(), BlobError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.meta.scan_prefix("blob/", after.as_deref(), 256).await?;
            for (key, value) in &page.entries {
                let Ok(record) = serde_json::from_slice::<BlobRecord>(value) else { continue };
                let Some((plugin, id)) = key["blob/".len()..].split_once('/') else { continue };
                if record.scan == ScanState::Pending {
                    let _ = self.to_scan.send((plugin.to_owned(), id.to_owned()));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn record_scan(&self, audit: &AuditLog, plugin: &str, id: &str, verdict: ScanState) -> Result<(), BlobError> {
        if let ScanState::Infected(signature) = &verdict {
            tracing::warn!(plugin, blob = id, signature, "an infected file was stored; it will not be served");
            let record = Envelope::system().draft(
                "blob.infected",
                &format!("{plugin}/{id}"),
                Outcome::Denied,
                Some(format!("signature={signature}")),
            );
            if let Err(e) = audit.append(record).await {
                tracing::error!(error = %e, "the infected file could not be audited");
            }
        }
        let _lock = self.lock.lock().await;
        let key = keys::blob(plugin, id);
        let Some(mut record) = self.get_json::<BlobRecord>(&key).await? else { return Ok(()) };
        record.scan = verdict;
        self.commit(vec![Op::Set(key, serde_json::to_vec(&record).expect("serializable"))]).await
    }

    /// Bytes a plugin's blobs hold and its uploads have reserved.
    pub async fn plugin_usage(&self, plugin: &str) -> Result<(u64, u64), BlobError> {
        let usage = self.usage(&keys::plugin_usage(plugin)).await?;
        Ok((usage.stored, usage.reserved))
    }

    /// Bytes an owner's blobs hold and its uploads have reserved.
    pub async fn owner_usage(&self, plugin: &str, owner: &str) -> Result<(u64, u64), BlobError> {
        let usage = self.usage(&keys::owner_usage(plugin, owner)).await?;
        Ok((usage.stored, usage.reserved))
    }
}

/// Writes an owner's usage, or removes it when it is back to nothing (so
/// owners who had blobs once do not pile up records).
fn usage_op(key: String, usage: Usage) -> Op {
    if usage.stored == 0 && usage.reserved == 0 {
        Op::Delete(key)
    } else {
        Op::Set(key, serde_json::to_vec(&usage).expect("serializable"))
    }
}

#[cfg(test)]
mod tests;
