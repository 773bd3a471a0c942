//! Restoring a backup, offline: into a new directory beside the data
//! directory, checked there (every digest, the audit chain under the
//! configured key), and only then swapped in; the directory it replaces is
//! kept beside it. The next start appends an audit record linking the
//! restored chain to the end of the replaced one.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::archive::{self, BackupKey, EntryDigest, Item, Manifest};
use crate::audit::{AuditKey, AuditLog, ChainEnd, Envelope, Outcome};
use crate::storage::{NamespaceId, SledStorage, Storage};

/// The namespace holding a restore's note for the next start.
const RESTORE_NAMESPACE: &str = "restore";
/// Its one key.
const PENDING_KEY: &str = "pending";
/// Entries gathered before one import batch.
const IMPORT_BATCH_BYTES: usize = 8 << 20;

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The data directory, now holding the backup's data.
    pub data: PathBuf,
    /// Where the directory it replaced was moved (none when there was none).
    pub replaced: Option<PathBuf>,
}

/// The note a restore leaves for the next start, which records it in the
/// audit log.
#[derive(Debug, Serialize, Deserialize)]
struct RestoreNote {
    backup: String,
    created: String,
    restored_end: Option<ChainEnd>,
    replaced_end: Option<ChainEnd>,
    replaced: Option<PathBuf>,
}

/// Restores `backup` as the data directory `data` (which no server may be
/// using), checking that this deployment wrote it and its audit chain with
/// `key`.
pub async fn restore(backup: &Path, data: &Path, key: &AuditKey) -> anyhow::Result<Restored> {
    // The whole file, and that this deployment's key wrote it, before any
    // path is touched; the staging directory's name owes nothing to the file.
    let manifest = archive::walk(backup, Some(&BackupKey::of(key)), &mut |_| Ok(()))?;
    let staging = sibling(data, &format!("restoring-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("creating {}", staging.display()))?;
    // The data directory is opened only once the backup checked out whole:
    // a damaged backup leaves it as it was, byte for byte.
    let result = async {
        let (_, storage) = restore_into(backup, &staging, key).await?;
        let replaced = replaced_end(data, key).await?;
        storage.raise_versions_above(manifest.versions_issued.max(replaced.as_ref().map_or(0, |r| r.0)))?;
        anyhow::Ok((replaced.map(|r| r.1), storage))
    }
    .await;
    let (replaced_end, storage) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace([':', '-'], "");
    let replaced = data.exists().then(|| sibling(data, &format!("replaced-{stamp}")));
    {
        let note = RestoreNote {
            backup: manifest.id.clone(),
            created: manifest.created.clone(),
            restored_end: manifest.audit.clone(),
            replaced_end,
            replaced: replaced.clone(),
        };
        let ns = storage.namespace(NamespaceId::System(RESTORE_NAMESPACE), None)?;
        ns.set(PENDING_KEY, serde_json::to_vec(&note)?).await?;
        storage.flush().await?;
        drop(storage);
    }
    match &replaced {
        Some(replaced) => {
            // Compiled components are a cache the restored directory can use.
            let compiled = data.join("compiled");
            if compiled.is_dir() {
                let _ = std::fs::rename(&compiled, staging.join("compiled"));
            }
            // One atomic exchange: whatever happens next, `data` is either
            // the old directory or the restored one, never missing.
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &staging,
                rustix::fs::CWD,
                data,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .with_context(|| format!("exchanging {} with the restored {}", data.display(), staging.display()))?;
            std::fs::rename(&staging, replaced).with_context(|| {
                format!("moving the replaced data from {} to {}", staging.display(), replaced.display())
            })?;
        }
        None => std::fs::rename(&staging, data)
            .with_context(|| format!("moving the restored {} to {}", staging.display(), data.display()))?,
    }
    if let Some(parent) = data.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(Restored { manifest, data: data.to_owned(), replaced })
}

/// The versions issued in the data directory a restore replaces, and where
/// its audit chain ends; none when there is no database yet.
async fn replaced_end(data: &Path, key: &AuditKey) -> anyhow::Result<Option<(u64, ChainEnd)>> {
    if !data.join("db").exists() {
        return Ok(None);
    }
    let old = SledStorage::open(data)
        .with_context(|| format!("opening {} (is a server still running on it? stop it first)", data.display()))?;
    let end = AuditLog::open(&old, None, key.clone()).await?.end().await;
    Ok(Some((old.versions_issued()?, end)))
}

/// `data`'s sibling named `{data}.{suffix}`.
fn sibling(data: &Path, suffix: &str) -> PathBuf {
    let mut name = data.file_name().unwrap_or(data.as_os_str()).to_owned();
    name.push(format!(".{suffix}"));
    data.with_file_name(name)
}

/// Restores `backup` into `dir` (which must not hold a database) and checks
/// it, without touching any data directory: a copy to try things on, open.
pub async fn restore_copy(backup: &Path, dir: &Path, key: &AuditKey) -> anyhow::Result<(Manifest, SledStorage)> {
    restore_into(backup, dir, key).await
}

/// Writes the backup into `staging` and checks what was written; the
/// database stays open for the caller (sled can hold a dropped database's
/// lock for a while, so reopening it at once can fail).
async fn restore_into(backup: &Path, staging: &Path, key: &AuditKey) -> anyhow::Result<(Manifest, SledStorage)> {
    let storage = SledStorage::open(staging)?;
    let blobs = staging.join("blobs");
    let manifest = {
        let mut import =
            Import { storage: &storage, blobs: &blobs, tree: None, batch: Vec::new(), pending: 0, file: None };
        let manifest = archive::walk(backup, Some(&BackupKey::of(key)), &mut |item| import.item(item))?;
        import.flush()?;
        import.close_file()?;
        manifest
    };
    check_restored(&storage, &manifest)?;
    let log = AuditLog::open(&storage, None, key.clone()).await?;
    let report = log.verify().await?;
    let end = log.end().await;
    anyhow::ensure!(
        manifest.audit.as_ref().is_none_or(|expected| *expected == end),
        "the backup's audit chain ends at record {} ({}), its manifest says {:?}; nothing was changed",
        end.next_id.saturating_sub(1),
        end.last_hash,
        manifest.audit
    );
    if let Some(broken) = report.broken {
        anyhow::bail!(
            "the backup's audit chain does not verify with this key: record {}: {} (is `audit.key_file` the \
             key the backed-up server used?); nothing was changed",
            broken.id,
            broken.reason
        );
    }
    storage.flush().await?;
    Ok((manifest, storage))
}

/// Every namespace of the restored database matches the manifest.
fn check_restored(storage: &SledStorage, manifest: &Manifest) -> anyhow::Result<()> {
    let snapshot = storage.snapshot()?;
    let names: Vec<&str> = snapshot.namespaces().iter().map(String::as_str).collect();
    let listed: Vec<&str> = manifest.namespaces.iter().map(|s| s.name.as_str()).collect();
    anyhow::ensure!(names == listed, "the restored database holds {names:?}, the backup {listed:?}");
    for section in &manifest.namespaces {
        let mut digest = EntryDigest::default();
        snapshot.read(&section.name, &mut |k, v| {
            digest.add(k, v);
            Ok(())
        })?;
        let restored = digest.finish(&section.name);
        anyhow::ensure!(
            restored == *section,
            "namespace `{}` reads back as {} entries ({}), the backup holds {} ({})",
            section.name,
            restored.entries,
            restored.blake3,
            section.entries,
            section.blake3
        );
    }
    Ok(())
}

/// Puts a walked backup's items in place.
struct Import<'a> {
    storage: &'a SledStorage,
    blobs: &'a Path,
    tree: Option<String>,
    batch: Vec<(Vec<u8>, Vec<u8>)>,
    pending: usize,
    file: Option<std::fs::File>,
}

impl Import<'_> {
    fn item(&mut self, item: Item<'_>) -> std::io::Result<()> {
        match item {
            Item::Namespace(name) => {
                self.flush()?;
                self.tree = Some(name.to_owned());
                self.storage.import(name, &mut std::iter::empty()).map_err(std::io::Error::other)?;
            }
            Item::Entry(key, value) => {
                self.pending += key.len() + value.len();
                self.batch.push((key.to_vec(), value.to_vec()));
                if self.pending >= IMPORT_BATCH_BYTES {
                    self.flush()?;
                }
            }
            Item::File(path, _) => {
                self.close_file()?;
                let path = self.blobs.join(path);
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path.parent().expect("under blobs/"))?;
                self.file = Some(std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?);
            }
            Item::Data(bytes) => self.file.as_mut().expect("data follows a file").write_all(bytes)?,
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(tree) = &self.tree {
            self.storage.import(tree, &mut self.batch.drain(..)).map_err(std::io::Error::other)?;
        }
        self.pending = 0;
        Ok(())
    }

    fn close_file(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        Ok(())
    }
}

/// At start: records a restore's note in the audit log (linking the
/// restored chain to the replaced one's end), then removes it. A start
/// whose record cannot be written fails, and the next one tries again.
pub async fn note_restore(storage: &dyn Storage, audit: &AuditLog) -> anyhow::Result<()> {
    let ns = storage.namespace(NamespaceId::System(RESTORE_NAMESPACE), None)?;
    let Some(bytes) = ns.get(PENDING_KEY).await? else { return Ok(()) };
    let note: RestoreNote = serde_json::from_slice(&bytes).context("the restore note is unreadable")?;
    let end = |end: &Option<ChainEnd>| match end {
        Some(end) => format!("record {} (link {})", end.next_id.saturating_sub(1), end.last_hash),
        None => "no chain".to_owned(),
    };
    let reason = format!(
        "restored backup {} taken {}: its chain ends at {}; the chain it replaced ended at {}{}",
        note.backup,
        note.created,
        end(&note.restored_end),
        end(&note.replaced_end),
        note.replaced.as_ref().map(|p| format!(", kept in {}", p.display())).unwrap_or_default()
    );
    audit
        .append(Envelope::system().draft("backup.restored", &note.backup, Outcome::Success, Some(reason)))
        .await
        .context("recording the restore in the audit log")?;
    ns.delete(PENDING_KEY).await?;
    storage.flush().await?;
    Ok(())
}
