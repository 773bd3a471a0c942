//! `plinth:platform/types`: the request a plugin reads and the response it
//! builds, as resources living in the store's table.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use wasmtime::component::Resource;

use crate::runtime::bindings::types::{Host, HostRequest, HostResponse, Principal};
use crate::runtime::state::HostState;

/// A request's body as the plugin may have it.
#[derive(Debug)]
pub enum RequestBody {
    /// Read whole by the edge (or at the plugin's first `body` call).
    Read(Bytes),
    /// Still with the client, on a route whose class allows large bodies:
    /// read whole (at most `whole_limit` bytes) when the plugin asks, or
    /// streamed to a blob.
    Pending {
        /// The body, bounded by the class's limit and the minimum rate.
        reader: crate::body::BodyReader,
        /// Most bytes `body` reads into the plugin's memory.
        whole_limit: u64,
    },
    /// Streamed to a blob: gone.
    Taken,
}

impl RequestBody {
    /// The whole body (none when it was streamed to a blob), or why the
    /// client's body could not be read.
    pub async fn read_whole(self) -> Result<Bytes, crate::error::ApiError> {
        match self {
            RequestBody::Read(bytes) => Ok(bytes),
            RequestBody::Pending { reader, whole_limit } => reader.limited(whole_limit)?.read_all().await,
            RequestBody::Taken => Ok(Bytes::new()),
        }
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        Self::Read(bytes)
    }
}

/// What the host tells a plugin about one request.
#[derive(Debug)]
pub struct RequestData {
    /// Upper-case method.
    pub method: String,
    /// The canonical path the edge routed and authorized (see `crate::path`):
    /// decoded once, never with empty or dot segments.
    pub path: String,
    /// Raw query without `?`.
    pub query: Option<String>,
    /// Lower-case names; credentials already removed by the edge.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: RequestBody,
    /// W3C trace id.
    pub trace_id: String,
    /// The client address the edge settled on.
    pub client_address: String,
    /// The declared route that matched, as the plugin spelled it.
    pub route: String,
    /// Route parameters.
    pub params: Vec<(String, String)>,
    /// The signed-in principal, if any.
    pub principal: Option<Principal>,
    /// The session's CSRF token, for the `_csrf` field of HTML forms.
    pub csrf_token: Option<String>,
    /// The host re-asks for an open stream (see `events.follow`).
    pub revalidation: bool,
}

impl RequestData {
    /// The locale this request is served in, of `locales`: an explicit
    /// `locale` query parameter, then `Accept-Language`, then the default.
    pub fn locale<'a>(&self, locales: &'a crate::i18n::Locales) -> &'a str {
        let explicit = self
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("locale="))
            .map(|value| percent_encoding::percent_decode_str(value).decode_utf8_lossy());
        let accept_language = self.headers.iter().find(|(name, _)| name == "accept-language").map(|(_, v)| v.as_str());
        locales.negotiate(explicit.as_deref(), accept_language)
    }
}

/// What a plugin builds as its answer.
#[derive(Debug, Default)]
pub struct ResponseData {
    /// Status code, 100..=599.
    pub status: u16,
    /// Headers the plugin added; host-owned names are refused at `set-header`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Vec<u8>,
    /// Set by `events.follow`: after the body, the host streams changes.
    pub follow: Option<Follow>,
    /// Set by `blobs.serve`: the body is this blob, served by the host.
    pub blob: Option<crate::blobs::BlobInfo>,
}

/// A response that goes on as a stream of one key's changes.
#[derive(Debug)]
pub struct Follow {
    /// The key whose changes are sent.
    pub key: String,
    /// Changes after this version.
    pub after: u64,
    /// The stream's place within the host's limits; none when the host
    /// re-asks for a stream it already counts.
    pub ticket: Option<crate::events::StreamTicket>,
}

/// Response headers that only the host sets: framing, cookies, and the
/// security headers the edge owns. A plugin may add others, never these.
const HOST_OWNED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "keep-alive",
    "set-cookie",
    "server",
    "x-powered-by",
    "x-trace-id",
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "permissions-policy",
    "clear-site-data",
];

/// Whether a response header is one only the host sets.
pub fn is_host_owned(name: &str) -> bool {
    HOST_OWNED_HEADERS.contains(&name)
}

impl Host for HostState {}

impl HostRequest for HostState {
    fn method(&mut self, req: Resource<RequestData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&req)?.method.clone())
    }

    fn path(&mut self, req: Resource<RequestData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&req)?.path.clone())
    }

    fn query(&mut self, req: Resource<RequestData>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&req)?.query.clone())
    }

    fn headers(&mut self, req: Resource<RequestData>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.table.get(&req)?.headers.clone())
    }

    fn header(&mut self, req: Resource<RequestData>, name: String) -> wasmtime::Result<Option<String>> {
        let name = name.to_ascii_lowercase();
        let req = self.table.get(&req)?;
        Ok(req.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
    }

    async fn body(&mut self, req: Resource<RequestData>) -> wasmtime::Result<Vec<u8>> {
        let body = std::mem::replace(&mut self.table.get_mut(&req)?.body, RequestBody::Taken);
        if matches!(body, RequestBody::Taken) {
            return Ok(Vec::new());
        }
        let bytes = match body.read_whole().await {
            Ok(bytes) => bytes,
            Err(failure) => {
                self.host_failure = Some(failure);
                return Ok(Vec::new());
            }
        };
        let copy = bytes.to_vec();
        self.table.get_mut(&req)?.body = RequestBody::Read(bytes);
        Ok(copy)
    }

    fn trace_id(&mut self, req: Resource<RequestData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&req)?.trace_id.clone())
    }

    fn client_address(&mut self, req: Resource<RequestData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&req)?.client_address.clone())
    }

    fn route(&mut self, req: Resource<RequestData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&req)?.route.clone())
    }

    fn params(&mut self, req: Resource<RequestData>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.table.get(&req)?.params.clone())
    }

    fn param(&mut self, req: Resource<RequestData>, name: String) -> wasmtime::Result<Option<String>> {
        let req = self.table.get(&req)?;
        Ok(req.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
    }

    fn principal(&mut self, req: Resource<RequestData>) -> wasmtime::Result<Option<Principal>> {
        Ok(self.table.get(&req)?.principal.clone())
    }

    fn csrf_token(&mut self, req: Resource<RequestData>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&req)?.csrf_token.clone())
    }

    fn locale(&mut self, req: Resource<RequestData>) -> wasmtime::Result<String> {
        Ok(self.table.get(&req)?.locale(&self.plugin.locales).to_owned())
    }

    fn drop(&mut self, req: Resource<RequestData>) -> wasmtime::Result<()> {
        self.table.delete(req)?;
        Ok(())
    }
}

impl HostResponse for HostState {
    fn new(&mut self, status: u16) -> wasmtime::Result<Resource<ResponseData>> {
        if !(100..=599).contains(&status) {
            wasmtime::bail!("plugin built a response with invalid status {status}");
        }
        Ok(self.table.push(ResponseData { status, ..ResponseData::default() })?)
    }

    fn set_header(
        &mut self,
        resp: Resource<ResponseData>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let Ok(name) = HeaderName::try_from(name.as_str()) else {
            return Ok(Err(format!("`{name}` is not a valid header name")));
        };
        if is_host_owned(name.as_str()) {
            return Ok(Err(format!("`{name}` is set by the host only")));
        }
        let Ok(value) = HeaderValue::try_from(value) else {
            return Ok(Err(format!("the value for `{name}` is not a valid header value")));
        };
        self.table.get_mut(&resp)?.headers.push((name, value));
        Ok(Ok(()))
    }

    fn set_body(&mut self, resp: Resource<ResponseData>, body: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&resp)?.body = body;
        Ok(())
    }

    fn drop(&mut self, resp: Resource<ResponseData>) -> wasmtime::Result<()> {
        self.table.delete(resp)?;
        Ok(())
    }
}
