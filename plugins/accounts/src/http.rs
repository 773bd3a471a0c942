//! Request parsing and response building, with the host's error shape.

use serde::de::DeserializeOwned;

use crate::plinth::platform::types::{Principal, Request, Response};

/// A failure answered as `{"error": {"code", "message", "trace_id"}}`.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Extra headers, such as `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
}

pub type Outcome = Result<Response, Failure>;

impl Failure {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), headers: Vec::new() }
    }

    pub fn invalid(field: &str, why: &str) -> Self {
        Self::new(422, "invalid_field", format!("`{field}`: {why}"))
    }

    pub fn into_response(self, req: &Request) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message, "trace_id": req.trace_id() }
        });
        let response = json(self.status, &body);
        for (name, value) in self.headers {
            let _ = response.set_header(name, &value);
        }
        response
    }
}

/// Storage and host failures the user can do nothing about.
pub fn unavailable(what: impl std::fmt::Debug) -> Failure {
    crate::plinth::platform::log::log(
        crate::plinth::platform::log::Level::Error,
        "accounts: host call failed",
        &[("error".into(), format!("{what:?}"))],
    );
    Failure::new(503, "unavailable", "the service is unavailable; retry shortly")
}

pub fn json(status: u16, body: &serde_json::Value) -> Response {
    let response = Response::new(status);
    let _ = response.set_header("content-type", "application/json");
    response.set_body(body.to_string().as_bytes());
    response
}

pub fn empty(status: u16) -> Response {
    Response::new(status)
}

/// A body that carries only a token from an e-mailed link.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenOnly {
    pub token: String,
}

/// Parses the JSON body; unknown fields are refused by the types. The
/// body must say it is JSON: a form or `text/plain` post, which a page on
/// another site can send without asking, is refused.
pub fn body<T: DeserializeOwned>(req: &Request) -> Result<T, Failure> {
    let bytes = req.body();
    if bytes.is_empty() {
        return Err(Failure::new(400, "missing_body", "this route needs a JSON body"));
    }
    let media_type = req.header("content-type").unwrap_or_default();
    let media_type = media_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(Failure::new(415, "unsupported_media_type", "send the body as `content-type: application/json`"));
    }
    serde_json::from_slice(&bytes).map_err(|e| Failure::new(422, "invalid_body", format!("invalid JSON body: {e}")))
}

/// The signed-in principal; the host's policy guarantees one on these routes.
pub fn principal(req: &Request) -> Result<Principal, Failure> {
    req.principal().ok_or_else(|| Failure::new(401, "unauthenticated", "sign in to use this route"))
}

/// The role that may invite and manage accounts.
pub const ADMIN_ROLE: &str = "admin";

/// Refuses a caller without the admin role. The host's policy already
/// requires it on these routes; this holds even if a policy is wrong.
pub fn admin(req: &Request) -> Result<(), Failure> {
    if principal(req)?.roles.iter().any(|r| r == ADMIN_ROLE) {
        Ok(())
    } else {
        Err(Failure::new(403, "forbidden", "this action needs the admin role"))
    }
}

/// Trims and lower-cases an address and checks its shape.
pub fn email(field: &str, raw: &str) -> Result<String, Failure> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if ok { Ok(email) } else { Err(Failure::invalid(field, "not an e-mail address")) }
}

/// A display name: 1 to 100 characters, no control characters.
pub fn display_name(raw: &str) -> Result<String, Failure> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > 100 || name.chars().any(char::is_control) {
        return Err(Failure::invalid("display_name", "1 to 100 characters, no control characters"));
    }
    Ok(name.to_owned())
}
