//! Files attached to submissions. A client uploads each file with tus for
//! one file field of one showing of a form (its render token) before it
//! submits; the submission names the uploads by id in the field's list.
//! The bytes go to the host's blob store (never through the plugin); a
//! finished upload is typed by its bytes and must be one of the field's
//! `accept` types.
//!
//! A showing's files go with at most one submission, and that submission
//! keeps them: they are erased and expired with it. A file not sent within
//! [`UNSENT_LIFETIME`] of its upload's start (or by the end of its token)
//! goes. Claiming a showing's files for a submission and removing one of
//! them (by its uploader or by expiry) both change the showing's record
//! with compare-and-swap, so a file is never both sent and removed.

use plinth_forms::validation::{ATTACHMENT, ATTACHMENT_INCOMPLETE};
use plinth_forms::{Definition, FieldError, FieldKind};
use plinth_kit::audit::{self, Outcome};
use plinth_kit::tus::{self, Appended};
use plinth_kit::{Error, Principal, Request, Response, Result, blobs, files, images, kv, sniff};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::render::{self, RenderToken};
use crate::{store, submit};

/// Uploads one showing may start per file its form takes (room for
/// retries and replaced files).
const UPLOADS_PER_FILE: usize = 3;
/// How long a file waits to be sent: unsent, it counts against the
/// plugin's blob quota, so an upload flood lasts no longer than this.
const UNSENT_LIFETIME: u64 = 2 * 3600;
/// Bytes one client may start uploading to one form in each window of
/// [`UNSENT_LIFETIME`], unless the plugin's `upload_bytes_per_client`
/// setting says otherwise: counted per address (an IPv6 /64) and, signed
/// in, per account too. With unsent files gone after that long, one
/// client holds at most twice this.
const DEFAULT_CLIENT_BUDGET: u64 = 64 << 20;
/// Expired uploads, and expired showings, one new upload clears.
const SWEEP: u32 = 10;
/// A showing's record is removed this long after its token expired (it
/// keeps a used showing from taking more uploads until then).
const SWEEP_GRACE: u64 = 600;

/// The file a finished upload holds, as its submission keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The upload's id, as the submission's data names it.
    pub id: String,
    /// The field it was uploaded for.
    pub field: String,
    /// The file name the client gave, cleaned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Its type, from its bytes.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The blob holding it.
    pub blob: String,
    /// Its image variants, when its field asks for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<images::Variants>,
}

/// An upload for one field of one showing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Upload {
    field: String,
    showing: String,
    /// The signed-in uploader; for an anonymous one the upload's id (128
    /// random bits) is the only key to it.
    owner: Option<String>,
    filename: Option<String>,
    length: u64,
    /// The field's types when the upload began.
    accept: Vec<String>,
    /// The field's image variants when the upload began.
    #[serde(default)]
    variants: std::collections::BTreeMap<String, u32>,
    /// Once all its bytes are there and typed.
    file: Option<Attached>,
}

/// A showing's uploads, and the submission that took its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Showing {
    uploads: Vec<String>,
    submission: Option<String>,
    /// The uploads that submission took.
    #[serde(default)]
    sent: Vec<String>,
}

fn upload_key(form: &str, id: &str) -> String {
    format!("upload/{form}/{id}")
}

fn showing_key(form: &str, showing: &str) -> String {
    format!("showing/{form}/{showing}")
}

/// The index of showings by their token's expiry.
fn showing_expiry_prefix(form: &str) -> String {
    format!("showing-expiry/{form}/")
}

/// The index of uploads by the end of their wait to be sent.
fn upload_expiry_prefix(form: &str) -> String {
    format!("upload-expiry/{form}/")
}

/// `{prefix}{expires:016x}/{id}`: the index orders by time.
fn expiry_key(prefix: &str, expires: u64, id: &str) -> String {
    format!("{prefix}{expires:016x}/{id}")
}

/// Upload ids are the host's: 32 lower-case hex digits.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn not_found(id: &str) -> Error {
    Error::new(404, "upload_not_found", format!("no upload `{id}` for this form"))
}

/// `OPTIONS /v1/forms/{id}/uploads`: what the server speaks, and the
/// largest file the form's current version takes.
pub fn options(req: &Request) -> Result<Response> {
    tus::answer((|| {
        let form: String = req.param("id")?;
        let definition = store::load(&form)?.definition;
        let files = definition.fields.iter().filter(|f| f.kind == FieldKind::File);
        Ok(tus::options(files.map(plinth_forms::Field::file_max_bytes).max().unwrap_or(0)))
    })())
}

/// `POST /v1/forms/{id}/uploads`: an upload for the field and showing in
/// its `Upload-Metadata` (`token`, `field`, optional `filename`).
pub fn create(req: &Request) -> Result<Response> {
    tus::answer(create_upload(req))
}

fn create_upload(req: &Request) -> Result<Response> {
    tus::check_version(req)?;
    let form_id: String = req.param("id")?;
    let form = store::load(&form_id)?;
    let uploader = render::may_submit(req, &form.definition)?;
    crate::submit::taking(&form.definition)?;
    sweep(&form_id);
    let mut chosen = None;
    let new = tus::create(req, |metadata| {
        let required = |key: &str| {
            metadata.get(key).ok_or_else(|| {
                Error::new(400, format!("{key}_required"), format!("name the `{key}` in `Upload-Metadata`"))
                    .at("upload-metadata")
            })
        };
        let token = render::verify(required("token")?, &form_id)?;
        if token.showing.is_empty() {
            return Err(
                Error::new(403, "invalid_render_token", "the render token is too old; load the form again").at("token")
            );
        }
        let definition = submit::pinned(&form_id, &form, &token)?;
        let name = required("field")?;
        let field = definition.field(name).filter(|f| f.kind == FieldKind::File).ok_or_else(|| {
            Error::new(422, "not_a_file_field", format!("form `{form_id}` has no file field `{name}`")).at("field")
        })?;
        let expires = token.issued_at + render::TOKEN_LIFETIME;
        let reservation = tus::Reservation {
            owner: uploader.as_ref().map_or_else(|| format!("showing:{}", token.showing), |p| p.account_id.clone()),
            max_bytes: field.file_max_bytes(),
            ttl: expires.saturating_sub(store::now()).max(1),
        };
        let record = Upload {
            field: field.name.clone(),
            showing: token.showing.clone(),
            owner: uploader.as_ref().map(|p| p.account_id.clone()),
            filename: metadata.get("filename").and_then(|n| files::clean_filename(n)),
            length: 0,
            accept: field.accept.clone(),
            variants: field.variants.clone(),
            file: None,
        };
        chosen = Some((record, expires, upload_limit(&definition)));
        Ok(reservation)
    })?;
    let (mut record, expires, limit) = chosen.expect("chosen before the upload was made");
    record.length = new.upload.length;
    let id = new.upload.id.clone();
    // Signed in, the account's budget and the address's: accounts are
    // cheap to make.
    let mut clients = vec![address_key(&req.client_address())];
    clients.extend(uploader.as_ref().map(|p| format!("account:{}", p.account_id)));
    if let Err(e) = clients.iter().try_for_each(|client| spend(&form_id, client, record.length)) {
        let _ = blobs::cancel_upload(&id);
        return Err(e);
    }
    let unsent_until = expires.min(store::now() + UNSENT_LIFETIME);
    let registered = register(&form_id, &record.showing, &id, expires, limit)
        .and_then(|()| {
            kv::set(&expiry_key(&upload_expiry_prefix(&form_id), unsent_until, &id), b"").map_err(Error::from)
        })
        .and_then(|()| kv::set_json(&upload_key(&form_id, &id), &record).map(drop));
    if let Err(e) = registered {
        let _ = blobs::cancel_upload(&id);
        return Err(e);
    }
    Ok(new.created(&format!("/v1/forms/{form_id}/uploads/{id}")))
}

/// A client address as a budget's key: an IPv6 one by its /64 (one
/// subscriber's network hands out many), an IPv4-mapped one as IPv4.
fn address_key(address: &str) -> String {
    match address.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(std::net::IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("address:{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        Ok(ip) => format!("address:{ip}"),
        Err(_) => format!("address:{address}"),
    }
}

fn budget_prefix(form: &str) -> String {
    format!("upload-budget/{form}/")
}

/// Counts `bytes` against `client`'s budget for this window: 429
/// `upload_budget_exceeded` past it.
fn spend(form: &str, client: &str, bytes: u64) -> Result<()> {
    let budget = plinth_kit::settings::parse_or("upload_bytes_per_client", DEFAULT_CLIENT_BUDGET)?;
    let now = store::now();
    let window = now / UNSENT_LIFETIME;
    let mut over = false;
    kv::update::<u64, _>(&format!("{}{window:012}/{client}", budget_prefix(form)), None, |spent| {
        let spent = spent.unwrap_or(0);
        over = spent.saturating_add(bytes) > budget;
        Ok(Some(if over { spent } else { spent + bytes }))
    })?;
    if over {
        let retry = (window + 1) * UNSENT_LIFETIME - now;
        return Err(Error::new(
            429,
            "upload_budget_exceeded",
            format!("this form takes {budget} bytes of files from one client every two hours; try again later"),
        )
        .with_header("retry-after", retry.to_string()));
    }
    Ok(())
}

/// Uploads one showing of `definition` may start.
fn upload_limit(definition: &Definition) -> usize {
    let files = definition.fields.iter().filter(|f| f.kind == FieldKind::File);
    files.map(|f| f.file_max_items() as usize).sum::<usize>() * UPLOADS_PER_FILE
}

/// Adds upload `id` to its showing: 409 once the showing's files were
/// sent, 429 past `limit` uploads.
fn register(form: &str, showing: &str, id: &str, expires: u64, limit: usize) -> Result<()> {
    // Written first, so that a showing always has its expiry entry.
    kv::set(&expiry_key(&showing_expiry_prefix(form), expires, showing), b"")?;
    kv::update::<Showing, _>(&showing_key(form, showing), None, |current| {
        let mut current = current.unwrap_or(Showing { uploads: Vec::new(), submission: None, sent: Vec::new() });
        if current.submission.is_some() {
            return Err(already_sent());
        }
        if current.uploads.len() >= limit {
            return Err(Error::new(
                429,
                "too_many_uploads",
                format!("one showing of this form takes {limit} uploads; load the form again"),
            ));
        }
        current.uploads.push(id.to_owned());
        Ok(Some(current))
    })?;
    Ok(())
}

fn already_sent() -> Error {
    Error::new(409, "attachments_already_sent", "this showing's files were sent with a submission; load the form again")
}

/// The caller's upload: anonymous ones are reached by their id, a signed-in
/// uploader's by that account alone (404 for anyone else).
fn own_upload(req: &Request) -> Result<(String, String, Upload)> {
    let form: String = req.param("id")?;
    let id: String = req.param("upload")?;
    if !valid_upload_id(&id) {
        return Err(not_found(&id));
    }
    let record: Upload = kv::get_json(&upload_key(&form, &id))?.ok_or_else(|| not_found(&id))?;
    match &record.owner {
        Some(owner) if req.principal().is_none_or(|me| &me.account_id != owner) => Err(not_found(&id)),
        _ => Ok((form, id, record)),
    }
}

/// Drops the record of an unfinished upload the host says is gone, and
/// answers why.
fn forget(form: &str, id: &str, e: blobs::Error) -> Error {
    if tus::gone(id, &e) {
        // A concurrent request may have just finished it: kept then.
        let _ = kv::update::<Upload, _>(&upload_key(form, id), None, |current| {
            Ok(current.filter(|upload| upload.file.is_some()))
        });
    }
    e.into()
}

/// `HEAD /v1/forms/{id}/uploads/{upload}`: how far the upload is.
pub fn status(req: &Request) -> Result<Response> {
    tus::answer((|| {
        tus::check_version(req)?;
        let (form, id, record) = own_upload(req)?;
        if record.file.is_some() {
            return Ok(Response::empty(200)
                .header("upload-length", record.length.to_string())
                .header("upload-offset", record.length.to_string())
                .header("cache-control", "no-store"));
        }
        tus::status(&id).map_err(|e| forget(&form, &id, e))
    })())
}

/// `PATCH /v1/forms/{id}/uploads/{upload}`: the body is appended; the last
/// bytes are typed and kept, or refused and removed.
pub fn append(req: &Request) -> Result<Response> {
    tus::answer(append_bytes(req))
}

fn append_bytes(req: &Request) -> Result<Response> {
    let (form, id, mut record) = own_upload(req)?;
    if record.file.is_some() {
        tus::check_version(req)?;
        if req.header("upload-offset").as_deref() == Some(record.length.to_string().as_str()) {
            return Ok(Response::empty(204).header("upload-offset", record.length.to_string()));
        }
        return Err(tus::offset_mismatch(record.length));
    }
    let offset = match tus::append(req, &id, record.length)? {
        Ok(Appended::Partial(response)) => return Ok(response),
        Ok(Appended::Complete(offset)) => offset,
        Err(e) => return Err(forget(&form, &id, e)),
    };
    let blob = blobs::finish_upload(&id)?;
    let file = match typed(&id, &record, &blob) {
        Ok(file) => file,
        Err(refused) => {
            if let Err(e) = blobs::unlink(&blob.id) {
                plinth_kit::log::error("a refused file could not be removed", &[("error", &format!("{e:?}"))]);
            }
            kv::delete(&upload_key(&form, &id))?;
            let reason = format!("{}: {}", refused.code, refused.message);
            audit::record("form.file_refused", &format!("{form}/{id}"), Outcome::Denied, Some(&reason))?;
            return Err(refused);
        }
    };
    // Kept only if the record is still there: a DELETE that ran while the
    // bytes were finishing has removed the upload, and its file goes too.
    record.file = Some(file);
    let kept = kv::update::<Upload, _>(&upload_key(&form, &id), None, |current| Ok(current.map(|_| record.clone())));
    match kept {
        Ok(Some(_)) => Ok(Response::empty(204).header("upload-offset", offset.to_string())),
        Ok(None) => {
            drop_file(record.file.as_ref());
            Err(not_found(&id))
        }
        Err(e) => {
            drop_file(record.file.as_ref());
            Err(e)
        }
    }
}

/// What a finished upload holds, if its bytes are a type its field takes.
fn typed(id: &str, record: &Upload, blob: &blobs::Blob) -> Result<Attached> {
    let head = blobs::read(&blob.id, 0, sniff::HEAD_BYTES)?;
    let sniffed = sniff::sniff(&head);
    if sniffed.polyglot {
        return Err(Error::new(
            422,
            "polyglot_file",
            format!("the file is a {} that also carries markup a browser would run", sniffed.media_type),
        ));
    }
    if !plinth_forms::accepts(&record.accept, &sniffed.media_type) {
        return Err(Error::new(
            415,
            "type_not_allowed",
            format!(
                "the file is {} (from its bytes); field `{}` takes {}",
                sniffed.media_type,
                record.field,
                record.accept.join(", ")
            ),
        ));
    }
    // Made for the blob's owner (see `create_upload`), held by the job.
    let owner = record.owner.clone().unwrap_or_else(|| format!("showing:{}", record.showing));
    let variants = images::request(&owner, &blob.id, &sniffed.media_type, &record.variants);
    Ok(Attached {
        id: id.to_owned(),
        field: record.field.clone(),
        filename: record.filename.clone(),
        media_type: sniffed.media_type,
        size: blob.size,
        blob: blob.id.clone(),
        variants,
    })
}

/// `DELETE /v1/forms/{id}/uploads/{upload}`: the upload (or its file) is
/// removed, unless it was sent (409).
pub fn terminate(req: &Request) -> Result<Response> {
    tus::answer((|| {
        tus::check_version(req)?;
        let (form, id, _) = own_upload(req)?;
        match remove_upload(&form, &id, false)? {
            Removal::Removed => Ok(Response::empty(204)),
            Removal::Gone => Err(not_found(&id)),
            Removal::Sent => Err(already_sent()),
        }
    })())
}

/// Takes upload `id` out of its showing, unless a submission claimed it
/// (false): then it is being sent.
fn withdraw(form: &str, showing: &str, id: &str) -> Result<bool> {
    let mut withdrawn = true;
    kv::update::<Showing, _>(&showing_key(form, showing), None, |current| {
        let Some(mut current) = current else { return Ok(None) };
        withdrawn = !current.sent.iter().any(|sent| sent == id);
        if withdrawn {
            current.uploads.retain(|u| u != id);
        }
        Ok(Some(current))
    })?;
    Ok(withdrawn)
}

/// What [`remove_upload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// The upload and its bytes are gone.
    Removed,
    /// There was no such upload (any more).
    Gone,
    /// A submission took it: it stays.
    Sent,
}

/// Removes upload `id` and its bytes unless a submission took it (unless
/// `even_claimed`: its showing can no longer be sent). The record is read
/// afresh, so an upload a concurrent PATCH just finished is seen with its
/// file. An unfinished upload is cancelled before its record goes; one a
/// PATCH is writing to is 423 `upload_busy`. A finished one is first taken
/// out of its showing, so no submission can claim it meanwhile.
fn remove_upload(form: &str, id: &str, even_claimed: bool) -> Result<Removal> {
    let key = upload_key(form, id);
    for _ in 0..2 {
        let Some(record) = kv::get_json::<Upload>(&key)? else { return Ok(Removal::Gone) };
        match &record.file {
            None => match blobs::cancel_upload(id) {
                // The host no longer has it: a PATCH may have just finished
                // it, and is writing its record; read again.
                Err(blobs::Error::NotFound) => continue,
                Ok(()) | Err(blobs::Error::Expired) => {
                    withdraw(form, &record.showing, id)?;
                    forget_unfinished(&key)?;
                    return Ok(Removal::Removed);
                }
                Err(e) => return Err(e.into()),
            },
            Some(file) => {
                if !withdraw(form, &record.showing, id)? && !even_claimed {
                    return Ok(Removal::Sent);
                }
                images::forget(file.variants.as_ref())?;
                match blobs::unlink(&file.blob) {
                    Ok(_) | Err(blobs::Error::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                kv::delete(&key)?;
                return Ok(Removal::Removed);
            }
        }
    }
    // Still unfinished in its record and unknown to the host: a PATCH that
    // is keeping its file now (and finds the record gone: it removes the
    // file), or an upload that ended without one (a crash, a refused file).
    if let Some(record) = kv::get_json::<Upload>(&key)? {
        withdraw(form, &record.showing, id)?;
    }
    forget_unfinished(&key)?;
    Ok(Removal::Removed)
}

/// Deletes an upload's record if it still holds no file.
fn forget_unfinished(key: &str) -> Result<()> {
    kv::update::<Upload, _>(key, None, |current| Ok(current.filter(|upload| upload.file.is_some())))?;
    Ok(())
}

/// How long a busy upload's removal waits before it is tried again.
const SWEEP_RETRY: u64 = 600;

/// Clears up to [`SWEEP`] uploads of `form` that waited too long to be
/// sent, and up to [`SWEEP`] showings whose token expired. Never fails the
/// request it runs in: what cannot be removed now (an upload a slow PATCH
/// holds, a store error) is tried again later.
fn sweep(form: &str) {
    let now = store::now();
    let retry = |entry: &str, prefix: &str, id: &str| {
        let later = expiry_key(prefix, now + SWEEP_RETRY, id);
        kv::batch(&[kv::Op::Delete(entry.to_owned()), kv::Op::Set(kv::Entry { key: later, value: Vec::new() })])
    };
    let uploads = upload_expiry_prefix(form);
    for (entry, id) in expired(&uploads, now).unwrap_or_default() {
        let done = match remove_upload(form, &id, false) {
            Ok(_) => kv::delete(&entry).map(drop),
            Err(e) => {
                plinth_kit::log::warn("an unsent upload could not be removed yet", &[("error", &e.message)]);
                retry(&entry, &uploads, &id)
            }
        };
        if let Err(e) = done {
            plinth_kit::log::warn("the upload expiry index could not be updated", &[("error", &format!("{e:?}"))]);
        }
    }
    // Budgets of windows before the last are no longer read.
    let budgets = budget_prefix(form);
    let current = now / UNSENT_LIFETIME;
    if let Ok(page) = kv::scan_prefix(&budgets, None, SWEEP) {
        for entry in page.entries {
            let window = entry.key.strip_prefix(&budgets).and_then(|rest| rest.split('/').next());
            if window.and_then(|w| w.parse::<u64>().ok()).is_none_or(|w| w + 1 >= current) {
                break;
            }
            let _ = kv::delete(&entry.key);
        }
    }
    let showings = showing_expiry_prefix(form);
    for (entry, showing) in expired(&showings, now.saturating_sub(SWEEP_GRACE)).unwrap_or_default() {
        // No submission can claim its files any more: what is left was not sent.
        let removed = kv::get_json::<Showing>(&showing_key(form, &showing)).and_then(|record| {
            for id in record.map(|r| r.uploads).unwrap_or_default() {
                remove_upload(form, &id, true)?;
            }
            Ok(())
        });
        let done = match removed {
            Ok(()) => kv::batch(&[kv::Op::Delete(showing_key(form, &showing)), kv::Op::Delete(entry)]),
            Err(e) => {
                plinth_kit::log::warn("an expired showing could not be cleared yet", &[("error", &e.message)]);
                retry(&entry, &showings, &showing)
            }
        };
        if let Err(e) = done {
            plinth_kit::log::warn("the showing expiry index could not be updated", &[("error", &format!("{e:?}"))]);
        }
    }
}

/// Up to [`SWEEP`] entries of an expiry index that are due by `now`: the
/// entry's key and the id it names.
fn expired(prefix: &str, now: u64) -> Result<Vec<(String, String)>> {
    let page = kv::scan_prefix(prefix, None, SWEEP)?;
    let mut due = Vec::new();
    for entry in page.entries {
        let Some((expires, id)) = entry.key.strip_prefix(prefix).and_then(|rest| rest.split_once('/')) else {
            continue;
        };
        if u64::from_str_radix(expires, 16).unwrap_or(0) >= now {
            break;
        }
        due.push((entry.key.clone(), id.to_owned()));
    }
    Ok(due)
}

/// Upload `id` of `form`'s field `field` in `showing`, when its uploader
/// (signed in: only `submitter`) may send it: its file name, for a page
/// that shows it again (`Some(None)` when it was given none).
pub fn kept_name(
    form: &str,
    showing: &str,
    field: &str,
    submitter: Option<&Principal>,
    id: &str,
) -> Option<Option<String>> {
    if !valid_upload_id(id) {
        return None;
    }
    let upload = kv::get_json::<Upload>(&upload_key(form, id)).ok().flatten()?;
    let mine = upload.showing == showing
        && upload.field == field
        && upload.owner.as_ref().is_none_or(|owner| submitter.is_some_and(|p| &p.account_id == owner));
    mine.then_some(upload.filename)
}

/// The files `data` names in `definition`'s file fields, each a finished
/// upload of that field in `token`'s showing by `submitter`; or why not.
pub fn resolve(
    definition: &Definition,
    data: &Value,
    token: &RenderToken,
    submitter: Option<&Principal>,
) -> Result<std::result::Result<Vec<Attached>, Vec<FieldError>>> {
    let (mut attached, mut errors) = (Vec::new(), Vec::new());
    for field in definition.fields.iter().filter(|f| f.kind == FieldKind::File) {
        let ids = data.get(&field.name).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        for id in ids {
            let record = match valid_upload_id(id) {
                true => kv::get_json::<Upload>(&upload_key(&definition.id, id))?,
                false => None,
            };
            // A signed-in uploader's files are theirs to send alone.
            let mine = |upload: &Upload| {
                upload.showing == token.showing
                    && upload.field == field.name
                    && upload.owner.as_ref().is_none_or(|owner| submitter.is_some_and(|p| &p.account_id == owner))
            };
            match record.filter(mine) {
                Some(Upload { file: Some(file), .. }) => attached.push(file),
                Some(_) => errors.push(definition.field_error(&field.name, ATTACHMENT_INCOMPLETE, json!({ "id": id }))),
                None => errors.push(definition.field_error(&field.name, ATTACHMENT, json!({ "id": id }))),
            }
        }
    }
    Ok(if errors.is_empty() { Ok(attached) } else { Err(errors) })
}

/// Marks `attached` as sent with `submission`, if their showing's files
/// were not sent yet and none of them was removed meanwhile.
pub fn claim(form: &str, showing: &str, submission: &str, attached: &[Attached]) -> Result<bool> {
    let mut claimed = false;
    kv::update::<Showing, _>(&showing_key(form, showing), None, |current| {
        let Some(mut current) = current else { return Ok(None) };
        claimed = current.submission.is_none() && attached.iter().all(|a| current.uploads.contains(&a.id));
        if claimed {
            current.submission = Some(submission.to_owned());
            current.sent = attached.iter().map(|a| a.id.clone()).collect();
        }
        Ok(Some(current))
    })?;
    Ok(claimed)
}

/// Undoes [`claim`] for a submission that was not stored.
pub fn release(form: &str, showing: &str, submission: &str) {
    let released = kv::update::<Showing, _>(&showing_key(form, showing), None, |current| {
        Ok(current.map(|mut s| {
            if s.submission.as_deref() == Some(submission) {
                s.submission = None;
                s.sent.clear();
            }
            s
        }))
    });
    if let Err(e) = released {
        plinth_kit::log::warn("a showing's files stay claimed by a submission that failed", &[("error", &e.message)]);
    }
}

/// The writes that hand `attached` to the submission being stored: their
/// upload records go (the submission keeps what they held).
pub fn handed_over(form: &str, attached: &[Attached]) -> Vec<kv::Op> {
    attached.iter().map(|a| kv::Op::Delete(upload_key(form, &a.id))).collect()
}

/// Drops a file nothing will refer to: its variants' job and its blob.
fn drop_file(file: Option<&Attached>) {
    if let Some(file) = file {
        let _ = images::forget(file.variants.as_ref());
        let _ = blobs::unlink(&file.blob);
    }
}

/// Removes the files of a submission being erased.
pub fn remove(attached: &[Attached]) {
    for file in attached {
        if let Err(e) = images::forget(file.variants.as_ref()) {
            plinth_kit::log::error("an erased submission's variants could not be removed", &[("error", &e.message)]);
        }
        if let Err(e) = blobs::unlink(&file.blob)
            && !matches!(e, blobs::Error::NotFound)
        {
            plinth_kit::log::error("an erased submission's file could not be removed", &[("error", &format!("{e:?}"))]);
        }
    }
}

/// `GET …/files/{file}/variants/{name}`: one of a file's image variants.
pub fn serve_variant(file: &Attached, name: &str) -> Result<Response> {
    let variants = file
        .variants
        .as_ref()
        .ok_or_else(|| Error::new(404, "no_variant", format!("file `{}` has no variants", file.id)))?;
    Ok(images::serve(&file.blob, variants, name)?.header("cache-control", "private, no-store"))
}

/// `GET /v1/forms/{id}/submissions/{submission}/files/{file}`: one of its
/// files, served by the host (ranges, validators).
pub fn serve(file: &Attached) -> Response {
    let content_type =
        if file.media_type == "text/plain" { "text/plain; charset=utf-8" } else { file.media_type.as_str() };
    Response::blob(&file.blob, content_type)
        .header("content-disposition", files::disposition(&file.media_type, file.filename.as_deref()))
        .header("cache-control", "private, no-store")
}
