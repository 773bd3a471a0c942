//! Stored submissions (`sub/{form}/{id}`, ids ordered by time): listed,
//! read and erased (with their files) by the form's reader roles, expired
//! by its retention.
//! Expired submissions are never served, and each new submission removes
//! a few of the oldest expired ones, so storage follows the retention
//! without a timer.

use plinth_forms::{Definition, FieldKind};
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

/// Submissions a filtered listing reads per request at most: a page may
/// then hold fewer than `limit` matches, with `next` to go on from.
const MAX_EXAMINED: u32 = 1_000;
/// Longest `q`.
const MAX_QUERY_TEXT: usize = 200;

/// A listing's query: `after`, `limit`, and the filters `field.{name}=`
/// (the field's value is exactly this, or a list holding it) and `q=`
/// (some answer contains this text, ignoring case).
#[derive(Debug, Default)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
    fields: Vec<(String, String)>,
    text: Option<String>,
}

impl ListQuery {
    fn parse(query: &str, definition: &Definition) -> Result<Self> {
        let invalid = |at: &str, why: String| Error::new(400, "invalid_query", why).at(at);
        let mut parsed = ListQuery::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let repeated = || invalid(&name, format!("`{name}` is given twice"));
            match name.as_ref() {
                "after" if parsed.after.is_none() => {
                    if !valid_id(&value) {
                        return Err(invalid("after", "`after` is a submission id".into()));
                    }
                    parsed.after = Some(value.into_owned());
                }
                "limit" if parsed.limit.is_none() => match value.parse::<u32>() {
                    Ok(limit) if (1..=MAX_PAGE).contains(&limit) => parsed.limit = Some(limit),
                    _ => return Err(invalid("limit", format!("`limit` is 1 to {MAX_PAGE}"))),
                },
                "q" if parsed.text.is_none() => {
                    if value.is_empty() || value.chars().count() > MAX_QUERY_TEXT {
                        return Err(invalid("q", format!("`q` is 1 to {MAX_QUERY_TEXT} characters")));
                    }
                    parsed.text = Some(value.to_lowercase());
                }
                "after" | "limit" | "q" => return Err(repeated()),
                other => match other.strip_prefix("field.") {
                    Some(field) if definition.field(field).is_some_and(|f| f.kind != FieldKind::File) => {
                        if parsed.fields.iter().any(|(f, _)| f == field) {
                            return Err(repeated());
                        }
                        parsed.fields.push((field.to_owned(), value.into_owned()));
                    }
                    Some(field) => {
                        return Err(invalid(
                            other,
                            format!("form `{}` has no field `{field}` to filter by", definition.id),
                        ));
                    }
                    None => {
                        return Err(invalid(
                            other,
                            format!(
                                "unknown parameter `{other}`: the query takes `after`, `limit`, `q` and `field.{{name}}`"
                            ),
                        ));
                    }
                },
            }
        }
        Ok(parsed)
    }

    fn filters(&self) -> bool {
        !self.fields.is_empty() || self.text.is_some()
    }

    /// Whether `data` passes every filter.
    fn keeps(&self, data: &Value) -> bool {
        let equals = |value: &Value, wanted: &str| match value {
            Value::String(s) => s == wanted,
            Value::Number(n) => n.to_string() == wanted,
            Value::Bool(b) => b.to_string() == wanted,
            _ => false,
        };
        let fields = self.fields.iter().all(|(name, wanted)| match data.get(name) {
            Some(Value::Array(items)) => items.iter().any(|item| equals(item, wanted)),
            Some(value) => equals(value, wanted),
            None => false,
        });
        let text = self.text.as_deref().is_none_or(|text| {
            let contains = |value: &Value| value.as_str().is_some_and(|s| s.to_lowercase().contains(text));
            data.as_object().into_iter().flat_map(|o| o.values()).any(|value| match value {
                Value::Array(items) => items.iter().any(contains),
                value => contains(value),
            })
        });
        fields && text
    }
}

/// `GET /v1/forms/{id}/submissions?after=&limit=&q=&field.{name}=`: oldest
/// first.
pub fn list(req: &Request) -> Result<Response> {
    let form: String = req.param("id")?;
    let definition = store::load(&form)?.definition;
    reader(req, &definition)?;
    let query = ListQuery::parse(&req.query().unwrap_or_default(), &definition)?;
    let limit = query.limit.unwrap_or(50);
    let prefix = format!("sub/{form}/");
    let now = store::now();
    let (mut items, mut cursor, mut examined) = (Vec::new(), query.after.as_ref().map(|a| key(&form, a)), 0);
    loop {
        let page = kv::page::<Stored>(&prefix, cursor.as_deref(), limit)?;
        examined += page.entries.len() as u32;
        items.extend(
            page.entries.into_iter().map(|(_, s)| s).filter(|s| !expired(&definition, s, now) && query.keeps(&s.data)),
        );
        cursor = page.next;
        if cursor.is_none() || !query.filters() || items.len() >= limit as usize || examined >= MAX_EXAMINED {
            break;
        }
    }
    items.truncate(limit as usize);
    // A page cut short by the limit goes on after its last item.
    let next = match (items.len() == limit as usize, items.last()) {
        (true, Some(last)) if query.filters() => Some(last.id.clone()),
        _ => cursor.as_deref().and_then(|k| k.strip_prefix(&prefix)).map(str::to_owned),
    };
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
