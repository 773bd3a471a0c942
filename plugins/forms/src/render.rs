//! `GET /v1/forms/{id}`: what a client needs to show a form and validate it
//! as the user types, in the request's locale, with a render token that
//! pins the submission to this version and starts the fill-time clock.

use plinth_forms::{Audience, Definition};
use plinth_kit::messages;
use plinth_kit::{Error, Principal, Request, Response, Result, signing};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{localize, store};

/// The purpose render tokens are signed for.
const PURPOSE: &str = "forms.render";
/// How long a shown form can be submitted.
pub const TOKEN_LIFETIME: u64 = 24 * 3600;

/// What a render token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderToken {
    /// The form.
    #[serde(rename = "f")]
    pub form: String,
    /// The version shown.
    #[serde(rename = "v")]
    pub version: u32,
    /// When it was shown (seconds since the Unix epoch).
    #[serde(rename = "t")]
    pub issued_at: u64,
    /// Random: names this showing of the form, which its uploads belong to.
    #[serde(rename = "n", default)]
    pub showing: String,
}

/// A token for showing version `version` of form `id` now.
pub fn issue(id: &str, version: u32) -> Result<(String, u64)> {
    let now = store::now();
    let payload = RenderToken { form: id.to_owned(), version, issued_at: now, showing: plinth_kit::new_id() };
    let bytes = serde_json::to_vec(&payload).expect("a token serializes");
    let token = signing::sign(PURPOSE, &bytes, Some(now + TOKEN_LIFETIME)).map_err(Error::unavailable)?;
    Ok((token, now + TOKEN_LIFETIME))
}

/// The token's contents, if it is this plugin's and for form `id`: 403
/// `invalid_render_token`, `render_token_expired` or `render_token_mismatch`.
pub fn verify(token: &str, id: &str) -> Result<RenderToken> {
    let invalid =
        || Error::new(403, "invalid_render_token", "the render token is not one this form made; load the form again");
    let bytes = signing::verify(PURPOSE, token).map_err(|e| match e {
        signing::Error::Expired(_) => {
            Error::new(403, "render_token_expired", "the form was shown too long ago; load it again").at("token")
        }
        _ => invalid().at("token"),
    })?;
    let payload: RenderToken = serde_json::from_slice(&bytes).map_err(|_| invalid().at("token"))?;
    if payload.form != id {
        return Err(Error::new(
            403,
            "render_token_mismatch",
            format!("the render token was made for form `{}`, not `{id}`", payload.form),
        )
        .at("token"));
    }
    Ok(payload)
}

/// Whoever may submit `definition`: 401 or 403 otherwise.
pub fn may_submit(req: &Request, definition: &Definition) -> Result<Option<Principal>> {
    match &definition.settings.submit {
        Audience::Public => Ok(req.principal()),
        Audience::Authenticated => req.signed_in().map(Some),
        Audience::Roles(roles) => {
            let me = req.signed_in()?;
            if me.roles.iter().any(|r| roles.contains(r)) {
                Ok(Some(me))
            } else {
                Err(Error::forbidden(format!("this form takes submissions from the roles {}", roles.join(", "))))
            }
        }
    }
}

/// `GET /v1/forms/{id}`.
pub fn show(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    let form = store::load(&id)?;
    let definition = &form.definition;
    may_submit(req, definition)?;
    let locale = req.locale();
    let version = form.record.current;
    let (token, expires_at) = issue(&id, version)?;
    let mut body = json!({
        "id": id,
        "version": version,
        "locale": locale,
        "dir": if messages::is_rtl(&locale) { "rtl" } else { "ltr" },
        "definition": definition,
        "schema": definition.schema(),
        "texts": localize::texts(definition, &locale),
        "errors": localize::errors(definition, &locale),
        "token": token,
        "token_expires_at": expires_at,
        "min_fill_seconds": definition.settings.min_fill_seconds,
    });
    if let Some(pow) = &definition.settings.proof_of_work {
        body["proof_of_work"] = serde_json::to_value(crate::pow::challenge(&id, pow.max_number)?).expect("serializes");
    }
    Ok(Response::json(200, &body)
        .header("cache-control", "no-store")
        .header("content-language", locale)
        .header("vary", "accept-language"))
}
