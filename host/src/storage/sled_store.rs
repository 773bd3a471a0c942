//! The embedded sled backend: one sled tree per namespace.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use sled::Transactional as _;

use super::capture::{Capture, SledSnapshot};
use super::{
    MAX_SCAN_PAGE, Namespace, NamespaceId, Op, Page, PairSide, Snapshot, Storage, StorageError, Swap, VersionedOp,
    VersionedWrite, check_key, check_value, decode_versioned, encode_versioned,
};

/// Key, in sled's default tree (which no namespace maps to), of the number
/// added to sled's id counter to make a version: raised by a restore, so
/// that versions issued before it are never issued again.
const VERSION_BASE_KEY: &[u8] = b"plinth.version-base";

/// A sled database holding every namespace.
pub struct SledStorage {
    /// The database; cheap to clone, shared by all trees.
    db: sled::Db,
    /// Open namespaces, so that one tree has one usage counter.
    open: Mutex<HashMap<NamespaceId, Arc<SledNamespace>>>,
    /// Flush requests so far; a flush covers every request counted before
    /// it started.
    requested: AtomicU64,
    /// One flush at a time (sled 0.34 can hang when flushes overlap), holding
    /// the request count the last completed flush covered: concurrent
    /// callers share one fsync (group commit).
    flushed: tokio::sync::Mutex<u64>,
    /// Added to sled's id counter to make a version.
    version_base: u64,
    /// The running snapshot's pre-images, shared with every namespace.
    capture: Arc<ArcSwapOption<Capture>>,
}

impl SledStorage {
    /// Opens (creating) the database in `dir`. sled takes an exclusive lock:
    /// a second process on the same directory fails here, clearly.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            .open()
            .map_err(|e| StorageError::Backend(format!("cannot open {}: {e}", dir.display())))?;
        let version_base = match db.get(VERSION_BASE_KEY).map_err(backend)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StorageError::Backend("the version base is not 8 bytes".into()))?,
            ),
            None => 0,
        };
        Ok(Self {
            db,
            open: Mutex::new(HashMap::new()),
            requested: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            version_base,
            capture: Arc::new(ArcSwapOption::empty()),
        })
    }

    /// The highest version issued so far, or above it.
    pub fn versions_issued(&self) -> Result<u64, StorageError> {
        Ok(self.version_base + self.db.generate_id().map_err(backend)? + 1)
    }

    /// Makes every version issued from now on greater than `issued`, for a
    /// database restored from a backup: neither the backup's versions nor
    /// those of the database it replaces may be issued again. Takes effect
    /// at the next open.
    pub fn raise_versions_above(&self, issued: u64) -> Result<(), StorageError> {
        let base = issued.max(self.versions_issued()?);
        self.db.insert(VERSION_BASE_KEY, &base.to_be_bytes()).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    /// Writes entries into a namespace's tree as they are, in one batch,
    /// without accounting, for a restore into a database nothing else uses.
    pub fn import(
        &self,
        tree: &str,
        entries: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(key, value);
        }
        self.db.open_tree(tree).map_err(backend)?.apply_batch(batch).map_err(backend)
    }

    /// Names of the trees that hold namespaces (sled's default tree holds
    /// only the version base).
    fn namespace_trees(&self) -> Vec<String> {
        let mut trees: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|name| String::from_utf8(name.to_vec()).ok())
            .filter(|name| name.starts_with("plugin/") || name.starts_with("system/"))
            .collect();
        trees.sort();
        trees
    }
}

fn tree_name(id: &NamespaceId) -> String {
    match id {
        NamespaceId::Plugin(name) => format!("plugin/{name}"),
        NamespaceId::System(name) => format!("system/{name}"),
    }
}

fn backend(e: sled::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

#[async_trait::async_trait]
impl Storage for SledStorage {
    fn namespace(&self, id: NamespaceId, quota: Option<u64>) -> Result<Arc<dyn Namespace>, StorageError> {
        let mut open = self.open.lock().expect("namespace map lock poisoned");
        if let Some(ns) = open.get(&id) {
            return Ok(ns.clone());
        }
        let name = tree_name(&id);
        let tree = self.db.open_tree(&name).map_err(backend)?;
        let mut used = 0u64;
        for entry in tree.iter() {
            let (k, v) = entry.map_err(backend)?;
            used += (k.len() + v.len()) as u64;
        }
        let ns = Arc::new(SledNamespace {
            db: self.db.clone(),
            tree,
            name,
            version_base: self.version_base,
            capture: self.capture.clone(),
            quota: Mutex::new(quota),
            used: Mutex::new(used),
        });
        open.insert(id, ns.clone());
        Ok(ns)
    }

    fn next_version(&self) -> Result<u64, StorageError> {
        self.versions_issued()
    }

    fn namespaces_holding_data(&self) -> Result<Vec<String>, StorageError> {
        let mut holding = Vec::new();
        for name in self.namespace_trees() {
            if !self.db.open_tree(name.as_bytes()).map_err(backend)?.is_empty() {
                holding.push(name);
            }
        }
        Ok(holding)
    }

    fn remove_namespace(&self, id: NamespaceId) -> Result<bool, StorageError> {
        // Under the map's lock, which a snapshot's cut holds too: a snapshot
        // either started after the tree went or finds it whole.
        let mut open = self.open.lock().expect("namespace map lock poisoned");
        if self.capture.load().is_some() {
            return Err(StorageError::SnapshotRunning);
        }
        let name = tree_name(&id);
        open.remove(&id);
        self.db.drop_tree(name.as_bytes()).map_err(backend)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>, StorageError> {
        let started = Instant::now();
        // No namespace opens and no write commits while the capture starts:
        // every write holds its namespace's usage lock from its read of the
        // old value to its commit, and a writer holding two (`write_pair`)
        // takes them in name order, as this does.
        let open = self.open.lock().expect("namespace map lock poisoned");
        let mut namespaces: Vec<_> = open.values().collect();
        namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        let held: Vec<_> = namespaces.iter().map(|ns| ns.used.lock().expect("usage lock poisoned")).collect();
        if self.capture.load().is_some() {
            return Err(StorageError::Backend("a snapshot is already being read".into()));
        }
        let capture = Arc::new(Capture::default());
        self.capture.store(Some(capture.clone()));
        let issued = self.versions_issued();
        drop(held);
        drop(open);
        let pause = started.elapsed();
        let issued = match issued {
            Ok(issued) => issued,
            Err(e) => {
                self.capture.store(None);
                return Err(e);
            }
        };
        Ok(Box::new(SledSnapshot {
            db: self.db.clone(),
            trees: self.namespace_trees(),
            capture,
            slot: self.capture.clone(),
            versions_issued: issued,
            pause,
        }))
    }

    fn write_pair(&self, first: PairSide, second: PairSide) -> Result<Swap, StorageError> {
        let (a, b) = {
            let open = self.open.lock().expect("namespace map lock poisoned");
            let find = |id: &NamespaceId| {
                open.get(id)
                    .cloned()
                    .ok_or_else(|| StorageError::Backend(format!("namespace `{}` is not open", tree_name(id))))
            };
            (find(&first.namespace)?, find(&second.namespace)?)
        };
        if a.name == b.name {
            return Err(StorageError::Backend(format!("a paired write names `{}` twice", a.name)));
        }
        // In name order, as a snapshot takes them.
        let (mut used_a, mut used_b) = if a.name < b.name {
            let used_a = a.used.lock().expect("usage lock poisoned");
            (used_a, b.used.lock().expect("usage lock poisoned"))
        } else {
            let used_b = b.used.lock().expect("usage lock poisoned");
            (a.used.lock().expect("usage lock poisoned"), used_b)
        };
        for (ns, side) in [(&a, &first), (&b, &second)] {
            if let Some((key, expected)) = &side.guard {
                let current = ns.tree.get(key).map_err(backend)?;
                if current.as_deref() != expected.as_deref() {
                    return Ok(Swap::Conflict(current.map(|v| v.to_vec())));
                }
            }
        }
        let (batch_a, sizes_a) = a.plan(*used_a, &first.ops)?;
        let (batch_b, sizes_b) = b.plan(*used_b, &second.ops)?;
        (&a.tree, &b.tree)
            .transaction(|(tx_a, tx_b)| {
                tx_a.apply_batch(&batch_a)?;
                tx_b.apply_batch(&batch_b)?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => backend(e),
                sled::transaction::TransactionError::Abort(()) => StorageError::Backend("transaction aborted".into()),
            })?;
        *used_a = *used_a - sizes_a.0 + sizes_a.1;
        *used_b = *used_b - sizes_b.0 + sizes_b.1;
        Ok(Swap::Swapped)
    }

    async fn flush(&self) -> Result<(), StorageError> {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= mine {
            return Ok(());
        }
        let covers = self.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StorageError::Backend(format!("flush task: {e}")))?
            .map_err(backend)?;
        *flushed = covers;
        Ok(())
    }
}

/// One tree with its byte accounting.
struct SledNamespace {
    /// The database, for its version counter.
    db: sled::Db,
    tree: sled::Tree,
    /// The tree's name, under which a snapshot keeps its pre-images.
    name: String,
    /// Added to sled's id counter to make a version.
    version_base: u64,
    /// The running snapshot, if any: every write first hands it the value
    /// it replaces.
    capture: Arc<ArcSwapOption<Capture>>,
    /// Byte quota; replaced when a reconfigured plugin goes into service.
    quota: Mutex<Option<u64>>,
    /// Bytes held. Writers hold this lock across read-check-write so the
    /// count stays exact and the quota can never be overshot; sled calls are
    /// synchronous and short, so a std mutex is the right tool.
    used: Mutex<u64>,
}

fn size(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl SledNamespace {
    /// Checks that replacing `freed` bytes by `added` fits the quota.
    fn admit(&self, used: u64, freed: u64, added: u64) -> Result<(), StorageError> {
        let quota = *self.quota.lock().expect("quota lock poisoned");
        match quota {
            Some(limit) if added > freed && used - freed + added > limit => {
                Err(StorageError::QuotaExceeded { used, limit, requested: added - freed })
            }
            _ => Ok(()),
        }
    }

    /// Hands a running snapshot the value `key` holds before a write
    /// replaces it, reading it only while one runs; the caller holds the
    /// usage lock.
    fn preserve(&self, key: &str) -> Result<(), StorageError> {
        if let Some(capture) = self.capture.load().as_ref() {
            capture.preserve(&self.name, key.as_bytes(), self.tree.get(key).map_err(backend)?.as_ref());
        }
        Ok(())
    }

    /// The size of what a write replaces, handed to a running snapshot.
    fn old_size(&self, key: &str) -> Result<u64, StorageError> {
        let old = self.tree.get(key).map_err(backend)?;
        if let Some(capture) = self.capture.load().as_ref() {
            capture.preserve(&self.name, key.as_bytes(), old.as_ref());
        }
        Ok(old.map_or(0, |v| size(key, &v)))
    }

    /// Applies `ops` as one sled batch, all or none, within the quota; the
    /// caller holds the usage lock.
    fn apply(&self, used: &mut u64, ops: &[Op]) -> Result<(), StorageError> {
        let (batch, (before, after)) = self.plan(*used, ops)?;
        self.tree.apply_batch(batch).map_err(backend)?;
        *used = *used - before + after;
        Ok(())
    }

    /// `ops` as one sled batch, checked against the quota, with the bytes
    /// of the keys they touch before and after; the caller holds the usage
    /// lock and applies the batch.
    fn plan(&self, used: u64, ops: &[Op]) -> Result<(sled::Batch, (u64, u64)), StorageError> {
        // Sizes as the batch goes, so that two ops on one key count once.
        let mut sizes: HashMap<&str, u64> = HashMap::new();
        let mut batch = sled::Batch::default();
        for op in ops {
            let key = match op {
                Op::Set(key, value) => {
                    check_key(key)?;
                    check_value(value)?;
                    key
                }
                Op::Delete(key) => {
                    check_key(key)?;
                    key
                }
            };
            if !sizes.contains_key(key.as_str()) {
                sizes.insert(key, self.old_size(key)?);
            }
        }
        let before: u64 = sizes.values().sum();
        for op in ops {
            match op {
                Op::Set(key, value) => {
                    sizes.insert(key, size(key, value));
                    batch.insert(key.as_bytes(), value.as_slice());
                }
                Op::Delete(key) => {
                    sizes.insert(key, 0);
                    batch.remove(key.as_bytes());
                }
            }
        }
        let after: u64 = sizes.values().sum();
        self.admit(used, before, after)?;
        Ok((batch, (before, after)))
    }
}

#[async_trait::async_trait]
impl Namespace for SledNamespace {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        Ok(self.tree.get(key).map_err(backend)?.map(|v| v.to_vec()))
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        check_key(key)?;
        check_value(&value)?;
        let mut used = self.used.lock().expect("usage lock poisoned");
        let (freed, added) = (self.old_size(key)?, size(key, &value));
        self.admit(*used, freed, added)?;
        self.tree.insert(key, value).map_err(backend)?;
        *used = *used - freed + added;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        let mut used = self.used.lock().expect("usage lock poisoned");
        self.preserve(key)?;
        let old = self.tree.remove(key).map_err(backend)?;
        if let Some(v) = &old {
            *used -= size(key, v);
        }
        Ok(old.is_some())
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<Swap, StorageError> {
        check_key(key)?;
        if let Some(v) = &new {
            check_value(v)?;
        }
        let mut used = self.used.lock().expect("usage lock poisoned");
        let freed = expected.as_ref().map_or(0, |v| size(key, v));
        let added = new.as_ref().map_or(0, |v| size(key, v));
        self.admit(*used, freed, added)?;
        self.preserve(key)?;
        match self.tree.compare_and_swap(key, expected, new).map_err(backend)? {
            Ok(()) => {
                *used = *used - freed + added;
                Ok(Swap::Swapped)
            }
            Err(conflict) => Ok(Swap::Conflict(conflict.current.map(|v| v.to_vec()))),
        }
    }

    async fn scan_prefix(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Page, StorageError> {
        let limit = limit.clamp(1, MAX_SCAN_PAGE);
        let range = match start_after {
            Some(after) => {
                self.tree.range::<&[u8], _>((std::ops::Bound::Excluded(after.as_bytes()), std::ops::Bound::Unbounded))
            }
            None => self.tree.range::<&[u8], _>(prefix.as_bytes()..),
        };
        let mut page = Page::default();
        for entry in range {
            let (k, v) = entry.map_err(backend)?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            if page.entries.len() == limit {
                page.next = page.entries.last().map(|(k, _)| k.clone());
                break;
            }
            let key = String::from_utf8(k.to_vec()).map_err(|_| StorageError::Backend("non-UTF-8 key".into()))?;
            page.entries.push((key, v.to_vec()));
        }
        Ok(page)
    }

    async fn batch(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let mut used = self.used.lock().expect("usage lock poisoned");
        self.apply(&mut used, &ops)
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        check_key(key)?;
        self.tree.get(key).map_err(backend)?.map(|stored| decode_versioned(key, &stored)).transpose()
    }

    async fn write_versioned(
        &self,
        op: VersionedOp,
        committed: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<VersionedWrite, StorageError> {
        let VersionedOp { key, expected, value, also } = op;
        check_key(&key)?;
        if also.iter().any(|op| matches!(op, Op::Set(k, _) | Op::Delete(k) if *k == key)) {
            return Err(StorageError::InvalidKey(format!(
                "`{key}` is the versioned key; it cannot also be in the batch"
            )));
        }
        let mut used = self.used.lock().expect("usage lock poisoned");
        let current = match self.tree.get(&key).map_err(backend)? {
            Some(stored) => Some(decode_versioned(&key, &stored)?.0),
            None => None,
        };
        if current != expected {
            return Ok(VersionedWrite::Conflict(current));
        }
        let version = self.version_base + self.db.generate_id().map_err(backend)? + 1;
        let mut ops = Vec::with_capacity(also.len() + 1);
        ops.push(match &value {
            Some(value) => Op::Set(key.clone(), encode_versioned(version, value)),
            None => Op::Delete(key.clone()),
        });
        ops.extend(also);
        self.apply(&mut used, &ops)?;
        committed(version);
        Ok(VersionedWrite::Written(version))
    }

    fn used_bytes(&self) -> u64 {
        *self.used.lock().expect("usage lock poisoned")
    }

    fn set_quota(&self, quota: Option<u64>) {
        *self.quota.lock().expect("quota lock poisoned") = quota;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, SledStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        (dir, storage)
    }

    #[tokio::test]
    async fn namespaces_are_isolated() {
        let (_dir, s) = storage();
        let a = s.namespace(NamespaceId::Plugin("a".into()), None).unwrap();
        let b = s.namespace(NamespaceId::Plugin("b".into()), None).unwrap();
        a.set("k", b"from a".to_vec()).await.unwrap();
        b.set("k", b"from b".to_vec()).await.unwrap();
        assert_eq!(a.get("k").await.unwrap().unwrap(), b"from a");
        assert_eq!(b.get("k").await.unwrap().unwrap(), b"from b");
    }

    #[tokio::test]
    async fn quota_counts_keys_and_values_and_overwrites_once() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("q".into()), Some(10)).unwrap();
        ns.set("ab", b"12345678".to_vec()).await.unwrap();
        assert_eq!(ns.used_bytes(), 10);
        // Same size again fits: an overwrite frees what it replaces.
        ns.set("ab", b"87654321".to_vec()).await.unwrap();
        let err = ns.set("c", b"x".to_vec()).await.unwrap_err();
        assert_eq!(err, StorageError::QuotaExceeded { used: 10, limit: 10, requested: 2 });
        assert!(ns.delete("ab").await.unwrap());
        assert_eq!(ns.used_bytes(), 0);
        ns.set("c", b"x".to_vec()).await.unwrap();
    }

    #[tokio::test]
    async fn usage_is_recounted_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStorage::open(dir.path()).unwrap();
            let ns = s.namespace(NamespaceId::Plugin("r".into()), None).unwrap();
            ns.set("key", b"value".to_vec()).await.unwrap();
            s.flush().await.unwrap();
        }
        let s = SledStorage::open(dir.path()).unwrap();
        let ns = s.namespace(NamespaceId::Plugin("r".into()), None).unwrap();
        assert_eq!(ns.used_bytes(), 8);
    }

    #[tokio::test]
    async fn compare_and_swap_reports_the_current_value() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("c".into()), None).unwrap();
        assert_eq!(ns.compare_and_swap("k", None, Some(b"1".to_vec())).await.unwrap(), Swap::Swapped);
        assert_eq!(
            ns.compare_and_swap("k", None, Some(b"2".to_vec())).await.unwrap(),
            Swap::Conflict(Some(b"1".to_vec()))
        );
        assert_eq!(ns.compare_and_swap("k", Some(b"1".to_vec()), None).await.unwrap(), Swap::Swapped);
        assert_eq!(ns.get("k").await.unwrap(), None);
        assert_eq!(ns.used_bytes(), 0);
    }

    #[tokio::test]
    async fn a_paired_write_commits_both_sides_or_neither() {
        let (_dir, s) = storage();
        let (old, new) = (NamespaceId::Plugin("p".into()), NamespaceId::Plugin("p@1".into()));
        let a = s.namespace(old.clone(), None).unwrap();
        let b = s.namespace(new.clone(), Some(20)).unwrap();
        let side = |ns: &NamespaceId, guard: Option<(&str, Option<&[u8]>)>, ops: Vec<Op>| PairSide {
            namespace: ns.clone(),
            guard: guard.map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec))),
            ops,
        };
        let set = |k: &str, v: &[u8]| Op::Set(k.to_owned(), v.to_vec());
        let both = s.write_pair(side(&old, None, vec![set("k", b"v0")]), side(&new, None, vec![set("k", b"v1")]));
        assert_eq!(both.unwrap(), Swap::Swapped);
        assert_eq!(
            (a.get("k").await.unwrap(), b.get("k").await.unwrap()),
            (Some(b"v0".to_vec()), Some(b"v1".to_vec()))
        );
        assert_eq!((a.used_bytes(), b.used_bytes()), (3, 3));
        // A guard that does not hold on either side writes nothing.
        let stale = s.write_pair(
            side(&old, Some(("k", Some(b"other"))), vec![set("k", b"x")]),
            side(&new, None, vec![set("k", b"x")]),
        );
        assert_eq!(stale.unwrap(), Swap::Conflict(Some(b"v0".to_vec())));
        let present = s.write_pair(side(&old, None, vec![set("j", b"x")]), side(&new, Some(("k", None)), vec![]));
        assert_eq!(present.unwrap(), Swap::Conflict(Some(b"v1".to_vec())));
        assert_eq!(a.get("j").await.unwrap(), None);
        // Past one side's quota: neither side changes.
        let big = s.write_pair(side(&old, None, vec![set("m", b"small")]), side(&new, None, vec![set("m", &[7; 30])]));
        assert!(matches!(big, Err(StorageError::QuotaExceeded { .. })), "{big:?}");
        assert_eq!((a.get("m").await.unwrap(), b.get("m").await.unwrap()), (None, None));
        assert_eq!((a.used_bytes(), b.used_bytes()), (3, 3));
        let gone = s.write_pair(
            side(&old, Some(("k", Some(b"v0"))), vec![Op::Delete("k".into())]),
            side(&new, None, vec![Op::Delete("k".into())]),
        );
        assert_eq!(gone.unwrap(), Swap::Swapped);
        assert_eq!((a.used_bytes(), b.used_bytes()), (0, 0));
        assert!(s.write_pair(side(&old, None, vec![]), side(&old, None, vec![])).is_err());
    }

    #[tokio::test]
    async fn a_namespace_is_not_removed_while_a_snapshot_reads_it() {
        let (_dir, s) = storage();
        let id = NamespaceId::Plugin("p@1".into());
        s.namespace(id.clone(), None).unwrap().set("k", b"v".to_vec()).await.unwrap();
        let snapshot = s.snapshot().unwrap();
        assert_eq!(s.remove_namespace(id.clone()), Err(StorageError::SnapshotRunning));
        let mut seen = Vec::new();
        snapshot
            .read("plugin/p@1", &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(b"k".to_vec(), b"v".to_vec())]);
        drop(snapshot);
        assert_eq!(s.remove_namespace(id), Ok(true));
    }

    #[test]
    fn paired_writes_and_snapshots_take_locks_in_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SledStorage::open(dir.path()).unwrap());
        let ids: Vec<_> = ["z", "a", "m"].iter().map(|n| NamespaceId::Plugin((*n).into())).collect();
        for id in &ids {
            s.namespace(id.clone(), None).unwrap();
        }
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (s, ids) = (s.clone(), ids.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let (x, y) = if (i + w) % 2 == 0 { (&ids[0], &ids[1]) } else { (&ids[1], &ids[0]) };
                        let side = |id: &NamespaceId| PairSide {
                            namespace: id.clone(),
                            guard: None,
                            ops: vec![Op::Set(format!("k{i}"), vec![1])],
                        };
                        s.write_pair(side(x), side(y)).unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            drop(s.snapshot().unwrap());
        }
        for writer in writers {
            writer.join().unwrap();
        }
    }

    #[tokio::test]
    async fn scan_pages_through_a_prefix_only() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("s".into()), None).unwrap();
        for key in ["a/1", "a/2", "a/3", "b/1"] {
            ns.set(key, key.as_bytes().to_vec()).await.unwrap();
        }
        let first = ns.scan_prefix("a/", None, 2).await.unwrap();
        let keys: Vec<_> = first.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((keys, first.next.as_deref()), (vec!["a/1", "a/2"], Some("a/2")));
        let second = ns.scan_prefix("a/", first.next.as_deref(), 2).await.unwrap();
        let keys: Vec<_> = second.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((keys, second.next), (vec!["a/3"], None));
    }

    #[tokio::test]
    async fn batch_is_all_or_nothing_under_quota() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("b".into()), Some(8)).unwrap();
        ns.batch(vec![Op::Set("a".into(), b"123".to_vec()), Op::Set("b".into(), b"123".to_vec())]).await.unwrap();
        assert_eq!(ns.used_bytes(), 8);
        let err = ns.batch(vec![Op::Delete("a".into()), Op::Set("c".into(), b"123456".to_vec())]).await.unwrap_err();
        assert!(matches!(err, StorageError::QuotaExceeded { .. }));
        assert_eq!(ns.get("a").await.unwrap().unwrap(), b"123");
        ns.batch(vec![Op::Delete("a".into()), Op::Set("c".into(), b"12".to_vec())]).await.unwrap();
        assert_eq!((ns.get("a").await.unwrap(), ns.used_bytes()), (None, 7));
    }

    #[tokio::test]
    async fn versioned_writes_compare_versions_and_commit_in_order() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("v".into()), None).unwrap();
        let seen = Mutex::new(Vec::new());
        let hook = |v: u64| seen.lock().unwrap().push(v);
        let create = VersionedOp { key: "doc".into(), expected: None, value: Some(b"one".to_vec()), also: vec![] };
        let VersionedWrite::Written(v1) = ns.write_versioned(create.clone(), &hook).await.unwrap() else {
            panic!("create conflicted")
        };
        assert_eq!(ns.write_versioned(create, &hook).await.unwrap(), VersionedWrite::Conflict(Some(v1)));
        let replace = VersionedOp {
            key: "doc".into(),
            expected: Some(v1),
            value: Some(b"two".to_vec()),
            also: vec![Op::Set("log/1".into(), b"x".to_vec())],
        };
        let VersionedWrite::Written(v2) = ns.write_versioned(replace.clone(), &hook).await.unwrap() else {
            panic!("replace conflicted")
        };
        assert!(v2 > v1);
        assert_eq!(ns.get_versioned("doc").await.unwrap(), Some((v2, b"two".to_vec())));
        assert_eq!(ns.get("log/1").await.unwrap().as_deref(), Some(&b"x"[..]));
        // The stale writer loses and nothing of its batch lands.
        let stale = VersionedOp { also: vec![Op::Set("log/2".into(), b"y".to_vec())], ..replace };
        assert_eq!(ns.write_versioned(stale, &hook).await.unwrap(), VersionedWrite::Conflict(Some(v2)));
        assert_eq!(ns.get("log/2").await.unwrap(), None);
        let delete = VersionedOp { key: "doc".into(), expected: Some(v2), value: None, also: vec![] };
        let VersionedWrite::Written(v3) = ns.write_versioned(delete, &hook).await.unwrap() else {
            panic!("delete conflicted")
        };
        let again = VersionedOp { key: "doc".into(), expected: None, value: Some(b"new".to_vec()), also: vec![] };
        let VersionedWrite::Written(v4) = ns.write_versioned(again, &hook).await.unwrap() else {
            panic!("re-create conflicted")
        };
        assert!(v4 > v3 && v3 > v2, "versions are never reused");
        assert_eq!(*seen.lock().unwrap(), vec![v1, v2, v3, v4]);
        assert_eq!(ns.used_bytes(), (3 + 8 + 3 + "log/1".len() + 1) as u64);
        let clash =
            VersionedOp { key: "doc".into(), expected: Some(v4), value: None, also: vec![Op::Delete("doc".into())] };
        assert!(matches!(ns.write_versioned(clash, &hook).await, Err(StorageError::InvalidKey(_))));
        ns.set("plain", b"1".to_vec()).await.unwrap();
        assert!(matches!(ns.get_versioned("plain").await, Err(StorageError::InvalidKey(_))));
    }

    fn read_all(snapshot: &dyn Snapshot, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut entries = Vec::new();
        snapshot
            .read(tree, &mut |k, v| {
                entries.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        entries
    }

    #[tokio::test]
    async fn a_snapshot_reads_the_cut_whatever_is_written_after() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("p".into()), None).unwrap();
        for key in ["a", "b", "c", "d", "e", "f"] {
            ns.set(key, key.as_bytes().to_vec()).await.unwrap();
        }
        let doc = VersionedOp { key: "v".into(), expected: None, value: Some(b"1".to_vec()), also: vec![] };
        let VersionedWrite::Written(v1) = ns.write_versioned(doc, &|_| {}).await.unwrap() else { panic!() };
        let at_cut = {
            let snapshot = s.snapshot().unwrap();
            read_all(snapshot.as_ref(), "plugin/p")
        };
        let snapshot = s.snapshot().unwrap();
        assert!(s.snapshot().is_err(), "one snapshot at a time");
        assert!(snapshot.versions_issued() >= v1);
        ns.set("a", b"changed".to_vec()).await.unwrap();
        ns.set("a", b"changed twice".to_vec()).await.unwrap();
        assert!(ns.delete("b").await.unwrap());
        ns.set("bb", b"new".to_vec()).await.unwrap();
        ns.compare_and_swap("c", Some(b"c".to_vec()), None).await.unwrap();
        ns.compare_and_swap("d", Some(b"wrong".to_vec()), Some(b"x".to_vec())).await.unwrap();
        ns.batch(vec![Op::Delete("e".into()), Op::Set("zz".into(), b"z".to_vec()), Op::Delete("zz".into())])
            .await
            .unwrap();
        ns.delete("f").await.unwrap();
        let doc = VersionedOp { key: "v".into(), expected: Some(v1), value: Some(b"2".to_vec()), also: vec![] };
        ns.write_versioned(doc, &|_| {}).await.unwrap();
        let later = s.namespace(NamespaceId::Plugin("later".into()), None).unwrap();
        later.set("k", b"v".to_vec()).await.unwrap();
        assert_eq!(read_all(snapshot.as_ref(), "plugin/p"), at_cut);
        assert_eq!(snapshot.namespaces(), ["plugin/p"], "a namespace made after the cut is not in it");
        drop(snapshot);
        let now = s.snapshot().unwrap();
        let keys: Vec<_> = read_all(now.as_ref(), "plugin/p").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"a".to_vec(), b"bb".to_vec(), b"d".to_vec(), b"v".to_vec()]);
    }

    #[test]
    fn a_snapshot_taken_under_concurrent_writes_is_one_instant() {
        // Each writer owns its keys and moves units between them in batches
        // (deleting emptied keys, creating new ones), keeping its total at
        // 1,000, then counts the move in a second namespace: at any instant
        // the first namespace's count is the second's or one more. A read
        // that mixed two instants breaks one or the other.
        let (_dir, s) = storage();
        let units = s.namespace(NamespaceId::Plugin("units".into()), None).unwrap();
        let moves = s.namespace(NamespaceId::Plugin("moves".into()), None).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (units, moves, stop) = (units.clone(), moves.clone(), stop.clone());
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                    let mut held: std::collections::BTreeMap<u64, u64> = [(0, 1000)].into();
                    let key = |k: u64| format!("w{w}/{k:03}");
                    runtime.block_on(units.set(&key(0), 1000u64.to_be_bytes().to_vec())).unwrap();
                    let (mut n, mut count) = (w + 1, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let from = *held.keys().nth((n >> 33) as usize % held.len()).unwrap();
                        let to = (n >> 13) % 50;
                        if from == to {
                            continue;
                        }
                        let have = held[&from];
                        let there = held.get(&to).copied().unwrap_or(0);
                        let mut ops = vec![Op::Set(key(to), (there + 1).to_be_bytes().to_vec())];
                        if have == 1 {
                            held.remove(&from);
                            ops.push(Op::Delete(key(from)));
                        } else {
                            held.insert(from, have - 1);
                            ops.push(Op::Set(key(from), (have - 1).to_be_bytes().to_vec()));
                        }
                        held.insert(to, there + 1);
                        count += 1;
                        let count_key = format!("count/{w}");
                        runtime.block_on(async {
                            units.batch(ops).await.unwrap();
                            units.set(&count_key, count.to_be_bytes().to_vec()).await.unwrap();
                            moves.set(&count_key, count.to_be_bytes().to_vec()).await.unwrap();
                        });
                    }
                })
            })
            .collect();
        let number = |v: &[u8]| u64::from_be_bytes(v.try_into().unwrap());
        let mut seen_moves = 0;
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let snapshot = s.snapshot().unwrap();
            // Let the writers run on while the snapshot is read.
            std::thread::sleep(std::time::Duration::from_millis(5));
            let units = read_all(snapshot.as_ref(), "plugin/units");
            let moves: HashMap<Vec<u8>, u64> =
                read_all(snapshot.as_ref(), "plugin/moves").into_iter().map(|(k, v)| (k, number(&v))).collect();
            for w in 0..2 {
                let prefix = format!("w{w}/");
                let total: u64 =
                    units.iter().filter(|(k, _)| k.starts_with(prefix.as_bytes())).map(|(_, v)| number(v)).sum();
                assert!(total == 1000 || total == 0, "writer {w}'s units at the cut: {total}");
                let count_key = format!("count/{w}").into_bytes();
                let counted = units.iter().find(|(k, _)| *k == count_key).map_or(0, |(_, v)| number(v));
                let moved = moves.get(&count_key).copied().unwrap_or(0);
                assert!(counted == moved || counted == moved + 1, "writer {w}: {counted} moves, {moved} counted");
                seen_moves += moved;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        assert!(seen_moves > 0, "the writers ran during the snapshots");
    }

    #[tokio::test]
    async fn bad_keys_and_values_are_refused() {
        let (_dir, s) = storage();
        let ns = s.namespace(NamespaceId::Plugin("k".into()), None).unwrap();
        assert!(matches!(ns.set("", vec![]).await, Err(StorageError::InvalidKey(_))));
        assert!(matches!(
            ns.set(&"x".repeat(super::super::MAX_KEY_BYTES + 1), vec![]).await,
            Err(StorageError::InvalidKey(_))
        ));
        assert_eq!(ns.set("v", vec![0; super::super::MAX_VALUE_BYTES + 1]).await, Err(StorageError::ValueTooLarge));
    }
}
