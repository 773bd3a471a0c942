//! The request path from a parsed HTTP request to a response:
//!
//! trace id → client address → header limits → canonical path → route
//! (host or plugin, with its policy rule) → session → rate limit → CSRF →
//! authorization → the client's in-flight share → body (size and minimum
//! rate) → in-flight permit → plugin → session cookie → security headers.
//!
//! Nothing here returns an error to hyper; every failure becomes a JSON
//! response, and every response passes [`headers::SecurityHeaders::apply`].

mod admin;
pub mod auth;
pub mod blob;
pub mod client;
pub mod denials;
pub mod headers;
mod oidc;
pub mod rate_limit;
pub mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::app::ServedRoute;
use crate::app::{App, Deployment};
use crate::audit::{Actor, Envelope, Outcome};
use crate::blobs::BlobInfo;
use crate::body::{self, BodyReader, BodyRules, BodyWait};
use crate::edge::stream::ResponseBody;
use crate::error::ApiError;
use crate::identity::Authenticated;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::policy::{self, ADMIN_ONLY, Access, DEFAULT_CLASS, Denial, is_sensitive_class};
use crate::routes::{Lookup, Params, Route};
use crate::runtime::bindings::types::Principal;
use crate::runtime::host::types::{Follow, RequestBody, RequestData};
use crate::runtime::state::SessionEffect;
use crate::runtime::{Plugin, PluginFailure};
use crate::trace;

/// A header map from pairs, for unit tests of the edge's parts.
#[cfg(test)]
fn test_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in pairs {
        map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    map
}

/// Response header that echoes the request's trace id.
pub static TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");
/// The rate-limit headers a limited route's response carries.
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Request headers a plugin never sees: credentials stay with the host.
const WITHHELD_HEADERS: &[&str] = &["cookie", "authorization", "proxy-authorization"];

/// What the finishing layers need to know about a request, filled in as
/// the request goes.
struct Outline {
    /// The route pattern, for metrics (`unmatched` until routed).
    route: String,
    /// The route class (rate limits, headers).
    class: String,
    /// A principal was involved: the response must not be cached.
    authenticated: bool,
    /// The rate-limit headers to send.
    rate: Option<rate_limit::Verdict>,
}

/// Handles one request; always produces a response.
pub async fn handle(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
    let trace_id = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace::from_traceparent)
        .unwrap_or_else(trace::generate);
    let deployment = app.deployment.load_full();
    let proxies = &deployment.config.proxies;
    let client = client::client_address(peer.ip(), req.headers(), &proxies.trusted, proxies.header);
    let redacted = crate::signing::redact_tokens(req.uri().path());
    let path = crate::log_text::escaped(&redacted);
    let span = tracing::info_span!("request", trace_id = %trace_id, %client, method = %req.method(), %path);
    async {
        let started = std::time::Instant::now();
        let method = metric_method(req.method()).to_owned();
        let mut outline = Outline {
            route: "unmatched".to_owned(),
            class: DEFAULT_CLASS.to_owned(),
            authenticated: false,
            rate: None,
        };
        let timeout = app.server.request_timeout();
        // Time waiting for a streamed body does not count: the body's
        // minimum rate bounds it.
        let wait = Arc::new(BodyWait::default());
        let routed = wait
            .within(
                tokio::time::Instant::now(),
                timeout,
                route(app, &deployment, req, client, &trace_id, &mut outline, &wait),
            )
            .await;
        let mut response = match routed {
            Some(Ok(response)) => response,
            Some(Err(error)) => error.into_response(&trace_id).map(ResponseBody::from),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                format!("the request took longer than {timeout:?}"),
            )
            .into_response(&trace_id)
            .map(ResponseBody::from),
        };
        let served_blob = response.extensions().get::<blob::Served>().is_some();
        let headers = response.headers_mut();
        if let Some(rate) = outline.rate.take() {
            headers.insert(&RATELIMIT_POLICY, rate.policy);
            headers.insert(&RATELIMIT, rate.state);
        }
        deployment.headers.apply(headers, &outline.class, app.server.tls.is_some(), outline.authenticated);
        if served_blob {
            blob::harden(headers);
        }
        headers.insert(&TRACE_ID_HEADER, HeaderValue::from_str(&trace_id).expect("trace ids are hex"));
        let status = response.status().as_u16();
        let metrics = &app.metrics;
        metrics.requests.get_or_create(&RequestLabels { route: outline.route.clone(), method, status }).inc();
        Metrics::observe(&metrics.latency.get_or_create(&RouteLabels { route: outline.route }), started.elapsed());
        app.slo.record(&outline.class, status, started.elapsed());
        tracing::info!(status, "served");
        response
    }
    .instrument(span)
    .await
}

/// The edge's answer to an HTTP/1 request hyper refused before the edge
/// saw it (see `server::refusals`), as bytes: the JSON error and every
/// security header, like any other response.
pub fn refusal_bytes(app: &App, status: StatusCode) -> Vec<u8> {
    let (code, message) = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ("headers_too_large", "the request headers are too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        _ => ("malformed_request", "the request is not well-formed HTTP/1.1"),
    };
    let trace_id = trace::generate();
    let body = ApiError::new(status, code, message).body(&trace_id);
    let mut headers = http::HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    app.deployment.load().headers.apply(&mut headers, DEFAULT_CLASS, app.server.tls.is_some(), false);
    headers.insert(&TRACE_ID_HEADER, HeaderValue::from_str(&trace_id).expect("trace ids are hex"));
    let mut bytes = format!("HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or("Error"));
    for (name, value) in &headers {
        bytes.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or_default()));
    }
    bytes.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()));
    tracing::info!(status = status.as_u16(), trace_id, "refused before parsing");
    bytes.into_bytes()
}

/// Where a request goes.
enum Target<'a> {
    /// `/healthz` or `/readyz`.
    Health(&'a str),
    /// The host's `/admin` API.
    Admin,
    /// Sign-in through external providers (`/v1/auth/**`).
    Auth,
    /// Prometheus metrics.
    Metrics,
    /// The OpenAPI document.
    OpenApi,
    /// A plugin's route, with its parameters.
    Plugin(ServedRoute, Vec<(String, String)>),
}

async fn route(
    app: &Arc<App>,
    deployment: &Deployment,
    req: Request<Incoming>,
    client: IpAddr,
    trace_id: &str,
    outline: &mut Outline,
    wait: &Arc<BodyWait>,
) -> Result<Response<ResponseBody>, ApiError> {
    check_header_limits(app, &req)?;
    let path = crate::path::canonicalize(req.uri().path())
        .map_err(|refusal| ApiError::new(StatusCode::BAD_REQUEST, "non_canonical_path", refusal.to_string()))?;
    let path = path.as_str();
    // HEAD is the GET it mirrors, for every route: judged, routed and served
    // as GET (hyper sends no body for it).
    let method = if req.method() == Method::HEAD { Method::GET } else { req.method().clone() };
    // Every access the request must satisfy (a plugin route's rules; the
    // host's own for its endpoints).
    let (target, required): (_, [Option<&Access>; 2]) = match (&method, path) {
        (&Method::GET, "/healthz" | "/readyz") => {
            path.clone_into(&mut outline.route);
            (Target::Health(path), [None, None])
        }
        (&Method::GET, "/openapi.json") => {
            path.clone_into(&mut outline.route);
            (Target::OpenApi, [None, None])
        }
        (&Method::GET, "/metrics") => {
            path.clone_into(&mut outline.route);
            outline.class = "admin".to_owned();
            (Target::Metrics, [Some(&ADMIN_ONLY), None])
        }
        _ if path == "/admin" || path.starts_with("/admin/") => {
            outline.route = "/admin/**".to_owned();
            outline.class = "admin".to_owned();
            (Target::Admin, [Some(&ADMIN_ONLY), None])
        }
        _ if path.starts_with("/v1/auth/") => {
            outline.route = "/v1/auth/**".to_owned();
            // Sign-ins are counted as logins; the status a page polls is not.
            outline.class = if path == "/v1/auth/status" { DEFAULT_CLASS } else { "login" }.to_owned();
            (Target::Auth, [None, None])
        }
        _ => {
            let (route, served, params) = match find_route(deployment, &method, path) {
                Ok(found) => found,
                Err(RouteMiss::Options(allowed)) => return Ok(options(&allowed).map(ResponseBody::from)),
                Err(RouteMiss::Refused(e)) => return Err(e),
            };
            outline.route.clone_from(&served.declared);
            // Coverage is checked at load, so a missing rule is a bug; deny.
            let judges = deployment.config.policy.lookup(route, method.as_str(), path).ok_or_else(|| {
                ApiError::new(StatusCode::FORBIDDEN, "no_policy", format!("no policy rule covers {method} {path}"))
            })?;
            outline.class.clone_from(&judges.rule.class);
            (Target::Plugin(served.clone(), params), [Some(&judges.rule.access), judges.route_rule.map(|r| &r.access)])
        }
    };

    let presented = deployment.cookies.token(req.headers());
    let signed_in = match &presented {
        Some((token, _)) => app.identity.authenticate(token).await.map_err(|e| {
            tracing::error!(error = %e, "session lookup failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "sessions are unavailable")
        })?,
        None => None,
    };
    outline.authenticated = signed_in.is_some();
    // Written out only for what is audited.
    let envelope = || Envelope {
        actor: signed_in.as_ref().map_or(Actor::Anonymous, |a| Actor::Principal(a.account.id.clone())),
        client_address: Some(client.to_string()),
        trace_id: Some(trace_id.to_owned()),
        plugin: None,
    };

    let client_key = client::limit_key(client);
    let verdict =
        deployment.rate_limits.check(&outline.class, client_key, signed_in.as_ref().map(|a| a.account.id.as_str()));
    let retry_after = verdict.retry_after;
    outline.rate = Some(verdict);
    let record_denial = async |action: &'static str, reason: String| {
        let envelope = envelope();
        if let Some(suppressed) = app.denials.sample(action, &format!("{client_key} {}", envelope.actor)) {
            let reason = Some(denials::with_suppressed(reason, suppressed));
            let _ = app.audit.append(envelope.draft(action, path, Outcome::Denied, reason)).await;
        }
    };
    if let Some(wait) = retry_after {
        if is_sensitive_class(&outline.class) {
            record_denial("ratelimit.blocked", format!("class={}", outline.class)).await;
        }
        Metrics::count(&app.metrics.rate_limited, &outline.class);
        return Err(too_many_requests(wait));
    }

    let presented_as = signed_in.as_ref().and(presented.as_ref().map(|(_, how)| *how));
    let csrf = signed_in.as_ref().map(|a| a.session.csrf_token.as_str());
    let host = req.uri().authority().map(http::uri::Authority::as_str);
    let host = host.or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()));
    let origins = auth::Origins { host, allowed: &deployment.config.sessions.allowed_origins };
    let csrf_in_form = match auth::check_csrf(&method, req.headers(), origins, presented_as, csrf) {
        Ok(deferred) => deferred,
        Err(refusal) => {
            record_denial("csrf.refused", refusal.code.to_owned()).await;
            return Err(refusal);
        }
    };

    let roles = signed_in.as_ref().map(|a| a.account.roles.as_slice());
    if let Some((access, denial)) = policy::refusal(required.into_iter().flatten(), roles) {
        record_denial("authz.denied", format!("{method} {path} needs {access}")).await;
        return Err(refused(denial, access));
    }

    let _share = app.client_in_flight.try_acquire(client_key).ok_or_else(|| {
        Metrics::count(&app.metrics.requests_shed, "client_in_flight");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_in_flight",
            format!("this client has {} requests in progress already; retry shortly", app.client_in_flight.max()),
        )
        .with_header(header::RETRY_AFTER, "1".to_owned())
    })?;
    let (parts, body) = req.into_parts();
    let mut _streaming = None;
    let body = match target {
        Target::Plugin(..) => {
            let whole_limit = app.server.max_body.0;
            let limit = deployment.config.body_limits.get(&outline.class).map_or(whole_limit, |limit| limit.0);
            let rules = BodyRules { limit, min_rate: app.server.min_body_rate.0 };
            if limit > whole_limit {
                // Left with the client until the plugin reads or streams it;
                // waiting for it moves the deadlines. Such requests hold an
                // instance while the body comes, so they have a cap of their own.
                let reader = BodyReader::new(body, rules, wait.clone())?;
                _streaming = Some(app.streamed_bodies.clone().try_acquire_owned().map_err(|_| {
                    Metrics::count(&app.metrics.requests_shed, "streamed_bodies");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too_many_uploads",
                        format!("{} uploads are in progress already; retry shortly", app.server.streamed_bodies()),
                    )
                    .with_header(header::RETRY_AFTER, "5".to_owned())
                })?);
                RequestBody::Pending { reader, whole_limit }
            } else {
                // A small body is read under the request's deadline, like
                // the rest of the request.
                let reader = BodyReader::new(body, rules, Arc::default())?;
                RequestBody::Read(reader.read_all().await.inspect_err(|e| count_slow(app, e))?)
            }
        }
        _ => RequestBody::Read(Bytes::new()),
    };
    if let Some(expected) = csrf_in_form {
        let carried = matches!(&body, RequestBody::Read(bytes) if auth::form_carries_csrf(bytes, &expected));
        if !carried {
            let refusal = auth::csrf_token_invalid(&method);
            record_denial("csrf.refused", refusal.code.to_owned()).await;
            return Err(refusal);
        }
    }
    // The scarce permit is taken last, once the request is whole: a client
    // that sends slowly holds only its own share. (A streamed body comes
    // after it; such requests have their own cap, above.)
    let _permit = app.in_flight.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("more than {} requests in flight; retry shortly", app.server.max_in_flight),
        )
    })?;

    let whole = match target {
        Target::Health(which) => health(deployment, which),
        Target::Metrics => {
            app.metrics.publish_burn_rates(app.slo.burn_rates());
            let mut response = Response::new(Full::new(Bytes::from(app.metrics.render())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        Target::OpenApi => {
            let mut response = Response::new(Full::new(Bytes::from_static(crate::openapi::DOCUMENT.as_bytes())));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Target::Admin => admin::handle(app, &method, path, parts.uri.query(), &envelope()).await?,
        Target::Auth => {
            let request = oidc::AuthRequest {
                method: &method,
                path,
                parts: &parts,
                client,
                trace_id,
                signed_in: signed_in.as_ref(),
                envelope: &envelope(),
            };
            // It sets or clears a session: never stored.
            outline.authenticated = true;
            oidc::handle(app, deployment, request).await?
        }
        Target::Plugin(served, params) => {
            let plugin = deployment.plugin(served.plugin, signed_in.as_ref().map(|a| a.session.id.as_str()));
            let request = PluginRequest {
                method,
                parts: &parts,
                path,
                body,
                route: served.declared,
                params,
                client,
                trace_id,
                signed_in,
                revalidation: false,
                wait: wait.clone(),
            };
            let PluginAnswer { response, credentials, follow, blob } =
                call_plugin(deployment, plugin, request).await.inspect_err(|e| count_slow(app, e))?;
            // A response that sets, clears or carries a session is never stored.
            outline.authenticated |= credentials;
            if let Some(info) = blob
                && response.status() == StatusCode::OK
            {
                let (head, _) = response.into_parts();
                return blob::serve(&app.blobs, plugin.name(), &info, &parts.headers, head).await;
            }
            return Ok(match follow {
                Some(follow) if response.status() == StatusCode::OK => {
                    let (mut head, prefix) = response.into_parts();
                    head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                    let token = presented.map(|(token, _)| token);
                    let origin =
                        stream::Origin::new(plugin.name().into(), &parts.uri, &parts.headers, path, client, token);
                    Response::from_parts(head, stream::start(app.clone(), origin, follow, prefix.to_vec()))
                }
                _ => response.map(|body| ResponseBody::from(Full::new(body))),
            });
        }
    };
    Ok(whole.map(ResponseBody::from))
}

/// Counts a body refused for arriving too slowly.
fn count_slow(app: &App, e: &ApiError) {
    if e.code == body::TOO_SLOW {
        Metrics::count(&app.metrics.requests_shed, body::TOO_SLOW);
    }
}

/// The answer to a request its route's policy denies.
fn refused(denial: Denial, access: &Access) -> ApiError {
    match denial {
        Denial::Unauthenticated => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "sign in to use this route")
        }
        Denial::Forbidden => ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this route needs {access}")),
    }
}

/// Asks again whether an open stream may go on: the session, the route's
/// policy, and the plugin's own answer to the same request.
async fn revalidate(app: &Arc<App>, origin: &stream::Origin, key: &str) -> Result<(), stream::Ended> {
    let ended = |status: StatusCode, code: &str| stream::Ended { status: status.as_u16(), code: code.to_owned() };
    let signed_in = match &origin.token {
        Some(token) => match app.identity.authenticate(token).await {
            Ok(Some(authenticated)) => Some(authenticated),
            Ok(None) => return Err(ended(StatusCode::UNAUTHORIZED, "session_ended")),
            Err(_) => return Err(ended(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")),
        },
        None => None,
    };
    let deployment = app.deployment.load_full();
    let path = origin.path.as_str();
    let Ok((route, served, params)) = find_route(&deployment, &Method::GET, path) else {
        return Err(ended(StatusCode::NOT_FOUND, "not_found"));
    };
    let judges =
        deployment.config.policy.lookup(route, "GET", path).ok_or_else(|| ended(StatusCode::FORBIDDEN, "no_policy"))?;
    let roles = signed_in.as_ref().map(|a| a.account.roles.as_slice());
    if let Some((access, denial)) = policy::refusal(judges.accesses(), roles) {
        let refusal = refused(denial, access);
        return Err(ended(refusal.status, refusal.code));
    }
    let plugin = deployment.plugin(served.plugin, signed_in.as_ref().map(|a| a.session.id.as_str()));
    if *plugin.name() != *origin.plugin {
        return Err(ended(StatusCode::NOT_FOUND, "not_found"));
    }
    let (mut parts, ()) =
        Request::builder().uri(origin.uri().clone()).body(()).expect("a URI that parsed").into_parts();
    parts.headers.clone_from(origin.headers());
    let request = PluginRequest {
        method: Method::GET,
        parts: &parts,
        path,
        body: RequestBody::Read(Bytes::new()),
        route: served.declared.clone(),
        params,
        client: origin.client,
        trace_id: &trace::generate(),
        signed_in,
        revalidation: true,
        wait: Arc::default(),
    };
    match call_plugin(&deployment, plugin, request).await {
        Ok(PluginAnswer { response, follow: Some(follow), .. })
            if response.status() == StatusCode::OK && follow.key == key =>
        {
            Ok(())
        }
        Ok(PluginAnswer { response, .. }) => Err(ended(response.status(), "stream_refused")),
        Err(refused) => Err(ended(refused.status, refused.code)),
    }
}

/// A request the edge has judged, ready for its plugin.
struct PluginRequest<'a> {
    /// The method the route was judged for (`GET` for a `HEAD`).
    method: Method,
    /// URI and headers as received.
    parts: &'a http::request::Parts,
    /// The canonical path: the one the route and policy were decided on.
    path: &'a str,
    /// The body, read or pending.
    body: RequestBody,
    /// The declared route that matched.
    route: String,
    /// The route's parameters.
    params: Vec<(String, String)>,
    /// The client address.
    client: IpAddr,
    /// The trace id.
    trace_id: &'a str,
    /// The caller, when signed in.
    signed_in: Option<Authenticated>,
    /// The host re-asks for an open stream.
    revalidation: bool,
    /// Time spent waiting for the body.
    wait: Arc<BodyWait>,
}

/// What a plugin answered, as the edge goes on with it.
struct PluginAnswer {
    /// Its response, with the session cookie applied.
    response: Response<Bytes>,
    /// It issued, revoked or handed out a session.
    credentials: bool,
    /// The change stream it asked to follow.
    follow: Option<Follow>,
    /// The blob it asked to serve as the body.
    blob: Option<BlobInfo>,
}

/// Runs the plugin and builds its response. A request body that failed
/// while the plugin read it is the answer instead.
async fn call_plugin(
    deployment: &Deployment,
    plugin: &Plugin,
    request: PluginRequest<'_>,
) -> Result<PluginAnswer, ApiError> {
    let PluginRequest { method, parts, path, body, route, params, client, trace_id, signed_in, revalidation, wait } =
        request;
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let actor = signed_in.as_ref().map_or(Actor::Anonymous, |a| Actor::Principal(a.account.id.clone()));
    let request = RequestData {
        method: method.as_str().to_owned(),
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| !WITHHELD_HEADERS.contains(&name.as_str()))
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect(),
        body,
        trace_id: trace_id.to_owned(),
        client_address: client.to_string(),
        route,
        params,
        csrf_token: signed_in.as_ref().map(|a| a.session.csrf_token.clone()),
        principal: signed_in.map(|a| Principal {
            account_id: a.account.id,
            roles: a.account.roles,
            session_id: a.session.id,
        }),
        revalidation,
    };
    let output = plugin.handle(request, user_agent.to_owned(), actor, wait).await.map_err(|failure| {
        tracing::error!(plugin = plugin.name(), error = %failure, "plugin request failed");
        plugin_error(plugin.name(), failure)
    })?;
    if let Some(failure) = output.host_failure {
        return Err(failure);
    }
    let mut response = Response::new(Bytes::from(output.response.body));
    *response.status_mut() = StatusCode::from_u16(output.response.status).expect("status checked at construction");
    let headers = response.headers_mut();
    for (name, value) in output.response.headers {
        headers.append(name, value);
    }
    let credentials = output.session.is_some();
    match output.session {
        Some(SessionEffect::Issued { token, max_age }) => {
            headers.insert(header::SET_COOKIE, deployment.cookies.issue(&token, max_age));
        }
        Some(SessionEffect::Cleared) => {
            headers.insert(header::SET_COOKIE, deployment.cookies.clear());
            headers.insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
        }
        Some(SessionEffect::TokenIssued) | None => {}
    }
    Ok(PluginAnswer { response, credentials, follow: output.response.follow, blob: output.response.blob })
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

/// Why a request found no plugin route.
enum RouteMiss {
    /// An `OPTIONS` the edge answers: the methods the path allows.
    Options(Vec<String>),
    /// A 404 or 405.
    Refused(ApiError),
}

/// The plugin route for a request: the pattern it matched (which the
/// policy judges), its plugin and its parameters. `OPTIONS` goes to a route
/// only when one declares it; otherwise the edge answers with the methods
/// the path allows, as it does for a 405.
fn find_route<'a>(
    deployment: &'a Deployment,
    method: &Method,
    path: &str,
) -> Result<(&'a Route, &'a ServedRoute, Params), RouteMiss> {
    // No plugin serves these: a 2xx to CONNECT makes the connection a
    // tunnel, and TRACE echoes a request back (cross-site tracing).
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(RouteMiss::Refused(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "method_not_implemented",
            format!("{method} is not served"),
        )));
    }
    match deployment.routes.lookup(method.as_str(), path) {
        Lookup::Found { target, route, params } => Ok((route, target, params)),
        Lookup::MethodNotAllowed(allowed) => {
            let allowed = with_derived_methods(allowed);
            if method == Method::OPTIONS {
                return Err(RouteMiss::Options(allowed));
            }
            Err(RouteMiss::Refused(
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}; allowed: {}", allowed.join(", ")),
                )
                .with_header(header::ALLOW, allowed.join(", ")),
            ))
        }
        Lookup::NotFound => {
            Err(RouteMiss::Refused(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {path}"))))
        }
    }
}

/// A path's methods as `Allow` lists them: with `HEAD` where `GET` is, and
/// `OPTIONS`, which the edge always answers.
fn with_derived_methods(mut allowed: Vec<String>) -> Vec<String> {
    if allowed.iter().any(|m| m == "GET") {
        allowed.push("HEAD".to_owned());
    }
    allowed.push("OPTIONS".to_owned());
    allowed.sort();
    allowed.dedup();
    allowed
}

/// The edge's answer to `OPTIONS`: no body, the methods in `Allow`.
fn options(allowed: &[String]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_str(&allowed.join(", ")).expect("method names"));
    response
}

fn too_many_requests(wait: std::time::Duration) -> ApiError {
    let seconds = rate_limit::retry_after_seconds(wait);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("too many requests; retry in {seconds} s"))
        .with_header(header::RETRY_AFTER, seconds.to_string())
}

/// `/healthz` and `/readyz`.
fn health(deployment: &Deployment, which: &str) -> Response<Full<Bytes>> {
    let body = if which == "/healthz" {
        serde_json::json!({ "status": "ok" })
    } else {
        serde_json::json!({ "status": "ready", "plugins": deployment.plugins.len() })
    };
    json_response(StatusCode::OK, &body)
}

/// A JSON response.
/// A method as a metric label: the standard ones by name, any other as
/// `other`, so that no client can make series without bound.
fn metric_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn check_header_limits<B>(app: &App, req: &Request<B>) -> Result<(), ApiError> {
    let server = &app.server;
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
