//! The request a handler reads: the host's request resource, read lazily
//! (a handler pays only for what it asks), plus typed extractors whose
//! failures are already client errors in the platform's shape.

use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The signed-in principal the host resolved for a request.
pub use crate::bindings::plinth::platform::types::Principal;

/// Largest JSON body [`Request::json`] reads; [`Request::json_limited`]
/// takes another bound (the host's `max_body` bounds every body anyway).
pub const MAX_JSON_BYTES: usize = 256 * 1024;

/// One request that has passed the host's edge (limits, authentication,
/// authorization).
pub struct Request {
    inner: Inner,
}

enum Inner {
    #[cfg(target_arch = "wasm32")]
    Host(crate::bindings::plinth::platform::types::Request),
    #[cfg(not(target_arch = "wasm32"))]
    Test(crate::testing::RequestData),
}

/// Reads one field from wherever the request lives.
macro_rules! read {
    ($self:ident, $host:ident => $on_host:expr, $test:ident => $on_test:expr) => {
        match &$self.inner {
            #[cfg(target_arch = "wasm32")]
            Inner::Host($host) => $on_host,
            #[cfg(not(target_arch = "wasm32"))]
            Inner::Test($test) => $on_test,
        }
    };
}

impl Request {
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_host(req: crate::bindings::plinth::platform::types::Request) -> Self {
        Self { inner: Inner::Host(req) }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn from_test(data: crate::testing::RequestData) -> Self {
        Self { inner: Inner::Test(data) }
    }

    /// The host's resource, for calls that take the request (`blobs`).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn host(&self) -> &crate::bindings::plinth::platform::types::Request {
        match &self.inner {
            Inner::Host(req) => req,
        }
    }

    /// The in-memory request, for the test host's calls that take it.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn host(&self) -> &crate::testing::RequestData {
        match &self.inner {
            Inner::Test(data) => data,
        }
    }

    /// Upper-case method; a `HEAD` arrives as the `GET` it mirrors.
    pub fn method(&self) -> String {
        read!(self, r => r.method(), d => d.method.clone())
    }

    /// The canonical path: decoded once, no empty or dot segments.
    pub fn path(&self) -> String {
        read!(self, r => r.path(), d => d.path.clone())
    }

    /// The route the host matched, as the router declared it.
    pub fn route(&self) -> String {
        read!(self, r => r.route(), d => d.route.clone())
    }

    /// The raw query string without `?`.
    pub fn query(&self) -> Option<String> {
        read!(self, r => r.query(), d => d.query.clone())
    }

    /// Headers, names lower-case; cookies and credentials removed.
    pub fn headers(&self) -> Vec<(String, String)> {
        read!(self, r => r.headers(), d => d.headers.clone())
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        read!(self, r => r.header(name), d => {
            let name = name.to_ascii_lowercase();
            d.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        })
    }

    /// The whole body.
    pub fn body(&self) -> Vec<u8> {
        read!(self, r => r.body(), d => d.body.clone())
    }

    /// The W3C trace id.
    pub fn trace_id(&self) -> String {
        read!(self, r => r.trace_id(), d => d.trace_id.clone())
    }

    /// The client address the host settled on.
    pub fn client_address(&self) -> String {
        read!(self, r => r.client_address(), d => d.client_address.clone())
    }

    /// Every route parameter (`**` binds `rest`).
    pub fn params(&self) -> Vec<(String, String)> {
        read!(self, r => r.params(), d => d.params.clone())
    }

    /// The signed-in principal, if any.
    pub fn principal(&self) -> Option<Principal> {
        read!(self, r => r.principal(), d => d.principal.clone())
    }

    /// The locale the host serves this request in (see
    /// [`crate::messages`]): a `locale` query parameter, then
    /// `Accept-Language`, then the deployment's default.
    pub fn locale(&self) -> String {
        read!(self, r => r.locale(), d => d.locale.clone().unwrap_or_else(|| crate::messages::locales().swap_remove(0)))
    }

    /// The signed-in session's CSRF token, for the `_csrf` hidden field of
    /// an HTML form a page renders (the host takes a cookie session's form
    /// POST only with it); none when signed out.
    pub fn csrf_token(&self) -> Option<String> {
        read!(self, r => r.csrf_token(), d => d.principal.as_ref().map(|p| format!("csrf-of-{}", p.account_id)))
    }

    /// The signed-in principal, or 401 `unauthenticated`.
    pub fn signed_in(&self) -> Result<Principal> {
        self.principal().ok_or_else(Error::unauthenticated)
    }

    /// The signed-in principal if it has `role`: 401 without one, 403
    /// without the role. Use it even where the policy requires the role, so
    /// that a loosened policy opens nothing.
    pub fn require_role(&self, role: &str) -> Result<Principal> {
        let principal = self.signed_in()?;
        if principal.roles.iter().any(|r| r == role) {
            Ok(principal)
        } else {
            Err(Error::forbidden(format!("this action needs the {role} role")))
        }
    }

    /// A route parameter parsed as `T`: 400 `invalid_param` naming it when
    /// it does not parse. The value is the decoded path segment.
    pub fn param<T: FromStr>(&self, name: &str) -> Result<T> {
        let raw = read!(self, r => r.param(name), d => {
            d.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        });
        let raw = raw.ok_or_else(|| {
            Error::new(500, "no_such_param", format!("the route `{}` has no parameter `{name}`", self.route()))
        })?;
        raw.parse().map_err(|_| {
            Error::new(400, "invalid_param", format!("`{name}` is not a valid {}", short_type_name::<T>())).at(name)
        })
    }

    /// The query string deserialized as `T` (`?limit=10&after=x`): 400
    /// `invalid_query` naming the field when it does not fit.
    pub fn query_as<T: DeserializeOwned>(&self) -> Result<T> {
        let query = self.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            Error::new(400, "invalid_query", format!("query `{field}`: {}", e.inner())).at(field)
        })
    }

    /// The JSON body as `T`, at most [`MAX_JSON_BYTES`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        self.json_limited(MAX_JSON_BYTES)
    }

    /// The JSON body as `T`. The body must say it is JSON (a form or
    /// `text/plain` post, which a page on another site can send without
    /// asking, is refused with 415 `unsupported_media_type`); an empty body
    /// is 400 `missing_body`, a longer one than `max` 413 `body_too_large`,
    /// and one that does not fit `T` 422 `invalid_body` naming the field.
    pub fn json_limited<T: DeserializeOwned>(&self, max: usize) -> Result<T> {
        let media_type = self.header("content-type").unwrap_or_default();
        let media_type = media_type.split(';').next().unwrap_or_default().trim().to_owned();
        let bytes = self.body();
        if bytes.is_empty() {
            return Err(Error::new(400, "missing_body", "this route needs a JSON body"));
        }
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(Error::new(415, "unsupported_media_type", "send the body as `content-type: application/json`")
                .at("content-type"));
        }
        if bytes.len() > max {
            return Err(Error::new(
                413,
                "body_too_large",
                format!("the body is {} bytes; this route takes at most {max}", bytes.len()),
            ));
        }
        let invalid = |field: String, why: String| {
            let error = Error::new(422, "invalid_body", format!("invalid JSON body at `{field}`: {why}"));
            if field == "." { error } else { error.at(field) }
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| invalid(e.path().to_string(), e.inner().to_string()))?;
        deserializer.end().map_err(|e| invalid(".".to_owned(), e.to_string()))?;
        Ok(value)
    }

    /// The `If-Match` header, to compare with a stored value's ETag.
    pub fn if_match(&self) -> Option<String> {
        self.header("if-match")
    }
}

/// `u64` for `u64`, `Uuid` for `uuid::Uuid`: for messages.
fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}
