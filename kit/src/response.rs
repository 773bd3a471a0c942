//! The response a handler builds.

use serde::Serialize;

/// Status, headers and body; turned into the host's response once the
/// handler returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, in order. The host refuses the ones it owns (`set-cookie`,
    /// security headers, framing); see `types.response.set-header`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The key whose changes the host streams after the body, if any.
    pub(crate) follow: Option<crate::events::Follow>,
    /// The blob the host serves as the body, if any.
    pub(crate) blob: Option<crate::blobs::Served>,
}

impl Response {
    /// A response with no body, such as `Response::empty(204)`.
    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new(), follow: None, blob: None }
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("a value that serializes to JSON");
        Self::bytes(status, "application/json", body)
    }

    /// A raw body with this content type.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self { headers: vec![("content-type".to_owned(), content_type.to_owned())], body, ..Self::empty(status) }
    }

    /// A file compiled into the component, such as a page's script or
    /// style: 200 with this content type, cached for five minutes (a new
    /// version of the plugin serves a new one soon after a swap).
    pub fn static_file(content_type: &str, body: &'static [u8]) -> Self {
        Self::bytes(200, content_type, body.to_vec()).header("cache-control", "public, max-age=300")
    }

    /// A 200 whose body is the blob `id`, served by the host with `Range`,
    /// `ETag`, `Last-Modified` and conditional requests; add the content
    /// type, disposition and caching. Needs grant `blobs`.
    pub fn blob(id: &str, content_type: &str) -> Self {
        Self { blob: Some(crate::blobs::Served::new(id)), ..Self::bytes(200, content_type, Vec::new()) }
    }

    /// The blob this response serves, if any.
    pub fn served_blob(&self) -> Option<&str> {
        self.blob.as_ref().map(|b| b.id.as_str())
    }

    /// Makes this (200) response a live Server-Sent Events stream of `key`'s
    /// changes after version `after`, served by the host once the handler
    /// returns: the body goes first (such as a `reset` event). Needs grant
    /// `events`; see `events.follow` in the WIT.
    pub fn follow(mut self, key: &str, after: u64) -> Self {
        self.follow = Some(crate::events::Follow::new(key, after));
        self
    }

    /// The key and version this response follows, if it is a stream.
    pub fn followed(&self) -> Option<(&str, u64)> {
        self.follow.as_ref().map(|f| (f.key.as_str(), f.after))
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}
