//! Files in the host's blob store (grant `blobs`): request bodies streamed
//! to disk without passing through the plugin, ranges read back, and
//! responses the host serves from a file ([`crate::Response::blob`]), with
//! `Range`, `ETag` and conditional requests handled by the host.
//!
//! Each call returns the WIT's [`Error`], so a protocol such as tus can
//! answer each case its own way; `?` into [`crate::Error`] maps them to the
//! usual statuses.

pub use crate::bindings::plinth::platform::blobs::{Blob, Checksum, Error, QuotaExceeded, ScanState, Upload};
use crate::request::Request;

#[cfg(target_arch = "wasm32")]
use crate::bindings::plinth::platform::blobs as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::blobs as host;

/// Starts an upload of `length` bytes for `owner`, reserved against the
/// quotas, removed `ttl_seconds` from now unless finished.
pub fn create_upload(owner: &str, length: u64, ttl_seconds: u64) -> Result<Upload, Error> {
    host::create_upload(owner, length, ttl_seconds)
}

/// An upload that has not expired.
pub fn get_upload(id: &str) -> Result<Upload, Error> {
    host::get_upload(id)
}

/// Appends the request's body to an upload holding exactly `offset` bytes;
/// returns the new offset. See `blobs.append` in the WIT.
pub fn append(req: &Request, id: &str, offset: u64, checksum: Option<&Checksum>) -> Result<u64, Error> {
    host::append(req.host(), id, offset, checksum)
}

/// Turns a complete upload into a blob.
pub fn finish_upload(id: &str) -> Result<Blob, Error> {
    host::finish_upload(id)
}

/// Ends an unfinished upload and gives its reservation back.
pub fn cancel_upload(id: &str) -> Result<(), Error> {
    host::cancel_upload(id)
}

/// Stores the request's whole body (at most `max` bytes) as a blob.
pub fn ingest(req: &Request, owner: &str, max: u64) -> Result<Blob, Error> {
    host::ingest(req.host(), owner, max)
}

/// Stores bytes the plugin made (at most 16 MiB) as a blob.
pub fn create(owner: &str, bytes: &[u8]) -> Result<Blob, Error> {
    host::create(owner, bytes)
}

/// A blob.
pub fn get(id: &str) -> Result<Blob, Error> {
    host::get(id)
}

/// Up to `len` (at most 1 MiB) bytes of a blob from `offset`.
pub fn read(id: &str, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
    host::read(id, offset, len)
}

/// One more link to a blob.
pub fn link(id: &str) -> Result<Blob, Error> {
    host::link(id)
}

/// One link fewer; returns the links left (at none the blob is gone).
pub fn unlink(id: &str) -> Result<u64, Error> {
    host::unlink(id)
}

/// Bytes stored and reserved by `owner`, or by the whole plugin.
pub fn usage(owner: Option<&str>) -> Result<(u64, u64), Error> {
    host::usage(owner)
}

/// The host call that makes a response serve a blob.
#[cfg(target_arch = "wasm32")]
type Start = fn(&crate::bindings::plinth::platform::types::Response, &str) -> Result<(), Error>;

/// A response's body as a blob the host serves.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) id: String,
    /// `blobs.serve`, reached through this pointer so that only a plugin
    /// that calls [`crate::Response::blob`] imports `blobs`.
    #[cfg(target_arch = "wasm32")]
    start: Start,
}

impl PartialEq for Served {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Served {}

impl Served {
    pub(crate) fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            #[cfg(target_arch = "wasm32")]
            start: host::serve,
        }
    }

    /// Asks the host to serve the blob as `response`'s body.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn start(&self, response: &crate::bindings::plinth::platform::types::Response) -> crate::Result<()> {
        Ok((self.start)(response, &self.id)?)
    }
}

impl From<Error> for crate::Error {
    /// The usual status for each failure; a protocol with its own (tus)
    /// matches on [`Error`] instead.
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => crate::Error::not_found("no such file or upload"),
            Error::Expired => crate::Error::new(410, "upload_expired", "the upload has expired"),
            Error::OffsetMismatch(at) => {
                crate::Error::new(409, "offset_mismatch", format!("the upload holds {at} bytes; continue from there"))
            }
            Error::TooLarge(limit) => {
                crate::Error::new(413, "too_large", format!("more than the {limit} bytes allowed"))
            }
            // The plugin-wide figures are everyone's business: not shown.
            Error::QuotaExceeded(q) if q.scope == "plugin" => crate::Error::new(
                413,
                "file_quota_exceeded",
                format!("the service's file storage cannot take {} more bytes now", q.requested),
            ),
            Error::QuotaExceeded(q) => crate::Error::new(
                413,
                "file_quota_exceeded",
                format!(
                    "your file storage quota of {} bytes would be passed ({} used or reserved, {} more needed)",
                    q.limit, q.used, q.requested
                ),
            ),
            Error::ChecksumMismatch => {
                crate::Error::new(460, "checksum_mismatch", "the bytes do not match the checksum sent; none were kept")
            }
            Error::Busy => crate::Error::new(423, "upload_busy", "another request is writing to this upload")
                .with_header("retry-after", "1"),
            Error::Incomplete(at) => {
                crate::Error::new(409, "upload_incomplete", format!("the upload holds only {at} bytes so far"))
            }
            Error::DiskFull => crate::Error::new(507, "disk_full", "the server has no room for this file now"),
            Error::BodyFailed => crate::Error::new(400, "body_failed", "the request body could not be read"),
            Error::Invalid(why) => crate::Error::new(500, "invalid_blob_call", why),
            Error::Unavailable(_) => crate::Error::new(503, "storage_unavailable", "file storage is unavailable"),
        }
    }
}
