//! Backups of a data directory: every namespace and every blob file as of
//! one instant, taken while the server serves (writers wait only while the
//! cut is taken; see [`crate::storage::Snapshot`]), in one file
//! ([`archive`]) written under a temporary name and renamed into place when
//! whole. [`restore`] puts one back, offline.

pub mod archive;
mod restore;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

pub use self::archive::{ArchiveError, BackupKey, EntryDigest, Manifest};
pub use self::restore::{Restored, note_restore, restore, restore_copy};
use crate::blobs::Blobs;
use crate::storage::{Storage, StorageError};

/// The file name's ending.
pub const EXTENSION: &str = "plinth-backup";
/// The namespace whose entries name blob files.
const BLOBS_NAMESPACE: &str = "system/blobs";
/// The namespace of the audit chain.
const AUDIT_NAMESPACE: &str = "system/audit";

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Another one is being taken.
    #[error("a backup is being taken already")]
    Busy,
    /// The snapshot could not be taken or read.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Writing the file failed (a full disk, a missing directory).
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Where a backup stands, for `GET /admin/backups`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Being written.
    Running {
        /// Its id.
        id: String,
        /// When it was asked for.
        started: String,
    },
    /// Written; its manifest's summary.
    Done(Summary),
    /// Not written; the file was removed.
    Failed {
        /// Its id.
        id: String,
        /// Why.
        error: String,
    },
}

/// A finished backup, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Its id.
    pub id: String,
    /// The file.
    pub file: PathBuf,
    /// When the cut was taken.
    pub created: String,
    /// The file's length.
    pub bytes: u64,
    /// Bytes of keys, values and files in it.
    pub data_bytes: u64,
    /// Namespaces in it.
    pub namespaces: usize,
    /// Blob files in it.
    pub files: usize,
    /// How long writers waited for the cut, in microseconds.
    pub write_pause_us: u64,
}

impl Summary {
    fn of(manifest: &Manifest, file: PathBuf, bytes: u64) -> Self {
        Self {
            id: manifest.id.clone(),
            file,
            created: manifest.created.clone(),
            bytes,
            data_bytes: manifest.data_bytes(),
            namespaces: manifest.namespaces.len(),
            files: manifest.files.len(),
            write_pause_us: manifest.write_pause_us,
        }
    }
}

/// The backups of one server: its directory and what this process is
/// taking or failed to take.
pub struct Backups {
    dir: PathBuf,
    /// What the files are authenticated with.
    key: BackupKey,
    /// Backups asked for since start that are not files (yet): running or
    /// failed, by id.
    pending: Mutex<BTreeMap<String, Status>>,
}

impl Backups {
    /// Backups kept in `dir` (created when the first one is written),
    /// authenticated with `key`.
    pub fn new(dir: PathBuf, key: BackupKey) -> Self {
        Self { dir, key, pending: Mutex::new(BTreeMap::new()) }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new backup's id, recorded as running; [`BackupError::Busy`] while
    /// another runs.
    pub fn start(&self) -> Result<String, BackupError> {
        let mut pending = self.pending.lock().expect("backup list lock poisoned");
        if any_running(&pending) {
            return Err(BackupError::Busy);
        }
        let now = SystemTime::now();
        let id = format!(
            "{}-{:06x}",
            humantime::format_rfc3339_seconds(now).to_string().replace([':', '-'], ""),
            rand::random::<u32>() & 0xff_ffff
        );
        pending.insert(id.clone(), Status::Running { id: id.clone(), started: rfc3339(now) });
        Ok(id)
    }

    /// Whether a backup is being taken now.
    pub fn running(&self) -> bool {
        any_running(&self.pending.lock().expect("backup list lock poisoned"))
    }

    /// Records how backup `id` ended.
    pub fn finish(&self, id: &str, result: &Result<Summary, BackupError>) {
        let mut pending = self.pending.lock().expect("backup list lock poisoned");
        match result {
            Ok(_) => pending.remove(id),
            Err(e) => pending.insert(id.to_owned(), Status::Failed { id: id.to_owned(), error: e.to_string() }),
        };
    }

    /// Takes backup `id` (from [`Backups::start`]) of `storage` and `blobs`.
    pub async fn take(&self, id: &str, storage: &dyn Storage, blobs: &Arc<Blobs>) -> Result<Summary, BackupError> {
        let result = take(&self.dir, id, &self.key, storage, blobs).await;
        self.finish(id, &result);
        result
    }

    /// Every backup: what this process is taking or failed to take, then
    /// the files in the directory, newest first. A file that cannot be read
    /// is listed as failed, with why.
    pub fn list(&self) -> Vec<Status> {
        let mut listed: Vec<Status> =
            self.pending.lock().expect("backup list lock poisoned").values().cloned().collect();
        let mut done = Vec::new();
        for path in self.files() {
            let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            match (archive::read_manifest(&path), std::fs::metadata(&path)) {
                (Ok(manifest), Ok(meta)) => done.push(Status::Done(Summary::of(&manifest, path, meta.len()))),
                (Err(e), _) => done.push(Status::Failed { id, error: e.to_string() }),
                (_, Err(e)) => done.push(Status::Failed { id, error: e.to_string() }),
            }
        }
        done.reverse();
        listed.extend(done);
        listed
    }

    /// One backup by id.
    pub fn get(&self, id: &str) -> Option<Status> {
        if let Some(status) = self.pending.lock().expect("backup list lock poisoned").get(id) {
            return Some(status.clone());
        }
        self.list().into_iter().find(|s| match s {
            Status::Done(summary) => summary.id == id,
            Status::Running { id: other, .. } | Status::Failed { id: other, .. } => other == id,
        })
    }

    /// Backup files in the directory, oldest first (ids sort by time).
    fn files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == EXTENSION))
            .collect();
        files.sort();
        files
    }
}

fn any_running(pending: &BTreeMap<String, Status>) -> bool {
    pending.values().any(|s| matches!(s, Status::Running { .. }))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Writes backup `id` into `dir`: the file appears under its name only
/// when whole and synced; on any failure nothing is left.
pub async fn take(
    dir: &Path,
    id: &str,
    key: &BackupKey,
    storage: &dyn Storage,
    blobs: &Arc<Blobs>,
) -> Result<Summary, BackupError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Write { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(write_error(dir))?;
    let hold = blobs.hold_files().map_err(|_| BackupError::Busy)?;
    let snapshot = storage.snapshot()?;
    let created = rfc3339(SystemTime::now());
    let (root, dir, id, key) = (hold.root().to_owned(), dir.to_owned(), id.to_owned(), key.clone());
    let written = tokio::task::spawn_blocking(move || write_file(&dir, &id, &key, created, snapshot, &root))
        .await
        .map_err(|e| BackupError::Storage(StorageError::Backend(format!("the backup task failed: {e}"))))?;
    hold.release().await;
    written
}

/// The blocking part of [`take`].
fn write_file(
    dir: &Path,
    id: &str,
    key: &BackupKey,
    created: String,
    snapshot: Box<dyn crate::storage::Snapshot>,
    root: &Path,
) -> Result<Summary, BackupError> {
    let partial = dir.join(format!(".{id}.partial"));
    let path = dir.join(format!("{id}.{EXTENSION}"));
    let result = (|| {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
        let mut writer = archive::ArchiveWriter::new(BufWriter::with_capacity(archive::CHUNK_BYTES, file))?;
        let mut namespaces = Vec::new();
        let mut needed = Vec::new();
        let mut audit = None;
        for name in snapshot.namespaces() {
            let mut digest = writer.begin_namespace(name)?;
            snapshot.read(name, &mut |key, value| {
                if name == BLOBS_NAMESPACE
                    && let Some(file) =
                        std::str::from_utf8(key).ok().and_then(|k| crate::blobs::file_of_record(k, value))
                {
                    needed.push(file);
                }
                if name == AUDIT_NAMESPACE && audit.is_none() {
                    audit = crate::audit::ChainEnd::from_entry(key, value);
                }
                writer.entry(&mut digest, key, value)
            })?;
            namespaces.push(writer.end_namespace(digest, name)?);
        }
        let (versions_issued, pause) = (snapshot.versions_issued(), snapshot.write_pause());
        // The cut's records are read: writers stop paying for pre-images.
        drop(snapshot);
        let mut files = Vec::new();
        for (relative, length) in needed {
            let mut from = std::fs::File::open(root.join(&relative)).map_err(|e| {
                std::io::Error::new(e.kind(), format!("blob file {}: {e}", root.join(&relative).display()))
            })?;
            files.push(writer.file(&relative, length, &mut from)?);
        }
        let manifest = Manifest {
            format: 1,
            id: id.to_owned(),
            created,
            plinth: env!("CARGO_PKG_VERSION").to_owned(),
            versions_issued,
            write_pause_us: pause.as_micros() as u64,
            audit,
            namespaces,
            files,
        };
        let (out, bytes) = writer.finish(&manifest, key)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(Summary::of(&manifest, path.clone(), bytes))
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        BackupError::Write { path: path.clone(), source }
    })
}

/// Checks every digest of a backup file and, given the deployment's key,
/// that it wrote the file.
pub fn verify(path: &Path, key: Option<&BackupKey>) -> Result<Manifest, ArchiveError> {
    archive::walk(path, key, &mut |_| Ok(()))
}
