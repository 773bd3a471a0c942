//! Data migrations: a plugin's stored records moved between its data
//! versions by the conversions its component exports
//! (`plinth:platform/migrations`), step by step, with a ledger of what was
//! applied.
//!
//! A plugin's data at version `v` lives in its own namespace (`plugin/{name}`
//! for 0, `plugin/{name}@{v}` after), so a step writes a new namespace from
//! the old one and the old one stays, untouched, until the step is
//! completed: aborting is switching back. The ledger (system namespace
//! `migrations`) holds each plugin's data version, the version it came
//! from while that is kept, each applied step (its checksums, the backup
//! taken first, digests before and after, who and when) and the last
//! rehearsal's receipt. [`steps`] reads a plugin's step files; [`run`] does
//! the work; [`online`] keeps two versions in step while serving. The
//! host's own system namespaces have numbered steps of their own
//! ([`host`]), recorded in the same ledger.

pub mod host;
pub mod online;
pub mod run;
pub mod steps;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backup::archive::Section;
use crate::runtime::migrating::{ConvertError, Converter, Direction, Entry};
use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError, decode_versioned, encode_versioned};

/// A stored record across step `to`: in a versioned step, the record
/// keeps its 8-byte version and only the value behind it is converted.
pub async fn convert_stored(
    converter: &Converter,
    (to, versioned): (u32, bool),
    direction: Direction,
    entry: Entry,
) -> Result<Entry, ConvertError> {
    if !versioned {
        return converter.convert(to, direction, entry).await;
    }
    let (version, value) =
        decode_versioned(&entry.key, &entry.value).map_err(|e| ConvertError::NotVersioned(e.to_string()))?;
    let out = converter.convert(to, direction, Entry { key: entry.key, value }).await?;
    Ok(Entry { value: encode_versioned(version, &out.value), key: out.key })
}

/// The plugin's check of a stored record at data version `version`, its
/// version taken off first when it is `versioned`.
pub async fn check_stored(
    converter: &Converter,
    version: u32,
    versioned: bool,
    entry: Entry,
) -> Result<(), ConvertError> {
    if !versioned {
        return converter.check(version, entry).await;
    }
    let (_, value) =
        decode_versioned(&entry.key, &entry.value).map_err(|e| ConvertError::NotVersioned(e.to_string()))?;
    converter.check(version, Entry { key: entry.key, value }).await
}

/// The ledger's system namespace.
const LEDGER: &str = "migrations";

/// The namespace holding a plugin's data at a data version.
pub fn namespace_at(plugin: &str, version: u32) -> NamespaceId {
    match version {
        0 => NamespaceId::Plugin(plugin.to_owned()),
        v => NamespaceId::Plugin(format!("{plugin}@{v}")),
    }
}

/// Where a plugin's data stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataState {
    /// The data version the plugin's records are at.
    pub version: u32,
    /// The version they were converted from, whose namespace is kept
    /// until the step is completed (or switched back to by an abort).
    pub previous: Option<u32>,
    /// No step ever ran: the version is where the plugin's data was found
    /// (or its component's, while it has none), and follows the data.
    #[serde(default)]
    pub baseline: bool,
}

/// One applied step, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The step's number (the version it leads to).
    pub to: u32,
    /// Its name.
    pub name: String,
    /// Its file, as it was named when applied.
    pub file: String,
    /// The file's canonical checksum.
    pub canonical: String,
    /// What the conversions made of its fixtures, hashed.
    pub semantic: String,
    /// The backup taken before it.
    pub backup: String,
    /// The plugin's namespace before and after.
    pub before: Section,
    /// After.
    pub after: Section,
    /// Records read and records converted.
    pub records: u64,
    /// Records in the step's families (a host step: the edits it made).
    pub converted: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Who ran it (`cli`, or an admin's account id).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// The rehearsal's receipt it was applied with, if any.
    pub receipt: Option<String>,
    /// Why it was applied without a matching receipt, if it was.
    pub override_reason: Option<String>,
}

/// A rehearsal's result: what `apply` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Its id.
    pub id: String,
    /// When it ran (RFC 3339) and its Unix time.
    pub at: String,
    /// Seconds since the epoch.
    pub at_unix: u64,
    /// The data version it started from and the one it reached.
    pub from: u32,
    /// The version reached.
    pub to: u32,
    /// Each step's (number, canonical, semantic) checksums.
    pub steps: Vec<(u32, String, String)>,
    /// The backup it restored.
    pub backup: String,
    /// The namespace's digest at `from`, as the backup holds it.
    pub snapshot: Section,
    /// The digest after up.
    pub up: Section,
    /// Records converted up.
    pub converted: u64,
    /// Wall time of up, check, down and up again, milliseconds.
    pub duration_ms: u64,
    /// The largest the converted namespace grew, bytes.
    pub peak_bytes: u64,
    /// The plugin's kv quota.
    pub quota_bytes: u64,
    /// How long the backup held writers, microseconds.
    pub write_pause_us: u64,
}

/// The ledger.
pub struct Ledger {
    ns: Arc<dyn Namespace>,
}

fn state_key(plugin: &str) -> String {
    format!("data/{plugin}")
}

fn applied_key(plugin: &str, to: u32) -> String {
    format!("step/{plugin}/{to:04}")
}

fn receipt_key(plugin: &str) -> String {
    format!("receipt/{plugin}")
}

/// The host data's version (no plugin's key starts with `host/`).
const HOST_STATE_KEY: &str = "host/data";

fn host_step_key(to: u32) -> String {
    format!("host/step/{to:04}")
}

/// Where the host's own data stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// The number of the last host step the data has.
    pub version: u32,
    /// The backup taken before the steps still to apply, while they run: a
    /// start after a failed or cut-off one reuses it (the data it would
    /// back up now may be half converted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

impl Ledger {
    /// The ledger of `storage`.
    pub fn open(storage: &dyn Storage) -> Result<Self, StorageError> {
        Ok(Self { ns: storage.namespace(NamespaceId::System(LEDGER), None)? })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        match self.ns.get(key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Backend(format!("migration ledger entry `{key}` is unreadable: {e}"))),
            None => Ok(None),
        }
    }

    /// Where a plugin's data stands (never migrated: version 0).
    pub async fn state(&self, plugin: &str) -> Result<DataState, StorageError> {
        Ok(self.get(&state_key(plugin)).await?.unwrap_or_default())
    }

    /// The data version a plugin's data is served at, for a component at
    /// `version`. Once a step ran, the ledger says. Before, the version is
    /// that of the one namespace holding the plugin's data (`plugin/{name}`
    /// or `plugin/{name}@{v}`), or the component's while it has none; it is
    /// recorded, and moves with the data until a step runs. Nothing is
    /// opened, so no quota of a serving plugin changes.
    pub async fn serving(&self, storage: &dyn Storage, plugin: &str, version: u32) -> Result<DataState, StorageError> {
        let recorded: Option<DataState> = self.get(&state_key(plugin)).await?;
        if let Some(state) = recorded
            && !state.baseline
        {
            return Ok(state);
        }
        let own = format!("plugin/{plugin}");
        let mut holding: Vec<u32> = storage
            .namespaces_holding_data()?
            .into_iter()
            .filter_map(|name| match name.strip_prefix(&own)? {
                "" => Some(0),
                at => at.strip_prefix('@')?.parse().ok(),
            })
            .collect();
        holding.sort_unstable();
        let at = match holding.as_slice() {
            [] => version,
            [one] => *one,
            many => {
                return Err(StorageError::Backend(format!(
                    "plugin `{plugin}` has data at versions {many:?} and no migration recorded: keep one (back up, \
                     then remove the others) before it is served"
                )));
            }
        };
        let state = DataState { version: at, previous: None, baseline: true };
        if recorded != Some(state) && (at != 0 || recorded.is_some()) {
            self.ns.set(&state_key(plugin), serde_json::to_vec(&state).expect("serializes")).await?;
        }
        Ok(state)
    }

    /// The steps applied to a plugin's data, in order.
    pub async fn applied(&self, plugin: &str) -> Result<Vec<Applied>, StorageError> {
        self.applied_under(&format!("step/{plugin}/")).await
    }

    async fn applied_under(&self, prefix: &str) -> Result<Vec<Applied>, StorageError> {
        let mut applied = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.ns.scan_prefix(prefix, after.as_deref(), 1000).await?;
            for (key, value) in &page.entries {
                applied.push(serde_json::from_slice(value).map_err(|e| {
                    StorageError::Backend(format!("migration ledger entry `{key}` is unreadable: {e}"))
                })?);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(applied),
            }
        }
    }

    /// The last rehearsal's receipt.
    pub async fn receipt(&self, plugin: &str) -> Result<Option<Receipt>, StorageError> {
        self.get(&receipt_key(plugin)).await
    }

    /// Stores a rehearsal's receipt.
    pub async fn set_receipt(&self, plugin: &str, receipt: &Receipt) -> Result<(), StorageError> {
        self.ns.set(&receipt_key(plugin), serde_json::to_vec(receipt).expect("serializes")).await
    }

    /// Records a new state with the steps it added and removed, in one batch.
    pub async fn commit(
        &self,
        plugin: &str,
        state: DataState,
        added: &[Applied],
        removed: &[u32],
    ) -> Result<(), StorageError> {
        let mut ops = vec![Op::Set(state_key(plugin), serde_json::to_vec(&state).expect("serializes"))];
        ops.extend(removed.iter().map(|to| Op::Delete(applied_key(plugin, *to))));
        ops.extend(
            added.iter().map(|a| Op::Set(applied_key(plugin, a.to), serde_json::to_vec(a).expect("serializes"))),
        );
        self.ns.batch(ops).await
    }

    /// Where the host's data stands; none before its first start with host
    /// steps.
    pub async fn host_state(&self) -> Result<Option<HostState>, StorageError> {
        self.get(HOST_STATE_KEY).await
    }

    /// The host steps applied to the data, in order.
    pub async fn host_applied(&self) -> Result<Vec<Applied>, StorageError> {
        self.applied_under("host/step/").await
    }

    /// Records the host data's new version with the steps it added and
    /// removed, in one batch.
    pub async fn commit_host(&self, state: HostState, added: &[Applied], removed: &[u32]) -> Result<(), StorageError> {
        let mut ops = vec![Op::Set(HOST_STATE_KEY.to_owned(), serde_json::to_vec(&state).expect("serializes"))];
        ops.extend(removed.iter().map(|to| Op::Delete(host_step_key(*to))));
        ops.extend(added.iter().map(|a| Op::Set(host_step_key(a.to), serde_json::to_vec(a).expect("serializes"))));
        self.ns.batch(ops).await
    }
}
