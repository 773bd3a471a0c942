//! Failures in the platform's error shape, so a handler's `?` answers the
//! client the way the host itself does.

use crate::response::Response;

/// A failure answered as
/// `{"error": {"code", "message", "trace_id", "field"?}}`: `code` is stable
/// and machine-readable, `message` is for people, `field` names the input at
/// fault (a JSON path such as `items[0].name`, a parameter or a header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// HTTP status.
    pub status: u16,
    /// Stable, snake_case.
    pub code: String,
    /// Human-readable detail; never a secret.
    pub message: String,
    /// The input at fault, when one is.
    pub field: Option<String>,
    /// Extra response headers, such as `Retry-After`.
    pub headers: Vec<(String, String)>,
    /// Every problem found, when there are several (a schema check); a
    /// boxed slice keeps `Error` small, as every `Result` carries it.
    pub problems: Box<[Problem]>,
}

/// One of several problems with an input, answered in `problems`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Where: a JSON pointer such as `/items/0/name` (empty: the whole).
    pub path: String,
    /// Stable, snake_case, such as `required` or `too_long`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// What handlers return.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            headers: Vec::new(),
            problems: Box::default(),
        }
    }

    /// 422 `invalid_field`: a value is present but not acceptable.
    pub fn invalid(field: &str, why: &str) -> Self {
        Self::new(422, "invalid_field", format!("`{field}`: {why}")).at(field)
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(404, "not_found", what)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(401, "unauthenticated", "sign in to use this route")
    }

    /// 403 `forbidden`.
    pub fn forbidden(why: impl Into<String>) -> Self {
        Self::new(403, "forbidden", why)
    }

    /// 409 `conflict`.
    pub fn conflict(why: impl Into<String>) -> Self {
        Self::new(409, "conflict", why)
    }

    /// 412 `precondition_failed`: an `If-Match` that no longer holds.
    pub fn precondition_failed(what: &str) -> Self {
        Self::new(412, "precondition_failed", format!("{what} changed since you read it; read it again")).at("if-match")
    }

    /// 503 `unavailable` for a host failure the client can only retry; the
    /// detail goes to the log, not to the client.
    pub fn unavailable(what: impl std::fmt::Debug) -> Self {
        crate::log::error("host call failed", &[("error", &format!("{what:?}"))]);
        Self::new(503, "unavailable", "the service is unavailable; retry shortly")
    }

    /// Names the input at fault.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Lists every problem found.
    pub fn with_problems(mut self, problems: Vec<Problem>) -> Self {
        self.problems = problems.into_boxed_slice();
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The response, with the request's trace id in the body.
    pub fn into_response(self, trace_id: &str) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message, "trace_id": trace_id });
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        if !self.problems.is_empty() {
            error["problems"] = serde_json::to_value(&self.problems).expect("problems serialize");
        }
        let mut response = Response::json(self.status, &serde_json::json!({ "error": error }));
        response.headers.extend(self.headers);
        response
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for Error {}
