//! The embedded sled backend: one sled tree per namespace.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{
    MAX_SCAN_PAGE, Namespace, NamespaceId, Op, Page, Storage, StorageError, Swap, VersionedOp, VersionedWrite,
    check_key, check_value, decode_versioned, encode_versioned,
};

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
}

impl SledStorage {
    /// Opens (creating) the database in `dir`. sled takes an exclusive lock:
    /// a second process on the same directory fails here, clearly.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir.join("db"))
            .open()
            .map_err(|e| StorageError::Backend(format!("cannot open {}: {e}", dir.display())))?;
        Ok(Self {
            db,
            open: Mutex::new(HashMap::new()),
            requested: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
        })
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
            *ns.quota.lock().expect("quota lock poisoned") = quota;
            return Ok(ns.clone());
        }
        let tree = self.db.open_tree(tree_name(&id)).map_err(backend)?;
        let mut used = 0u64;
        for entry in tree.iter() {
            let (k, v) = entry.map_err(backend)?;
            used += (k.len() + v.len()) as u64;
        }
        let ns =
            Arc::new(SledNamespace { db: self.db.clone(), tree, quota: Mutex::new(quota), used: Mutex::new(used) });
        open.insert(id, ns.clone());
        Ok(ns)
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
    /// Byte quota; replaced when a plugin is reconfigured.
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

    fn old_size(&self, key: &str) -> Result<u64, StorageError> {
        Ok(self.tree.get(key).map_err(backend)?.map_or(0, |v| size(key, &v)))
    }

    /// Applies `ops` as one sled batch, all or none, within the quota; the
    /// caller holds the usage lock.
    fn apply(&self, used: &mut u64, ops: &[Op]) -> Result<(), StorageError> {
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
        self.admit(*used, before, after)?;
        self.tree.apply_batch(batch).map_err(backend)?;
        *used = *used - before + after;
        Ok(())
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
        let version = self.db.generate_id().map_err(backend)? + 1;
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
