//! Storage behind a trait, so that a networked backend can follow sled.
//!
//! Everything is a namespace of string keys and byte values. A plugin gets
//! exactly one namespace, named after it; the host keeps its own (audit, and
//! later sessions) in system namespaces that no plugin name can reach.
//! Writes are buffered; [`Storage::flush`] makes them survive a process kill,
//! and the request path calls it before a write is acknowledged.

mod capture;
mod sled_store;

use std::sync::Arc;
use std::time::Duration;

pub use capture::MAX_CAPTURE_BYTES;

pub use sled_store::SledStorage;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest single value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Most entries one scan page returns, whatever the caller asks.
pub const MAX_SCAN_PAGE: usize = 1000;

/// Which namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamespaceId {
    /// A plugin's own data, by plugin name.
    Plugin(String),
    /// Host-owned data such as the audit log.
    System(&'static str),
}

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The write would exceed the namespace's byte quota.
    #[error("quota exceeded: {used} of {limit} bytes used, the write needs {requested} more")]
    QuotaExceeded {
        /// Bytes held now.
        used: u64,
        /// The quota.
        limit: u64,
        /// Additional bytes the write needed.
        requested: u64,
    },
    /// The key is empty or too long.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The value is over [`MAX_VALUE_BYTES`].
    #[error("value larger than {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge,
    /// The backend failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// A namespace cannot be removed while a backup reads the data.
    #[error("a backup is reading the data")]
    SnapshotRunning,
    /// A record could not be converted between the data versions of a
    /// migration window (what the plugin's conversion said).
    #[error("migration conversion failed: {0}")]
    Conversion(String),
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The expected value was there and has been replaced.
    Swapped,
    /// Something else was there; this is it.
    Conflict(Option<Vec<u8>>),
}

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store a value.
    Set(String, Vec<u8>),
    /// Remove a key.
    Delete(String),
}

/// The result of a versioned write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionedWrite {
    /// Written; the key's new version (for a delete, the deletion's).
    Written(u64),
    /// The key's version was another; this one (`None`: absent).
    Conflict(Option<u64>),
}

/// A versioned write: `value` (`None` deletes) under `key` when its
/// version is `expected` (`None`: absent), with `also` in the same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedOp {
    /// The versioned key.
    pub key: String,
    /// The version the writer read.
    pub expected: Option<u64>,
    /// The new value.
    pub value: Option<Vec<u8>>,
    /// Plain writes that commit with it (never to `key`).
    pub also: Vec<Op>,
}

/// Bytes of the version header in front of a versioned value.
const VERSION_HEADER: usize = 8;

/// A versioned key's stored bytes: the version, then the value.
pub(crate) fn encode_versioned(version: u64, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(VERSION_HEADER + value.len());
    stored.extend_from_slice(&version.to_be_bytes());
    stored.extend_from_slice(value);
    stored
}

/// A versioned key's version and value, from its stored bytes.
pub(crate) fn decode_versioned(key: &str, stored: &[u8]) -> Result<(u64, Vec<u8>), StorageError> {
    let (header, value) = stored.split_at_checked(VERSION_HEADER).ok_or_else(|| {
        StorageError::InvalidKey(format!("`{key}` holds a plain value, not one written with a version"))
    })?;
    Ok((u64::from_be_bytes(header.try_into().expect("eight bytes")), value.to_vec()))
}

/// One side of a write to two namespaces: `ops`, when `guard`'s key holds
/// the value given (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSide {
    /// The namespace, which must be open.
    pub namespace: NamespaceId,
    /// A key and the value it must hold for the write to commit.
    pub guard: Option<(String, Option<Vec<u8>>)>,
    /// The writes.
    pub ops: Vec<Op>,
}

/// One page of a prefix scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Entries in key order.
    pub entries: Vec<(String, Vec<u8>)>,
    /// The key to continue after, when there is more.
    pub next: Option<String>,
}

/// A database of namespaces.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Opens a namespace, creating it if needed. `quota` bounds the bytes
    /// (keys plus values) it may hold (`None`: unbounded, for system use)
    /// when this opens it; an open one keeps its quota until
    /// [`Namespace::set_quota`], so that loading a version that is then
    /// refused changes nothing of the serving one.
    fn namespace(&self, id: NamespaceId, quota: Option<u64>) -> Result<Arc<dyn Namespace>, StorageError>;

    /// Makes every write made so far durable against a process kill.
    async fn flush(&self) -> Result<(), StorageError>;

    /// Names (`plugin/{name}`, `system/{name}`) of the namespaces that hold
    /// at least one key, without opening them.
    fn namespaces_holding_data(&self) -> Result<Vec<String>, StorageError>;

    /// A version for a versioned write, above every one issued before.
    fn next_version(&self) -> Result<u64, StorageError>;

    /// Removes a namespace and everything in it; false when there was none.
    /// The caller makes sure nothing uses it any more. Refused
    /// ([`StorageError::SnapshotRunning`]) while a snapshot is read.
    fn remove_namespace(&self, id: NamespaceId) -> Result<bool, StorageError>;

    /// Applies both sides' ops in one transaction, each side within its
    /// namespace's quota, when both guards hold; otherwise nothing, and the
    /// first failing guard's current value is returned. What keeps a
    /// plugin's data at two data versions in step during a migration.
    fn write_pair(&self, first: PairSide, second: PairSide) -> Result<Swap, StorageError>;

    /// Every namespace as of now, read while writers go on; writers pause
    /// only while the cut is taken. One at a time.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError>;
}

/// Takes each entry of a snapshot's namespace in turn; an error stops the read.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + 'a;

/// A consistent read of every namespace as of one instant (the cut).
pub trait Snapshot: Send + Sync {
    /// Names of the namespaces that existed at the cut (`plugin/{name}`,
    /// `system/{name}`), sorted.
    fn namespaces(&self) -> &[String];
    /// A number at or above every version issued before the cut.
    fn versions_issued(&self) -> u64;
    /// How long writers were held back while the cut was taken.
    fn write_pause(&self) -> Duration;
    /// Hands `visit` every entry the namespace held at the cut, in key
    /// order. Blocking: call it off the async threads.
    fn read(&self, namespace: &str, visit: &mut Visit<'_>) -> std::io::Result<()>;
}

/// One namespace: keys name nothing outside it.
#[async_trait::async_trait]
pub trait Namespace: Send + Sync {
    /// The value under a key.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores a value.
    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;
    /// Removes a key; true when it was there.
    async fn delete(&self, key: &str) -> Result<bool, StorageError>;
    /// Replaces `expected` (`None`: absent) by `new` (`None`: delete).
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<Swap, StorageError>;
    /// Keys starting with `prefix`, strictly after `start_after`, at most
    /// `limit` (capped at [`MAX_SCAN_PAGE`]).
    async fn scan_prefix(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Page, StorageError>;
    /// Applies all ops or none.
    async fn batch(&self, ops: Vec<Op>) -> Result<(), StorageError>;
    /// The value and version of a key written by [`Namespace::write_versioned`].
    async fn get_versioned(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError>;
    /// Applies `op` when the key's version is the expected one. Versions
    /// come from one database-wide counter: they only grow, and a key
    /// deleted and created again never takes an old version. `committed`
    /// runs with the new version before any other versioned write to this
    /// namespace can commit, so its effects (such as publishing the change)
    /// happen in commit order.
    async fn write_versioned(
        &self,
        op: VersionedOp,
        committed: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<VersionedWrite, StorageError>;
    /// Bytes held now.
    fn used_bytes(&self) -> u64;
    /// Bounds the bytes it may hold from now on (`None`: unbounded).
    fn set_quota(&self, quota: Option<u64>);
}

/// Refuses keys no backend should see.
fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StorageError::InvalidKey(format!("the key is {} bytes; at most {MAX_KEY_BYTES}", key.len())));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), StorageError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StorageError::ValueTooLarge);
    }
    Ok(())
}
