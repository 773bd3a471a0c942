//! The one shape every failure takes on the wire:
//! `{"error": {"code": "...", "message": "...", "trace_id": "..."}}`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A failure to report to the client. `code` is stable and machine-readable;
/// `message` is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable, snake_case.
    pub code: &'static str,
    /// Human-readable detail; never a secret.
    pub message: String,
    /// Extra response headers, such as `Allow` or `Retry-After`.
    pub headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), headers: Vec::new() }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The JSON body: `{"error": {"code", "message", "trace_id"}}`.
    pub fn body(&self, trace_id: &str) -> String {
        serde_json::json!({ "error": { "code": self.code, "message": self.message, "trace_id": trace_id } }).to_string()
    }

    /// The JSON response for this error.
    pub fn into_response(self, trace_id: &str) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body(trace_id))));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        }
        response
    }
}
