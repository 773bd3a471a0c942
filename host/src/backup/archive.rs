//! The backup file: one stream of frames (namespaces entry by entry, then
//! files in chunks), a manifest, and a trailer holding the manifest's
//! offset, a BLAKE3 digest of every byte before it, so that any flipped
//! bit is found (a digest per namespace and per file says where), and a
//! MAC of both under a key derived from the deployment's audit key, so that
//! a file changed and digested again by someone without the key is not
//! taken for a backup of this deployment.
//!
//! ```text
//! MAGIC
//! N name · E entry… · n entries bytes digest      (per namespace, in name order)
//! F length path · D chunk… · f digest             (per file)
//! M manifest (JSON)
//! trailer: manifest offset (u64) · digest of all bytes before (32) · MAC (32)
//! ```
//!
//! A frame is a tag byte, a u32 length and the payload; integers are
//! big-endian. A namespace's digest is over its entries alone (see
//! [`EntryDigest`]), so equal data has an equal digest in any backup.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first bytes of every backup.
pub const MAGIC: &[u8; 16] = b"plinth-backup-1\n";
/// The manifest's offset and the digest.
const TRAILER_BYTES: u64 = 8 + 32 + 32;
/// Bytes of a file's data frame.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest frame: an entry of the largest key and value.
const MAX_FRAME: u32 = (crate::storage::MAX_VALUE_BYTES + crate::storage::MAX_KEY_BYTES + 64) as u32;
/// Largest manifest read.
const MAX_MANIFEST: u64 = 64 << 20;

const NAMESPACE: u8 = b'N';
const ENTRY: u8 = b'E';
const NAMESPACE_END: u8 = b'n';
const FILE: u8 = b'F';
const DATA: u8 = b'D';
const FILE_END: u8 = b'f';
const MANIFEST: u8 = b'M';

/// What a backup holds, written last (its digests are known only then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file format (1).
    pub format: u32,
    /// The backup's id, also its file name's stem.
    pub id: String,
    /// When the cut was taken (RFC 3339).
    pub created: String,
    /// The plinth version that took it.
    pub plinth: String,
    /// Every version the data carries is at most this.
    pub versions_issued: u64,
    /// How long writers waited while the cut was taken, in microseconds.
    pub write_pause_us: u64,
    /// The audit chain's end at the cut.
    pub audit: Option<crate::audit::ChainEnd>,
    /// Every namespace, in name order.
    pub namespaces: Vec<Section>,
    /// Every blob file, in the order written.
    pub files: Vec<FileSection>,
}

impl Manifest {
    /// Bytes of data held: keys, values and files.
    pub fn data_bytes(&self) -> u64 {
        self.namespaces.iter().map(|s| s.bytes).sum::<u64>() + self.files.iter().map(|f| f.bytes).sum::<u64>()
    }
}

/// One namespace of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// `plugin/{name}` or `system/{name}`.
    pub name: String,
    /// Keys held.
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// [`EntryDigest`] of its entries, hex.
    pub blake3: String,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSection {
    /// Path under the blob store's root.
    pub path: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// BLAKE3 of its bytes, hex.
    pub blake3: String,
}

/// The key a deployment's backups are authenticated with.
#[derive(Clone)]
pub struct BackupKey([u8; 32]);

impl BackupKey {
    /// The backup key of the deployment whose audit key this is.
    pub fn of(audit: &crate::audit::AuditKey) -> Self {
        Self(audit.derive("plinth 2026-11 backup authentication"))
    }

    fn mac(&self, at: u64, digest: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(&at.to_be_bytes());
        hasher.update(digest);
        hasher.finalize()
    }
}

/// A backup's id: `{YYYYMMDD}T{HHMMSS}Z-{6 hex}`, as [`super::Backups`]
/// makes them. Nothing else is taken, since an id names files.
pub fn is_backup_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 23
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15..17] == *b"Z-"
        && bytes[17..].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Why a backup file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The bytes are not what was written.
    #[error("{path} is damaged: {why}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where and how, as precisely as the digests tell.
        why: String,
    },
    /// Whole, but not written under this deployment's key: another
    /// deployment's backup, or one changed and digested again.
    #[error(
        "{path} was not written by this deployment: its MAC does not match the key derived from `audit.key_file` \
         (another deployment's backup, or one altered and digested again)"
    )]
    Forged {
        /// The file.
        path: PathBuf,
    },
}

/// The digest of a namespace's entries in key order: each key and value
/// with its length. The same entries give the same digest in a backup, a
/// restored database and a live one.
#[derive(Default)]
pub struct EntryDigest {
    hasher: blake3::Hasher,
    entries: u64,
    bytes: u64,
}

impl EntryDigest {
    /// Adds the next entry.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.hasher.update(&(key.len() as u32).to_be_bytes());
        self.hasher.update(key);
        self.hasher.update(&(value.len() as u64).to_be_bytes());
        self.hasher.update(value);
        self.entries += 1;
        self.bytes += (key.len() + value.len()) as u64;
    }

    /// The section these entries make.
    pub fn finish(self, name: &str) -> Section {
        Section {
            name: name.to_owned(),
            entries: self.entries,
            bytes: self.bytes,
            blake3: self.hasher.finalize().to_hex().to_string(),
        }
    }
}

/// Writes a backup to `out`, hashing every byte.
pub struct ArchiveWriter<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts a backup.
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut writer = Self { out, hasher: blake3::Hasher::new(), written: 0 };
        writer.put(MAGIC)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn frame(&mut self, tag: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.put(&[tag])?;
        self.put(&(len as u32).to_be_bytes())?;
        for part in parts {
            self.put(part)?;
        }
        Ok(())
    }

    /// Starts a namespace; its entries follow in key order.
    pub fn begin_namespace(&mut self, name: &str) -> std::io::Result<EntryDigest> {
        self.frame(NAMESPACE, &[name.as_bytes()])?;
        Ok(EntryDigest::default())
    }

    /// One entry of the namespace begun last.
    pub fn entry(&mut self, digest: &mut EntryDigest, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        digest.add(key, value);
        self.frame(ENTRY, &[&(key.len() as u32).to_be_bytes(), key, value])
    }

    /// Ends the namespace begun last.
    pub fn end_namespace(&mut self, digest: EntryDigest, name: &str) -> std::io::Result<Section> {
        let section = digest.finish(name);
        let hash = blake3::Hash::from_hex(&section.blake3).expect("a digest we made");
        self.frame(NAMESPACE_END, &[&section.entries.to_be_bytes(), &section.bytes.to_be_bytes(), hash.as_bytes()])?;
        Ok(section)
    }

    /// Copies `length` bytes of `from` as the file `path`.
    pub fn file(&mut self, path: &Path, length: u64, from: &mut impl Read) -> std::io::Result<FileSection> {
        let name = path.to_str().ok_or_else(|| std::io::Error::other("a blob path is not UTF-8"))?;
        self.frame(FILE, &[&length.to_be_bytes(), name.as_bytes()])?;
        let mut hasher = blake3::Hasher::new();
        let mut chunk = vec![0u8; CHUNK_BYTES];
        let mut left = length;
        while left > 0 {
            let want = left.min(CHUNK_BYTES as u64) as usize;
            from.read_exact(&mut chunk[..want])?;
            hasher.update(&chunk[..want]);
            self.frame(DATA, &[&chunk[..want]])?;
            left -= want as u64;
        }
        let hash = hasher.finalize();
        self.frame(FILE_END, &[hash.as_bytes()])?;
        Ok(FileSection { path: path.to_owned(), bytes: length, blake3: hash.to_hex().to_string() })
    }

    /// Writes the manifest and the trailer, authenticated with `key`;
    /// returns the output and the bytes written.
    pub fn finish(mut self, manifest: &Manifest, key: &BackupKey) -> std::io::Result<(W, u64)> {
        let at = self.written;
        let json = serde_json::to_vec(manifest).expect("manifests serialize");
        self.frame(MANIFEST, &[&json])?;
        let digest = self.hasher.finalize();
        self.out.write_all(&at.to_be_bytes())?;
        self.out.write_all(digest.as_bytes())?;
        self.out.write_all(key.mac(at, digest.as_bytes()).as_bytes())?;
        Ok((self.out, self.written + TRAILER_BYTES))
    }
}

/// What a reader of a backup is handed, in file order.
pub enum Item<'a> {
    /// A namespace starts.
    Namespace(&'a str),
    /// One of its entries.
    Entry(&'a [u8], &'a [u8]),
    /// A file starts.
    File(&'a Path, u64),
    /// Its next bytes.
    Data(&'a [u8]),
}

/// Reads a backup's manifest without reading the rest (nothing is
/// verified: see [`walk`]).
pub fn read_manifest(path: &Path) -> Result<Manifest, ArchiveError> {
    let io = |source| ArchiveError::Io { path: path.to_owned(), source };
    let damaged = |why: &str| ArchiveError::Damaged { path: path.to_owned(), why: why.to_owned() };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < MAGIC.len() as u64 + TRAILER_BYTES {
        return Err(damaged("it is too short to be a backup"));
    }
    let mut magic = [0u8; 16];
    file.read_exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(damaged("it does not start as a plinth backup does"));
    }
    file.seek(SeekFrom::Start(len - TRAILER_BYTES)).map_err(io)?;
    let mut at = [0u8; 8];
    file.read_exact(&mut at).map_err(io)?;
    let at = u64::from_be_bytes(at);
    if at < MAGIC.len() as u64 || at + 5 > len - TRAILER_BYTES || len - TRAILER_BYTES - at > MAX_MANIFEST {
        return Err(damaged("its trailer does not point at a manifest"));
    }
    file.seek(SeekFrom::Start(at)).map_err(io)?;
    let mut frame = vec![0u8; (len - TRAILER_BYTES - at) as usize];
    file.read_exact(&mut frame).map_err(io)?;
    if frame[0] != MANIFEST || u32::from_be_bytes(frame[1..5].try_into().expect("4 bytes")) as usize != frame.len() - 5
    {
        return Err(damaged("its trailer does not point at a manifest"));
    }
    let manifest: Manifest =
        serde_json::from_slice(&frame[5..]).map_err(|e| damaged(&format!("its manifest is unreadable: {e}")))?;
    if !is_backup_id(&manifest.id) {
        return Err(damaged("its manifest's id is not a backup id"));
    }
    Ok(manifest)
}

/// Reads a whole backup, checking every digest (and, given the key, that
/// this deployment wrote it), and hands each item to `visit`; the manifest
/// when everything matched. An error from `visit` stops the walk. A
/// caller that acts on the items before the walk ends must be able to
/// throw them away: the file is known whole only at its end.
pub fn walk(
    path: &Path,
    key: Option<&BackupKey>,
    visit: &mut dyn FnMut(Item<'_>) -> std::io::Result<()>,
) -> Result<Manifest, ArchiveError> {
    let io = |source| ArchiveError::Io { path: path.to_owned(), source };
    let damaged = |why: String| ArchiveError::Damaged { path: path.to_owned(), why };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < MAGIC.len() as u64 + TRAILER_BYTES {
        return Err(damaged("it is too short to be a backup".into()));
    }
    let mut reader =
        Framed { inner: BufReader::with_capacity(CHUNK_BYTES, file), hasher: blake3::Hasher::new(), at: 0 };
    let mut magic = [0u8; 16];
    reader.read(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(damaged("it does not start as a plinth backup does".into()));
    }
    let end = len - TRAILER_BYTES;
    let mut payload = Vec::new();
    let mut namespaces = Vec::new();
    let mut files = Vec::new();
    let mut open_namespace: Option<(String, EntryDigest)> = None;
    let mut open_file: Option<(PathBuf, u64, u64, blake3::Hasher)> = None;
    let (manifest, manifest_at): (Manifest, u64) = loop {
        if reader.at + 5 > end {
            return Err(damaged(format!("it ends at byte {} without a manifest", reader.at)));
        }
        let frame_at = reader.at;
        let mut head = [0u8; 5];
        reader.read(&mut head).map_err(io)?;
        let size = u32::from_be_bytes(head[1..].try_into().expect("4 bytes"));
        if size > MAX_FRAME || reader.at + u64::from(size) > end {
            return Err(damaged(format!("the frame at byte {frame_at} has an impossible length ({size})")));
        }
        payload.resize(size as usize, 0);
        reader.read(&mut payload).map_err(io)?;
        let bad = |what: &str| damaged(format!("{what} at byte {frame_at}"));
        match head[0] {
            NAMESPACE if open_namespace.is_none() && open_file.is_none() => {
                let name = std::str::from_utf8(&payload).map_err(|_| bad("a namespace name that is not UTF-8"))?;
                visit(Item::Namespace(name)).map_err(io)?;
                open_namespace = Some((name.to_owned(), EntryDigest::default()));
            }
            ENTRY => {
                let (_, digest) = open_namespace.as_mut().ok_or_else(|| bad("an entry outside a namespace"))?;
                let key_len = payload.get(..4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
                let (key, value) = match key_len {
                    Some(n) if 4 + n <= payload.len() => payload[4..].split_at(n),
                    _ => return Err(bad("an entry whose key length is wrong")),
                };
                digest.add(key, value);
                visit(Item::Entry(key, value)).map_err(io)?;
            }
            NAMESPACE_END => {
                let (name, digest) = open_namespace.take().ok_or_else(|| bad("a namespace's end outside one"))?;
                let section = digest.finish(&name);
                if payload.len() != 48 {
                    return Err(bad("a namespace's end of the wrong length"));
                }
                let recorded = Section {
                    name: name.clone(),
                    entries: u64::from_be_bytes(payload[..8].try_into().expect("8 bytes")),
                    bytes: u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes")),
                    blake3: hex::encode(&payload[16..]),
                };
                if recorded != section {
                    return Err(damaged(format!(
                        "namespace `{name}` does not match its digest ({} entries read, {} recorded; \
                         content {} , recorded {})",
                        section.entries, recorded.entries, section.blake3, recorded.blake3
                    )));
                }
                namespaces.push(section);
            }
            FILE if open_namespace.is_none() && open_file.is_none() => {
                if payload.len() < 9 {
                    return Err(bad("a file header of the wrong length"));
                }
                let length = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                let name = std::str::from_utf8(&payload[8..]).map_err(|_| bad("a file name that is not UTF-8"))?;
                let path = PathBuf::from(name);
                if !safe_relative(&path) {
                    return Err(bad(&format!("a file name that leaves the blob store (`{name}`)")));
                }
                visit(Item::File(&path, length)).map_err(io)?;
                open_file = Some((path, length, 0, blake3::Hasher::new()));
            }
            DATA => {
                let (path, length, got, hasher) = open_file.as_mut().ok_or_else(|| bad("file data outside a file"))?;
                *got += payload.len() as u64;
                if *got > *length {
                    return Err(damaged(format!("file `{}` has more bytes than its header says", path.display())));
                }
                hasher.update(&payload);
                visit(Item::Data(&payload)).map_err(io)?;
            }
            FILE_END => {
                let (path, length, got, hasher) = open_file.take().ok_or_else(|| bad("a file's end outside one"))?;
                let content = hasher.finalize();
                if got != length || payload != content.as_bytes() {
                    return Err(damaged(format!("file `{}` does not match its digest", path.display())));
                }
                files.push(FileSection { path, bytes: length, blake3: content.to_hex().to_string() });
            }
            MANIFEST if open_namespace.is_none() && open_file.is_none() => {
                if reader.at != end {
                    return Err(bad("a manifest before the end"));
                }
                let manifest = serde_json::from_slice(&payload)
                    .map_err(|e| damaged(format!("its manifest is unreadable: {e}")))?;
                break (manifest, frame_at);
            }
            tag => return Err(bad(&format!("an unexpected frame (tag {tag:#04x})"))),
        }
    };
    let digest = reader.hasher.finalize();
    let mut trailer = [0u8; TRAILER_BYTES as usize];
    reader.inner.read_exact(&mut trailer).map_err(io)?;
    if trailer[..8] != manifest_at.to_be_bytes() {
        return Err(damaged("its trailer does not point at its manifest".into()));
    }
    if trailer[8..40] != *digest.as_bytes() {
        return Err(damaged(
            "its checksum does not match its bytes (every namespace and file matched its own digest: \
             the damage is in the framing or the manifest)"
                .into(),
        ));
    }
    if let Some(key) = key
        && !bool::from(subtle::ConstantTimeEq::ct_eq(&trailer[40..], key.mac(manifest_at, &trailer[8..40]).as_bytes()))
    {
        return Err(ArchiveError::Forged { path: path.to_owned() });
    }
    if !is_backup_id(&manifest.id) {
        return Err(damaged("its manifest's id is not a backup id".into()));
    }
    if manifest.namespaces != namespaces || manifest.files != files {
        return Err(damaged("its manifest does not list what it holds".into()));
    }
    Ok(manifest)
}

/// A relative path of plain names (no `..`, no root): it stays under the
/// directory it is joined to.
fn safe_relative(path: &Path) -> bool {
    path.components().all(|c| matches!(c, std::path::Component::Normal(_))) && path.components().next().is_some()
}

/// A reader that hashes what it reads and counts its offset.
struct Framed<R: Read> {
    inner: R,
    hasher: blake3::Hasher,
    at: u64,
}

impl<R: Read> Framed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hasher.update(buf);
        self.at += buf.len() as u64;
        Ok(())
    }
}
