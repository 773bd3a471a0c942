//! Uploads: resumable ones speaking tus 1.0 (core, with the creation,
//! checksum, termination and expiration extensions), and single requests.
//! The bytes go from the socket to the host's blob store; this plugin keeps
//! the upload's purpose and file name, and turns a complete upload into an
//! item once its bytes say what it is.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use plinth_kit::{Error, Request, Response, Result, blobs, kv, settings};
use serde::{Deserialize, Serialize};

use crate::items::{self, clean_filename};
use crate::origin::Urls;
use crate::purposes::{self, Purpose};

/// The protocol version spoken.
const TUS_VERSION: &str = "1.0.0";
/// The extensions implemented.
const TUS_EXTENSIONS: &str = "creation,checksum,termination,expiration";
/// The checksum algorithms the host computes.
const TUS_CHECKSUMS: &str = "sha1,sha256";
/// The media type of a PATCH body.
const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// How long an upload waits for its bytes, unless `upload_ttl` says otherwise.
const DEFAULT_TTL: u64 = 24 * 3600;
/// Longest `Upload-Metadata` taken.
const MAX_METADATA_BYTES: usize = 4096;

/// What the plugin keeps about an upload; the bytes and offset are the host's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    owner: String,
    purpose: String,
    filename: Option<String>,
    length: u64,
    expires: u64,
    /// The item it became, once complete.
    item: Option<String>,
}

fn key(id: &str) -> String {
    format!("upload/{id}")
}

fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Every tus response (errors too) says which protocol it speaks.
fn tus(result: Result<Response>) -> Result<Response> {
    result.map(|r| r.header("tus-resumable", TUS_VERSION)).map_err(|e| e.with_header("tus-resumable", TUS_VERSION))
}

/// A request must speak the version this server does.
fn check_version(req: &Request) -> Result<()> {
    if req.header("tus-resumable").as_deref() == Some(TUS_VERSION) {
        return Ok(());
    }
    Err(Error::new(412, "tus_version_unsupported", format!("send `Tus-Resumable: {TUS_VERSION}`"))
        .at("tus-resumable")
        .with_header("tus-version", TUS_VERSION))
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
fn metadata(req: &Request) -> Result<BTreeMap<String, String>> {
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
    if !TUS_CHECKSUMS.split(',').any(|known| known == algorithm) {
        return Err(Error::new(
            400,
            "checksum_algorithm_unsupported",
            format!("`{algorithm}` is not one of {TUS_CHECKSUMS}"),
        )
        .at("upload-checksum"));
    }
    let digest = STANDARD.decode(digest.trim()).map_err(|_| invalid("the digest is not base64".into()))?;
    Ok(Some(blobs::Checksum { algorithm: algorithm.to_owned(), digest }))
}

/// `OPTIONS /v1/media/uploads`: what this server speaks.
pub fn options(_req: &Request) -> Result<Response> {
    tus(purposes::all().map(|all| {
        let max = all.values().map(|p| p.max_bytes).max().unwrap_or(0);
        Response::empty(204)
            .header("tus-version", TUS_VERSION)
            .header("tus-extension", TUS_EXTENSIONS)
            .header("tus-max-size", max.to_string())
            .header("tus-checksum-algorithm", TUS_CHECKSUMS)
    }))
}

/// `POST /v1/media/uploads`: a new upload of `Upload-Length` bytes, for the
/// purpose in its metadata (or `?purpose=`).
pub fn create(req: &Request) -> Result<Response> {
    tus(create_upload(req))
}

fn create_upload(req: &Request) -> Result<Response> {
    check_version(req)?;
    let principal = req.signed_in()?;
    if req.header("upload-defer-length").is_some() {
        return Err(Error::new(400, "defer_length_unsupported", "send `Upload-Length`; deferring it is not offered")
            .at("upload-defer-length"));
    }
    let length = number_header(req, "upload-length")?;
    let metadata = metadata(req)?;
    let purpose = match metadata.get("purpose") {
        Some(purpose) => purpose.clone(),
        None => purpose_query(req)?,
    };
    let purpose = purposes::named(&purpose)?;
    if length == 0 {
        return Err(Error::new(400, "empty_upload", "an upload has at least one byte").at("upload-length"));
    }
    if length > purpose.max_bytes {
        return Err(Error::new(
            413,
            "too_large",
            format!("a `{}` file is at most {} bytes", purpose.name, purpose.max_bytes),
        )
        .at("upload-length"));
    }
    let ttl = settings::parse_or("upload_ttl", DEFAULT_TTL)?;
    let upload = blobs::create_upload(&principal.account_id, length, ttl)?;
    let record = UploadRecord {
        owner: principal.account_id,
        purpose: purpose.name,
        filename: metadata.get("filename").and_then(|name| clean_filename(name)),
        length,
        expires: upload.expires,
        item: None,
    };
    if let Err(e) = kv::set_json(&key(&upload.id), &record) {
        let _ = blobs::cancel_upload(&upload.id);
        return Err(e);
    }
    Ok(Response::empty(201)
        .header("location", format!("/v1/media/uploads/{}", upload.id))
        .header("upload-expires", http_date(upload.expires)))
}

fn purpose_query(req: &Request) -> Result<String> {
    #[derive(Deserialize)]
    struct Query {
        purpose: Option<String>,
    }
    let Query { purpose } = req.query_as()?;
    purpose.ok_or_else(|| {
        Error::new(400, "purpose_required", "name the purpose in `Upload-Metadata` or `?purpose=`").at("purpose")
    })
}

/// The caller's upload record; 404 for anyone else's.
fn own_upload(req: &Request) -> Result<(String, UploadRecord)> {
    let principal = req.signed_in()?;
    let id: String = req.param("id")?;
    let record: Option<UploadRecord> = kv::get_json(&key(&id))?;
    match record {
        Some(record) if record.owner == principal.account_id => Ok((id, record)),
        _ => Err(Error::not_found(format!("no upload `{id}`"))),
    }
}

/// The upload's host state; a gone or expired upload loses its record,
/// and an expired one its reserved space at once.
fn host_upload(id: &str) -> Result<blobs::Upload> {
    blobs::get_upload(id).map_err(|e| {
        forget(id, &e);
        e.into()
    })
}

/// Drops what is left of an upload the host says is gone or expired.
fn forget(id: &str, e: &blobs::Error) {
    if matches!(e, blobs::Error::Expired) {
        let _ = blobs::cancel_upload(id);
    }
    if matches!(e, blobs::Error::NotFound | blobs::Error::Expired) {
        let _ = kv::delete(&key(id));
    }
}

/// `HEAD /v1/media/uploads/{id}` (and `GET`): how far the upload is.
pub fn status(req: &Request) -> Result<Response> {
    tus(upload_status(req))
}

fn upload_status(req: &Request) -> Result<Response> {
    check_version(req)?;
    let (id, record) = own_upload(req)?;
    let response =
        Response::empty(200).header("upload-length", record.length.to_string()).header("cache-control", "no-store");
    if let Some(item) = &record.item {
        return Ok(response
            .header("upload-offset", record.length.to_string())
            .header("content-location", format!("/v1/media/{item}")));
    }
    let upload = host_upload(&id)?;
    Ok(response.header("upload-offset", upload.offset.to_string()).header("upload-expires", http_date(upload.expires)))
}

/// `PATCH /v1/media/uploads/{id}`: the body is appended at `Upload-Offset`;
/// the last bytes make the upload an item.
pub fn append(req: &Request) -> Result<Response> {
    tus(append_bytes(req))
}

fn append_bytes(req: &Request) -> Result<Response> {
    check_version(req)?;
    let media_type = req.header("content-type").unwrap_or_default();
    if !media_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(OFFSET_STREAM) {
        return Err(Error::new(415, "unsupported_media_type", format!("send the bytes as `{OFFSET_STREAM}`"))
            .at("content-type"));
    }
    let offset = number_header(req, "upload-offset")?;
    let checksum = checksum(req)?;
    let (id, mut record) = own_upload(req)?;
    if let Some(item) = &record.item {
        if offset == record.length {
            return Ok(Response::empty(204)
                .header("upload-offset", record.length.to_string())
                .header("content-location", format!("/v1/media/{item}")));
        }
        return Err(offset_mismatch(record.length));
    }
    let offset = match blobs::append(req, &id, offset, checksum.as_ref()) {
        Ok(offset) => offset,
        Err(blobs::Error::OffsetMismatch(current)) => return Err(offset_mismatch(current)),
        Err(e @ (blobs::Error::NotFound | blobs::Error::Expired)) => {
            forget(&id, &e);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if offset < record.length {
        // Its first bytes move its expiry (see `blobs.create-upload`).
        let expires = blobs::get_upload(&id).map_or(record.expires, |upload| upload.expires);
        return Ok(Response::empty(204)
            .header("upload-offset", offset.to_string())
            .header("upload-expires", http_date(expires)));
    }
    // A purpose since removed from the settings stores nothing more.
    let purpose = purposes::all()?.remove(&record.purpose).unwrap_or_else(|| Purpose::owner_only(&record.purpose));
    let blob = blobs::finish_upload(&id)?;
    let item = match items::admit(&record.owner, &purpose, blob, record.filename.clone()) {
        Ok(item) => item,
        Err(refused) => {
            let _ = kv::delete(&key(&id));
            return Err(refused);
        }
    };
    // Kept so that a client asking again learns where its item is; the
    // item exists whether or not this is written.
    record.item = Some(item.id.clone());
    if let Err(e) = kv::set_json(&key(&id), &record) {
        plinth_kit::log::warn("a finished upload's record was not updated", &[("error", &e.message)]);
    }
    Ok(Response::empty(204)
        .header("upload-offset", offset.to_string())
        .header("content-location", format!("/v1/media/{}", item.id)))
}

fn offset_mismatch(current: u64) -> Error {
    Error::new(409, "offset_mismatch", format!("the upload holds {current} bytes; continue from there"))
        .at("upload-offset")
        .with_header("upload-offset", current.to_string())
}

/// `DELETE /v1/media/uploads/{id}`: the upload ends and its reserved
/// space is given back (a finished upload's item stays).
pub fn terminate(req: &Request) -> Result<Response> {
    tus(terminate_upload(req))
}

fn terminate_upload(req: &Request) -> Result<Response> {
    check_version(req)?;
    let (id, record) = own_upload(req)?;
    if record.item.is_none() {
        match blobs::cancel_upload(&id) {
            Ok(()) | Err(blobs::Error::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    kv::delete(&key(&id))?;
    Ok(Response::empty(204))
}

/// `POST /v1/media?purpose=...&filename=...`: a whole file in one request.
pub fn upload_whole(req: &Request) -> Result<Response> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Query {
        purpose: Option<String>,
        filename: Option<String>,
    }
    let principal = req.signed_in()?;
    let Query { purpose, filename } = req.query_as()?;
    let purpose =
        purpose.ok_or_else(|| Error::new(400, "purpose_required", "name the purpose: `?purpose=`").at("purpose"))?;
    let purpose = purposes::named(&purpose)?;
    // Read before anything is stored: a broken setting refuses the upload
    // rather than answering 500 for a file that was kept.
    let urls = Urls::from_settings()?;
    let blob = blobs::ingest(req, &principal.account_id, purpose.max_bytes)?;
    let item = items::admit(&principal.account_id, &purpose, blob, filename.as_deref().and_then(clean_filename))?;
    let view = items::view(&item, &purpose, &urls, &items::Access::Reader)?;
    Ok(Response::json(201, &view).header("location", format!("/v1/media/{}", item.id)))
}
