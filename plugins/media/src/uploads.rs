//! Uploads: resumable ones speaking tus 1.0 (core, with the creation,
//! checksum, termination and expiration extensions), and single requests.
//! The bytes go from the socket to the host's blob store; this plugin keeps
//! the upload's purpose and file name, and turns a complete upload into an
//! item once its bytes say what it is.

use plinth_kit::files::clean_filename;
use plinth_kit::tus::{self, Appended};
use plinth_kit::{Error, Request, Response, Result, blobs, kv, settings};
use serde::{Deserialize, Serialize};

use crate::items;
use crate::origin::Urls;
use crate::purposes::{self, Purpose};

/// How long an upload waits for its bytes, unless `upload_ttl` says otherwise.
const DEFAULT_TTL: u64 = 24 * 3600;

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

/// `OPTIONS /v1/media/uploads`: what this server speaks.
pub fn options(_req: &Request) -> Result<Response> {
    tus::answer(purposes::all().map(|all| tus::options(all.values().map(|p| p.max_bytes).max().unwrap_or(0))))
}

/// `POST /v1/media/uploads`: a new upload of `Upload-Length` bytes, for the
/// purpose in its metadata (or `?purpose=`).
pub fn create(req: &Request) -> Result<Response> {
    tus::answer(create_upload(req))
}

fn create_upload(req: &Request) -> Result<Response> {
    tus::check_version(req)?;
    let principal = req.signed_in()?;
    let ttl = settings::parse_or("upload_ttl", DEFAULT_TTL)?;
    let mut purpose = None;
    let new = tus::create(req, |metadata| {
        let name = match metadata.get("purpose") {
            Some(name) => name.clone(),
            None => purpose_query(req)?,
        };
        let named = purposes::named(&name)?;
        let reservation = tus::Reservation { owner: principal.account_id.clone(), max_bytes: named.max_bytes, ttl };
        purpose = Some(named);
        Ok(reservation)
    })?;
    let record = UploadRecord {
        owner: principal.account_id,
        purpose: purpose.expect("named before the upload was made").name,
        filename: new.metadata.get("filename").and_then(|name| clean_filename(name)),
        length: new.upload.length,
        expires: new.upload.expires,
        item: None,
    };
    if let Err(e) = kv::set_json(&key(&new.upload.id), &record) {
        let _ = blobs::cancel_upload(&new.upload.id);
        return Err(e);
    }
    Ok(new.created(&format!("/v1/media/uploads/{}", new.upload.id)))
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

/// Drops the record of an upload the host says is gone, and answers why.
fn forget(id: &str, e: blobs::Error) -> Error {
    if tus::gone(id, &e) {
        let _ = kv::delete(&key(id));
    }
    e.into()
}

/// `HEAD /v1/media/uploads/{id}` (and `GET`): how far the upload is.
pub fn status(req: &Request) -> Result<Response> {
    tus::answer(upload_status(req))
}

fn upload_status(req: &Request) -> Result<Response> {
    tus::check_version(req)?;
    let (id, record) = own_upload(req)?;
    if let Some(item) = &record.item {
        return Ok(Response::empty(200)
            .header("upload-length", record.length.to_string())
            .header("upload-offset", record.length.to_string())
            .header("cache-control", "no-store")
            .header("content-location", format!("/v1/media/{item}")));
    }
    tus::status(&id).map_err(|e| forget(&id, e))
}

/// `PATCH /v1/media/uploads/{id}`: the body is appended at `Upload-Offset`;
/// the last bytes make the upload an item.
pub fn append(req: &Request) -> Result<Response> {
    tus::answer(append_bytes(req))
}

fn append_bytes(req: &Request) -> Result<Response> {
    let (id, mut record) = own_upload(req)?;
    if let Some(item) = &record.item {
        tus::check_version(req)?;
        if req.header("upload-offset").as_deref() == Some(record.length.to_string().as_str()) {
            return Ok(Response::empty(204)
                .header("upload-offset", record.length.to_string())
                .header("content-location", format!("/v1/media/{item}")));
        }
        return Err(tus::offset_mismatch(record.length));
    }
    let offset = match tus::append(req, &id, record.length)? {
        Ok(Appended::Partial(response)) => return Ok(response),
        Ok(Appended::Complete(offset)) => offset,
        Err(e) => return Err(forget(&id, e)),
    };
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

/// `DELETE /v1/media/uploads/{id}`: the upload ends and its reserved
/// space is given back (a finished upload's item stays).
pub fn terminate(req: &Request) -> Result<Response> {
    tus::answer(terminate_upload(req))
}

fn terminate_upload(req: &Request) -> Result<Response> {
    let (id, record) = own_upload(req)?;
    if record.item.is_none() {
        tus::terminate(req, &id)?;
    } else {
        tus::check_version(req)?;
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
