//! The blob store's files: `partial/{plugin}/{id}` while bytes arrive,
//! `objects/{plugin}/{id[..2]}/{id}` once hashed and recorded. Every name
//! is built from a checked plugin name and hex ids, never from client text.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::BlobError;
use super::chunks::{Checksum, Chunks, Digest, ReceiveError};

/// Bytes gathered before one write to disk: few system calls per upload,
/// and a bound on what one upload holds in memory (twice this: one buffer
/// fills while the other is written).
const WRITE_BUFFER: usize = 512 << 10;

/// The directory tree of the store.
pub(super) struct Files {
    root: PathBuf,
    /// While a backup copies files: the removals put off until it is done.
    held: std::sync::Mutex<Option<Deferred>>,
}

/// Files removed while a backup held them, removed when it lets go.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Blobs' files: (plugin, blob id).
    pub objects: Vec<(String, String)>,
    /// Partial files.
    pub partials: Vec<PathBuf>,
}

/// A partial file's path under the store's root.
pub fn partial_path(plugin: &str, id: &str) -> PathBuf {
    Path::new("partial").join(plugin).join(id)
}

/// A blob's file's path under the store's root.
pub fn object_path(plugin: &str, id: &str) -> PathBuf {
    Path::new("objects").join(plugin).join(&id[..2]).join(id)
}

impl Files {
    pub(super) async fn open(root: PathBuf) -> Result<Self, BlobError> {
        tokio::fs::create_dir_all(root.join("partial")).await?;
        tokio::fs::create_dir_all(root.join("objects")).await?;
        Ok(Self { root, held: std::sync::Mutex::new(None) })
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    fn partial(&self, plugin: &str, id: &str) -> PathBuf {
        self.root.join(partial_path(plugin, id))
    }

    /// Where a blob's file is.
    pub(super) fn object(&self, plugin: &str, id: &str) -> PathBuf {
        self.root.join(object_path(plugin, id))
    }

    /// Puts off every removal of a file until [`Files::release`], so that a
    /// backup finds each file its snapshot names; false when held already.
    pub(super) fn hold(&self) -> bool {
        let mut held = self.held.lock().expect("file hold lock poisoned");
        if held.is_some() {
            return false;
        }
        *held = Some(Deferred::default());
        true
    }

    /// Ends the hold, handing back the removals it put off.
    pub(super) fn release(&self) -> Deferred {
        self.held.lock().expect("file hold lock poisoned").take().unwrap_or_default()
    }

    /// True when the removal was put off.
    fn defer(&self, removal: impl FnOnce(&mut Deferred)) -> bool {
        match self.held.lock().expect("file hold lock poisoned").as_mut() {
            Some(deferred) => {
                removal(deferred);
                true
            }
            None => false,
        }
    }

    pub(super) async fn create_partial(&self, plugin: &str, id: &str) -> Result<(), BlobError> {
        let path = self.partial(plugin, id);
        tokio::fs::create_dir_all(path.parent().expect("under partial/")).await?;
        tokio::fs::File::create(&path).await?;
        Ok(())
    }

    /// The partial file, cut back to `offset` (bytes past the last recorded
    /// offset never counted: a crash can leave them), to be written from there.
    pub(super) async fn open_partial(&self, plugin: &str, id: &str, offset: u64) -> Result<PartialFile, BlobError> {
        let path = self.partial(plugin, id);
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(offset)?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .expect("opening does not panic")
        .map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { BlobError::NotFound("upload") } else { e.into() })?;
        Ok(PartialFile {
            file: Arc::new(file),
            start: offset,
            written: offset,
            buffer: BytesMut::with_capacity(WRITE_BUFFER),
            writing: None,
            hasher: None,
        })
    }

    /// The keyed BLAKE3 hash (hex) of a partial file, on a blocking thread.
    pub(super) async fn hash_partial(
        &self,
        plugin: &str,
        id: &str,
        mut hasher: blake3::Hasher,
    ) -> Result<String, BlobError> {
        let path = self.partial(plugin, id);
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(path)?;
            let mut buffer = vec![0u8; WRITE_BUFFER];
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    return Ok(hasher.finalize().to_hex().to_string());
                }
                hasher.update(&buffer[..n]);
            }
        })
        .await
        .expect("hashing does not panic")
    }

    /// Renames a hashed partial file into place and makes the rename
    /// durable. While held, the partial file stays (a backup may be copying
    /// it) and the blob's file is a second link to it; a file already there
    /// (its removal put off) has the same bytes, since ids hash them.
    pub(super) async fn promote(&self, plugin: &str, partial: &str, id: &str) -> Result<(), BlobError> {
        let from = self.partial(plugin, partial);
        let to = self.object(plugin, id);
        let held = self.defer(|deferred| deferred.partials.push(from.clone()));
        tokio::task::spawn_blocking(move || {
            let dir = to.parent().expect("under objects/");
            std::fs::create_dir_all(dir)?;
            if !held {
                std::fs::rename(&from, &to)?;
            } else if let Err(e) = std::fs::hard_link(&from, &to)
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(e);
            }
            sync_dir(dir)
        })
        .await
        .expect("renaming does not panic")?;
        Ok(())
    }

    /// Removes a partial file; a failure is logged (the file is orphaned).
    pub(super) async fn remove_partial(&self, plugin: &str, id: &str) {
        let path = self.partial(plugin, id);
        if !self.defer(|deferred| deferred.partials.push(path.clone())) {
            remove(&path).await;
        }
    }

    /// Removes a blob's file; a failure is logged (the file is orphaned).
    pub(super) async fn remove_object(&self, plugin: &str, id: &str) {
        if !self.defer(|deferred| deferred.objects.push((plugin.to_owned(), id.to_owned()))) {
            remove(&self.object(plugin, id)).await;
        }
    }

    /// Removes a partial file whose removal a hold put off.
    pub(super) async fn remove_deferred(&self, path: &Path) {
        remove(path).await;
    }

    pub(super) async fn open_object(&self, plugin: &str, id: &str) -> Result<tokio::fs::File, BlobError> {
        Ok(tokio::fs::File::open(self.object(plugin, id)).await?)
    }

    pub(super) async fn read(&self, plugin: &str, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        let mut file = self.open_object(plugin, id).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(len).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }
}

async fn remove(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(path = %path.display(), error = %e, "a blob file could not be removed");
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A partial file being written from `start`: one buffer fills from the
/// body while the other is written on a blocking thread.
pub(super) struct PartialFile {
    file: Arc<std::fs::File>,
    start: u64,
    /// Where the next buffer goes.
    written: u64,
    buffer: BytesMut,
    /// The buffer being written, handed back (emptied) when it is on disk,
    /// with the hasher that has seen it.
    writing: Option<tokio::task::JoinHandle<Written>>,
    /// Sees every byte written, when set.
    hasher: Option<blake3::Hasher>,
}

/// What a write on the blocking thread hands back.
type Written = (std::io::Result<BytesMut>, Option<blake3::Hasher>);

impl PartialFile {
    /// Feeds every byte written from now on to `hasher` (on the writing
    /// thread, beside the write).
    pub(super) fn hash_with(&mut self, hasher: blake3::Hasher) {
        self.hasher = Some(hasher);
    }

    /// The hasher, once everything received is written.
    pub(super) fn hasher(&mut self) -> Option<blake3::Hasher> {
        self.hasher.take()
    }

    /// Receives at most `limit` bytes of `body`, checked against `checksum`
    /// when given. Returns how many arrived.
    pub(super) async fn receive(
        &mut self,
        body: &mut dyn Chunks,
        limit: u64,
        checksum: Option<Checksum>,
    ) -> Result<u64, ReceiveError> {
        let mut digest = checksum.as_ref().map(|c| Digest::new(c.algorithm));
        let received = self
            .receive_with(body, limit, |bytes| {
                if let Some(digest) = &mut digest {
                    digest.update(bytes);
                }
            })
            .await;
        let received = match received {
            Err(ReceiveError::Body { error, .. }) if checksum.is_some() => {
                return Err(ReceiveError::Body { error, kept: 0 });
            }
            other => other?,
        };
        if let (Some(checksum), Some(digest)) = (checksum, digest)
            && digest.finish() != checksum.expected
        {
            return Err(ReceiveError::Checksum(checksum.algorithm));
        }
        Ok(received)
    }

    /// Chunks into the buffer, the buffer to disk when
    /// full, `seen` called on each chunk.
    async fn receive_with(
        &mut self,
        body: &mut dyn Chunks,
        limit: u64,
        mut seen: impl FnMut(&[u8]) + Send,
    ) -> Result<u64, ReceiveError> {
        let mut received = 0u64;
        loop {
            let chunk = match body.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    self.write_all_buffered().await.map_err(ReceiveError::Io)?;
                    return Err(ReceiveError::Body { error, kept: received });
                }
            };
            if received + chunk.len() as u64 > limit {
                return Err(ReceiveError::TooLarge);
            }
            received += chunk.len() as u64;
            seen(&chunk);
            self.buffer.extend_from_slice(&chunk);
            if self.buffer.len() >= WRITE_BUFFER {
                self.start_writing().await.map_err(ReceiveError::Io)?;
            }
        }
        self.write_all_buffered().await.map_err(ReceiveError::Io)?;
        Ok(received)
    }

    /// Sends the full buffer to disk (and through the hasher), once the one
    /// before it is there, and takes that one back to fill.
    async fn start_writing(&mut self) -> std::io::Result<()> {
        let spare = self.written_back().await?;
        let full = std::mem::replace(&mut self.buffer, spare);
        let (file, at, mut hasher) = (self.file.clone(), self.written, self.hasher.take());
        self.written += full.len() as u64;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            if let Some(hasher) = &mut hasher {
                hasher.update(&full);
            }
            let written = std::os::unix::fs::FileExt::write_all_at(&*file, &full, at).map(|()| {
                let mut emptied = full;
                emptied.clear();
                emptied
            });
            (written, hasher)
        }));
        Ok(())
    }

    /// Waits for the buffer being written; it comes back empty.
    async fn written_back(&mut self) -> std::io::Result<BytesMut> {
        match self.writing.take() {
            Some(writing) => {
                let (written, hasher) = writing.await.expect("writing does not panic");
                self.hasher = hasher;
                written
            }
            None => Ok(BytesMut::with_capacity(WRITE_BUFFER)),
        }
    }

    /// Everything received so far, on disk.
    async fn write_all_buffered(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.start_writing().await?;
        }
        self.written_back().await.map(drop)
    }

    /// Keeps exactly the first `length` bytes of the file and makes them
    /// durable.
    pub(super) async fn finish(&mut self, length: u64) -> Result<(), BlobError> {
        self.written_back().await?;
        if length < self.start {
            return Err(BlobError::Storage("a partial file cannot shrink below its start".into()));
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            file.set_len(length)?;
            file.sync_data()
        })
        .await
        .expect("syncing does not panic")?;
        Ok(())
    }
}
