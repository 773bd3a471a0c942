//! Standard `wasi:http` proxy components served as plugins. The edge has
//! judged the request (limits, session, CSRF, policy) before it gets here;
//! the component receives it as a `wasi:http` incoming request whose path
//! is the canonical path the edge routed (less the entry's `strip_prefix`),
//! with what a plinth plugin reads through `types.request` set as
//! `plinth-*` headers (see [`FACT_HEADERS`]) and every header the client
//! sent that could pass for one removed ([`is_withheld`]). Its response is
//! read whole, at most the plugin's memory cap, into the [`ResponseData`] a
//! plinth plugin builds, less the headers the host owns.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::oneshot;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::runtime::host::types::{RequestData, ResponseData, is_host_owned};

/// The headers the host sets on every request to a `wasi:http` component:
/// the signed-in account, its roles (comma-separated) and session, the
/// session's CSRF token (when signed in), the trace id, the client address,
/// the route that matched (as its entry lists it) and the negotiated locale.
pub const FACT_HEADERS: [&str; 8] = [
    "plinth-account-id",
    "plinth-roles",
    "plinth-session-id",
    "plinth-csrf-token",
    "plinth-trace-id",
    "plinth-client-address",
    "plinth-route",
    "plinth-locale",
];

/// Client headers a component never sees: any that reads as a `plinth-*`
/// fact once `_` is taken for `-` (as CGI-style frameworks map
/// `HTTP_PLINTH_ACCOUNT_ID`), and the forwarding headers, whose answer the
/// edge already settled (`plinth-client-address`).
pub fn is_withheld(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    name.starts_with("plinth-")
        || name == "forwarded"
        || name.starts_with("x-forwarded-")
        || name == "x-real-ip"
        || name == "x-client-ip"
}

/// What a path segment keeps unencoded: RFC 3986 `pchar` less `%`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// The request the component receives. `body` is the request's whole body.
pub fn incoming(
    request: &RequestData,
    body: Bytes,
    strip_prefix: Option<&str>,
    locale: &str,
) -> Result<http::Request<Full<Bytes>>, http::Error> {
    let path = strip_prefix.and_then(|p| request.path.strip_prefix(p)).unwrap_or(&request.path);
    let mut target: String = path.split('/').skip(1).map(|s| format!("/{}", utf8_percent_encode(s, SEGMENT))).collect();
    if target.is_empty() {
        target.push('/');
    }
    if let Some(query) = &request.query {
        target.push('?');
        target.push_str(query);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if is_withheld(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            headers.append(name, value);
        }
    }
    let authority = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .filter(|a| !a.as_str().contains('@'))
        .map_or_else(|| "localhost".to_owned(), |a| a.to_string());
    headers.insert(http::header::HOST, HeaderValue::try_from(authority.as_str())?);
    let principal = request.principal.as_ref();
    let facts = [
        principal.map(|p| p.account_id.clone()),
        principal.map(|p| p.roles.join(",")),
        principal.map(|p| p.session_id.clone()),
        request.csrf_token.clone(),
        Some(request.trace_id.clone()),
        Some(request.client_address.clone()),
        Some(request.route.clone()),
        Some(locale.to_owned()),
    ];
    for (name, value) in FACT_HEADERS.iter().zip(facts) {
        if let Some(value) = value {
            headers.insert(*name, HeaderValue::try_from(value)?);
        }
    }
    let mut incoming = http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{authority}{target}"))
        .body(Full::new(body))?;
    *incoming.headers_mut() = headers;
    Ok(incoming)
}

/// Why a component's response could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ResponseFailure {
    /// It returned without setting its response.
    #[error("the component returned without sending a response")]
    None,
    /// It set an error code instead of a response.
    #[error("the component answered with error code {0:?}")]
    Error(ErrorCode),
    /// Its status is not a final one (a 1xx would turn the exchange into
    /// something else, such as a 101 upgrade).
    #[error("the component answered with status {0}; a response is 200 to 599")]
    Status(u16),
    /// Its body was larger than the memory cap.
    #[error("the component's response body is over {0} bytes")]
    TooLarge(usize),
    /// Its body stream failed.
    #[error("the component's response body failed: {0}")]
    Body(String),
}

/// Reads the response the component sends on `receiver`, its body whole
/// and at most `limit` bytes.
pub async fn collect(
    receiver: oneshot::Receiver<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
    limit: usize,
) -> Result<ResponseData, ResponseFailure> {
    let response = receiver.await.map_err(|_| ResponseFailure::None)?.map_err(ResponseFailure::Error)?;
    let (parts, body) = response.into_parts();
    if !(200..=599).contains(&parts.status.as_u16()) {
        return Err(ResponseFailure::Status(parts.status.as_u16()));
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(ResponseFailure::TooLarge(limit)),
        Err(e) => return Err(ResponseFailure::Body(e.to_string())),
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !is_host_owned(name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Ok(ResponseData { status: parts.status.as_u16(), headers, body: Vec::from(body), ..ResponseData::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::Principal;

    fn request(path: &str, headers: &[(&str, &str)]) -> RequestData {
        RequestData {
            method: "GET".into(),
            path: path.into(),
            query: Some("a=1&b=%2F".into()),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Bytes::new().into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            client_address: "203.0.113.9".into(),
            route: "GET /wasi/v1/{name}".into(),
            params: vec![],
            principal: Some(Principal {
                account_id: "acc1".into(),
                roles: vec!["admin".into(), "editor".into()],
                session_id: "s1".into(),
            }),
            csrf_token: Some("csrf1".into()),
            revalidation: false,
        }
    }

    #[test]
    fn the_component_sees_the_judged_path_and_the_hosts_facts_only() {
        let req = request(
            "/wasi/v1/a b%/é",
            &[
                ("host", "example.com:8080"),
                ("plinth-account-id", "forged"),
                ("plinth-roles", "admin"),
                ("plinth_account_id", "forged"),
                ("x-forwarded-for", "10.0.0.1"),
                ("forwarded", "for=10.0.0.1"),
                ("x-kept", "1"),
            ],
        );
        let sent = incoming(&req, Bytes::from_static(b"hi"), Some("/wasi"), "pl").unwrap();
        assert_eq!(sent.uri().to_string(), "http://example.com:8080/v1/a%20b%25/%C3%A9?a=1&b=%2F");
        let header = |name: &str| sent.headers().get_all(name).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(header("plinth-account-id"), ["acc1"], "the client's value is replaced, not added to");
        assert_eq!(header("plinth-roles"), ["admin,editor"]);
        assert_eq!(header("plinth-route"), ["GET /wasi/v1/{name}"]);
        assert_eq!(header("plinth-locale"), ["pl"]);
        assert_eq!(header("x-kept"), ["1"]);
        for withheld in ["plinth_account_id", "x-forwarded-for", "forwarded"] {
            assert!(header(withheld).is_empty(), "{withheld}");
        }
        let mut anonymous = request("/wasi", &[("plinth-session-id", "forged"), ("host", "a@b")]);
        anonymous.principal = None;
        anonymous.csrf_token = None;
        let sent = incoming(&anonymous, Bytes::new(), Some("/wasi"), "en").unwrap();
        assert_eq!(sent.uri().path(), "/");
        assert_eq!(sent.uri().host(), Some("localhost"), "an authority with userinfo is not passed on");
        for absent in ["plinth-account-id", "plinth-roles", "plinth-session-id", "plinth-csrf-token"] {
            assert!(sent.headers().get(absent).is_none(), "{absent}");
        }
    }

    fn body(bytes: &'static [u8]) -> HyperOutgoingBody {
        Full::new(Bytes::from_static(bytes)).map_err(|never| match never {}).boxed_unsync()
    }

    #[tokio::test]
    async fn a_response_is_read_whole_within_the_cap_less_host_owned_headers() {
        let (sender, receiver) = oneshot::channel();
        let response = hyper::Response::builder()
            .status(201)
            .header("content-type", "text/plain")
            .header("set-cookie", "__Host-plinth_session=stolen")
            .header("content-length", "5")
            .body(body(b"hello"))
            .unwrap();
        sender.send(Ok(response)).unwrap();
        let data = collect(receiver, 5).await.unwrap();
        assert_eq!((data.status, data.body.as_slice()), (201, &b"hello"[..]));
        let names: Vec<&str> = data.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["content-type"]);

        let (sender, receiver) = oneshot::channel();
        sender.send(Ok(hyper::Response::new(body(b"hello!")))).unwrap();
        assert!(matches!(collect(receiver, 5).await, Err(ResponseFailure::TooLarge(5))));
        for status in [101, 103, 600] {
            let (sender, receiver) = oneshot::channel();
            let mut response = hyper::Response::new(body(b""));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            sender.send(Ok(response)).unwrap();
            assert!(matches!(collect(receiver, 5).await, Err(ResponseFailure::Status(s)) if s == status));
        }
        let (sender, receiver) = oneshot::channel::<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>();
        drop(sender);
        assert!(matches!(collect(receiver, 5).await, Err(ResponseFailure::None)));
    }
}
