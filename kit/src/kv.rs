//! Key-value storage in the plugin's own namespace: the WIT's calls, and
//! typed helpers over them (JSON values, ETags, a bounded compare-and-swap
//! loop, paged scans).
//!
//! Limits (the host's): a key is 1 to 1024 bytes, a value at most 4 MiB, a
//! scan page at most [`MAX_SCAN_PAGE`] entries, the namespace at most its
//! `kv_bytes` quota.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub use crate::bindings::plinth::platform::kv::{Entry, Error, Op, Page, Quota, Swap, WriteOutcome};
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::kv::{batch, compare_and_swap, delete, get, scan_prefix, set};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::kv::{batch, compare_and_swap, delete, get, scan_prefix, set};

/// Attempts [`update`] makes before it answers 409 `contended`.
pub const MAX_UPDATE_ATTEMPTS: usize = 16;
/// Most entries the host returns in one scan page.
pub const MAX_SCAN_PAGE: u32 = 1000;

impl From<Error> for crate::Error {
    /// Full namespace 507, oversize value 413, bad key 400; a failing
    /// backend is 503 and its detail goes to the log.
    fn from(e: Error) -> Self {
        match e {
            Error::QuotaExceeded(q) => crate::Error::new(
                507,
                "quota_exceeded",
                format!("the plugin's storage is full ({} of {} bytes used)", q.used, q.limit),
            ),
            Error::ValueTooLarge(limit) => {
                crate::Error::new(413, "value_too_large", format!("a stored value may be at most {limit} bytes"))
            }
            Error::InvalidKey(why) => crate::Error::new(400, "invalid_key", why),
            Error::Storage(detail) => crate::Error::unavailable(detail),
        }
    }
}

/// A stored value with its version: the ETag a client sends back in
/// `If-Match`, and the exact bytes a compare-and-swap expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The bytes it was stored as.
    bytes: Vec<u8>,
}

impl<T> Versioned<T> {
    /// A strong ETag of the stored bytes, quoted as HTTP writes it.
    pub fn etag(&self) -> String {
        etag(&self.bytes)
    }

    /// True when an `If-Match` header value names this version (or is `*`).
    pub fn matches(&self, if_match: &str) -> bool {
        let mine = self.etag();
        if_match.split(',').map(str::trim).any(|tag| tag == "*" || tag == mine)
    }
}

fn etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> crate::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        crate::log::error("stored value does not decode", &[("key", key), ("error", &e.to_string())]);
        crate::Error::new(500, "corrupt_value", "a stored value could not be read")
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("a value that serializes to JSON")
}

/// The JSON value under `key`, if any.
pub fn get_json<T: DeserializeOwned>(key: &str) -> crate::Result<Option<T>> {
    Ok(get_versioned(key)?.map(|v| v.value))
}

/// The JSON value under `key` with its version.
pub fn get_versioned<T: DeserializeOwned>(key: &str) -> crate::Result<Option<Versioned<T>>> {
    match get(key)? {
        Some(bytes) => Ok(Some(Versioned { value: decode(key, &bytes)?, bytes })),
        None => Ok(None),
    }
}

/// Stores `value` as JSON under `key`, whatever was there; returns its ETag.
pub fn set_json<T: Serialize>(key: &str, value: &T) -> crate::Result<String> {
    let bytes = encode(value);
    set(key, &bytes)?;
    Ok(etag(&bytes))
}

/// Stores `value` under `key` only if nothing is there; returns its ETag,
/// or none (and changes nothing) when something was.
pub fn insert_json<T: Serialize>(key: &str, value: &T) -> crate::Result<Option<String>> {
    let bytes = encode(value);
    match compare_and_swap(key, None, Some(&bytes))? {
        Swap::Swapped => Ok(Some(etag(&bytes))),
        Swap::Conflict(_) => Ok(None),
    }
}

/// Reads, changes and writes the value under `key` without losing a
/// concurrent change: `change` gets the current value (none when absent)
/// and returns the new one (none deletes). The write happens only if the
/// value is still the one read; otherwise it runs again, at most
/// [`MAX_UPDATE_ATTEMPTS`] times (then 409 `contended`).
///
/// With `if_match` (a client's `If-Match`), the value must exist and carry
/// that version, and a concurrent change is 412 `precondition_failed`
/// instead of a retry: the client decided on what it had read.
pub fn update<T, F>(key: &str, if_match: Option<&str>, mut change: F) -> crate::Result<Option<Versioned<T>>>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> crate::Result<Option<T>>,
{
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let current = get(key)?;
        let value = match &current {
            Some(bytes) => Some(Versioned { value: decode::<T>(key, bytes)?, bytes: bytes.clone() }),
            None => None,
        };
        if let Some(tag) = if_match
            && !value.as_ref().is_some_and(|v| v.matches(tag))
        {
            return Err(crate::Error::precondition_failed(&format!("`{key}`")));
        }
        let next = change(value.map(|v| v.value))?;
        let next_bytes = next.as_ref().map(encode);
        match compare_and_swap(key, current.as_deref(), next_bytes.as_deref())? {
            Swap::Swapped => {
                return Ok(next.zip(next_bytes).map(|(value, bytes)| Versioned { value, bytes }));
            }
            Swap::Conflict(_) if if_match.is_some() => {
                return Err(crate::Error::precondition_failed(&format!("`{key}`")));
            }
            Swap::Conflict(_) => continue,
        }
    }
    Err(crate::Error::new(409, "contended", format!("`{key}` is changing too often; retry")))
}

/// The value and version of a key written with [`write_if_version`]: the
/// host keeps the version, so a conditional write compares versions and
/// the old value never travels back.
pub fn get_with_version(key: &str) -> crate::Result<Option<(u64, Vec<u8>)>> {
    Ok(versioned::get_versioned(key)?.map(|v| (v.version, v.value)))
}

/// Writes `value` (none deletes) under `key` only if its version is
/// `expected` (none: absent), with `also` in the same atomic batch. Versions
/// only grow and are never reused, even after a delete.
pub fn write_if_version(
    key: &str,
    expected: Option<u64>,
    value: Option<&[u8]>,
    also: &[Op],
) -> crate::Result<WriteOutcome> {
    Ok(versioned::write_versioned(key, expected, value, also)?)
}

#[cfg(target_arch = "wasm32")]
mod versioned {
    pub use crate::bindings::plinth::platform::kv::{get_versioned, write_versioned};
}
#[cfg(not(target_arch = "wasm32"))]
mod versioned {
    pub use crate::testing::kv::{get_versioned, write_versioned};
}

/// One page of decoded values.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPage<T> {
    /// Keys and values, in key order.
    pub entries: Vec<(String, T)>,
    /// The key to pass as `after` for the next page; none at the end.
    pub next: Option<String>,
}

/// One page of JSON values whose keys start with `prefix`, after the key
/// `after` (at most `limit`, capped at [`MAX_SCAN_PAGE`]).
pub fn page<T: DeserializeOwned>(prefix: &str, after: Option<&str>, limit: u32) -> crate::Result<JsonPage<T>> {
    let page = scan_prefix(prefix, after, limit.clamp(1, MAX_SCAN_PAGE))?;
    let mut entries = Vec::with_capacity(page.entries.len());
    for entry in page.entries {
        let value = decode(&entry.key, &entry.value)?;
        entries.push((entry.key, value));
    }
    Ok(JsonPage { entries, next: page.next })
}

/// Every JSON value whose key starts with `prefix`, in key order, read a
/// page at a time.
pub fn scan<T: DeserializeOwned>(prefix: &str) -> Scan<T> {
    Scan { prefix: prefix.to_owned(), buffered: Vec::new(), next: None, done: false }
}

/// The iterator [`scan`] returns.
pub struct Scan<T> {
    prefix: String,
    /// The current page, reversed so that `pop` yields key order.
    buffered: Vec<(String, T)>,
    next: Option<String>,
    done: bool,
}

/// Entries [`scan`] reads per page.
const SCAN_PAGE: u32 = 100;

impl<T: DeserializeOwned> Iterator for Scan<T> {
    type Item = crate::Result<(String, T)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.buffered.pop() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        match page(&self.prefix, self.next.as_deref(), SCAN_PAGE) {
            Ok(JsonPage { mut entries, next }) => {
                self.done = next.is_none();
                self.next = next;
                entries.reverse();
                self.buffered = entries;
                self.buffered.pop().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
