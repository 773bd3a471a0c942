//! Stored submissions (`sub/{form}/{id}`, ids ordered by time): listed,
//! read and erased (with their files) by the form's reader roles, expired
//! by its retention.
//! Expired submissions are never served, and each new submission removes
//! a few of the oldest expired ones, so storage follows the retention
//! without a timer.

use plinth_forms::Definition;
use plinth_kit::audit::{self, Outcome};
use plinth_kit::{Error, Principal, Request, Response, Result, kv};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::attachments::{self, Attached};
use crate::store;

/// Most submissions in one page of a listing.
pub const MAX_PAGE: u32 = 100;
/// Expired submissions one new submission removes.
const SWEEP: u32 = 20;

/// One stored submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// Its id: milliseconds since the epoch, then random, so ids sort by time.
    pub id: String,
    /// The form.
    pub form: String,
    /// The version it was validated against.
    pub version: u32,
    /// When (seconds since the Unix epoch).
    pub submitted_at: u64,
    /// The account that submitted it, when signed in.
    pub submitter: Option<String>,
    /// The locale it was made in.
    pub locale: String,
    /// The data, as validated.
    pub data: Value,
    /// The `Idempotency-Key` record that names it, removed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<String>,
    /// The files its file fields name, kept and removed with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attached>,
}

/// A new submission id.
pub fn new_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{millis:013}-{}", plinth_kit::new_id())
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where submission `id` of `form` lives.
pub fn key(form: &str, id: &str) -> String {
    format!("sub/{form}/{id}")
}

fn expired(definition: &Definition, stored: &Stored, now: u64) -> bool {
    definition
        .settings
        .retention_days
        .is_some_and(|days| stored.submitted_at.saturating_add(u64::from(days) * 86_400) < now)
}

/// Someone who holds one of the form's reader roles: 401 or 403 otherwise.
pub fn reader(req: &Request, definition: &Definition) -> Result<Principal> {
    let me = req.signed_in()?;
    if me.roles.iter().any(|r| definition.settings.readers.contains(r)) {
        Ok(me)
    } else {
        Err(Error::forbidden(format!(
            "reading submissions needs one of the roles {}",
            definition.settings.readers.join(", ")
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/forms/{id}/submissions?after=&limit=`: oldest first.
pub fn list(req: &Request) -> Result<Response> {
    let form: String = req.param("id")?;
    let definition = store::load(&form)?.definition;
    reader(req, &definition)?;
    let query: ListQuery = req.query_as()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::new(400, "invalid_query", format!("`limit` is 1 to {MAX_PAGE}")).at("limit"));
    }
    if query.after.as_deref().is_some_and(|a| !valid_id(a)) {
        return Err(Error::new(400, "invalid_query", "`after` is a submission id").at("after"));
    }
    let prefix = format!("sub/{form}/");
    let after = query.after.map(|a| key(&form, &a));
    let now = store::now();
    let page = kv::page::<Stored>(&prefix, after.as_deref(), limit)?;
    let items: Vec<&Stored> = page.entries.iter().map(|(_, s)| s).filter(|s| !expired(&definition, s, now)).collect();
    let next = page.next.as_deref().and_then(|k| k.strip_prefix(&prefix));
    Ok(Response::json(200, &json!({ "items": items, "next": next })).header("cache-control", "no-store"))
}

fn load(req: &Request) -> Result<(Definition, Stored)> {
    let form: String = req.param("id")?;
    let id: String = req.param("submission")?;
    let definition = store::load(&form)?.definition;
    reader(req, &definition)?;
    let not_found = || Error::new(404, "submission_not_found", format!("form `{form}` has no submission `{id}`"));
    if !valid_id(&id) {
        return Err(not_found());
    }
    let stored: Stored = kv::get_json(&key(&form, &id))?.ok_or_else(not_found)?;
    if expired(&definition, &stored, store::now()) {
        return Err(not_found());
    }
    Ok((definition, stored))
}

/// `GET /v1/forms/{id}/submissions/{submission}`.
pub fn get(req: &Request) -> Result<Response> {
    let (_, stored) = load(req)?;
    Ok(Response::json(200, &stored).header("cache-control", "no-store"))
}

/// `DELETE /v1/forms/{id}/submissions/{submission}`: erased, audited.
pub fn erase(req: &Request) -> Result<Response> {
    let (_, stored) = load(req)?;
    remove(&stored)?;
    audit::record("form.submission_erased", &format!("{}/{}", stored.form, stored.id), Outcome::Success, None)?;
    Ok(Response::empty(204))
}

/// The submission's file the path names.
fn attached(req: &Request) -> Result<Attached> {
    let (_, stored) = load(req)?;
    let id: String = req.param("file")?;
    let file = stored.attachments.into_iter().find(|a| a.id == id);
    file.ok_or_else(|| Error::new(404, "file_not_found", format!("submission `{}` has no file `{id}`", stored.id)))
}

/// `GET /v1/forms/{id}/submissions/{submission}/files/{file}`.
pub fn file(req: &Request) -> Result<Response> {
    Ok(attachments::serve(&attached(req)?))
}

/// `GET /v1/forms/{id}/submissions/{submission}/files/{file}/variants/{name}`.
pub fn variant(req: &Request) -> Result<Response> {
    let name: String = req.param("name")?;
    attachments::serve_variant(&attached(req)?, &name)
}

fn remove(stored: &Stored) -> Result<()> {
    let mut ops = vec![kv::Op::Delete(key(&stored.form, &stored.id))];
    ops.extend(stored.idempotency.clone().map(kv::Op::Delete));
    kv::batch(&ops)?;
    attachments::remove(&stored.attachments);
    Ok(())
}

/// Removes up to [`SWEEP`] of the oldest expired submissions of `form`.
pub fn sweep(form: &str, definition: &Definition) -> Result<()> {
    if definition.settings.retention_days.is_none() {
        return Ok(());
    }
    let now = store::now();
    let page = kv::page::<Stored>(&format!("sub/{form}/"), None, SWEEP)?;
    for (_, stored) in page.entries.iter().take_while(|(_, s)| expired(definition, s, now)) {
        remove(stored)?;
        audit::record("form.submission_expired", &format!("{form}/{}", stored.id), Outcome::Success, None)?;
    }
    Ok(())
}
