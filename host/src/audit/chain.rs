//! The chain's integrity: the key, the links between records, and the tail
//! that says where the chain starts and ends.
//!
//! Each record stores the link to the record before it: the HMAC-SHA256,
//! under a key kept outside the database, of that record's stored bytes
//! (the first record links to [`GENESIS`]). The tail names the first and
//! the next record and the expected links at both ends, and is itself
//! MAC'd. Without the key, nobody holding the data directory can edit,
//! reorder, insert, delete a prefix or cut the tail of the chain without
//! `verify` seeing it. Records written before the key existed (`id <
//! keyed_from`) were linked by plain SHA-256; they stay verifiable, and the
//! MAC'd tail fixes where the keyed part starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The link that stands before the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Bytes of a key.
const KEY_BYTES: usize = 32;

/// The secret the chain is MAC'd with; lives in a file outside the data
/// directory, so a copy of the database is not enough to rewrite history.
#[derive(Clone)]
pub struct AuditKey([u8; KEY_BYTES]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or created.
    #[error("audit key {file}: {message}")]
    Io {
        /// The key file.
        file: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl AuditKey {
    /// Reads the key (64 hex digits) from `file`, creating it with a fresh
    /// random key, readable by its owner only, when it does not exist.
    pub fn load_or_create(file: &Path) -> Result<Self, KeyError> {
        let io = |message: String| KeyError::Io { file: file.to_owned(), message };
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|_| io("not 64 hexadecimal digits".into()))?;
                let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| io("not 64 hexadecimal digits".into()))?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
                }
                let mut out = std::fs::OpenOptions::new();
                out.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
                let mut handle = out.open(file).map_err(|e| io(e.to_string()))?;
                handle.write_all(hex::encode(key).as_bytes()).map_err(|e| io(e.to_string()))?;
                handle.sync_all().map_err(|e| io(e.to_string()))?;
                tracing::warn!(file = %file.display(), "created a new audit key; keep it, and keep it apart from the data");
                Ok(Self(key))
            }
            Err(e) => Err(io(e.to_string())),
        }
    }

    /// A key from bytes (tests and benches).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// A key for another purpose, derived from this one (BLAKE3
    /// `derive_key` with `context`), so that one secret outside the data
    /// directory also authenticates what else must not be forged.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// HMAC-SHA256 of `parts`, hex.
    pub fn mac(&self, parts: &[&[u8]]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// True when `expected` is the MAC of `parts`; compared in constant time.
    fn mac_matches(&self, parts: &[&[u8]], expected: &str) -> bool {
        let Ok(expected) = hex::decode(expected) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&expected).is_ok()
    }
}

/// Where the chain starts and ends; persisted under `tail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// The id the next record gets.
    pub next_id: u64,
    /// The link the next record must carry.
    pub last_hash: String,
    /// The oldest record kept (older ones were removed by retention).
    #[serde(default = "one")]
    pub first_id: u64,
    /// The link the oldest record kept carries.
    #[serde(default = "genesis")]
    pub first_prev: String,
    /// Records from this id on are linked by HMAC; older ones by SHA-256.
    #[serde(default = "one")]
    pub keyed_from: u64,
    /// HMAC of the fields above; absent only in logs from before keys.
    #[serde(default)]
    pub mac: Option<String>,
}

fn one() -> u64 {
    1
}

fn genesis() -> String {
    GENESIS.to_owned()
}

impl Tail {
    /// The tail of an empty log.
    pub fn empty(key: &AuditKey) -> Self {
        let mut tail =
            Self { next_id: 1, last_hash: genesis(), first_id: 1, first_prev: genesis(), keyed_from: 1, mac: None };
        tail.seal(key);
        tail
    }

    fn mac_input(&self) -> String {
        format!(
            "plinth-audit-tail\n{}\n{}\n{}\n{}\n{}",
            self.next_id, self.last_hash, self.first_id, self.first_prev, self.keyed_from
        )
    }

    /// Recomputes the MAC after a change.
    pub fn seal(&mut self, key: &AuditKey) {
        self.mac = Some(key.mac(&[self.mac_input().as_bytes()]));
    }

    /// True when the MAC is present and right.
    pub fn sealed_by(&self, key: &AuditKey) -> bool {
        self.mac.as_deref().is_some_and(|mac| key.mac_matches(&[self.mac_input().as_bytes()], mac))
    }

    /// The link record `id` carries to the record before it, whose stored
    /// bytes are `previous`.
    pub fn link(&self, key: &AuditKey, id: u64, previous: &[u8]) -> String {
        if id >= self.keyed_from { key.mac(&[previous]) } else { hex::encode(Sha256::digest(previous)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys/audit.key");
        let created = AuditKey::load_or_create(&file).unwrap();
        let read = AuditKey::load_or_create(&file).unwrap();
        assert_eq!(created.mac(&[b"x"]), read.mac(&[b"x"]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&file, "not a key").unwrap();
        assert!(AuditKey::load_or_create(&file).unwrap_err().to_string().contains("64 hexadecimal"));
    }

    #[test]
    fn a_tail_is_sealed_by_its_key_only() {
        let key = AuditKey::from_bytes([7; KEY_BYTES]);
        let mut tail = Tail::empty(&key);
        assert!(tail.sealed_by(&key));
        assert!(!tail.sealed_by(&AuditKey::from_bytes([8; KEY_BYTES])));
        tail.next_id = 5;
        assert!(!tail.sealed_by(&key), "a changed tail needs a new seal");
        tail.seal(&key);
        assert!(tail.sealed_by(&key));
    }
}
