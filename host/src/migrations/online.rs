//! Migrating while serving: a step's window, in which a plugin's data is
//! kept at two data versions at once, so that its stable version and a
//! canary at the next data version serve side by side (expand/contract).
//!
//! Every write, by either version, goes to both namespaces in one
//! transaction, converted for the other version ([`Storage::write_pair`]).
//! A background backfill copies the records no one wrote since the window
//! opened, each by a guarded insert (the source record is what was read,
//! the target has none), page by page, its cursor and lease in the ledger:
//! it resumes where a killed server left it and cannot overwrite a newer
//! write. Until it ends, the newer version reads a record it lacks from
//! the older namespace, converted. The older namespace is complete
//! throughout, so a rollback loses nothing: `abort` drops the newer one;
//! `complete` drops the older one once nothing serves it.
//!
//! Online steps keep keys: a step that re-keys is applied with the server
//! stopped. A versioned step's records keep their versions in both
//! namespaces. While a window is open both versions publish to a key's
//! change feed, each in its own format: a follower of a versioned family
//! may see changes in either version's format.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::run::{PluginMigrations, Workbench, now_rfc3339};
use super::{Applied, DataState, Ledger, namespace_at};
use crate::audit::Outcome;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::migrating::{Converter, Direction, Entry};
use crate::storage::{
    Namespace, NamespaceId, Op, Page, PairSide, Storage, StorageError, Swap, VersionedOp, VersionedWrite,
    decode_versioned, encode_versioned,
};

/// Records the backfill converts between two ledger updates.
const BACKFILL_PAGE: usize = 256;
/// A lease not renewed for this long may be taken over.
const LEASE_SECS: u64 = 30;
/// Tries of a guarded write before giving up on a record that keeps changing.
const GUARDED_TRIES: usize = 8;

/// This process, as a lease holder: a lease held by another process is
/// stale at once (sled lets one process open the data).
static BOOT: LazyLock<String> = LazyLock::new(|| format!("{:016x}", rand::random::<u64>()));

/// A step's window, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The data version served before the step, whose namespace stays complete.
    pub from: u32,
    /// The step's version.
    pub to: u32,
    /// The step's name, file and checksums.
    pub name: String,
    /// Its file.
    pub file: String,
    /// Its canonical checksum.
    pub canonical: String,
    /// Its semantic checksum.
    pub semantic: String,
    /// Its key families.
    pub families: Vec<String>,
    /// They are written with versions (each record keeps its version).
    #[serde(default)]
    pub versioned: bool,
    /// The component whose conversions keep the two in step, and its digest.
    pub component: PathBuf,
    /// SHA-256 of the component.
    pub digest: String,
    /// The plugin's kv quota, which each of the two namespaces is held to.
    pub quota: u64,
    /// The plugin's memory cap and deadline, for the conversions.
    pub memory: u64,
    /// Milliseconds.
    pub timeout_ms: u64,
    /// The backup taken as it opened.
    pub backup: String,
    /// The rehearsal receipt it opened with, or why it opened without one.
    pub receipt: Option<String>,
    /// Why.
    pub override_reason: Option<String>,
    /// Who opened it, and when (RFC 3339).
    pub by: String,
    /// When.
    pub at: String,
    /// Records the older namespace held as the window opened.
    pub total: u64,
    /// Records the backfill has been through.
    pub copied: u64,
    /// The last key it went through.
    pub cursor: Option<String>,
    /// It went through every record.
    pub done: bool,
    /// The record it halted at, and why.
    pub failure: Option<String>,
    /// Who runs the backfill, and until when (Unix seconds) unless renewed.
    pub lease: Option<(String, u64)>,
}

impl Window {
    /// The direction a write by version `version` is converted in.
    fn direction_from(&self, version: u32) -> Direction {
        if version == self.from { Direction::Up } else { Direction::Down }
    }
}

fn window_key(plugin: &str) -> String {
    format!("window/{plugin}")
}

impl Ledger {
    /// A plugin's open window, if any.
    pub async fn window(&self, plugin: &str) -> Result<Option<Window>, StorageError> {
        Ok(self.window_bytes(plugin).await?.map(|(window, _)| window))
    }

    async fn window_bytes(&self, plugin: &str) -> Result<Option<(Window, Vec<u8>)>, StorageError> {
        match self.ns.get(&window_key(plugin)).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map(|w| Some((w, bytes))).map_err(|e| {
                StorageError::Backend(format!("migration ledger entry `{}` is unreadable: {e}", window_key(plugin)))
            }),
            None => Ok(None),
        }
    }

    /// Every open window, by plugin.
    pub async fn windows(&self) -> Result<Vec<(String, Window)>, StorageError> {
        let page = self.ns.scan_prefix("window/", None, crate::storage::MAX_SCAN_PAGE).await?;
        page.entries
            .into_iter()
            .map(|(key, bytes)| {
                let plugin = key.trim_start_matches("window/").to_owned();
                serde_json::from_slice(&bytes)
                    .map(|w| (plugin, w))
                    .map_err(|e| StorageError::Backend(format!("migration ledger entry `{key}` is unreadable: {e}")))
            })
            .collect()
    }

    /// Changes a window when it is as `seen`; false when it changed meanwhile.
    async fn update_window(&self, plugin: &str, seen: &[u8], window: &Window) -> Result<bool, StorageError> {
        let new = serde_json::to_vec(window).expect("serializes");
        Ok(self.ns.compare_and_swap(&window_key(plugin), Some(seen.to_vec()), Some(new)).await? == Swap::Swapped)
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An open window, with what converts its records.
pub struct OpenWindow {
    plugin: String,
    window: Window,
    converter: Converter,
    /// The backfill went through every record: the newer namespace is complete.
    done: AtomicBool,
    metrics: Arc<Metrics>,
    /// The backfill task, stopped before the window closes.
    backfill: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held from a versioned write's commit until its change is published,
    /// by either version: subscribers see a key's changes in order.
    publishing: Mutex<()>,
}

impl OpenWindow {
    /// `entry` converted from version `version`'s format to the other's:
    /// keys outside the step's families as they are, those inside by the
    /// plugin's conversion, which must keep the key.
    async fn convert(&self, version: u32, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        if !self.window.families.iter().any(|f| key.starts_with(f.as_str())) {
            return Ok(value);
        }
        let direction = self.window.direction_from(version);
        let failed = |why: String| {
            self.metrics.migration_conversion_failures.get_or_create(&self.labels()).inc();
            StorageError::Conversion(format!(
                "plugin `{}`, step {} ({}), record `{key}` {}: {why}",
                self.plugin,
                self.window.to,
                self.window.name,
                if direction == Direction::Up { "up" } else { "down" }
            ))
        };
        let entry = Entry { key: key.to_owned(), value };
        let out = super::convert_stored(&self.converter, (self.window.to, self.window.versioned), direction, entry)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if out.key != key {
            return Err(failed(format!(
                "it was re-keyed to `{}`; a step that re-keys is applied with the server stopped",
                out.key
            )));
        }
        Ok(out.value)
    }

    fn labels(&self) -> crate::metrics::PluginOnly {
        crate::metrics::PluginOnly { plugin: self.plugin.clone() }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    async fn stop_backfill(&self) {
        let task = self.backfill.lock().expect("backfill lock poisoned").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A plugin's data at one version during a window: its own namespace,
/// kept in step with the other version's.
struct Paired {
    window: Arc<OpenWindow>,
    storage: Arc<dyn Storage>,
    version: u32,
    own: Arc<dyn Namespace>,
    own_id: NamespaceId,
    other: Arc<dyn Namespace>,
    other_id: NamespaceId,
}

impl Paired {
    /// The newer version reads what it lacks from the older namespace
    /// until the backfill is through.
    fn falls_back(&self) -> bool {
        self.version == self.window.window.to && !self.window.is_done()
    }

    fn sides(&self, own: Vec<Op>, other: Vec<Op>, guard: Option<(String, Option<Vec<u8>>)>) -> (PairSide, PairSide) {
        (
            PairSide { namespace: self.own_id.clone(), guard, ops: own },
            PairSide { namespace: self.other_id.clone(), guard: None, ops: other },
        )
    }

    /// The op converted for the other version.
    async fn mirrored(&self, op: &Op) -> Result<Op, StorageError> {
        Ok(match op {
            Op::Set(key, value) => Op::Set(key.clone(), self.window.convert(self.version, key, value.clone()).await?),
            Op::Delete(key) => Op::Delete(key.clone()),
        })
    }

    /// Copies `key` from the older namespace (the newer lacks it), as the
    /// backfill would, so that a guarded write can follow on the newer one.
    async fn materialize(&self, key: &str) -> Result<(), StorageError> {
        copy_record(&self.window, self.storage.as_ref(), &self.other, key).await.map(|_| ())
    }
}

/// Copies one record from the older namespace into the newer one, unless
/// the newer holds it or the older does not. Guarded on both sides: a write
/// in between makes it read again. True when it wrote.
async fn copy_record(
    window: &OpenWindow,
    storage: &dyn Storage,
    older: &Arc<dyn Namespace>,
    key: &str,
) -> Result<bool, StorageError> {
    let (from, to) = (namespace_at(&window.plugin, window.window.from), namespace_at(&window.plugin, window.window.to));
    for _ in 0..GUARDED_TRIES {
        let Some(value) = older.get(key).await? else { return Ok(false) };
        let converted = window.convert(window.window.from, key, value.clone()).await?;
        let insert = PairSide {
            namespace: to.clone(),
            guard: Some((key.to_owned(), None)),
            ops: vec![Op::Set(key.to_owned(), converted)],
        };
        let unchanged =
            PairSide { namespace: from.clone(), guard: Some((key.to_owned(), Some(value))), ops: Vec::new() };
        match storage.write_pair(insert, unchanged)? {
            Swap::Swapped => return Ok(true),
            // The newer holds it now (a write went to both): done.
            Swap::Conflict(_) if storage.namespace(to.clone(), None)?.get(key).await?.is_some() => return Ok(false),
            Swap::Conflict(_) => {}
        }
    }
    Err(StorageError::Backend(format!("record `{key}` kept changing while it was copied")))
}

#[async_trait::async_trait]
impl Namespace for Paired {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(value) = self.own.get(key).await? {
            return Ok(Some(value));
        }
        if !self.falls_back() {
            return Ok(None);
        }
        match self.other.get(key).await? {
            Some(value) => Ok(Some(self.window.convert(self.window.window.from, key, value).await?)),
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.batch(vec![Op::Set(key.to_owned(), value)]).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        // Whether it was there, without converting what goes anyway.
        let existed = self.own.get(key).await?.is_some() || (self.falls_back() && self.other.get(key).await?.is_some());
        self.batch(vec![Op::Delete(key.to_owned())]).await?;
        Ok(existed)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<Swap, StorageError> {
        if self.falls_back() {
            self.materialize(key).await?;
        }
        let op = match new {
            Some(value) => Op::Set(key.to_owned(), value),
            None => Op::Delete(key.to_owned()),
        };
        let mirrored = self.mirrored(&op).await?;
        let (own, other) = self.sides(vec![op], vec![mirrored], Some((key.to_owned(), expected)));
        self.storage.write_pair(own, other)
    }

    async fn scan_prefix(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Page, StorageError> {
        let own = self.own.scan_prefix(prefix, start_after, limit).await?;
        if !self.falls_back() {
            return Ok(own);
        }
        let other = self.other.scan_prefix(prefix, start_after, limit).await?;
        merge_pages(own, other, limit, &self.window).await
    }

    async fn batch(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let mut mirrored = Vec::with_capacity(ops.len());
        for op in &ops {
            mirrored.push(self.mirrored(op).await?);
        }
        let (own, other) = self.sides(ops, mirrored, None);
        self.storage.write_pair(own, other).map(|_| ())
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        match self.get(key).await? {
            Some(stored) => decode_versioned(key, &stored).map(Some),
            None => Ok(None),
        }
    }

    /// Judged on this version's namespace, with a version from the same
    /// database-wide counter; written to both, converted, guarded on the
    /// record this version read (a write in between judges again). Refused
    /// in a step's families unless the step says they are versioned: its
    /// conversions would take the version for part of the value.
    async fn write_versioned(
        &self,
        op: VersionedOp,
        committed: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<VersionedWrite, StorageError> {
        let VersionedOp { key, expected, value, also } = op;
        if also.iter().any(|op| matches!(op, Op::Set(k, _) | Op::Delete(k) if *k == key)) {
            return Err(StorageError::InvalidKey(format!(
                "`{key}` is the versioned key; it cannot also be in the batch"
            )));
        }
        let window = &self.window.window;
        if !window.versioned && window.families.iter().any(|f| key.starts_with(f.as_str())) {
            return Err(StorageError::Backend(format!(
                "plugin `{}` is migrating between data versions {} and {}, and step {}'s file does not say its \
                 records are versioned (`versioned = true`); `{key}` is written with a version",
                self.window.plugin, window.from, window.to, window.to
            )));
        }
        if self.falls_back() {
            self.materialize(&key).await?;
        }
        for _ in 0..GUARDED_TRIES {
            let stored = self.own.get(&key).await?;
            let current = stored.as_deref().map(|s| decode_versioned(&key, s)).transpose()?.map(|(v, _)| v);
            if current != expected {
                return Ok(VersionedWrite::Conflict(current));
            }
            let version = self.storage.next_version()?;
            let mut ops = Vec::with_capacity(also.len() + 1);
            ops.push(match &value {
                Some(value) => Op::Set(key.clone(), encode_versioned(version, value)),
                None => Op::Delete(key.clone()),
            });
            ops.extend(also.iter().cloned());
            let mut mirrored = Vec::with_capacity(ops.len());
            for op in &ops {
                mirrored.push(self.mirrored(op).await?);
            }
            let (own, other) = self.sides(ops, mirrored, Some((key.clone(), stored)));
            let _order = self.window.publishing.lock().expect("publishing lock poisoned");
            if let Swap::Swapped = self.storage.write_pair(own, other)? {
                committed(version);
                return Ok(VersionedWrite::Written(version));
            }
        }
        Err(StorageError::Backend(format!("record `{key}` kept changing while it was written")))
    }

    fn used_bytes(&self) -> u64 {
        self.own.used_bytes()
    }

    fn set_quota(&self, quota: Option<u64>) {
        // One plugin, one quota: its data at each version is held to it.
        self.own.set_quota(quota);
        self.other.set_quota(quota);
    }
}

/// One page of the newer version's view while the backfill runs: its own
/// entries, and the older namespace's it lacks, converted. Only keys both
/// pages cover are certain, so the page ends at the first page's end.
async fn merge_pages(own: Page, other: Page, limit: usize, window: &OpenWindow) -> Result<Page, StorageError> {
    let limit = limit.clamp(1, crate::storage::MAX_SCAN_PAGE);
    let bound = [&own, &other].iter().filter_map(|p| p.next.as_ref()).min().cloned();
    let within = |key: &String| bound.as_ref().is_none_or(|b| key <= b);
    let mut merged: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for (key, value) in other.entries.into_iter().filter(|(k, _)| within(k)) {
        merged.insert(key, Some(value));
    }
    let mut own_entries: HashMap<String, Vec<u8>> = HashMap::new();
    for (key, value) in own.entries.into_iter().filter(|(k, _)| within(k)) {
        merged.insert(key.clone(), None);
        own_entries.insert(key, value);
    }
    let more = merged.len() > limit || bound.is_some();
    let mut page = Page::default();
    for (key, older) in merged.into_iter().take(limit) {
        let value = match older {
            Some(value) => window.convert(window.window.from, &key, value).await?,
            None => own_entries.remove(&key).expect("own entries are kept"),
        };
        page.entries.push((key, value));
    }
    if more {
        page.next = page.entries.last().map(|(k, _)| k.clone());
    }
    Ok(page)
}

/// A plugin's data at one version, as its loaded versions hold it: the
/// namespace, or during a window the pair. Switching waits for the
/// operations in flight, so that none written before the switch is missed
/// by the backfill that follows it.
pub struct DataNamespace {
    current: ArcSwap<Arc<dyn Namespace>>,
    in_flight: tokio::sync::RwLock<()>,
}

impl DataNamespace {
    async fn switch(&self, to: Arc<dyn Namespace>) {
        let _drained = self.in_flight.write().await;
        self.current.store(Arc::new(to));
    }

    /// The namespace for one operation, which holds off a switch until it ends.
    async fn enter(&self) -> (tokio::sync::RwLockReadGuard<'_, ()>, Arc<Arc<dyn Namespace>>) {
        let op = self.in_flight.read().await;
        (op, self.current.load_full())
    }
}

#[async_trait::async_trait]
impl Namespace for DataNamespace {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let (_op, ns) = self.enter().await;
        ns.get(key).await
    }
    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        let (_op, ns) = self.enter().await;
        ns.set(key, value).await
    }
    async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let (_op, ns) = self.enter().await;
        ns.delete(key).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<Swap, StorageError> {
        let (_op, ns) = self.enter().await;
        ns.compare_and_swap(key, expected, new).await
    }
    async fn scan_prefix(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Page, StorageError> {
        let (_op, ns) = self.enter().await;
        ns.scan_prefix(prefix, start_after, limit).await
    }
    async fn batch(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        let (_op, ns) = self.enter().await;
        ns.batch(ops).await
    }
    async fn get_versioned(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let (_op, ns) = self.enter().await;
        ns.get_versioned(key).await
    }
    async fn write_versioned(
        &self,
        op: VersionedOp,
        committed: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<VersionedWrite, StorageError> {
        let (_op, ns) = self.enter().await;
        ns.write_versioned(op, committed).await
    }
    fn used_bytes(&self) -> u64 {
        self.current.load().used_bytes()
    }
    fn set_quota(&self, quota: Option<u64>) {
        self.current.load().set_quota(quota)
    }
}

/// Every plugin's data namespaces and open windows.
pub struct Windows {
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    /// One window opens or closes at a time.
    changing: tokio::sync::Mutex<()>,
    /// Records a backfill copies per second at most (0: unpaced).
    rate: u32,
    handles: Mutex<HashMap<(String, u32), Arc<DataNamespace>>>,
    open: Mutex<HashMap<String, Arc<OpenWindow>>>,
}

impl Windows {
    /// No window open yet: [`Windows::resume`] opens the ledger's.
    pub fn new(storage: Arc<dyn Storage>, metrics: Arc<Metrics>, rate: u32) -> Self {
        Self {
            rate,
            storage,
            metrics,
            changing: tokio::sync::Mutex::new(()),
            handles: Mutex::default(),
            open: Mutex::default(),
        }
    }

    fn window_of(&self, plugin: &str) -> Option<Arc<OpenWindow>> {
        self.open.lock().expect("window map poisoned").get(plugin).cloned()
    }

    /// The versions of `plugin` that may serve: its data's, and in a window
    /// the step's too.
    pub fn servable(&self, plugin: &str, data: DataState) -> Vec<u32> {
        match self.window_of(plugin) {
            Some(open) => vec![open.window.from, open.window.to],
            None => vec![data.version],
        }
    }

    /// What `plugin` at data version `version` reads and writes.
    pub fn handle(&self, plugin: &str, version: u32, quota: u64) -> Result<Arc<dyn Namespace>, StorageError> {
        let mut handles = self.handles.lock().expect("handle map poisoned");
        if let Some(handle) = handles.get(&(plugin.to_owned(), version)) {
            return Ok(handle.clone());
        }
        let ns = match self.window_of(plugin) {
            Some(open) => self.paired(&open, version, Some(quota))?,
            None => self.storage.namespace(namespace_at(plugin, version), Some(quota))?,
        };
        let handle =
            Arc::new(DataNamespace { current: ArcSwap::new(Arc::new(ns)), in_flight: tokio::sync::RwLock::new(()) });
        handles.insert((plugin.to_owned(), version), handle.clone());
        Ok(handle)
    }

    fn paired(
        &self,
        open: &Arc<OpenWindow>,
        version: u32,
        quota: Option<u64>,
    ) -> Result<Arc<dyn Namespace>, StorageError> {
        let other_version = if version == open.window.from { open.window.to } else { open.window.from };
        let (own_id, other_id) = (namespace_at(&open.plugin, version), namespace_at(&open.plugin, other_version));
        Ok(Arc::new(Paired {
            window: open.clone(),
            storage: self.storage.clone(),
            version,
            own: self.storage.namespace(own_id.clone(), quota)?,
            own_id,
            other: self.storage.namespace(other_id.clone(), quota)?,
            other_id,
        }))
    }

    /// Switches a plugin's handles at `versions` to `make`'s.
    async fn switch(
        &self,
        plugin: &str,
        versions: &[u32],
        make: impl Fn(u32) -> Result<Arc<dyn Namespace>, StorageError>,
    ) -> Result<(), StorageError> {
        for version in versions {
            let handle = self.handles.lock().expect("handle map poisoned").get(&(plugin.to_owned(), *version)).cloned();
            if let Some(handle) = handle {
                handle.switch(make(*version)?).await;
            }
        }
        Ok(())
    }

    /// Opens the ledger's windows again after a start, and resumes their
    /// backfills. Before any plugin loads.
    pub async fn resume(self: &Arc<Self>, runtime: &Runtime, ledger: Ledger) -> anyhow::Result<()> {
        remove_dropped(self.storage.as_ref(), &ledger).await?;
        let ledger = Arc::new(ledger);
        for (plugin, window) in ledger.windows().await? {
            let (component, digest) = runtime.compile(&plugin, &window.component).await?;
            anyhow::ensure!(
                digest == window.digest,
                "plugin `{plugin}`: its migration window (data versions {} and {}) was opened with {} at sha256:{}; \
                 the file now holds sha256:{digest}: put it back, or close the window with the server stopped \
                 (`plinth migrate abort {plugin}`, which needs no conversion)",
                window.from,
                window.to,
                window.component.display(),
                window.digest
            );
            let timeout = std::time::Duration::from_millis(window.timeout_ms);
            let converter =
                runtime.converter(&plugin, &component, window.memory as usize, timeout)?.ok_or_else(|| {
                    anyhow::anyhow!("plugin `{plugin}`: {} exports no migrations", window.component.display())
                })?;
            for version in [window.from, window.to] {
                self.storage.namespace(namespace_at(&plugin, version), Some(window.quota))?;
            }
            let open = self.register(plugin, window, converter);
            self.start_backfill(&open, ledger.clone());
        }
        Ok(())
    }

    /// Registers an open window: handles made from now on are paired.
    fn register(&self, plugin: String, window: Window, converter: Converter) -> Arc<OpenWindow> {
        let open = Arc::new(OpenWindow {
            plugin: plugin.clone(),
            done: AtomicBool::new(window.done),
            window,
            converter,
            metrics: self.metrics.clone(),
            backfill: Mutex::new(None),
            publishing: Mutex::new(()),
        });
        self.open.lock().expect("window map poisoned").insert(plugin, open.clone());
        open
    }

    /// Starts the window's backfill unless it is through or halted.
    fn start_backfill(self: &Arc<Self>, open: &Arc<OpenWindow>, ledger: Arc<Ledger>) {
        if !open.window.done && open.window.failure.is_none() {
            let task = tokio::spawn(backfill(self.clone(), open.clone(), ledger));
            *open.backfill.lock().expect("backfill lock poisoned") = Some(task);
        }
    }

    /// Opens a window for `plugin`'s next step while it serves: a fresh
    /// rehearsal receipt (or an override, audited), a backup, then every
    /// write kept in step and the backfill started.
    pub async fn open(
        self: &Arc<Self>,
        bench: &Workbench,
        mut plugin: PluginMigrations,
        limits: (u64, u64),
        override_reason: Option<&str>,
    ) -> anyhow::Result<Window> {
        let _one_at_a_time = self.changing.lock().await;
        plugin.ensure_clean()?;
        let name = plugin.name.clone();
        anyhow::ensure!(self.window_of(&name).is_none(), "plugin `{name}`: a migration window is open already");
        let (from, to) = (plugin.state.version, plugin.version());
        anyhow::ensure!(
            plugin.state.previous.is_none(),
            "plugin `{name}`: the step from version {} is not completed; complete or abort it first",
            plugin.state.previous.unwrap_or_default()
        );
        anyhow::ensure!(
            to == from + 1,
            "plugin `{name}`: its data is at version {from} and the component at {to}; a window takes one step \
             (from {from} to {})",
            from + 1
        );
        let index = plugin
            .files
            .iter()
            .position(|f| f.to == to)
            .ok_or_else(|| anyhow::anyhow!("plugin `{name}` has no file for step {to}"))?;
        let target = format!(
            "plugin/{}",
            match namespace_at(&name, to) {
                NamespaceId::Plugin(n) => n,
                NamespaceId::System(n) => n.to_owned(),
            }
        );
        remove_dropped(self.storage.as_ref(), &bench.ledger).await?;
        anyhow::ensure!(
            !self.storage.namespaces_holding_data()?.contains(&target),
            "namespace `{target}` holds data already (an earlier window's?); back it up and remove it first"
        );
        let receipt = bench.admit(&plugin, from, to, override_reason).await?;
        let backup = bench.backup().await?;
        let converter =
            plugin.converter.take().ok_or_else(|| anyhow::anyhow!("plugin `{name}` exports no migrations"))?;
        let older = self.storage.namespace(namespace_at(&name, from), None)?;
        let total = count(older.as_ref()).await?;
        let file = &plugin.files[index];
        let window = Window {
            from,
            to,
            name: file.name.clone(),
            file: file.path.display().to_string(),
            canonical: file.canonical.clone(),
            semantic: plugin.semantic[index].clone(),
            families: file.families.clone(),
            versioned: file.versioned,
            component: plugin.component.0.clone(),
            digest: plugin.component.1.clone(),
            quota: plugin.quota,
            memory: limits.0,
            timeout_ms: limits.1,
            backup: backup.id.clone(),
            receipt,
            override_reason: override_reason.map(str::to_owned),
            by: bench.actor.to_string(),
            at: now_rfc3339(),
            total,
            copied: 0,
            cursor: None,
            done: false,
            failure: None,
            lease: None,
        };
        // Recorded as migrated from here on: the data is at two versions.
        let state = DataState { version: from, previous: None, baseline: false };
        bench
            .ledger
            .ns
            .batch(vec![
                Op::Set(super::state_key(&name), serde_json::to_vec(&state).expect("serializes")),
                Op::Set(window_key(&name), serde_json::to_vec(&window).expect("serializes")),
            ])
            .await?;
        self.storage.namespace(namespace_at(&name, to), Some(plugin.quota))?;
        let open = self.register(name.clone(), window.clone(), converter);
        // Every write in step before the backfill reads a record.
        self.switch(&name, &[from, to], |v| self.paired(&open, v, None)).await?;
        self.start_backfill(&open, Arc::new(Ledger::open(self.storage.as_ref())?));
        bench
            .record(
                "migration.window_opened",
                &name,
                Outcome::Success,
                format!("{from} ⇄ {to} after backup {}: {total} records to backfill", backup.id),
            )
            .await?;
        Ok(window)
    }

    /// Closes `plugin`'s window keeping the newer version's data
    /// (`keep_newer`) or the older's, and dropping the other's. `serving`
    /// are the data versions its loaded versions serve; none may be the
    /// dropped one. Works from the ledger alone (no conversion is needed),
    /// so a window whose component is gone can still be closed.
    pub async fn close(
        &self,
        bench: &Workbench,
        plugin: &str,
        keep_newer: bool,
        serving: &[u32],
    ) -> anyhow::Result<Window> {
        let _one_at_a_time = self.changing.lock().await;
        let window = bench
            .ledger
            .window(plugin)
            .await?
            .ok_or_else(|| anyhow::anyhow!("plugin `{plugin}` has no migration window open"))?;
        let (keep, dropped) = if keep_newer { (window.to, window.from) } else { (window.from, window.to) };
        if keep_newer {
            anyhow::ensure!(
                window.done && window.failure.is_none(),
                "plugin `{plugin}`: the backfill {}; complete only once it is through (abort goes back)",
                match &window.failure {
                    Some(why) => format!("halted: {why}"),
                    None => format!("is at {} of {} records", window.copied, window.total),
                }
            );
        }
        anyhow::ensure!(
            !serving.contains(&dropped),
            "plugin `{plugin}`: a loaded version still serves data version {dropped}; {}",
            if keep_newer {
                "promote the canary (or roll the stable version out) first"
            } else {
                "roll the canary back first"
            }
        );
        if let Some(open) = self.window_of(plugin) {
            open.stop_backfill().await;
        }
        // Whatever still holds the dropped version's handle (a request in
        // flight, a previous version kept for rollback) writes nothing from
        // here on, and what was in flight ends before the kept one switches.
        let closed: Arc<dyn Namespace> = Arc::new(Closed { plugin: plugin.to_owned(), version: dropped });
        self.switch(plugin, &[dropped], |_| Ok(closed.clone())).await?;
        let kept = self.storage.namespace(namespace_at(plugin, keep), Some(window.quota))?;
        self.switch(plugin, &[keep], |_| Ok(kept.clone())).await?;
        let state = DataState { version: keep, previous: None, baseline: false };
        let added = if keep_newer {
            let digest = |v: u32| async move {
                let ns = self.storage.namespace(namespace_at(plugin, v), None)?;
                super::run::digest(ns.as_ref(), &super::run::tree_name(plugin, v)).await
            };
            let opened = humantime::parse_rfc3339(&window.at).ok();
            let elapsed = opened.and_then(|at| std::time::SystemTime::now().duration_since(at).ok());
            vec![Applied {
                to: window.to,
                name: window.name.clone(),
                file: window.file.clone(),
                canonical: window.canonical.clone(),
                semantic: window.semantic.clone(),
                backup: window.backup.clone(),
                before: digest(window.from).await?,
                after: digest(window.to).await?,
                records: window.copied,
                converted: window.copied,
                duration_ms: elapsed.map_or(0, |d| d.as_millis() as u64),
                by: window.by.clone(),
                at: window.at.clone(),
                receipt: window.receipt.clone(),
                override_reason: window.override_reason.clone(),
            }]
        } else {
            Vec::new()
        };
        bench.ledger.commit_closing(plugin, state, &added, dropped).await?;
        self.open.lock().expect("window map poisoned").remove(plugin);
        self.handles.lock().expect("handle map poisoned").remove(&(plugin.to_owned(), dropped));
        // A backup reading the data meanwhile reads the dropped namespace
        // whole: it is removed once that backup ends.
        loop {
            match self.storage.remove_namespace(namespace_at(plugin, dropped)) {
                Err(StorageError::SnapshotRunning) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                removed => {
                    removed?;
                    break;
                }
            }
        }
        bench.ledger.ns.delete(&dropped_key(plugin)).await?;
        let action = if keep_newer { "migration.completed" } else { "migration.aborted" };
        bench
            .record(action, plugin, Outcome::Success, format!("data at version {keep}; version {dropped} removed"))
            .await?;
        Ok(window)
    }
}

/// A dropped version's data: every call fails, naming why.
struct Closed {
    plugin: String,
    version: u32,
}

impl Closed {
    fn refused<T>(&self) -> Result<T, StorageError> {
        Err(StorageError::Backend(format!(
            "plugin `{}`'s data at version {} was removed when its migration window closed",
            self.plugin, self.version
        )))
    }
}

#[async_trait::async_trait]
impl Namespace for Closed {
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.refused()
    }
    async fn set(&self, _key: &str, _value: Vec<u8>) -> Result<(), StorageError> {
        self.refused()
    }
    async fn delete(&self, _key: &str) -> Result<bool, StorageError> {
        self.refused()
    }
    async fn compare_and_swap(
        &self,
        _key: &str,
        _expected: Option<Vec<u8>>,
        _new: Option<Vec<u8>>,
    ) -> Result<Swap, StorageError> {
        self.refused()
    }
    async fn scan_prefix(&self, _prefix: &str, _after: Option<&str>, _limit: usize) -> Result<Page, StorageError> {
        self.refused()
    }
    async fn batch(&self, _ops: Vec<Op>) -> Result<(), StorageError> {
        self.refused()
    }
    async fn get_versioned(&self, _key: &str) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        self.refused()
    }
    async fn write_versioned(
        &self,
        _op: VersionedOp,
        _committed: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<VersionedWrite, StorageError> {
        self.refused()
    }
    fn used_bytes(&self) -> u64 {
        0
    }
    fn set_quota(&self, _quota: Option<u64>) {}
}

/// Records in a namespace.
async fn count(ns: &dyn Namespace) -> Result<u64, StorageError> {
    let (mut n, mut after) = (0u64, None::<String>);
    loop {
        let page = ns.scan_prefix("", after.as_deref(), crate::storage::MAX_SCAN_PAGE).await?;
        n += page.entries.len() as u64;
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(n),
        }
    }
}

impl Ledger {
    /// Records a closed window's outcome: the new state, the step applied
    /// (when it completed), the window gone, in one batch.
    /// The dropped version is recorded too, until its namespace is gone:
    /// a start after a crash in between removes it.
    async fn commit_closing(
        &self,
        plugin: &str,
        state: DataState,
        added: &[Applied],
        dropped: u32,
    ) -> Result<(), StorageError> {
        let mut ops = vec![
            Op::Set(super::state_key(plugin), serde_json::to_vec(&state).expect("serializes")),
            Op::Delete(window_key(plugin)),
            Op::Set(dropped_key(plugin), dropped.to_string().into_bytes()),
        ];
        ops.extend(
            added.iter().map(|a| Op::Set(super::applied_key(plugin, a.to), serde_json::to_vec(a).expect("serializes"))),
        );
        self.ns.batch(ops).await
    }
}

/// A closed window's dropped version, until its namespace is removed.
fn dropped_key(plugin: &str) -> String {
    format!("dropped/{plugin}")
}

/// Removes what closed windows dropped and a crash left behind.
async fn remove_dropped(storage: &dyn Storage, ledger: &Ledger) -> anyhow::Result<()> {
    let page = ledger.ns.scan_prefix("dropped/", None, crate::storage::MAX_SCAN_PAGE).await?;
    for (key, version) in page.entries {
        let plugin = key.trim_start_matches("dropped/");
        let version: u32 = std::str::from_utf8(&version)?.parse()?;
        storage.remove_namespace(namespace_at(plugin, version))?;
        ledger.ns.delete(&key).await?;
        tracing::info!(plugin, version, "removed the data a closed migration window dropped");
    }
    Ok(())
}

/// Holds the backfill to a rate, evenly: its writes share the disk's
/// flushes with the requests', and bursts show in their latency.
struct Pace {
    rate: u32,
    since: std::time::Instant,
    done: u64,
}

impl Pace {
    fn new(rate: u32) -> Self {
        Self { rate, since: std::time::Instant::now(), done: 0 }
    }

    /// One record done: waits until it is due (in steps of 2 ms or more,
    /// which timers keep).
    async fn one(&mut self) {
        self.done += 1;
        if self.rate == 0 {
            return;
        }
        let due = self.since + std::time::Duration::from_secs_f64(self.done as f64 / f64::from(self.rate));
        let now = std::time::Instant::now();
        if due > now + std::time::Duration::from_millis(2) {
            tokio::time::sleep(due - now).await;
        }
    }
}

/// Goes through the older namespace page by page, copying what the newer
/// lacks, holding the window's lease and moving its cursor after each page
/// is durable. Halts at a record that does not convert.
async fn backfill(windows: Arc<Windows>, open: Arc<OpenWindow>, ledger: Arc<Ledger>) {
    let plugin = open.plugin.clone();
    let holder = format!("{}/{:08x}", *BOOT, rand::random::<u32>());
    let outcome = async {
        let older = windows.storage.namespace(namespace_at(&plugin, open.window.from), None)?;
        let mut pace = Pace::new(windows.rate);
        loop {
            let Some((mut window, seen)) = ledger.window_bytes(&plugin).await? else { return Ok(()) };
            let now = now_unix();
            if let Some((other, until)) = &window.lease
                && *other != holder
                && other.starts_with(BOOT.as_str())
                && *until > now
            {
                anyhow::bail!("the backfill's lease is held by {other}");
            }
            let page = older.scan_prefix("", window.cursor.as_deref(), BACKFILL_PAGE).await?;
            let mut copied = 0u64;
            for (key, _) in &page.entries {
                match copy_record(&open, windows.storage.as_ref(), &older, key).await {
                    Ok(_) => copied += 1,
                    Err(e) => {
                        let why = match e {
                            StorageError::Conversion(why) => why,
                            other => format!("record `{key}`: {other}"),
                        };
                        window.failure = Some(why.clone());
                        window.lease = None;
                        ledger.update_window(&plugin, &seen, &window).await?;
                        anyhow::bail!("halted: {why}");
                    }
                }
                // A record at a time, so requests on this thread wait for one conversion at most.
                tokio::task::yield_now().await;
                pace.one().await;
            }
            windows.storage.flush().await?;
            open.metrics.migration_backfill_records.get_or_create(&open.labels()).inc_by(copied);
            window.copied += page.entries.len() as u64;
            window.cursor = page.entries.last().map(|(k, _)| k.clone()).or(window.cursor);
            window.done = page.next.is_none();
            window.lease = (!window.done).then(|| (holder.clone(), now + LEASE_SECS));
            let progress = if window.total == 0 { 1.0 } else { window.copied as f64 / window.total as f64 };
            open.metrics.migration_backfill_progress.get_or_create(&open.labels()).set(progress.min(1.0));
            anyhow::ensure!(
                ledger.update_window(&plugin, &seen, &window).await?,
                "the window changed under the backfill"
            );
            if window.done {
                open.done.store(true, Ordering::Release);
                open.metrics.migration_backfill_progress.get_or_create(&open.labels()).set(1.0);
                tracing::info!(plugin, records = window.copied, "backfill through");
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        tracing::error!(plugin, error = %format!("{e:#}"), "backfill stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::storage::SledStorage;

    const QUOTA: u64 = 1 << 20;

    /// A window from data version 0 to 1 over the migrator test guest's
    /// step 1 (notes under `note/` gain a word count), opened by hand on a
    /// fresh database holding `records` at version 0, with no backfill
    /// running; the stable (0) and canary (1) versions' handles.
    struct Fixture {
        _dir: tempfile::TempDir,
        storage: Arc<dyn Storage>,
        windows: Arc<Windows>,
        open: Arc<OpenWindow>,
        stable: Arc<dyn Namespace>,
        canary: Arc<dyn Namespace>,
    }

    async fn fixture(records: &[(impl AsRef<str>, Value)]) -> Fixture {
        fixture_with(records, false).await
    }

    /// Like [`fixture`]; when `versioned`, the notes are written with
    /// versions and the step says so.
    async fn fixture_with(records: &[(impl AsRef<str>, Value)], versioned: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let older = storage.namespace(namespace_at("notes", 0), Some(QUOTA)).unwrap();
        for (key, note) in records {
            let (key, value) = (key.as_ref().to_owned(), note.to_string().into_bytes());
            if versioned {
                let create = VersionedOp { key, expected: None, value: Some(value), also: Vec::new() };
                older.write_versioned(create, &|_| {}).await.unwrap();
            } else {
                older.set(&key, value).await.unwrap();
            }
        }
        let runtime = Runtime::new(4, None).unwrap();
        let path = std::path::Path::new(plinth_test_guests::MIGRATOR_V1);
        let (component, digest) = runtime.compile("notes", path).await.unwrap();
        let converter = runtime.converter("notes", &component, 64 << 20, Duration::from_secs(2)).unwrap().unwrap();
        let window = Window {
            from: 0,
            to: 1,
            name: "words".into(),
            file: String::new(),
            canonical: String::new(),
            semantic: String::new(),
            families: vec!["note/".into()],
            versioned,
            component: path.to_owned(),
            digest,
            quota: QUOTA,
            memory: 64 << 20,
            timeout_ms: 2000,
            backup: String::new(),
            receipt: None,
            override_reason: None,
            by: "test".into(),
            at: now_rfc3339(),
            total: records.len() as u64,
            copied: 0,
            cursor: None,
            done: false,
            failure: None,
            lease: None,
        };
        let ledger = Ledger::open(storage.as_ref()).unwrap();
        ledger.ns.set(&window_key("notes"), serde_json::to_vec(&window).unwrap()).await.unwrap();
        storage.namespace(namespace_at("notes", 1), Some(QUOTA)).unwrap();
        let windows = Arc::new(Windows::new(storage.clone(), Arc::default(), 0));
        let open = windows.register("notes".into(), window, converter);
        let stable = windows.handle("notes", 0, QUOTA).unwrap();
        let canary = windows.handle("notes", 1, QUOTA).unwrap();
        Fixture { _dir: dir, storage, windows, open, stable, canary }
    }

    /// Runs the fixture's backfill through; the ledger it recorded in.
    async fn backfilled(f: &Fixture) -> Arc<Ledger> {
        let ledger = Arc::new(Ledger::open(f.storage.as_ref()).unwrap());
        f.windows.start_backfill(&f.open, ledger.clone());
        for _ in 0..600 {
            if f.open.is_done() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(f.open.is_done(), "the backfill went through");
        ledger
    }

    /// Notes `note/0000`… with texts `{prefix} {n}`.
    fn numbered(count: usize, prefix: &str) -> Vec<(String, Value)> {
        (0..count).map(|i| (format!("note/{i:04}"), json!({"text": format!("{prefix} {i}")}))).collect()
    }

    fn bytes(note: Value) -> Vec<u8> {
        note.to_string().into_bytes()
    }

    async fn read(ns: &Arc<dyn Namespace>, key: &str) -> Option<Value> {
        ns.get(key).await.unwrap().map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[tokio::test]
    async fn each_version_reads_its_own_format_and_every_write_reaches_both() {
        let f = fixture(&[("note/a", json!({"text": "hello big world"})), ("note/b", json!({"text": "one"}))]).await;
        let raw = f.storage.namespace(namespace_at("notes", 1), None).unwrap();
        assert_eq!(read(&f.canary, "note/a").await, Some(json!({"text": "hello big world", "words": 3})));
        assert_eq!(raw.get("note/a").await.unwrap(), None, "read converted, not copied");
        f.stable.set("other/x", b"outside the families".to_vec()).await.unwrap();
        assert_eq!(f.canary.get("other/x").await.unwrap(), Some(b"outside the families".to_vec()));

        f.stable.set("note/c", bytes(json!({"text": "two words"}))).await.unwrap();
        assert_eq!(read(&raw, "note/c").await, Some(json!({"text": "two words", "words": 2})));
        f.canary.set("note/d", bytes(json!({"text": "x y z", "words": 3}))).await.unwrap();
        assert_eq!(read(&f.stable, "note/d").await, Some(json!({"text": "x y z"})));

        assert!(f.canary.delete("note/a").await.unwrap(), "it was there, at the older version");
        assert_eq!((read(&f.stable, "note/a").await, read(&f.canary, "note/a").await), (None, None));
        assert!(!f.canary.delete("note/a").await.unwrap());

        let ops = vec![Op::Set("note/e".into(), bytes(json!({"text": "e"}))), Op::Delete("note/b".into())];
        f.stable.batch(ops).await.unwrap();
        assert_eq!(read(&f.canary, "note/e").await, Some(json!({"text": "e", "words": 1})));
        assert_eq!(read(&f.canary, "note/b").await, None);
    }

    #[tokio::test]
    async fn a_compare_and_swap_on_the_newer_version_sees_the_older_record_converted() {
        let f = fixture(&[("note/a", json!({"text": "hello big world"}))]).await;
        let seen = f.canary.get("note/a").await.unwrap();
        let stale = Some(bytes(json!({"text": "hello big world", "words": 9})));
        let refused = f.canary.compare_and_swap("note/a", stale, Some(bytes(json!({"text": "x", "words": 1})))).await;
        assert_eq!(refused.unwrap(), Swap::Conflict(seen.clone()));
        let swapped = f.canary.compare_and_swap("note/a", seen, Some(bytes(json!({"text": "new", "words": 1})))).await;
        assert_eq!(swapped.unwrap(), Swap::Swapped);
        assert_eq!(read(&f.stable, "note/a").await, Some(json!({"text": "new"})));
        let current = f.stable.get("note/a").await.unwrap();
        let gone = f.stable.compare_and_swap("note/a", current, None).await.unwrap();
        assert_eq!(gone, Swap::Swapped);
        assert_eq!(read(&f.canary, "note/a").await, None);
    }

    #[tokio::test]
    async fn the_newer_versions_scan_merges_both_namespaces_page_by_page() {
        let notes = numbered(10, "note");
        let f = fixture(&notes).await;
        // Some already at the newer version (written by the canary), one gone.
        f.canary.set("note/0003", bytes(json!({"text": "three", "words": 1}))).await.unwrap();
        f.canary.set("note/0008", bytes(json!({"text": "eight", "words": 1}))).await.unwrap();
        f.stable.delete("note/0005").await.unwrap();
        let (mut keys, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = f.canary.scan_prefix("note/", after.as_deref(), 3).await.unwrap();
            assert!(page.entries.len() <= 3);
            for (key, value) in &page.entries {
                let note: Value = serde_json::from_slice(value).unwrap();
                assert!(note["words"].is_u64(), "{key} is in the newer format: {note}");
                keys.push(key.clone());
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = notes.iter().map(|(k, _)| k.clone()).filter(|k| k != "note/0005").collect();
        assert_eq!(keys, expected, "every key once, in order");
    }

    #[tokio::test]
    async fn a_record_that_does_not_convert_fails_its_readers_and_writers_only() {
        let f = fixture(&[("note/t", json!({"text": "trap me"})), ("note/ok", json!({"text": "fine"}))]).await;
        assert!(matches!(f.canary.get("note/t").await, Err(StorageError::Conversion(_))));
        assert_eq!(read(&f.canary, "note/ok").await, Some(json!({"text": "fine", "words": 1})));
        let write = f.stable.set("note/u", bytes(json!({"text": "trap me"}))).await;
        assert!(matches!(write, Err(StorageError::Conversion(_))), "{write:?}");
        assert_eq!(f.stable.get("note/u").await.unwrap(), None, "nothing written at either version");
    }

    #[tokio::test]
    async fn what_a_closed_window_dropped_is_removed_after_a_crash_before_it_was() {
        let f = fixture(&[("note/a", json!({"text": "a"}))]).await;
        f.canary.set("note/b", bytes(json!({"text": "b", "words": 1}))).await.unwrap();
        let ledger = Ledger::open(f.storage.as_ref()).unwrap();
        let state = DataState { version: 0, previous: None, baseline: false };
        // The ledger says aborted; the process died before the removal.
        ledger.commit_closing("notes", state, &[], 1).await.unwrap();
        assert!(f.storage.namespaces_holding_data().unwrap().contains(&"plugin/notes@1".to_owned()));
        remove_dropped(f.storage.as_ref(), &ledger).await.unwrap();
        assert_eq!(
            f.storage.namespaces_holding_data().unwrap(),
            vec!["plugin/notes".to_owned(), "system/migrations".to_owned()]
        );
        assert!(ledger.ns.get(&dropped_key("notes")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_backfill_copies_what_the_newer_version_lacks_and_leaves_newer_writes_alone() {
        let f = fixture(&numbered(600, "note number")).await;
        f.canary.set("note/0300", bytes(json!({"text": "newer", "words": 1}))).await.unwrap();
        let ledger = backfilled(&f).await;
        let window = ledger.window("notes").await.unwrap().unwrap();
        assert_eq!((window.done, window.copied, window.failure, window.lease), (true, 600, None, None));
        let raw = f.storage.namespace(namespace_at("notes", 1), None).unwrap();
        assert_eq!(read(&raw, "note/0007").await, Some(json!({"text": "note number 7", "words": 3})));
        assert_eq!(read(&raw, "note/0300").await, Some(json!({"text": "newer", "words": 1})));
        assert_eq!(count(raw.as_ref()).await.unwrap(), 600);
    }

    #[tokio::test]
    async fn a_versioned_record_keeps_its_version_in_both_formats_and_either_version_writes_it_in_turn() {
        let f = fixture_with(&[("note/a", json!({"text": "hello big world"}))], true).await;
        let value = |bytes: Vec<u8>| serde_json::from_slice::<Value>(&bytes).unwrap();
        let (first, _) = f.stable.get_versioned("note/a").await.unwrap().unwrap();
        let (version, seen) = f.canary.get_versioned("note/a").await.unwrap().unwrap();
        assert_eq!((version, value(seen)), (first, json!({"text": "hello big world", "words": 3})));

        let published = Mutex::new(Vec::new());
        let hook = |v: u64| published.lock().unwrap().push(v);
        let write = |expected: Option<u64>, note: Value| VersionedOp {
            key: "note/a".into(),
            expected,
            value: Some(bytes(note)),
            also: vec![Op::Set("other/count".into(), b"1".to_vec())],
        };
        let VersionedWrite::Written(second) = f
            .canary
            .write_versioned(write(Some(first), json!({"text": "two words", "words": 2})), &hook)
            .await
            .unwrap()
        else {
            panic!("the canary's write with the version it read");
        };
        assert!(second > first);
        let (version, seen) = f.stable.get_versioned("note/a").await.unwrap().unwrap();
        assert_eq!((version, value(seen)), (second, json!({"text": "two words"})), "one version, each format");
        assert_eq!(f.stable.get("other/count").await.unwrap(), Some(b"1".to_vec()), "its batch reached both");

        let stale = f.stable.write_versioned(write(Some(first), json!({"text": "stale"})), &hook).await.unwrap();
        assert_eq!(stale, VersionedWrite::Conflict(Some(second)));
        let VersionedWrite::Written(third) =
            f.stable.write_versioned(write(Some(second), json!({"text": "a b c d"})), &hook).await.unwrap()
        else {
            panic!("the stable version's write with the current version");
        };
        let (version, seen) = f.canary.get_versioned("note/a").await.unwrap().unwrap();
        assert_eq!((version, value(seen)), (third, json!({"text": "a b c d", "words": 4})));
        let create = VersionedOp { key: "note/a".into(), expected: None, value: None, also: Vec::new() };
        assert_eq!(f.canary.write_versioned(create, &hook).await.unwrap(), VersionedWrite::Conflict(Some(third)));
        assert_eq!(*published.lock().unwrap(), vec![second, third], "each written change published once");

        // A value written without a version in a versioned family does not
        // convert (its first bytes are taken for the version), and is refused.
        let plain = f.stable.set("note/plain", bytes(json!({"text": "no version"}))).await.unwrap_err();
        assert!(matches!(&plain, StorageError::Conversion(m) if m.contains("record `note/plain`")), "{plain}");
        assert_eq!(f.stable.get("note/plain").await.unwrap(), None);
        let short = f.stable.set("note/short", b"{}".to_vec()).await.unwrap_err();
        assert!(short.to_string().contains("the step's families are written with versions"), "{short}");
    }

    #[tokio::test]
    async fn a_versioned_write_in_the_families_of_a_step_that_does_not_say_so_is_refused() {
        let f = fixture(&[("note/a", json!({"text": "plain"}))]).await;
        let op = |key: &str| VersionedOp { key: key.into(), expected: None, value: Some(b"{}".to_vec()), also: vec![] };
        let refused = f.stable.write_versioned(op("note/v"), &|_| {}).await.unwrap_err();
        assert!(refused.to_string().contains("does not say its records are versioned"), "{refused}");
        assert_eq!(f.stable.get("note/v").await.unwrap(), None);
        let outside = f.canary.write_versioned(op("other/v"), &|_| {}).await.unwrap();
        assert!(matches!(outside, VersionedWrite::Written(_)), "outside the families: {outside:?}");
        assert!(f.stable.get_versioned("other/v").await.unwrap().is_some(), "and kept in step");
    }

    #[tokio::test]
    async fn the_backfill_copies_versioned_records_with_their_versions() {
        let f = fixture_with(&numbered(40, "versioned note"), true).await;
        backfilled(&f).await;
        let raw = f.storage.namespace(namespace_at("notes", 1), None).unwrap();
        let (older, _) = f.stable.get_versioned("note/0007").await.unwrap().unwrap();
        let (version, copied) = raw.get_versioned("note/0007").await.unwrap().unwrap();
        assert_eq!(version, older);
        assert_eq!(serde_json::from_slice::<Value>(&copied).unwrap(), json!({"text": "versioned note 7", "words": 3}));
    }
}
