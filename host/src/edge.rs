//! The request path from a parsed HTTP request to a response: trace id,
//! bounds, host routes, routing, body limit, and the plugin call. Nothing
//! here returns an error to hyper; every failure becomes a JSON response.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::app::App;
use crate::error::ApiError;
use crate::routes::Lookup;
use crate::runtime::PluginFailure;
use crate::runtime::host::types::RequestData;
use crate::trace;

/// Response header that echoes the request's trace id.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Request headers a plugin never sees: credentials stay with the host.
const WITHHELD_HEADERS: &[&str] = &["cookie", "authorization", "proxy-authorization"];

/// Handles one request; always produces a response.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let trace_id = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace::from_traceparent)
        .unwrap_or_else(trace::generate);
    let span = tracing::info_span!("request", trace_id = %trace_id, method = %req.method(), path = %req.uri().path());
    async {
        let timeout = app.config.server.request_timeout();
        let mut response = match tokio::time::timeout(timeout, route(app, req, peer, &trace_id)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => error.into_response(&trace_id),
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                format!("the request took longer than {timeout:?}"),
            )
            .into_response(&trace_id),
        };
        response.headers_mut().insert(TRACE_ID_HEADER, HeaderValue::from_str(&trace_id).expect("trace ids are hex"));
        tracing::info!(status = response.status().as_u16(), "served");
        response
    }
    .instrument(span)
    .await
}

async fn route(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
    trace_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let server = &app.config.server;
    let _permit = app.in_flight.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("more than {} requests in flight; retry shortly", server.max_in_flight),
        )
    })?;
    check_header_limits(app, &req)?;
    let path = req.uri().path().to_owned();
    if let Some(response) = host_route(app, req.method(), &path) {
        return Ok(response);
    }
    let (index, params) = match app.routes.lookup(req.method(), &path) {
        Lookup::Found { target, params } => (*target, params),
        Lookup::MethodNotAllowed(allowed) => {
            let allow = allowed.join(", ");
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {path}; allowed: {allow}", req.method()),
            )
            .into_response(trace_id);
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_str(&allow).expect("methods are tokens"));
            return Ok(response);
        }
        Lookup::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}")));
        }
    };
    let plugin = &app.plugins[index];
    let (parts, body) = req.into_parts();
    let body = read_body(body, parts.headers.get(header::CONTENT_LENGTH), server.max_body.0).await?;
    let request = RequestData {
        method: parts.method.as_str().to_owned(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| !WITHHELD_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect(),
        body,
        trace_id: trace_id.to_owned(),
        client_address: peer.ip().to_string(),
        params,
        principal: None,
    };
    match plugin.handle(request).await {
        Ok(output) => {
            let mut response = Response::new(Full::new(Bytes::from(output.body)));
            *response.status_mut() = StatusCode::from_u16(output.status).expect("status checked at construction");
            let headers = response.headers_mut();
            for (name, value) in output.headers {
                headers.append(name, value);
            }
            Ok(response)
        }
        Err(failure) => {
            tracing::error!(plugin = plugin.name(), error = %failure, "plugin request failed");
            Err(plugin_error(plugin.name(), failure))
        }
    }
}

/// Maps a plugin failure to its response: the plugin's fault is a 500, a
/// limit or the host's storage is a 503.
fn plugin_error(plugin: &str, failure: PluginFailure) -> ApiError {
    match failure {
        PluginFailure::Trap(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_trap",
            format!("plugin `{plugin}` failed while handling the request"),
        ),
        PluginFailure::Deadline(limit) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin_timeout",
            format!("plugin `{plugin}` did not answer within {} ms", limit.as_millis()),
        ),
        PluginFailure::MemoryCap(limit) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin_memory_limit",
            format!("plugin `{plugin}` reached its memory cap of {limit} bytes"),
        ),
        PluginFailure::Flush(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the change could not be stored durably; it may not have been applied",
        ),
    }
}

/// The routes the host answers itself.
fn host_route(app: &App, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET {
        return None;
    }
    let body = match path {
        "/healthz" => serde_json::json!({ "status": "ok" }),
        "/readyz" => serde_json::json!({ "status": "ready", "plugins": app.plugins.len() }),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Some(response)
}

fn check_header_limits<B>(app: &App, req: &Request<B>) -> Result<(), ApiError> {
    let server = &app.config.server;
    let headers = req.headers();
    if headers.len() > server.max_headers {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            format!("{} headers; at most {}", headers.len(), server.max_headers),
        ));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if bytes as u64 > server.max_header_bytes.0 {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("{bytes} bytes of headers; at most {}", server.max_header_bytes.0),
        ));
    }
    Ok(())
}

async fn read_body(body: Incoming, declared: Option<&HeaderValue>, limit: u64) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            format!("the request body could not be read: {e}"),
        )),
    }
}
