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

/// Longest address, in bytes once normalized.
const MAX_EMAIL_BYTES: usize = 254;

/// The one spelling of an address: trimmed, NFKC-normalized (composed
/// accents, fullwidth letters as ASCII) and lower-cased, so that spellings
/// a person cannot tell apart name one account. Refuses anything else that
/// could hide in an address: whitespace, control and invisible characters
/// (only ASCII symbols and letters or digits of any script are accepted).
pub fn email(field: &str, raw: &str) -> Result<String, Failure> {
    use unicode_normalization::UnicodeNormalization;
    let invalid = |why: &str| Failure::invalid(field, why);
    if raw.len() > 4 * MAX_EMAIL_BYTES {
        return Err(invalid("not an e-mail address (too long)"));
    }
    let email: String = raw.trim().nfkc().collect::<String>().to_lowercase().nfkc().collect();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(invalid("not an e-mail address (too long)"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("not an e-mail address"));
    };
    let local_ok = !local.is_empty()
        && local.chars().all(|c| c.is_alphanumeric() || (c.is_ascii_graphic() && !matches!(c, '@' | '"' | '\\')));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok { Ok(email) } else { Err(invalid("not an e-mail address")) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_look_alike_are_one_address() {
        for (raw, normal) in [
            ("  Ada@Example.COM ", "ada@example.com"),
            ("jos\u{e9}@example.com", "jos\u{e9}@example.com"),
            ("jose\u{301}@example.com", "jos\u{e9}@example.com"),
            ("\u{ff41}da@example.com", "ada@example.com"),
            ("a.b+tag@sub.example.org", "a.b+tag@sub.example.org"),
        ] {
            assert_eq!(email("email", raw).map_err(|f| f.message).as_deref(), Ok(normal), "{raw:?}");
        }
    }

    #[test]
    fn hidden_or_malformed_addresses_are_refused() {
        let long = format!("{}@example.com", "a".repeat(2048));
        for raw in [
            "ada\u{200b}@example.com",
            "ada@exa\u{200d}mple.com",
            "ad\u{202e}a@example.com",
            "a da@example.com",
            "ada@example",
            "ada@-example.com",
            "ada@example..com",
            "@example.com",
            "ada",
            "a\"b@example.com",
            long.as_str(),
        ] {
            assert!(email("email", raw).is_err(), "{raw:?}");
        }
    }
}
