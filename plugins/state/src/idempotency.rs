//! `Idempotency-Key`: a retried write returns the first result instead of
//! writing twice. The record is written in the same atomic batch as the
//! document, so it exists exactly when the write happened; it is kept for a
//! day, per account, and a key reused for a different request is refused.
//! A record keeps a body of at most [`MAX_KEPT_BODY`] bytes (a larger one
//! is replayed without it), and each new record sweeps expired ones of its
//! account.

use plinth_kit::kv::{self, Op};
use plinth_kit::{Error, Principal, Request, Response, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a result is kept for retries.
const KEEP_SECONDS: u64 = 24 * 3600;
/// Largest response body a record keeps.
pub const MAX_KEPT_BODY: usize = 4096;
/// Records of the account a new record looks at for expired ones.
const SWEEP: u32 = 16;

/// A write's idempotency key and the request it stands for.
pub struct Idempotency {
    record: String,
    /// The account's records, `idem/{account}/`.
    prefix: String,
    fingerprint: String,
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
        let prefix = format!("idem/{}/", me.account_id);
        let record = format!("{prefix}{}", &hex(&Sha256::digest(key.as_bytes()))[..32]);
        Ok(Some(Idempotency { record, prefix, fingerprint: hex(&request.finalize()) }))
    }

    /// The first result, when this key was used before: 422
    /// `idempotency_key_reused` if it was for another request.
    pub fn replay(&self) -> Result<Option<Response>> {
        let Some(record) = kv::get_json::<Record>(&self.record)? else { return Ok(None) };
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
        kv::set(&self.record, &self.record_bytes(response))?;
        Ok(())
    }

    /// The writes that go with the document's: the record of `response`,
    /// and the removal of expired records of the account.
    pub fn record(&self, response: &Response) -> Result<Vec<Op>> {
        let mut ops = vec![crate::store::set_bytes(self.record.clone(), self.record_bytes(response))];
        let now = now();
        for entry in kv::scan_prefix(&self.prefix, None, SWEEP)?.entries {
            let expired = serde_json::from_slice::<Record>(&entry.value).map_or(true, |r| r.expires_at <= now);
            if expired && entry.key != self.record {
                ops.push(Op::Delete(entry.key));
            }
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
            expires_at: now() + KEEP_SECONDS,
        };
        serde_json::to_vec(&record).expect("records serialize")
    }
}
