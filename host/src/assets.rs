//! A plugin's read-only files (`assets` in its `[[plugins]]` entry), such
//! as form definitions shipped with the deployment: read when it loads,
//! swapped with it, never written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Largest asset.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most bytes of assets one plugin has.
pub const MAX_TOTAL_BYTES: u64 = 16 << 20;
/// Most assets one plugin has.
pub const MAX_FILES: usize = 1_000;

/// One plugin's assets by file name.
#[derive(Debug, Default)]
pub struct Assets {
    files: BTreeMap<String, Arc<[u8]>>,
    paths: Vec<PathBuf>,
}

impl Assets {
    /// The files directly in `dir` (hidden files skipped); an error names
    /// the file and the limit it breaks.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", dir.display()))?;
        let (mut files, mut paths, mut total) = (BTreeMap::new(), Vec::new(), 0u64);
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            anyhow::ensure!(
                name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{}: an asset's name is 1 to 128 of A-Z, a-z, 0-9, `.`, `_`, `-`",
                path.display()
            );
            let size = std::fs::metadata(&path)?.len();
            anyhow::ensure!(
                size <= MAX_FILE_BYTES,
                "{}: {size} bytes; an asset is at most {MAX_FILE_BYTES}",
                path.display()
            );
            total += size;
            anyhow::ensure!(
                total <= MAX_TOTAL_BYTES && files.len() < MAX_FILES,
                "{}: a plugin's assets are at most {MAX_FILES} files and {MAX_TOTAL_BYTES} bytes",
                dir.display()
            );
            let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
            files.insert(name, Arc::from(bytes));
            paths.push(path);
        }
        Ok(Self { files, paths })
    }

    /// One file's bytes.
    pub fn get(&self, name: &str) -> Option<Arc<[u8]>> {
        self.files.get(name).cloned()
    }

    /// Every file's name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The files read, for the watcher.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// SHA-256 of every file's name and bytes, to tell a change.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for (name, bytes) in &self.files {
            hasher.update(name.len().to_le_bytes());
            hasher.update(name);
            hasher.update(bytes.len().to_le_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().into()
    }
}
