//! Running migrations: status, lint, rehearse, apply, complete, abort and
//! down, over a data directory no server is using.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use super::steps::{self, StepFile, StepProblem};
use super::{Applied, DataState, Ledger, Receipt, check_stored, convert_stored, namespace_at};
use crate::audit::{Actor, AuditKey, AuditLog, Envelope, Outcome};
use crate::backup::archive::{EntryDigest, Section};
use crate::backup::{Backups, Summary};
use crate::blobs::Blobs;
use crate::config::PluginConfig;
use crate::runtime::Runtime;
use crate::runtime::migrating::{Converter, Direction, Entry, Step};
use crate::storage::{Namespace, Op, Storage, StorageError};

/// A rehearsal older than this no longer lets `apply` run.
pub const RECEIPT_TTL_SECS: u64 = 24 * 3600;
/// Records read per page while converting.
const PAGE: usize = 1000;

/// One plugin's migrations: its component's steps and conversions, its
/// step files, and where its data stands.
pub struct PluginMigrations {
    /// The plugin.
    pub name: String,
    /// Its kv quota, which a converted namespace is held to.
    pub quota: u64,
    /// Its component's conversions (none: it declares no steps).
    pub converter: Option<Converter>,
    /// The steps its component declares.
    pub declared: Vec<Step>,
    /// Its step files.
    pub files: Vec<StepFile>,
    /// Each step's semantic checksum (when its fixtures passed).
    pub semantic: Vec<String>,
    /// Everything wrong with the steps and files, each naming a file.
    pub problems: Vec<StepProblem>,
    /// Where its data stands.
    pub state: DataState,
    /// The steps applied to its data.
    pub applied: Vec<Applied>,
    /// The component its migrations come from (the canary's when one is
    /// configured: the newer version), and its SHA-256.
    pub component: (std::path::PathBuf, String),
    /// The migration window open on its data, if any.
    pub window: Option<super::online::Window>,
}

impl PluginMigrations {
    /// Reads a plugin's component (its canary's, when one is configured),
    /// step files and ledger entries, and lints them together (applied
    /// steps whose files changed included).
    pub async fn load(runtime: &Runtime, entry: &PluginConfig, ledger: &Ledger) -> anyhow::Result<Self> {
        let path = entry.canary.as_ref().map_or(&entry.component, |canary| &canary.component);
        let (component, digest) = runtime.compile(&entry.name, path).await?;
        let timeout = std::time::Duration::from_millis(entry.limits.timeout_ms);
        let converter = runtime.converter(&entry.name, &component, entry.limits.memory.0 as usize, timeout)?;
        let declared = match &converter {
            Some(converter) => converter
                .steps()
                .await
                .map_err(|e| anyhow::anyhow!("plugin `{}`: its `steps` export failed: {e}", entry.name))?,
            None => Vec::new(),
        };
        let mut problems = Vec::new();
        let files = match &entry.migrations {
            Some(dir) => steps::read_dir(dir).unwrap_or_else(|problem| {
                problems.push(problem);
                Vec::new()
            }),
            None if !declared.is_empty() => {
                problems.push(StepProblem {
                    path: entry.component.clone(),
                    why: format!(
                        "plugin `{}` declares {} migration steps; set `migrations` in its [[plugins]] entry to \
                         the directory of their files",
                        entry.name,
                        declared.len()
                    ),
                });
                Vec::new()
            }
            None => Vec::new(),
        };
        let semantic = match &converter {
            Some(converter) if !files.is_empty() => {
                let (semantic, mut found) = steps::lint(&files, &declared, converter).await;
                problems.append(&mut found);
                semantic
            }
            _ => Vec::new(),
        };
        let mut plugin = Self {
            name: entry.name.clone(),
            quota: entry.limits.kv_bytes.0,
            converter,
            declared,
            files,
            semantic,
            problems,
            state: ledger.state(&entry.name).await?,
            applied: ledger.applied(&entry.name).await?,
            component: (path.clone(), digest),
            window: ledger.window(&entry.name).await?,
        };
        plugin.problems.extend(plugin.drift());
        Ok(plugin)
    }

    /// The applied steps the data (or the data kept until `complete`) is at.
    pub fn in_effect(&self) -> impl Iterator<Item = &Applied> {
        let top = self.state.version.max(self.state.previous.unwrap_or(0));
        self.applied.iter().filter(move |a| a.to <= top)
    }

    /// What `GET /admin/migrations` shows.
    pub fn status(&self, receipt: Option<&Receipt>) -> serde_json::Value {
        serde_json::json!({
            "plugin": self.name,
            "data_version": self.state.version,
            "kept_version": self.state.previous,
            "window": self.window,
            "component_version": self.version(),
            "applied": self.in_effect().collect::<Vec<_>>(),
            "receipt": receipt,
            "problems": self.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }

    /// The data version the component serves.
    pub fn version(&self) -> u32 {
        self.declared.last().map_or(0, |s| s.to)
    }

    /// Applied steps whose file is gone or changed since, naming the file
    /// and both checksums (a whitespace-only edit changes neither).
    fn drift(&self) -> Vec<StepProblem> {
        let mut problems = Vec::new();
        for applied in self.applied.iter().filter(|a| a.to <= self.state.version.max(self.state.previous.unwrap_or(0)))
        {
            let Some((i, file)) = self.files.iter().enumerate().find(|(_, f)| f.to == applied.to) else {
                problems.push(StepProblem {
                    path: applied.file.clone().into(),
                    why: format!("step {} (`{}`) was applied but its file is gone", applied.to, applied.name),
                });
                continue;
            };
            let semantic = self.semantic.get(i).map_or("(fixtures failing)", String::as_str);
            if file.canonical != applied.canonical || semantic != applied.semantic {
                problems.push(StepProblem {
                    path: file.path.clone(),
                    why: format!(
                        "step {} was applied with canonical checksum {} and semantic checksum {}; the file and \
                         component now give {} and {}: an applied step is never edited, add a new step instead",
                        file.to, applied.canonical, applied.semantic, file.canonical, semantic
                    ),
                });
            }
        }
        problems
    }

    fn converter(&self) -> anyhow::Result<&Converter> {
        self.converter.as_ref().ok_or_else(|| anyhow::anyhow!("plugin `{}` exports no migrations", self.name))
    }

    fn ensure_no_window(&self) -> anyhow::Result<()> {
        match &self.window {
            Some(window) => anyhow::bail!(
                "plugin `{}`: a migration window is open (data versions {} and {}); complete or abort it first",
                self.name,
                window.from,
                window.to
            ),
            None => Ok(()),
        }
    }

    pub(super) fn ensure_clean(&self) -> anyhow::Result<()> {
        self.ensure_no_window()?;
        if self.problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = self.problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::bail!("plugin `{}`: its migrations have problems:\n{}", self.name, list.join("\n"))
    }

    /// The checksums of steps `from + 1 ..= to`.
    fn checksums(&self, from: u32, to: u32) -> Vec<(u32, String, String)> {
        self.files
            .iter()
            .zip(&self.semantic)
            .filter(|(f, _)| f.to > from && f.to <= to)
            .map(|(f, s)| (f.to, f.canonical.clone(), s.clone()))
            .collect()
    }
}

/// What a data directory's migrations are done with.
pub struct Workbench {
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// Its blob store, for backups.
    pub blobs: Arc<Blobs>,
    /// Its audit log.
    pub audit: Arc<AuditLog>,
    /// The audit key, for a rehearsal's restore.
    pub key: AuditKey,
    /// The ledger.
    pub ledger: Ledger,
    /// Where backups go.
    pub backups: Arc<Backups>,
    /// Who runs the steps, as the audit log names them.
    pub actor: Actor,
}

/// One namespace converted across one step.
struct Converted {
    before: Section,
    after: Section,
    records: u64,
    converted: u64,
    peak_bytes: u64,
}

pub(super) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(super) fn tree_name(plugin: &str, version: u32) -> String {
    match namespace_at(plugin, version) {
        crate::storage::NamespaceId::Plugin(name) => format!("plugin/{name}"),
        crate::storage::NamespaceId::System(name) => format!("system/{name}"),
    }
}

/// The digest of a namespace's entries in key order.
pub(super) async fn digest(ns: &dyn Namespace, name: &str) -> Result<Section, StorageError> {
    let mut digest = EntryDigest::default();
    let mut after: Option<String> = None;
    loop {
        let page = ns.scan_prefix("", after.as_deref(), PAGE).await?;
        for (key, value) in &page.entries {
            digest.add(key.as_bytes(), value);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(digest.finish(name)),
        }
    }
}

/// Where a conversion writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Live data: a namespace that already holds data is never replaced.
    Live,
    /// A rehearsal's copy, which may be written over.
    Scratch,
}

/// Writes `plugin`'s data at the step's far side from its near side (up:
/// `to - 1` → `to`; down: `to` → `to - 1`) into a fresh namespace, each
/// record in the step's families converted. On any failure the new
/// namespace is removed and the old one is as it was.
async fn convert_namespace(
    storage: &dyn Storage,
    converter: &Converter,
    (plugin, quota): (&str, u64),
    step: &StepFile,
    direction: Direction,
    target: Target,
) -> anyhow::Result<Converted> {
    let (from, to) = match direction {
        Direction::Up => (step.to - 1, step.to),
        Direction::Down => (step.to, step.to - 1),
    };
    let to_name = tree_name(plugin, to);
    anyhow::ensure!(
        target == Target::Scratch || !storage.namespaces_holding_data()?.contains(&to_name),
        "namespace `{to_name}` holds data already (an earlier server's writes at that version?); nothing was \
         converted: back it up and remove it before converting into it"
    );
    storage.remove_namespace(namespace_at(plugin, to))?;
    let result = async {
        let source = storage.namespace(namespace_at(plugin, from), None)?;
        let written = storage.namespace(namespace_at(plugin, to), Some(quota))?;
        let in_families = |key: &str| step.families.iter().any(|f| key.starts_with(f.as_str()));
        let (mut before, mut keys) = (EntryDigest::default(), HashSet::new());
        let (mut records, mut converted, mut after) = (0u64, 0u64, None::<String>);
        loop {
            let page = source.scan_prefix("", after.as_deref(), PAGE).await?;
            let mut ops = Vec::with_capacity(page.entries.len());
            for (key, value) in page.entries {
                before.add(key.as_bytes(), &value);
                records += 1;
                let (new_key, new_value) = if in_families(&key) {
                    converted += 1;
                    let out = convert_stored(
                        converter,
                        (step.to, step.versioned),
                        direction,
                        Entry { key: key.clone(), value },
                    )
                    .await
                    .with_context(|| format!("step {} ({}) halted at record `{key}`", step.to, step.name))?;
                    anyhow::ensure!(
                        in_families(&out.key),
                        "step {} ({}) halted at record `{key}`: it was given the key `{}`, outside the step's \
                         families {:?}",
                        step.to,
                        step.name,
                        out.key,
                        step.families
                    );
                    (out.key, out.value)
                } else {
                    (key.clone(), value)
                };
                anyhow::ensure!(
                    keys.insert(new_key.clone()),
                    "step {} ({}) halted at record `{key}`: another record already became `{new_key}`",
                    step.to,
                    step.name
                );
                ops.push(Op::Set(new_key, new_value));
            }
            written.batch(ops).await.map_err(|e| match e {
                StorageError::QuotaExceeded { .. } => anyhow::anyhow!(
                    "step {} ({}) halted: the converted data does not fit plugin `{plugin}`'s kv quota ({e})",
                    step.to,
                    step.name
                ),
                other => other.into(),
            })?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let after = digest(written.as_ref(), &to_name).await?;
        Ok(Converted {
            before: before.finish(&tree_name(plugin, from)),
            after,
            records,
            converted,
            peak_bytes: written.used_bytes(),
        })
    }
    .await;
    if result.is_err() {
        storage.remove_namespace(namespace_at(plugin, to))?;
    }
    result
}

/// Converts `plugin`'s data from `from` to `to`, step by step, keeping
/// only the namespaces at both ends.
async fn convert_all(
    storage: &dyn Storage,
    plugin: &PluginMigrations,
    from: u32,
    to: u32,
    target: Target,
) -> anyhow::Result<Vec<(u32, Converted)>> {
    let converter = plugin.converter()?;
    let direction = if to > from { Direction::Up } else { Direction::Down };
    let mut done: Vec<(u32, Converted)> = Vec::new();
    let mut version = from;
    while version != to {
        let (step_to, next) = if to > from { (version + 1, version + 1) } else { (version, version - 1) };
        let step = plugin
            .files
            .iter()
            .find(|f| f.to == step_to)
            .ok_or_else(|| anyhow::anyhow!("plugin `{}` has no file for step {step_to}", plugin.name))?;
        let converted =
            convert_namespace(storage, converter, (&plugin.name, plugin.quota), step, direction, target).await;
        let converted = match converted {
            Ok(converted) => converted,
            Err(e) => {
                if version != from {
                    storage.remove_namespace(namespace_at(&plugin.name, version))?;
                }
                return Err(e);
            }
        };
        if version != from {
            storage.remove_namespace(namespace_at(&plugin.name, version))?;
        }
        done.push((step_to, converted));
        version = next;
    }
    Ok(done)
}

impl Workbench {
    /// The workbench of the data directory `config` names, over `storage`
    /// (which no server is using), acting as the operator at the command line.
    pub async fn offline(config: &crate::config::Config, storage: Arc<dyn Storage>) -> anyhow::Result<Self> {
        let key = AuditKey::load_or_create(&config.audit.key_file)?;
        let ledger = Ledger::open(storage.as_ref())?;
        let host = ledger.host_state().await?.map_or(0, |s| s.version);
        anyhow::ensure!(
            host as usize <= super::host::STEPS.len(),
            "the host's data is at version {host}, written by a newer plinth (this one knows steps up to {}): use \
             that one",
            super::host::STEPS.len()
        );
        let blobs = Blobs::open(config.storage.path.join("blobs"), storage.clone(), &config.scanner).await?;
        Ok(Self {
            blobs: Arc::new(blobs),
            audit: Arc::new(AuditLog::open(storage.as_ref(), None, key.clone()).await?),
            ledger,
            backups: Arc::new(Backups::new(config.storage.backups_dir(), crate::backup::BackupKey::of(&key))),
            key,
            actor: Actor::Cli,
            storage,
        })
    }

    /// Records what was done, as the workbench's actor.
    pub async fn record(&self, action: &str, plugin: &str, outcome: Outcome, reason: String) -> anyhow::Result<()> {
        let envelope = Envelope { actor: self.actor.clone(), plugin: Some(plugin.to_owned()), ..Envelope::system() };
        self.audit.append(envelope.draft(action, plugin, outcome, Some(reason))).await?;
        self.storage.flush().await?;
        Ok(())
    }

    pub(super) async fn backup(&self) -> anyhow::Result<Summary> {
        let id = self.backups.start()?;
        Ok(self.backups.take(&id, self.storage.as_ref(), &self.blobs).await?)
    }

    /// Rehearses the plugin's pending steps on a copy of a fresh backup: up, the plugin's check of
    /// every converted record, down (which must give back the backup's
    /// digest) and up again (which must give the first up's digest). The
    /// receipt goes into the ledger. Nothing else is written: a server may
    /// be serving the data meanwhile.
    pub async fn rehearse(&self, plugin: &PluginMigrations) -> anyhow::Result<Receipt> {
        plugin.ensure_clean()?;
        let (from, to) = (plugin.state.version, plugin.version());
        anyhow::ensure!(
            to > from && plugin.state.previous.is_none(),
            "plugin `{}`: nothing to rehearse (its data is at version {from}{}, its component at {to})",
            plugin.name,
            plugin.state.previous.map(|p| format!(", step from {p} not completed")).unwrap_or_default()
        );
        let backup = self.backup().await?;
        let scratch = tempfile::Builder::new()
            .prefix(".rehearsal-")
            .tempdir_in(self.backups.dir())
            .context("making the rehearsal's directory")?;
        let (manifest, copy) = crate::backup::restore_copy(&backup.file, scratch.path(), &self.key).await?;
        let name = tree_name(&plugin.name, from);
        let snapshot = manifest
            .namespaces
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| EntryDigest::default().finish(&name));
        let started = Instant::now();
        let up = convert_all(&copy, plugin, from, to, Target::Scratch).await.context("rehearsing up")?;
        let (up_digest, converted, peak) = (
            up.last().expect("one step at least").1.after.clone(),
            up.iter().map(|(_, c)| c.converted).sum::<u64>(),
            up.iter().map(|(_, c)| c.peak_bytes).max().unwrap_or(0),
        );
        self.check_all(&copy, plugin, to).await?;
        let down = convert_all(&copy, plugin, to, from, Target::Scratch).await.context("rehearsing down")?;
        let back = &down.last().expect("one step at least").1.after;
        anyhow::ensure!(
            back.blake3 == snapshot.blake3,
            "plugin `{}`: down does not give the data back: the backup holds {} entries ({}), down gave {} ({}); \
             the steps' down conversions do not undo their up ones",
            plugin.name,
            snapshot.entries,
            snapshot.blake3,
            back.entries,
            back.blake3
        );
        let again = convert_all(&copy, plugin, from, to, Target::Scratch).await.context("rehearsing up again")?;
        let again = &again.last().expect("one step at least").1.after;
        anyhow::ensure!(
            again.blake3 == up_digest.blake3,
            "plugin `{}`: up twice gave two results ({} then {}); a conversion depends on more than its record",
            plugin.name,
            up_digest.blake3,
            again.blake3
        );
        drop(copy);
        let receipt = Receipt {
            id: format!("{}-{}-{}", plugin.name, to, &backup.id),
            at: now_rfc3339(),
            at_unix: now_unix(),
            from,
            to,
            steps: plugin.checksums(from, to),
            backup: backup.id.clone(),
            snapshot,
            up: up_digest,
            converted,
            duration_ms: started.elapsed().as_millis() as u64,
            peak_bytes: peak,
            quota_bytes: plugin.quota,
            write_pause_us: backup.write_pause_us,
        };
        self.ledger.set_receipt(&plugin.name, &receipt).await?;
        self.record(
            "migration.rehearsed",
            &plugin.name,
            Outcome::Success,
            format!("{from} → {to} on backup {}: {converted} records, {} ms", backup.id, receipt.duration_ms),
        )
        .await?;
        Ok(receipt)
    }

    /// The plugin's own check of every record at `version` in its steps' families.
    async fn check_all(&self, storage: &dyn Storage, plugin: &PluginMigrations, version: u32) -> anyhow::Result<()> {
        let converter = plugin.converter()?;
        // The newest step over a family says whether it is versioned.
        let families: Vec<(&str, bool)> = plugin
            .files
            .iter()
            .rev()
            .filter(|f| f.to <= version)
            .flat_map(|f| f.families.iter().map(|family| (family.as_str(), f.versioned)))
            .collect();
        let ns = storage.namespace(namespace_at(&plugin.name, version), None)?;
        let mut after: Option<String> = None;
        loop {
            let page = ns.scan_prefix("", after.as_deref(), PAGE).await?;
            for (key, value) in page.entries {
                if let Some((_, versioned)) = families.iter().find(|(f, _)| key.starts_with(f)) {
                    check_stored(converter, version, *versioned, Entry { key: key.clone(), value })
                        .await
                        .with_context(|| {
                            format!("plugin `{}`: its check of `{key}` at version {version}", plugin.name)
                        })?;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Applies the plugin's pending steps: a matching, fresh rehearsal
    /// receipt (or an override with a reason, audited), a backup, then each
    /// step into a new namespace. The old data stays until `complete`.
    pub async fn apply(
        &self,
        plugin: &PluginMigrations,
        by: &str,
        override_reason: Option<&str>,
    ) -> anyhow::Result<Vec<Applied>> {
        plugin.ensure_clean()?;
        let (from, to) = (plugin.state.version, plugin.version());
        anyhow::ensure!(
            plugin.state.previous.is_none(),
            "plugin `{}`: the step from version {} is not completed; `complete` or `abort` it first",
            plugin.name,
            plugin.state.previous.unwrap_or_default()
        );
        anyhow::ensure!(
            to > from,
            "plugin `{}`: its data is at version {from} and its component at {to}: nothing to apply{}",
            plugin.name,
            if to < from { " (to go back, use `down`)" } else { "" }
        );
        let receipt_id = self.admit(plugin, from, to, override_reason).await?;
        let backup = self.backup().await?;
        let started = Instant::now();
        let converted = match convert_all(self.storage.as_ref(), plugin, from, to, Target::Live).await {
            Ok(converted) => converted,
            Err(e) => {
                self.record("migration.applied", &plugin.name, Outcome::Failure, format!("{e:#}")).await?;
                return Err(e);
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let applied: Vec<Applied> = converted
            .into_iter()
            .map(|(step_to, c)| {
                let i = plugin.files.iter().position(|f| f.to == step_to).expect("converted steps have files");
                let file = &plugin.files[i];
                Applied {
                    to: step_to,
                    name: file.name.clone(),
                    file: file.path.display().to_string(),
                    canonical: file.canonical.clone(),
                    semantic: plugin.semantic[i].clone(),
                    backup: backup.id.clone(),
                    before: c.before,
                    after: c.after,
                    records: c.records,
                    converted: c.converted,
                    duration_ms,
                    by: by.to_owned(),
                    at: now_rfc3339(),
                    receipt: receipt_id.clone(),
                    override_reason: override_reason.map(str::to_owned),
                }
            })
            .collect();
        self.ledger
            .commit(&plugin.name, DataState { version: to, previous: Some(from), baseline: false }, &applied, &[])
            .await?;
        let last = applied.last().expect("one step at least");
        self.record(
            "migration.applied",
            &plugin.name,
            Outcome::Success,
            format!("{from} → {to} after backup {}: {} records, digest {}", backup.id, last.records, last.after.blake3),
        )
        .await?;
        Ok(applied)
    }

    /// The receipt that lets `from → to` be applied (its id), or the
    /// override, audited, that lets it be applied without one.
    pub(super) async fn admit(
        &self,
        plugin: &PluginMigrations,
        from: u32,
        to: u32,
        override_reason: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        let receipt = self.ledger.receipt(&plugin.name).await?;
        match (self.receipt_problem(plugin, receipt.as_ref(), from, to), override_reason) {
            (None, _) => Ok(receipt.map(|r| r.id)),
            (Some(why), None) => anyhow::bail!(
                "plugin `{}`: {why}; rehearse first (or override with a reason, which is audited)",
                plugin.name
            ),
            (Some(why), Some(reason)) => {
                self.record("migration.override", &plugin.name, Outcome::Success, format!("{why}; override: {reason}"))
                    .await?;
                Ok(None)
            }
        }
    }

    /// Why the receipt does not let `from → to` be applied, if it does not.
    fn receipt_problem(
        &self,
        plugin: &PluginMigrations,
        receipt: Option<&Receipt>,
        from: u32,
        to: u32,
    ) -> Option<String> {
        let Some(receipt) = receipt else { return Some("there is no rehearsal receipt".into()) };
        if (receipt.from, receipt.to) != (from, to) {
            return Some(format!("the receipt rehearsed {} → {}, not {from} → {to}", receipt.from, receipt.to));
        }
        if receipt.steps != plugin.checksums(from, to) {
            return Some("the receipt is stale: the steps changed since they were rehearsed".into());
        }
        let age = now_unix().saturating_sub(receipt.at_unix);
        if age > RECEIPT_TTL_SECS {
            return Some(format!(
                "the receipt is stale: rehearsed {} h ago (at most {} h)",
                age / 3600,
                RECEIPT_TTL_SECS / 3600
            ));
        }
        None
    }

    /// Ends the step window: the previous version's data is removed.
    pub async fn complete(&self, plugin: &PluginMigrations) -> anyhow::Result<()> {
        plugin.ensure_no_window()?;
        let previous = plugin
            .state
            .previous
            .ok_or_else(|| anyhow::anyhow!("plugin `{}`: no step is waiting to be completed", plugin.name))?;
        self.end_window(plugin, plugin.state.version, previous, "migration.completed").await
    }

    /// Switches back to the data the last step started from, as it was,
    /// and removes what the step wrote. Data written at the new version
    /// since `apply` would be lost with it: that takes `force`.
    pub async fn abort(&self, plugin: &PluginMigrations, force: bool) -> anyhow::Result<()> {
        plugin.ensure_no_window()?;
        let state = plugin.state;
        let previous = state.previous.ok_or_else(|| {
            anyhow::anyhow!("plugin `{}`: no step is waiting to be completed or aborted", plugin.name)
        })?;
        let applied = plugin.applied.iter().find(|a| a.to == state.version && previous < state.version);
        if let (Some(applied), false) = (applied, force) {
            let ns = self.storage.namespace(namespace_at(&plugin.name, state.version), None)?;
            let now = digest(ns.as_ref(), &applied.after.name).await?;
            anyhow::ensure!(
                now.blake3 == applied.after.blake3,
                "plugin `{}`: its data at version {} changed since `apply` ({} entries then, {} now): an abort goes \
                 back to the data as it was before and loses those writes; `--force` to do so",
                plugin.name,
                state.version,
                applied.after.entries,
                now.entries
            );
        }
        self.end_window(plugin, previous, state.version, "migration.aborted").await
    }

    /// Ends a step window keeping the data at `keep` and removing that at
    /// `remove`, with the applied steps past `keep`.
    async fn end_window(&self, plugin: &PluginMigrations, keep: u32, remove: u32, action: &str) -> anyhow::Result<()> {
        self.storage.remove_namespace(namespace_at(&plugin.name, remove))?;
        let gone: Vec<u32> = plugin.applied.iter().map(|a| a.to).filter(|to| *to > keep).collect();
        let state = DataState { version: keep, previous: None, baseline: false };
        self.ledger.commit(&plugin.name, state, &[], &gone).await?;
        self.record(action, &plugin.name, Outcome::Success, format!("data at version {keep}; version {remove} removed"))
            .await
    }

    /// Converts a completed plugin's data back down to `version` with the
    /// steps' down conversions (the component must still be the one that
    /// knows them), after a backup; `complete` then removes the newer data.
    pub async fn down(&self, plugin: &PluginMigrations, version: u32) -> anyhow::Result<()> {
        plugin.ensure_clean()?;
        let state = plugin.state;
        anyhow::ensure!(
            state.previous.is_none(),
            "plugin `{}`: the step from version {} is not completed; `abort` it instead",
            plugin.name,
            state.previous.unwrap_or_default()
        );
        anyhow::ensure!(
            version < state.version,
            "plugin `{}`: its data is at version {}; down goes to a lower one",
            plugin.name,
            state.version
        );
        anyhow::ensure!(
            plugin.version() >= state.version,
            "plugin `{}`: its component knows steps up to {}, the data is at {}: configure the component that \
             converted it",
            plugin.name,
            plugin.version(),
            state.version
        );
        let backup = self.backup().await?;
        if let Err(e) = convert_all(self.storage.as_ref(), plugin, state.version, version, Target::Live).await {
            self.record("migration.down", &plugin.name, Outcome::Failure, format!("{e:#}")).await?;
            return Err(e);
        }
        self.ledger
            .commit(&plugin.name, DataState { version, previous: Some(state.version), baseline: false }, &[], &[])
            .await?;
        self.record(
            "migration.down",
            &plugin.name,
            Outcome::Success,
            format!("{} → {version} after backup {}", state.version, backup.id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::storage::{SledStorage, VersionedOp, VersionedWrite};

    #[tokio::test]
    async fn a_versioned_step_converts_the_value_and_keeps_the_version_up_and_back_down() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let older = storage.namespace(namespace_at("notes", 0), None).unwrap();
        let note = json!({"text": "hello big world"}).to_string().into_bytes();
        let create = VersionedOp { key: "note/a".into(), expected: None, value: Some(note), also: Vec::new() };
        let VersionedWrite::Written(version) = older.write_versioned(create, &|_| {}).await.unwrap() else {
            panic!("a new key is written");
        };
        older.set("other/x", b"kept".to_vec()).await.unwrap();
        let before = older.get("note/a").await.unwrap();

        let runtime = Runtime::new(2, None).unwrap();
        let (component, _) =
            runtime.compile("notes", std::path::Path::new(plinth_test_guests::MIGRATOR_V1)).await.unwrap();
        let converter = runtime.converter("notes", &component, 64 << 20, Duration::from_secs(2)).unwrap().unwrap();
        let step = StepFile {
            path: "0001-words.toml".into(),
            to: 1,
            name: "words".into(),
            description: String::new(),
            families: vec!["note/".into()],
            versioned: true,
            fixtures: Vec::new(),
            canonical: String::new(),
        };
        let up =
            convert_namespace(storage.as_ref(), &converter, ("notes", 1 << 20), &step, Direction::Up, Target::Live);
        assert_eq!(up.await.unwrap().converted, 1);
        let newer = storage.namespace(namespace_at("notes", 1), None).unwrap();
        let (kept, value) = newer.get_versioned("note/a").await.unwrap().unwrap();
        assert_eq!(kept, version, "the record keeps its version (and its clients' ETags)");
        assert_eq!(serde_json::from_slice::<Value>(&value).unwrap(), json!({"text": "hello big world", "words": 3}));
        assert_eq!(newer.get("other/x").await.unwrap(), Some(b"kept".to_vec()));

        storage.remove_namespace(namespace_at("notes", 0)).unwrap();
        let down =
            convert_namespace(storage.as_ref(), &converter, ("notes", 1 << 20), &step, Direction::Down, Target::Live);
        down.await.unwrap();
        let older = storage.namespace(namespace_at("notes", 0), None).unwrap();
        assert_eq!(older.get("note/a").await.unwrap(), before, "down gives the stored bytes back");
    }
}
