//! Resumable uploads speaking tus 1.0 (core, with the creation, checksum,
//! termination and expiration extensions) into the host's blob store
//! (grant `blobs`). The kit speaks the protocol; the plugin keeps its own
//! record of each upload (who may continue it, what it is for) and decides
//! what a finished one becomes.
//!
//! ```ignore
//! fn create(req: &Request) -> Result<Response> {
//!     tus::answer(|| {
//!         let me = req.signed_in()?;
//!         let reservation = tus::Reservation { owner: me.account_id, max_bytes: MAX, ttl: TTL };
//!         let new = tus::create(req, |_metadata| Ok(reservation))?;
//!         // keep a record under new.upload.id, then:
//!         Ok(new.created(&format!("/v1/things/uploads/{}", new.upload.id)))
//!     }())
//! }
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{Error, Request, Response, Result, blobs};

/// The protocol version spoken.
pub const VERSION: &str = "1.0.0";
/// The extensions implemented.
pub const EXTENSIONS: &str = "creation,checksum,termination,expiration";
/// The checksum algorithms the host computes.
pub const CHECKSUMS: &str = "sha1,sha256";
/// The media type of a PATCH body.
pub const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// Longest `Upload-Metadata` taken.
const MAX_METADATA_BYTES: usize = 4096;

/// Every tus response (errors too) says which protocol it speaks.
pub fn answer(result: Result<Response>) -> Result<Response> {
    result.map(|r| r.header("tus-resumable", VERSION)).map_err(|e| e.with_header("tus-resumable", VERSION))
}

/// A request must speak the version this server does (412 otherwise).
pub fn check_version(req: &Request) -> Result<()> {
    if req.header("tus-resumable").as_deref() == Some(VERSION) {
        return Ok(());
    }
    Err(Error::new(412, "tus_version_unsupported", format!("send `Tus-Resumable: {VERSION}`"))
        .at("tus-resumable")
        .with_header("tus-version", VERSION))
}

/// `OPTIONS`: what this server speaks, and the largest upload it takes.
pub fn options(max_size: u64) -> Response {
    Response::empty(204)
        .header("tus-resumable", VERSION)
        .header("tus-version", VERSION)
        .header("tus-extension", EXTENSIONS)
        .header("tus-max-size", max_size.to_string())
        .header("tus-checksum-algorithm", CHECKSUMS)
}

/// An HTTP date (`Upload-Expires`).
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// A header holding a non-negative integer: 400 naming it otherwise.
fn number_header(req: &Request, name: &str) -> Result<u64> {
    let value = req.header(name).ok_or_else(|| {
        Error::new(400, format!("{}_required", name.replace('-', "_")), format!("send `{name}`")).at(name)
    })?;
    value
        .trim()
        .parse()
        .map_err(|_| Error::new(400, "invalid_header", format!("`{name}` is not a non-negative integer")).at(name))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs.
pub fn metadata(req: &Request) -> Result<BTreeMap<String, String>> {
    let invalid = |why: &str| Error::new(400, "invalid_metadata", why.to_owned()).at("upload-metadata");
    let Some(raw) = req.header("upload-metadata") else { return Ok(BTreeMap::new()) };
    if raw.len() > MAX_METADATA_BYTES {
        return Err(invalid("Upload-Metadata is longer than 4096 bytes"));
    }
    let mut pairs = BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split(' ');
        let (Some(name), value, None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("each pair is `key base64value`"));
        };
        if name.is_empty() || !name.is_ascii() {
            return Err(invalid("a key is ASCII without spaces or commas"));
        }
        let value = match value {
            Some(encoded) => {
                let bytes = STANDARD.decode(encoded).map_err(|_| invalid(&format!("`{name}` is not base64")))?;
                String::from_utf8(bytes).map_err(|_| invalid(&format!("`{name}` is not UTF-8 text")))?
            }
            None => String::new(),
        };
        if pairs.insert(name.to_owned(), value).is_some() {
            return Err(invalid(&format!("`{name}` is given twice")));
        }
    }
    Ok(pairs)
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
fn checksum(req: &Request) -> Result<Option<blobs::Checksum>> {
    let Some(raw) = req.header("upload-checksum") else { return Ok(None) };
    let invalid = |why: String| Error::new(400, "invalid_checksum", why).at("upload-checksum");
    let (algorithm, digest) =
        raw.trim().split_once(' ').ok_or_else(|| invalid("send `Upload-Checksum: <algorithm> <base64>`".into()))?;
    if !CHECKSUMS.split(',').any(|known| known == algorithm) {
        return Err(Error::new(
            400,
            "checksum_algorithm_unsupported",
            format!("`{algorithm}` is not one of {CHECKSUMS}"),
        )
        .at("upload-checksum"));
    }
    let digest = STANDARD.decode(digest.trim()).map_err(|_| invalid("the digest is not base64".into()))?;
    Ok(Some(blobs::Checksum { algorithm: algorithm.to_owned(), digest }))
}

/// 409 with the offset to continue from.
pub fn offset_mismatch(current: u64) -> Error {
    Error::new(409, "offset_mismatch", format!("the upload holds {current} bytes; continue from there"))
        .at("upload-offset")
        .with_header("upload-offset", current.to_string())
}

/// A new upload, reserved in the blob store.
#[derive(Debug)]
pub struct Created {
    /// The host's upload (its id names it in the plugin's routes).
    pub upload: blobs::Upload,
    /// Its `Upload-Metadata`.
    pub metadata: BTreeMap<String, String>,
}

impl Created {
    /// The 201 that answers the creation, pointing at `location`.
    pub fn created(&self, location: &str) -> Response {
        Response::empty(201).header("location", location).header("upload-expires", http_date(self.upload.expires))
    }
}

/// What an upload may be, decided once its metadata is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Whose quota it counts against.
    pub owner: String,
    /// Its largest `Upload-Length`.
    pub max_bytes: u64,
    /// Seconds it lives unfinished (see `blobs.create-upload`).
    pub ttl: u64,
}

/// `POST`: checks the request (version, an `Upload-Length` of 1 to
/// `max_bytes`, no deferred length, the metadata) and reserves the upload
/// `reserve` describes once it has read the metadata (whose purpose or
/// field may decide).
pub fn create(
    req: &Request,
    reserve: impl FnOnce(&BTreeMap<String, String>) -> Result<Reservation>,
) -> Result<Created> {
    check_version(req)?;
    if req.header("upload-defer-length").is_some() {
        return Err(Error::new(400, "defer_length_unsupported", "send `Upload-Length`; deferring it is not offered")
            .at("upload-defer-length"));
    }
    let length = number_header(req, "upload-length")?;
    let metadata = metadata(req)?;
    let reservation = reserve(&metadata)?;
    if length == 0 {
        return Err(Error::new(400, "empty_upload", "an upload has at least one byte").at("upload-length"));
    }
    if length > reservation.max_bytes {
        return Err(Error::new(
            413,
            "too_large",
            format!("this upload may be at most {} bytes", reservation.max_bytes),
        )
        .at("upload-length"));
    }
    let upload = blobs::create_upload(&reservation.owner, length, reservation.ttl)?;
    Ok(Created { upload, metadata })
}

/// How far an upload is (`HEAD`), or why it is gone.
pub fn status(id: &str) -> std::result::Result<Response, blobs::Error> {
    let upload = blobs::get_upload(id)?;
    Ok(Response::empty(200)
        .header("upload-offset", upload.offset.to_string())
        .header("upload-length", upload.length.to_string())
        .header("upload-expires", http_date(upload.expires))
        .header("cache-control", "no-store"))
}

/// What a `PATCH` did.
#[derive(Debug)]
pub enum Appended {
    /// More bytes are awaited; answer with this 204.
    Partial(Response),
    /// The upload holds all of its bytes (this many): finish it.
    Complete(u64),
}

/// `PATCH`: checks the request (version, content type, `Upload-Offset`,
/// `Upload-Checksum`) and appends its body to upload `id` of `length`
/// bytes. A gone or expired upload is a [`blobs::Error`] the caller
/// forgets its record on (see [`gone`]).
pub fn append(req: &Request, id: &str, length: u64) -> Result<std::result::Result<Appended, blobs::Error>> {
    check_version(req)?;
    let media_type = req.header("content-type").unwrap_or_default();
    if !media_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(OFFSET_STREAM) {
        return Err(Error::new(415, "unsupported_media_type", format!("send the bytes as `{OFFSET_STREAM}`"))
            .at("content-type"));
    }
    let offset = number_header(req, "upload-offset")?;
    let checksum = checksum(req)?;
    let offset = match blobs::append(req, id, offset, checksum.as_ref()) {
        Ok(offset) => offset,
        Err(blobs::Error::OffsetMismatch(current)) => return Err(offset_mismatch(current)),
        Err(e @ (blobs::Error::NotFound | blobs::Error::Expired)) => return Ok(Err(e)),
        Err(e) => return Err(e.into()),
    };
    if offset < length {
        // Its first bytes move its expiry (see `blobs.create-upload`).
        let response = Response::empty(204).header("upload-offset", offset.to_string());
        let response = match blobs::get_upload(id) {
            Ok(upload) => response.header("upload-expires", http_date(upload.expires)),
            Err(_) => response,
        };
        return Ok(Ok(Appended::Partial(response)));
    }
    Ok(Ok(Appended::Complete(offset)))
}

/// Whether `e` says the upload is gone (so its record goes too); an
/// expired one's reservation is given back at once.
pub fn gone(id: &str, e: &blobs::Error) -> bool {
    if matches!(e, blobs::Error::Expired) {
        let _ = blobs::cancel_upload(id);
    }
    matches!(e, blobs::Error::NotFound | blobs::Error::Expired)
}

/// `DELETE` of an unfinished upload: its reservation is given back.
pub fn terminate(req: &Request, id: &str) -> Result<()> {
    check_version(req)?;
    match blobs::cancel_upload(id) {
        Ok(()) | Err(blobs::Error::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
