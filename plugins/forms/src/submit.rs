//! `POST /v1/forms/{id}/submissions` and its dry run, `…/validate`.
//!
//! In order: the form and who may submit; the body; the render token (which
//! pins the version: a replaced version is still taken within the form's
//! `accept_previous_seconds`); the proof of work, when the form asks for
//! one; the quiet spam checks (a filled honeypot, a
//! submission faster than `min_fill_seconds`: answered like a success,
//! audited as `form.spam`, nothing stored); `Idempotency-Key`; validation
//! (shape, the host's schema check, the rules); the attachments; the daily
//! quota; storage.

use plinth_forms::{Definition, FieldError};
use plinth_kit::audit::{self, Outcome};
use plinth_kit::kv::{self, Op, WriteOutcome};
use plinth_kit::{Error, Principal, Request, Response, Result, schemas};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::render::{self, RenderToken};
use crate::{attachments, localize, notify, pow, store, submissions};

/// What a client posts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Posted {
    /// The render token from `GET /v1/forms/{id}`.
    token: String,
    /// The data, an object of the form's fields.
    data: Value,
    /// The answer to the form's proof-of-work challenge (the ALTCHA
    /// widget's payload), when it asks for one.
    #[serde(default)]
    proof: Option<String>,
}

/// What a dry run posts: the token is optional (without it, the current
/// version is checked).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    #[serde(default)]
    token: Option<String>,
    data: Value,
}

/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_SECONDS: u64 = 24 * 3600;

/// A remembered `Idempotency-Key`.
#[derive(Serialize, Deserialize)]
struct Remembered {
    submission: String,
    version: u32,
    fingerprint: String,
    expires_at: u64,
}

/// `POST /v1/forms/{id}/validate`: 200 `{"valid": true}` or the 422 a
/// submission would get; stores nothing.
pub fn validate(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    let form = store::load(&id)?;
    render::may_submit(req, &form.definition)?;
    let posted: DryRun = req.json()?;
    let definition = match posted.token {
        Some(token) => pinned(&id, &form, &render::verify(&token, &id)?)?,
        None => form.definition,
    };
    let data = without_honeypot(&definition, posted.data);
    let errors = check(&definition, &data)?;
    if !errors.is_empty() {
        return Ok(localize::rejection(req, &definition, &errors));
    }
    Ok(Response::json(200, &json!({ "valid": true, "version": definition.version })))
}

/// `POST /v1/forms/{id}/submissions`.
pub fn submit(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    let form = store::load(&id)?;
    let submitter = render::may_submit(req, &form.definition)?;
    let posted: Posted = req.json()?;
    let idempotency = Idempotency::of(req, &id, submitter.as_ref())?;
    let submission =
        Submission { token: &posted.token, data: posted.data, proof: posted.proof.as_deref(), unread: Vec::new() };
    match take(req, &form, submitter, submission, idempotency)? {
        Verdict::Accepted { id, version, replayed } => Ok(accepted(&id, version, replayed)),
        Verdict::Invalid(definition, errors) => Ok(localize::rejection(req, &definition, &errors)),
    }
}

/// What was submitted, through the API or a page.
pub struct Submission<'a> {
    /// The render token.
    pub token: &'a str,
    /// The data.
    pub data: Value,
    /// The proof of work, when the form asks for one.
    pub proof: Option<&'a str>,
    /// Values a page could not read as their field's type.
    pub unread: Vec<FieldError>,
}

/// How a submission ended.
pub enum Verdict {
    /// Stored, replayed (an earlier one with the same `Idempotency-Key`),
    /// or dropped as spam, which looks the same.
    Accepted {
        /// The submission's id.
        id: String,
        /// The version it was made against.
        version: u32,
        /// An earlier answer, replayed.
        replayed: bool,
    },
    /// The data does not meet the form: the version checked, and why.
    Invalid(Box<Definition>, Vec<FieldError>),
}

/// 409 `submissions_closed` for a definition that takes none
/// (`settings.submissions: false`).
pub fn taking(definition: &Definition) -> Result<()> {
    if definition.settings.submissions {
        return Ok(());
    }
    Err(Error::new(
        409,
        "submissions_closed",
        format!("form `{}` takes no submissions: it describes data edited elsewhere", definition.id),
    ))
}

/// Takes a submission to `form` (its audience already checked): the
/// token and version window, the proof of work, the quiet spam checks,
/// `idempotency`, validation, the attachments, the daily quota, storage,
/// webhooks.
pub fn take(
    req: &Request,
    form: &store::Form,
    submitter: Option<Principal>,
    submission: Submission<'_>,
    idempotency: Option<Idempotency>,
) -> Result<Verdict> {
    let id = &form.definition.id;
    taking(&form.definition)?;
    let token = render::verify(submission.token, id)?;
    let definition = pinned(id, form, &token)?;
    let version = definition.version.unwrap_or(form.record.current);
    // A retry with the same key answers as the first did, its proof of
    // work (taken by the first) not asked again.
    if let Some(found) = idempotency.as_ref().map(Idempotency::replay).transpose()?.flatten() {
        return Ok(found);
    }
    if definition.settings.proof_of_work.is_some() {
        pow::redeem(id, submission.proof)?;
    }
    if let Some(reason) = spam(&definition, &submission.data, &token) {
        audit::record("form.spam", id, Outcome::Denied, Some(reason))?;
        return Ok(Verdict::Accepted { id: submissions::new_id(), version, replayed: false });
    }
    let data = without_honeypot(&definition, submission.data);
    let mut errors = submission.unread;
    errors.extend(check(&definition, &data)?);
    if !errors.is_empty() {
        return Ok(Verdict::Invalid(Box::new(definition), errors));
    }
    let attached = match attachments::resolve(&definition, &data, &token, submitter.as_ref())? {
        Ok(attached) => attached,
        Err(errors) => return Ok(Verdict::Invalid(Box::new(definition), errors)),
    };
    if let Some(limit) = definition.settings.max_per_day {
        count_today(id, limit)?;
    }
    let stored = submissions::Stored {
        id: submissions::new_id(),
        form: id.clone(),
        version,
        submitted_at: store::now(),
        submitter: submitter.map(|p| p.account_id),
        locale: req.locale(),
        data,
        idempotency: idempotency.as_ref().map(|i| i.key.clone()),
        attachments: attached,
    };
    let showing = &token.showing;
    if !stored.attachments.is_empty() && !attachments::claim(id, showing, &stored.id, &stored.attachments)? {
        // A concurrent retry with the same key took them: its answer.
        if let Some(found) = idempotency.as_ref().map(Idempotency::replay).transpose()?.flatten() {
            return Ok(found);
        }
        return Err(Error::new(
            409,
            "attachments_already_sent",
            "these files were sent with another submission, or removed; upload them again",
        ));
    }
    let mut writes = attachments::handed_over(id, &stored.attachments);
    let value = serde_json::to_vec(&stored).expect("a submission serializes");
    writes.push(Op::Set(kv::Entry { key: submissions::key(id, &stored.id), value }));
    let written = match idempotency {
        Some(idempotency) => idempotency.claim(&stored, &writes),
        None => kv::batch(&writes).map(|()| None).map_err(Error::from),
    };
    if !matches!(written, Ok(None)) && !stored.attachments.is_empty() {
        attachments::release(id, showing, &stored.id);
    }
    if let Some(replay) = written? {
        return Ok(replay);
    }
    notify::submitted(&definition, &stored);
    submissions::sweep(id, &definition)?;
    Ok(Verdict::Accepted { id: stored.id, version, replayed: false })
}

/// 202 with the submission's id: the same for a stored submission, a
/// replayed one (marked by a header) and a quietly dropped one.
fn accepted(id: &str, version: u32, replayed: bool) -> Response {
    let response = Response::json(202, &json!({ "id": id, "version": version, "status": "received" }));
    if replayed { response.header("idempotent-replayed", "true") } else { response }
}

/// The definition a token pinned: the current one, or a replaced one still
/// within the form's window (409 `form_version_retired` after it).
pub fn pinned(id: &str, form: &store::Form, token: &RenderToken) -> Result<Definition> {
    if token.version == form.record.current {
        return Ok(form.definition.clone());
    }
    let retired = || {
        Error::new(
            409,
            "form_version_retired",
            format!("version {} of form `{id}` was replaced; load the form again", token.version),
        )
        .at("token")
    };
    let info = form.record.version(token.version).ok_or_else(retired)?;
    let window = form.definition.settings.accept_previous_seconds;
    match info.replaced_at {
        Some(at) if store::now() < at.saturating_add(window) => store::version(id, info)?.ok_or_else(retired),
        _ => Err(retired()),
    }
}

/// Why a submission is spam, if it is.
fn spam(definition: &Definition, data: &Value, token: &RenderToken) -> Option<&'static str> {
    let settings = &definition.settings;
    let honeypot = settings.honeypot.as_deref().and_then(|name| data.get(name));
    if honeypot.is_some_and(|v| !matches!(v, Value::Null) && v.as_str() != Some("")) {
        return Some("honeypot");
    }
    let elapsed = store::now().saturating_sub(token.issued_at);
    (elapsed < u64::from(settings.min_fill_seconds)).then_some("too_fast")
}

/// The data without the (empty) honeypot field.
fn without_honeypot(definition: &Definition, mut data: Value) -> Value {
    if let (Some(name), Some(object)) = (&definition.settings.honeypot, data.as_object_mut()) {
        object.remove(name);
    }
    data
}

/// Every way `data` fails `definition`, in one shape.
pub fn check(definition: &Definition, data: &Value) -> Result<Vec<FieldError>> {
    let mut errors = definition.shape_errors(data);
    if !data.is_object() {
        return Ok(errors);
    }
    let schema = definition.schema().to_string();
    let violations = schemas::validate(&schema, &data.to_string()).map_err(|e| match e {
        schemas::Error::InvalidSchema(why) => {
            plinth_kit::log::error("a form's schema does not compile", &[("error", &why)]);
            Error::new(500, "misconfigured", "the form's schema is invalid")
        }
        schemas::Error::InvalidDocument(why) => Error::new(413, "body_too_large", why),
    })?;
    errors.extend(violations.iter().filter_map(|v| definition.schema_error(&v.path, &v.keyword, data)));
    if errors.is_empty() {
        errors = definition.rule_errors(data);
    }
    Ok(errors)
}

/// Counts one submission today (UTC), or 429 `form_quota_exceeded`.
fn count_today(id: &str, limit: u32) -> Result<()> {
    let day = store::now() / 86_400;
    let key = format!("count/{id}/{day}");
    let mut full = false;
    kv::update::<u32, _>(&key, None, |count| {
        let count = count.unwrap_or(0);
        full = count >= limit;
        Ok(Some(if full { count } else { count + 1 }))
    })?;
    // Yesterday's counter is no longer read.
    kv::delete(&format!("count/{id}/{}", day - 1))?;
    if full {
        return Err(Error::new(
            429,
            "form_quota_exceeded",
            format!("form `{id}` takes {limit} submissions a day; try tomorrow"),
        )
        .with_header("retry-after", (86_400 - store::now() % 86_400).to_string()));
    }
    Ok(())
}

/// A request's `Idempotency-Key`, per form and submitter (an account, or
/// the client address when signed out).
pub struct Idempotency {
    key: String,
    fingerprint: String,
}

impl Idempotency {
    fn of(req: &Request, form: &str, submitter: Option<&Principal>) -> Result<Option<Self>> {
        let Some(key) = req.header("idempotency-key") else { return Ok(None) };
        if !(1..=255).contains(&key.len()) || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::new(400, "invalid_header", "`idempotency-key` is 1 to 255 visible ASCII characters")
                .at("idempotency-key"));
        }
        let who = submitter
            .map_or_else(|| format!("address:{}", req.client_address()), |p| format!("account:{}", p.account_id));
        let hash = hex(&Sha256::digest(format!("{who}\0{key}").as_bytes()));
        Ok(Some(Self { key: format!("idem/{form}/{}", &hash[..32]), fingerprint: hex(&Sha256::digest(req.body())) }))
    }

    /// The record under this key with its version; none when absent.
    fn lookup(&self) -> Result<Option<(u64, Remembered)>> {
        let Some((version, bytes)) = kv::get_with_version(&self.key)? else { return Ok(None) };
        let remembered: Remembered = serde_json::from_slice(&bytes)
            .map_err(|_| Error::new(500, "corrupt_value", "a stored idempotency record could not be read"))?;
        Ok(Some((version, remembered)))
    }

    /// The answer a live record gives (422 `idempotency_key_reused` for
    /// another body); none when it has expired.
    fn answer(&self, remembered: Remembered) -> Result<Option<Verdict>> {
        if remembered.expires_at < store::now() {
            return Ok(None);
        }
        if remembered.fingerprint != self.fingerprint {
            return Err(Error::new(
                422,
                "idempotency_key_reused",
                "this `idempotency-key` was used for another submission",
            )
            .at("idempotency-key"));
        }
        Ok(Some(Verdict::Accepted { id: remembered.submission, version: remembered.version, replayed: true }))
    }

    /// The first submission's answer, if this key was used.
    fn replay(&self) -> Result<Option<Verdict>> {
        match self.lookup()? {
            Some((_, remembered)) => self.answer(remembered),
            None => Ok(None),
        }
    }

    /// Stores `write` (the submission) and this key in one atomic write,
    /// conditional on the record read just before (absent, or expired): a
    /// concurrent request with the same key that was stored first wins, and
    /// this one answers with its submission; a live record is never
    /// overwritten.
    fn claim(&self, stored: &submissions::Stored, writes: &[Op]) -> Result<Option<Verdict>> {
        let expected = match self.lookup()? {
            None => None,
            Some((version, remembered)) => match self.answer(remembered)? {
                Some(found) => return Ok(Some(found)),
                None => Some(version),
            },
        };
        let remembered = Remembered {
            submission: stored.id.clone(),
            version: stored.version,
            fingerprint: self.fingerprint.clone(),
            expires_at: store::now() + IDEMPOTENCY_SECONDS,
        };
        let value = serde_json::to_vec(&remembered).expect("a record serializes");
        match kv::write_if_version(&self.key, expected, Some(&value), writes)? {
            WriteOutcome::Written(_) => Ok(None),
            WriteOutcome::Conflict(_) => self.replay()?.map(Some).ok_or_else(|| {
                Error::new(409, "contended", "another request with this `idempotency-key` is being stored; retry")
            }),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
