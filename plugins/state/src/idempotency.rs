//! `Idempotency-Key`: a retried write returns the first result instead of
//! writing twice. The record is written in the same atomic batch as the
//! document, so it exists exactly when the write happened; it is kept for a
//! day, per account, and a key reused for a different request is refused.
//! A record keeps a body of at most [`MAX_KEPT_BODY`] bytes (a larger one
//! is replayed without it). An account keeps its last [`MAX_RECORDS`]
//! records: each new one removes the expired and the oldest past that
//! number, found through an index ordered by expiry
//! (`idemx/{account}/{expiry}/{hash}`), so one account cannot fill the
//! plugin's storage with them.

use plinth_kit::kv::{self, Op};
use plinth_kit::{Error, Principal, Request, Response, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a result is kept for retries.
const KEEP_SECONDS: u64 = 24 * 3600;
/// Largest response body a record keeps.
pub const MAX_KEPT_BODY: usize = 4096;
/// Records one account keeps; older ones are removed (their retries are
/// then new requests).
pub const MAX_RECORDS: u32 = 256;

/// A write's idempotency key and the request it stands for.
pub struct Idempotency {
    /// The account's records by key hash: `idem/{account}/`.
    records: String,
    /// The account's index by expiry: `idemx/{account}/`.
    index: String,
    /// The key's hash.
    hash: String,
    fingerprint: String,
    /// When a record made now expires.
    expires_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    fingerprint: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    expires_at: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Idempotency {
    /// The request's key, if it sent one: 1 to 255 visible ASCII characters.
    pub fn of(req: &Request, me: &Principal) -> Result<Option<Idempotency>> {
        let Some(key) = req.header("idempotency-key") else { return Ok(None) };
        if !(1..=255).contains(&key.len()) || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::new(400, "invalid_header", "`idempotency-key` is 1 to 255 visible ASCII characters")
                .at("idempotency-key"));
        }
        let mut request = Sha256::new();
        for part in [
            req.method(),
            req.path(),
            req.query().unwrap_or_default(),
            req.if_match().unwrap_or_default(),
            req.header("if-none-match").unwrap_or_default(),
            req.header("content-type").unwrap_or_default(),
        ] {
            request.update(part.as_bytes());
            request.update([0]);
        }
        request.update(req.body());
        Ok(Some(Idempotency {
            records: format!("idem/{}/", me.account_id),
            index: format!("idemx/{}/", me.account_id),
            hash: hex(&Sha256::digest(key.as_bytes()))[..32].to_owned(),
            fingerprint: hex(&request.finalize()),
            expires_at: now() + KEEP_SECONDS,
        }))
    }

    fn record_key(&self) -> String {
        format!("{}{}", self.records, self.hash)
    }

    /// A document id made from the key: retries of one create, even racing
    /// each other, name the same document, so only one of them creates it.
    pub fn document_id(&self) -> String {
        let hash = Sha256::digest(format!("{}\0{}", self.records, self.hash).as_bytes());
        format!("i{}", &hex(&hash)[..31])
    }

    /// The first result, when this key was used before: 422
    /// `idempotency_key_reused` if it was for another request.
    pub fn replay(&self) -> Result<Option<Response>> {
        let Some(record) = kv::get_json::<Record>(&self.record_key())? else { return Ok(None) };
        if record.expires_at <= now() {
            return Ok(None);
        }
        if record.fingerprint != self.fingerprint {
            return Err(Error::new(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; use a new key for a new request",
            )
            .at("idempotency-key"));
        }
        let mut response = Response::bytes(record.status, "application/json", record.body.into_bytes());
        response.headers.extend(record.headers);
        Ok(Some(response.header("idempotent-replayed", "true")))
    }

    /// Records the final response (with its ETag) over the record written
    /// with the document; should this fail, a retry still gets the first
    /// status and body, without the ETag.
    pub fn complete(&self, response: &Response) -> Result<()> {
        kv::set(&self.record_key(), &self.record_bytes(response))?;
        Ok(())
    }

    /// The writes that go with the document's: the record of `response`
    /// and its index entry, and the removal of the account's expired
    /// records and of its oldest past [`MAX_RECORDS`].
    pub fn record(&self, response: &Response) -> Result<Vec<Op>> {
        let mut ops = vec![
            crate::store::set_bytes(self.record_key(), self.record_bytes(response)),
            crate::store::set_bytes(format!("{}{:010}/{}", self.index, self.expires_at, self.hash), Vec::new()),
        ];
        let held = kv::scan_prefix(&self.index, None, MAX_RECORDS)?.entries;
        let now = now();
        let mut count = held.len() + 1;
        for entry in &held {
            let Some((expiry, hash)) = entry.key[self.index.len()..].split_once('/') else { continue };
            let expired = expiry.parse::<u64>().map_or(true, |at| at <= now);
            if !expired && count <= MAX_RECORDS as usize {
                break;
            }
            if hash != self.hash {
                ops.push(Op::Delete(format!("{}{hash}", self.records)));
            }
            ops.push(Op::Delete(entry.key.clone()));
            count -= 1;
        }
        Ok(ops)
    }

    fn record_bytes(&self, response: &Response) -> Vec<u8> {
        let kept = response.body.len() <= MAX_KEPT_BODY;
        let record = Record {
            fingerprint: self.fingerprint.clone(),
            status: response.status,
            headers: response.headers.iter().filter(|(n, _)| n != "content-type").cloned().collect(),
            body: if kept { String::from_utf8_lossy(&response.body).into_owned() } else { String::new() },
            expires_at: self.expires_at,
        };
        serde_json::to_vec(&record).expect("records serialize")
    }
}
