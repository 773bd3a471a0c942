//! A consistent read of a live sled database, which has no snapshots of its
//! own (sled#1198): from the cut on, every write first hands the value it
//! replaces to the [`Capture`], and the reader takes a key's value from the
//! capture when it holds one, from the tree when not.
//!
//! Why it is consistent: a key no write touched since the cut holds its
//! value at the cut, and the tree iterator sees it. A touched key's first
//! pre-image *is* its value at the cut (`None`: it did not exist), and it
//! was preserved before the write reached the tree; the reader consults
//! the capture after reading the tree, so a newer value it read is always
//! overridden, and keys it could not see (deleted since) are taken from the
//! capture between the keys it did see.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::{Snapshot, Visit};

/// Most bytes of pre-images one snapshot keeps: writers never wait for a
/// snapshot, so a reader slower than the writes fails instead of growing
/// without bound.
pub const MAX_CAPTURE_BYTES: u64 = 256 << 20;

/// Pre-images of the keys written since a snapshot's cut.
#[derive(Default)]
pub struct Capture {
    state: Mutex<CaptureState>,
}

#[derive(Default)]
struct CaptureState {
    /// Tree → key → its value at the cut (`None`: absent).
    trees: HashMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    bytes: u64,
    /// More than [`MAX_CAPTURE_BYTES`] changed: the snapshot is lost.
    overflowed: bool,
}

impl Capture {
    /// Records `old` as `key`'s value at the cut unless a pre-image is
    /// already there (only the first write after the cut counts).
    pub fn preserve(&self, tree: &str, key: &[u8], old: Option<&sled::IVec>) {
        let mut state = self.state.lock().expect("capture lock poisoned");
        if state.overflowed {
            return;
        }
        let cost = (key.len() + old.map_or(0, |v| v.len())) as u64;
        let keys = state.trees.entry(tree.to_owned()).or_default();
        if keys.contains_key(key) {
            return;
        }
        keys.insert(key.to_vec(), old.map(|v| v.to_vec()));
        state.bytes += cost;
        if state.bytes > MAX_CAPTURE_BYTES {
            state.overflowed = true;
            state.trees.clear();
        }
    }

    fn overflowed(&self) -> std::io::Result<()> {
        if self.state.lock().expect("capture lock poisoned").overflowed {
            return Err(std::io::Error::other(format!(
                "more than {} MiB were written while the snapshot was read; try again when writes are fewer",
                MAX_CAPTURE_BYTES >> 20
            )));
        }
        Ok(())
    }

    /// The pre-image of `key`, if it was written since the cut.
    fn at_cut(&self, tree: &str, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let state = self.state.lock().expect("capture lock poisoned");
        state.trees.get(tree)?.get(key).cloned()
    }

    /// Keys between `after` and `before` (exclusive) that existed at the
    /// cut and were written since, in key order.
    fn between(&self, tree: &str, after: Option<&[u8]>, before: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let state = self.state.lock().expect("capture lock poisoned");
        let Some(keys) = state.trees.get(tree) else { return Vec::new() };
        let low = after.map_or(Bound::Unbounded, Bound::Excluded);
        let high = before.map_or(Bound::Unbounded, Bound::Excluded);
        keys.range::<[u8], _>((low, high)).filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect()
    }
}

/// A snapshot of a sled database; the capture ends when it is dropped.
pub struct SledSnapshot {
    pub(super) db: sled::Db,
    /// The namespaces' trees at the cut.
    pub(super) trees: Vec<String>,
    pub(super) capture: Arc<Capture>,
    /// Where the storage holds the running capture, emptied on drop.
    pub(super) slot: Arc<ArcSwapOption<Capture>>,
    pub(super) versions_issued: u64,
    pub(super) pause: Duration,
}

impl Drop for SledSnapshot {
    fn drop(&mut self) {
        self.slot.store(None);
    }
}

impl Snapshot for SledSnapshot {
    fn namespaces(&self) -> &[String] {
        &self.trees
    }

    fn versions_issued(&self) -> u64 {
        self.versions_issued
    }

    fn write_pause(&self) -> Duration {
        self.pause
    }

    fn read(&self, namespace: &str, visit: &mut Visit<'_>) -> std::io::Result<()> {
        let tree = self.db.open_tree(namespace).map_err(std::io::Error::other)?;
        let mut last: Option<Vec<u8>> = None;
        for entry in tree.iter() {
            let (key, value) = entry.map_err(std::io::Error::other)?;
            for (gone, old) in self.capture.between(namespace, last.as_deref(), Some(&key)) {
                visit(&gone, &old)?;
            }
            match self.capture.at_cut(namespace, &key) {
                Some(Some(old)) => visit(&key, &old)?,
                Some(None) => {}
                None => visit(&key, &value)?,
            }
            last = Some(key.to_vec());
        }
        for (gone, old) in self.capture.between(namespace, last.as_deref(), None) {
            visit(&gone, &old)?;
        }
        self.capture.overflowed()
    }
}
