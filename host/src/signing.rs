//! Signed tokens for plugins: compact, URL-safe, bound to one plugin and one
//! purpose, verifiable across key rotation.
//!
//! One root secret at a time signs; older ones keep verifying until an
//! operator retires them. Each plugin's key is derived from a root secret
//! with HKDF-SHA256 (info: the plugin's name), so no plugin can make or
//! accept another's tokens, and none ever sees key material. Root secrets
//! live in the system namespace `signing-keys`, created at first start.
//!
//! A token is `v1.<key id>.<body>.<tag>`: the body is base64url (no
//! padding) of an 8-byte big-endian expiry (0: none) and the payload; the
//! tag is base64url of HMAC-SHA256 over the purpose, a zero byte and the
//! token's text up to the last dot. The tag covers the exact text, so a
//! re-encoded token fails like an altered one.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::storage::{Namespace, NamespaceId, Storage, StorageError};

/// Token format version, its first field.
const FORMAT: &str = "v1";
/// HKDF salt: names the scheme, so the keys serve nothing else.
const SALT: &[u8] = b"plinth/signing/v1";
/// Largest payload a token carries; a URL token should stay far below it.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Longest token `verify` reads (anything longer cannot be one of ours).
const MAX_TOKEN: usize = 4 * MAX_PAYLOAD;
/// Longest purpose.
const MAX_PURPOSE: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// One root secret.
#[derive(Clone, Serialize, Deserialize)]
struct RootKey {
    id: u32,
    /// 32 random bytes, hex.
    secret: String,
    /// RFC 3339.
    created_at: String,
    /// Retired keys verify nothing.
    retired: bool,
}

/// What operators see of a root key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The id tokens carry.
    pub id: u32,
    /// When it was made.
    pub created_at: String,
    /// `signing` (the one new tokens use), `verifying` or `retired`.
    pub state: &'static str,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not shaped like a token; says where.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The tag does not match: altered, another purpose or another plugin.
    #[error("the token's signature does not match")]
    BadSignature,
    /// Its key has been retired.
    #[error("the token was signed with a retired key")]
    RetiredKey,
    /// Past its expiry.
    #[error("the token expired at {0}")]
    Expired(u64),
}

/// Why a token could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The purpose is empty, too long or has other characters than `a-z 0-9 . _ -`.
    #[error("purpose must be 1 to {MAX_PURPOSE} of a-z, 0-9, `.`, `_`, `-`")]
    Purpose,
    /// The payload is over [`MAX_PAYLOAD`].
    #[error("payload is {0} bytes; at most {MAX_PAYLOAD}")]
    TooLarge(usize),
}

/// The host's signing keys.
pub struct SigningKeys {
    namespace: Arc<dyn Namespace>,
    /// Every root key, by ascending id.
    keys: RwLock<Vec<RootKey>>,
    /// One rotation or retirement at a time.
    changing: tokio::sync::Mutex<()>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn key_name(id: u32) -> String {
    format!("key/{id:010}")
}

impl SigningKeys {
    /// Loads the root keys, making the first one on a new data directory.
    pub async fn open(storage: &dyn Storage) -> Result<Self, StorageError> {
        let namespace = storage.namespace(NamespaceId::System("signing-keys"), None)?;
        let page = namespace.scan_prefix("key/", None, crate::storage::MAX_SCAN_PAGE).await?;
        let keys = page
            .entries
            .iter()
            .map(|(name, value)| {
                serde_json::from_slice(value)
                    .map_err(|e| StorageError::Backend(format!("signing key {name} is unreadable: {e}")))
            })
            .collect::<Result<Vec<RootKey>, _>>()?;
        let this = Self { namespace, keys: RwLock::new(keys), changing: tokio::sync::Mutex::new(()) };
        if this.keys.read().expect("signing keys lock").iter().all(|k| k.retired) {
            this.rotate().await?;
            storage.flush().await?;
        }
        Ok(this)
    }

    /// Makes a new root key the signing one; the others keep verifying.
    pub async fn rotate(&self) -> Result<KeyInfo, StorageError> {
        let _one = self.changing.lock().await;
        let id = self.keys.read().expect("signing keys lock").last().map_or(1, |k| k.id + 1);
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = RootKey {
            id,
            secret: hex::encode(secret),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            retired: false,
        };
        let stored = serde_json::to_vec(&key).expect("keys serialize");
        self.namespace.set(&key_name(id), stored).await?;
        self.keys.write().expect("signing keys lock").push(key);
        Ok(self.list().into_iter().find(|k| k.id == id).expect("just added"))
    }

    /// Retires every key but the signing one; returns the ids retired now.
    pub async fn retire_old(&self) -> Result<Vec<u32>, StorageError> {
        let _one = self.changing.lock().await;
        let current = self.current_id();
        let retiring: Vec<RootKey> = self
            .keys
            .read()
            .expect("signing keys lock")
            .iter()
            .filter(|k| !k.retired && Some(k.id) != current)
            .cloned()
            .collect();
        for key in &retiring {
            let stored = serde_json::to_vec(&RootKey { retired: true, ..key.clone() }).expect("keys serialize");
            self.namespace.set(&key_name(key.id), stored).await?;
        }
        let ids: Vec<u32> = retiring.iter().map(|k| k.id).collect();
        for key in self.keys.write().expect("signing keys lock").iter_mut() {
            if ids.contains(&key.id) {
                key.retired = true;
            }
        }
        Ok(ids)
    }

    /// Every root key, without secrets.
    pub fn list(&self) -> Vec<KeyInfo> {
        let current = self.current_id();
        let keys = self.keys.read().expect("signing keys lock");
        keys.iter()
            .map(|k| KeyInfo {
                id: k.id,
                created_at: k.created_at.clone(),
                state: if k.retired {
                    "retired"
                } else if Some(k.id) == current {
                    "signing"
                } else {
                    "verifying"
                },
            })
            .collect()
    }

    fn current_id(&self) -> Option<u32> {
        self.keys.read().expect("signing keys lock").iter().rev().find(|k| !k.retired).map(|k| k.id)
    }

    /// The MAC for `plugin` under root key `id`, when that key may be used.
    fn mac(&self, id: u32, plugin: &str) -> Result<HmacSha256, VerifyError> {
        let keys = self.keys.read().expect("signing keys lock");
        let root = keys.iter().find(|k| k.id == id).ok_or(VerifyError::BadSignature)?;
        if root.retired {
            return Err(VerifyError::RetiredKey);
        }
        let secret = hex::decode(&root.secret).expect("secrets are stored as hex");
        let mut derived = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(Some(SALT), &secret)
            .expand(plugin.as_bytes(), &mut derived)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Ok(HmacSha256::new_from_slice(&derived).expect("HMAC takes any key length"))
    }

    /// A token for `payload`, for `plugin` and `purpose`.
    pub fn sign(
        &self,
        plugin: &str,
        purpose: &str,
        payload: &[u8],
        expires_at: Option<u64>,
    ) -> Result<String, SignError> {
        check_purpose(purpose)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(SignError::TooLarge(payload.len()));
        }
        let id = self.current_id().expect("open makes a signing key");
        let mut body = Vec::with_capacity(8 + payload.len());
        body.extend_from_slice(&expires_at.unwrap_or(0).to_be_bytes());
        body.extend_from_slice(payload);
        let signed = format!("{FORMAT}.{id}.{}", URL_SAFE_NO_PAD.encode(&body));
        let mut mac = self.mac(id, plugin).expect("the signing key is not retired");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(signed.as_bytes());
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())))
    }

    /// The payload of a token `plugin` made for `purpose`.
    pub fn verify(&self, plugin: &str, purpose: &str, token: &str) -> Result<Vec<u8>, VerifyError> {
        let malformed = |why: &str| VerifyError::Malformed(why.to_owned());
        if token.len() > MAX_TOKEN {
            return Err(malformed("longer than any token"));
        }
        let (signed, tag) = token.rsplit_once('.').ok_or_else(|| malformed("expected four dot-separated parts"))?;
        let mut parts = signed.split('.');
        let (Some(format), Some(id), Some(body), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("expected four dot-separated parts"));
        };
        if format != FORMAT {
            return Err(malformed("unknown format version"));
        }
        let id = match id.parse::<u32>() {
            Ok(n) if id == n.to_string() => n,
            _ => return Err(malformed("the key id is not a number")),
        };
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed("the body is not base64url"))?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| malformed("the tag is not base64url"))?;
        if body.len() < 8 {
            return Err(malformed("the body is too short"));
        }
        let mut mac = self.mac(id, plugin)?;
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| VerifyError::BadSignature)?;
        let (expiry, payload) = body.split_at(8);
        let expires_at = u64::from_be_bytes(expiry.try_into().expect("eight bytes"));
        if expires_at != 0 && now_secs() >= expires_at {
            return Err(VerifyError::Expired(expires_at));
        }
        Ok(payload.to_vec())
    }
}

fn check_purpose(purpose: &str) -> Result<(), SignError> {
    let fine = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-');
    if purpose.is_empty() || purpose.len() > MAX_PURPOSE || !purpose.bytes().all(fine) {
        return Err(SignError::Purpose);
    }
    Ok(())
}

/// `path` with every segment that begins with a token's shape
/// (`v1.<key>.<body>.<tag>`, read percent-decoded, whatever follows it)
/// cut to `v1.…`, for the request log: a link or view token in a path is
/// a key to what it opens, and logs travel further than the data. A link
/// pasted with a trailing `.` or `)`, or with its dots encoded, still
/// carries the token.
pub fn redact_tokens(path: &str) -> std::borrow::Cow<'_, str> {
    let token_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let token_like = |segment: &str| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        let parts: Vec<&str> = decoded.splitn(4, '.').collect();
        parts.len() == 4
            && parts[0] == FORMAT
            && parts[1..3].iter().all(|p| !p.is_empty() && p.bytes().all(token_byte))
            && parts[3].bytes().next().is_some_and(token_byte)
    };
    // An emergency sign-in link's token too.
    if let Some(link) = path.strip_prefix("/v1/auth/emergency/")
        && !link.is_empty()
    {
        return "/v1/auth/emergency/…".into();
    }
    if !path.split('/').any(token_like) {
        return path.into();
    }
    let redacted: Vec<&str> =
        path.split('/').map(|segment| if token_like(segment) { "v1.…" } else { segment }).collect();
    redacted.join("/").into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_in_paths_are_cut_from_the_log() {
        use super::redact_tokens;
        assert_eq!(redact_tokens("/v1/state/links/v1.3.eyJr.AbC_-9/changes"), "/v1/state/links/v1.…/changes");
        assert_eq!(redact_tokens("/v1/state/views/v1.0.a.b"), "/v1/state/views/v1.…");
        assert_eq!(redact_tokens(&format!("/v1/auth/emergency/{}", "ab".repeat(32))), "/v1/auth/emergency/…");
        // A token with something after it, or spelled with encoded dots,
        // is still a token.
        for pasted in ["v1.3.eyJr.AbC_-9.", "v1.3.eyJr.AbC_-9)", "v1.3.eyJr.AbC_-9%C2%9B", "v1%2E3%2eeyJr.AbC_-9"] {
            assert_eq!(redact_tokens(&format!("/v1/state/links/{pasted}")), "/v1/state/links/v1.…", "{pasted}");
        }
        for kept in ["/v1/state/notes/n1", "/v1/hello", "/v1/x/v1.2.3", "/v1/x/v1.2.3.", "/v1/x/v1..b.c", "/"] {
            assert_eq!(redact_tokens(kept), kept);
        }
    }

    use super::*;
    use crate::storage::SledStorage;

    async fn keys() -> (tempfile::TempDir, SledStorage, SigningKeys) {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let keys = SigningKeys::open(&storage).await.unwrap();
        (dir, storage, keys)
    }

    #[tokio::test]
    async fn tokens_are_bound_to_plugin_and_purpose() {
        let (_dir, _storage, keys) = keys().await;
        let token = keys.sign("state", "view", b"{\"sort\":\"name\"}", None).unwrap();
        assert!(token.starts_with("v1.1.") && token.len() < 100, "{token}");
        assert_eq!(keys.verify("state", "view", &token).unwrap(), b"{\"sort\":\"name\"}");
        assert_eq!(keys.verify("forms", "view", &token), Err(VerifyError::BadSignature));
        assert_eq!(keys.verify("state", "link", &token), Err(VerifyError::BadSignature));
    }

    #[tokio::test]
    async fn every_flipped_bit_is_refused() {
        let (_dir, _storage, keys) = keys().await;
        let token = keys.sign("state", "view", b"payload", Some(u64::MAX)).unwrap();
        for at in 0..token.len() {
            for bit in 0..8 {
                let mut bytes = token.clone().into_bytes();
                bytes[at] ^= 1 << bit;
                let Ok(altered) = String::from_utf8(bytes) else { continue };
                assert!(keys.verify("state", "view", &altered).is_err(), "bit {bit} of byte {at} went unnoticed");
            }
        }
        for cut in 0..token.len() {
            assert!(keys.verify("state", "view", &token[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[tokio::test]
    async fn expiry_and_rotation() {
        let (dir, storage, keys) = keys().await;
        let expired = keys.sign("state", "view", b"x", Some(1)).unwrap();
        assert_eq!(keys.verify("state", "view", &expired), Err(VerifyError::Expired(1)));
        let old = keys.sign("state", "view", b"old", None).unwrap();
        assert_eq!(keys.rotate().await.unwrap().id, 2);
        let new = keys.sign("state", "view", b"new", None).unwrap();
        assert!(new.starts_with("v1.2."));
        assert_eq!(keys.verify("state", "view", &old).unwrap(), b"old");
        assert_eq!(keys.retire_old().await.unwrap(), vec![1]);
        assert_eq!(keys.verify("state", "view", &old), Err(VerifyError::RetiredKey));
        storage.flush().await.unwrap();
        drop((keys, storage));
        let storage = SledStorage::open(dir.path()).unwrap();
        let reopened = SigningKeys::open(&storage).await.unwrap();
        assert_eq!(reopened.verify("state", "view", &new).unwrap(), b"new");
        let states: Vec<_> = reopened.list().into_iter().map(|k| (k.id, k.state)).collect();
        assert_eq!(states, vec![(1, "retired"), (2, "signing")]);
    }

    #[tokio::test]
    async fn bad_purposes_and_payloads_are_refused() {
        let (_dir, _storage, keys) = keys().await;
        assert_eq!(keys.sign("p", "", b"", None), Err(SignError::Purpose));
        assert_eq!(keys.sign("p", "View", b"", None), Err(SignError::Purpose));
        assert_eq!(keys.sign("p", "v", &vec![0; MAX_PAYLOAD + 1], None), Err(SignError::TooLarge(MAX_PAYLOAD + 1)));
        assert!(matches!(keys.verify("p", "v", "v1.01.AAAAAAAAAAA.AA"), Err(VerifyError::Malformed(_))));
        assert!(matches!(keys.verify("p", "v", "v2.1.AAAAAAAAAAA.AA"), Err(VerifyError::Malformed(_))));
    }
}
