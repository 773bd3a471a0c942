//! Publishing forms: `PUT /v1/admin/forms/{id}` with `If-None-Match: *`
//! (a new form) or `If-Match` (the next version), `GET` of one form's
//! definition and versions, and the list of forms. A definition is checked
//! whole before it is stored: its structure, its schema (compiled by the
//! host), and that every message it shows exists in every enabled locale.

use plinth_forms::Definition;
use plinth_kit::audit::{self, Outcome};
use plinth_kit::{Error, Problem, Request, Response, Result, messages, schemas};
use serde_json::json;

use crate::store::{self, Source};

const ADMIN: &str = "admin";

fn etag(version: u32) -> String {
    format!("\"{version}\"")
}

/// The version an `If-Match` names (`"3"`), or 412.
fn expected_version(if_match: &str) -> Result<u32> {
    if_match
        .trim()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| Error::precondition_failed("the form"))
}

/// `GET /v1/admin/forms`.
pub fn list(req: &Request) -> Result<Response> {
    req.require_role(ADMIN)?;
    let mut forms = Vec::new();
    for id in store::ids()? {
        let form = store::load(&id)?;
        forms.push(json!({ "id": id, "version": form.record.current, "source": form.record.source }));
    }
    Ok(Response::json(200, &json!({ "items": forms })))
}

/// `GET /v1/admin/forms/{id}`: the current definition (ETag: its version)
/// and every version's dates.
pub fn get(req: &Request) -> Result<Response> {
    req.require_role(ADMIN)?;
    let id: String = req.param("id")?;
    let form = store::load(&id)?;
    let body = json!({ "definition": form.definition, "source": form.record.source, "versions": form.record.versions });
    Ok(Response::json(200, &body).header("etag", etag(form.record.current)))
}

/// `PUT /v1/admin/forms/{id}`.
pub fn put(req: &Request) -> Result<Response> {
    req.require_role(ADMIN)?;
    let id: String = req.param("id")?;
    if !plinth_forms::valid_form_id(&id) {
        return Err(Error::new(400, "invalid_param", "a form id is 1 to 64 of a-z, 0-9, `-`, `_`").at("id"));
    }
    if store::shipped(&id)?.is_some() {
        return Err(Error::new(
            409,
            "form_defined_in_config",
            format!("form `{id}` is shipped with the deployment; change its file and reload"),
        ));
    }
    let expected = match (req.if_match(), req.header("if-none-match")) {
        (Some(tag), _) => Some(expected_version(&tag)?),
        (None, Some(star)) if star.trim() == "*" => None,
        _ => {
            return Err(Error::new(
                428,
                "precondition_required",
                "send `If-None-Match: *` to create a form, or `If-Match` with its ETag to publish a new version",
            ));
        }
    };
    let media_type = req.header("content-type").unwrap_or_default();
    if !media_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json") {
        return Err(Error::new(
            415,
            "unsupported_media_type",
            "send the definition as `content-type: application/json`",
        )
        .at("content-type"));
    }
    let definition = Definition::parse(&req.body()).map_err(|errors| {
        let problems = errors
            .iter()
            .map(|e| Problem { path: e.path.clone(), code: "invalid".into(), message: e.message.clone() })
            .collect();
        Error::new(422, "invalid_definition", format!("the definition has {} problem(s)", errors.len()))
            .with_problems(problems)
    })?;
    if definition.id != id {
        return Err(Error::new(
            422,
            "invalid_definition",
            format!("the definition's id `{}` is not `{id}`", definition.id),
        )
        .at("/id"));
    }
    if definition.version.is_some() {
        return Err(
            Error::new(422, "invalid_definition", "leave `version` out: publishing numbers versions").at("/version")
        );
    }
    if let Err(schemas::Error::InvalidSchema(why)) = schemas::validate(&definition.schema().to_string(), "{}") {
        return Err(
            Error::new(422, "invalid_definition", format!("the form's schema does not compile: {why}")).at("/schema")
        );
    }
    for (i, hook) in definition.settings.webhooks.iter().enumerate() {
        if let Some(why) = crate::notify::refused_url(&hook.url) {
            return Err(Error::new(422, "invalid_definition", format!("webhook {i}: {why}"))
                .at(format!("/settings/webhooks/{i}/url")));
        }
    }
    let missing = messages::missing(&definition.message_keys());
    if !missing.is_empty() {
        let problems = missing
            .iter()
            .map(|(locale, key)| Problem {
                path: key.clone(),
                code: "message_missing".into(),
                message: format!("message `{key}` is missing in locale `{locale}`"),
            })
            .collect();
        return Err(Error::new(
            422,
            "messages_missing",
            format!("{} message(s) the form shows are missing; add them to the plugin's messages", missing.len()),
        )
        .with_problems(problems));
    }
    let version = store::publish(&id, definition, expected)?;
    audit::record("form.published", &id, Outcome::Success, Some(&format!("version {version}")))?;
    let status = if version == 1 { 201 } else { 200 };
    let body = json!({ "id": id, "version": version, "source": Source::Api });
    Ok(Response::json(status, &body).header("etag", etag(version)))
}
