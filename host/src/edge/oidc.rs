//! `/v1/auth/**`: sign-in through external providers over HTTP (the
//! protocol is in [`crate::oidc`]). `GET /v1/auth/oidc/{provider}` sends the
//! browser to the provider with a cookie that binds the sign-in to it; the
//! provider sends it back to `GET /v1/auth/oidc/{provider}/callback`, where
//! the plugin that owns accounts says who the person is and the host
//! issues the session.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::app::{App, Deployment};
use crate::audit::{Envelope, Outcome};
use crate::error::ApiError;
use crate::identity::Authenticated;
use crate::oidc::{FLOW_TTL_SECS, OidcError};
use crate::runtime::Identity;
use crate::runtime::state::RequestMeta;

/// The request, as the handler needs it.
pub struct AuthRequest<'a> {
    /// `GET` (or `HEAD`).
    pub method: &'a Method,
    /// Canonical.
    pub path: &'a str,
    /// Its head.
    pub parts: &'a http::request::Parts,
    /// The client's address.
    pub client: IpAddr,
    /// W3C trace id.
    pub trace_id: &'a str,
    /// The session it came with, replaced by the new one.
    pub signed_in: Option<&'a Authenticated>,
    /// Who the audit log names.
    pub envelope: &'a Envelope,
}

fn error(e: &OidcError) -> ApiError {
    let status = match e {
        OidcError::UnknownProvider(_) => StatusCode::NOT_FOUND,
        OidcError::Unavailable(_) | OidcError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
        OidcError::Denied(_) | OidcError::Token(_) => StatusCode::UNAUTHORIZED,
        OidcError::SubjectFormat(_) => StatusCode::FORBIDDEN,
        OidcError::StateInvalid | OidcError::StateExpired | OidcError::IssuerMismatch(_) | OidcError::CodeInvalid => {
            StatusCode::BAD_REQUEST
        }
    };
    ApiError::new(status, e.code(), e.to_string())
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::try_from(location).expect("locations are URLs"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Serves `/v1/auth/**`.
pub async fn handle(
    app: &App,
    deployment: &Deployment,
    req: AuthRequest<'_>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {}", req.path));
    if req.method != Method::GET {
        return Err(not_found());
    }
    if req.path == "/v1/auth/status" {
        return Ok(status(app, req.signed_in));
    }
    if let Some(token) = req.path.strip_prefix("/v1/auth/emergency/") {
        return emergency_link(app, deployment, &req, token).await;
    }
    let Some(oidc) = &app.oidc else { return Err(not_found()) };
    let rest = req.path.strip_prefix("/v1/auth/oidc/").ok_or_else(not_found)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let audit = async |outcome: Outcome, target: &str, reason: String| {
        let draft = req.envelope.draft("auth.oidc", target, outcome, Some(reason));
        app.audit.append(draft).await.map_err(|e| {
            tracing::error!(error = %e, "audit log unavailable");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "the audit log cannot be written")
        })
    };
    match segments.as_slice() {
        [name] => {
            let started = oidc.start(name).await.map_err(|e| error(&e))?;
            let mut response = redirect(&started.location);
            response.headers_mut().insert(header::SET_COOKIE, deployment.cookies.flow(&started.binding, FLOW_TTL_SECS));
            Ok(response)
        }
        [name, "callback"] => {
            let binding = deployment.cookies.flow_binding(&req.parts.headers);
            let query = req.parts.uri.query().unwrap_or_default();
            let verified = match oidc.finish(name, query, binding.as_deref()).await {
                Ok(verified) => verified,
                Err(e) => {
                    // Sampled per client: a flood of made-up states is not a flood of records.
                    let client = crate::edge::client::limit_key(req.client);
                    let key = format!("{client} {} {}", req.envelope.actor, e.code());
                    if e.is_suspicious()
                        && let Some(suppressed) = app.denials.sample("auth.oidc", &key)
                    {
                        let reason = super::denials::with_suppressed(format!("{}: {e}", e.code()), suppressed);
                        audit(Outcome::Denied, &format!("provider/{name}"), reason).await?;
                    }
                    return Err(error(&e));
                }
            };
            let subject = verified.subject.clone();
            let identity = Identity {
                provider: (*name).to_owned(),
                subject: verified.subject,
                email: verified.email,
                email_verified: verified.email_verified,
                name: verified.name,
                may_create: !app.emergency.is_on(),
            };
            let index = deployment
                .plugins
                .iter()
                .position(|p| p.config.name == oidc.accounts_plugin)
                .ok_or_else(|| unavailable(&format!("plugin `{}` is not loaded", oidc.accounts_plugin)))?;
            let plugin = &deployment.plugins[index].plugin;
            if !plugin.admits() {
                return Err(unavailable(&format!("plugin `{}` does not export external-sign-in", plugin.name())));
            }
            let meta = RequestMeta {
                trace_id: req.trace_id.to_owned(),
                client_address: req.client.to_string(),
                principal: None,
                revalidation: false,
                user_agent: user_agent(req.parts),
                actor: req.envelope.actor.clone(),
                body_wait: std::sync::Arc::default(),
            };
            let answer = plugin.admit(identity, meta).await.map_err(|failure| {
                tracing::error!(plugin = plugin.name(), error = %failure, "external sign-in failed");
                unavailable(&format!("plugin `{}` could not decide: {failure}", plugin.name()))
            })?;
            let account = match answer {
                Ok(account) => account,
                Err(refusal) => {
                    let reason = format!("{}: {} (subject {})", refusal.code, refusal.message, hashed(&subject));
                    audit(Outcome::Denied, &format!("provider/{name}"), reason).await?;
                    return Ok(refused(&refusal.code, &refusal.message, req.trace_id));
                }
            };
            if let Some(current) = req.signed_in {
                app.identity.revoke(&current.account.id, &current.session.id, req.envelope).await.map_err(|e| {
                    tracing::error!(error = %e, "session revocation failed");
                    unavailable("sessions are unavailable")
                })?;
            }
            let (token, session) = app
                .identity
                .issue(&account, &req.client.to_string(), &user_agent(req.parts), req.envelope)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "session issue failed");
                    unavailable(&format!("no session could be issued: {e}"))
                })?;
            audit(Outcome::Success, &account, format!("provider={name} session={}", session.id)).await?;
            let mut response = redirect(&oidc.landing);
            let headers = response.headers_mut();
            let max_age = session.expires_at.saturating_sub(session.created_at);
            headers.append(header::SET_COOKIE, deployment.cookies.issue(&token.0, max_age));
            headers.append(header::SET_COOKIE, deployment.cookies.flow("", 0));
            Ok(response)
        }
        _ => Err(not_found()),
    }
}

/// The page an emergency link shows before it is used: its button submits
/// the same link with `confirm=yes`.
const CONFIRM_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Emergency sign-in</title></head><body><h1>Emergency sign-in</h1>\
<p>An administrator sent you this link to sign in while sign-in through your provider is unavailable. \
It works once, within fifteen minutes of being sent.</p>\
<form method=\"get\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<button type=\"submit\">Sign in</button></form></body></html>\n";

/// `GET /v1/auth/status`: which ways of signing in work now, and the
/// caller's session (with its CSRF token: a browser that came back from a
/// provider has no other way to learn it; other sites cannot read this).
fn status(app: &App, signed_in: Option<&Authenticated>) -> Response<Full<Bytes>> {
    let providers: Vec<serde_json::Value> = app
        .oidc
        .iter()
        .flat_map(|oidc| oidc.providers())
        .map(|p| {
            let status = p.status();
            serde_json::json!({
                "name": status.name,
                "available": status.state != crate::oidc::provider::State::Down,
                "start": format!("/v1/auth/oidc/{}", status.name),
            })
        })
        .collect();
    let mode = app.emergency.status();
    let session = signed_in.map(|a| {
        serde_json::json!({
            "account_id": a.account.id,
            "csrf_token": a.session.csrf_token,
            "expires_at": a.session.expires_at,
            "emergency": a.session.emergency,
        })
    });
    let body = serde_json::json!({
        "password": app.emergency.password_sign_in(),
        "providers": providers,
        "emergency": { "on": app.emergency.is_on(), "until": mode.until.filter(|_| mode.on) },
        "session": session,
    });
    super::json_response(StatusCode::OK, &body)
}

/// `GET /v1/auth/emergency/{token}`: an admin's single-use sign-in link,
/// while emergency mode is on. The link itself shows a page whose button
/// (`?confirm=yes`) signs in, so a mail scanner following it uses nothing
/// up; confirmed, an emergency session.
async fn emergency_link(
    app: &App,
    deployment: &Deployment,
    req: &AuthRequest<'_>,
    token: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // Confirmed from the link's own page: a navigation from elsewhere (a
    // link another site sends the browser to, a scanner) only shows it.
    let same_origin = req.parts.headers.get("sec-fetch-site").is_some_and(|v| v == "same-origin");
    let confirmed =
        same_origin && req.parts.uri.query().is_some_and(|q| q.split('&').any(|pair| pair == "confirm=yes"));
    if !confirmed {
        let mut page = Response::new(Full::new(Bytes::from_static(CONFIRM_PAGE.as_bytes())));
        let headers = page.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        return Ok(page);
    }
    let account = app.emergency.redeem(token).await.map_err(|e| {
        let status =
            if e.code() == "audit_unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
        ApiError::new(status, e.code(), e.to_string())
    })?;
    if let Some(current) = req.signed_in {
        app.identity.revoke(&current.account.id, &current.session.id, req.envelope).await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "sessions are unavailable")
        })?;
    }
    let client = (req.client.to_string(), user_agent(req.parts));
    let ttl = Some(app.emergency.session_ttl());
    let (token, session) =
        app.identity.issue_as(&account, (&client.0, &client.1), req.envelope, ttl).await.map_err(|e| {
            ApiError::new(StatusCode::FORBIDDEN, "account_not_active", format!("no session for `{account}`: {e}"))
        })?;
    let draft = req.envelope.draft(
        "auth.emergency_sign_in",
        &account,
        Outcome::Success,
        Some(format!("session={}", session.id)),
    );
    app.audit.append(draft).await.map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "the audit log cannot be written")
    })?;
    let mut response = redirect(&deployment.config.auth.landing);
    let max_age = session.expires_at.saturating_sub(session.created_at);
    response.headers_mut().append(header::SET_COOKIE, deployment.cookies.issue(&token.0, max_age));
    Ok(response)
}

/// The plugin's refusal in the standard error shape (403, or 503 and 409
/// for its storage failing and a concurrent change), with its code when it
/// is one (snake_case, at most 64 bytes).
fn refused(code: &str, message: &str, trace_id: &str) -> Response<Full<Bytes>> {
    let stable = !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let code = if stable { code } else { "sign_in_refused" };
    // What is not the person's fault is not a 403.
    let status = match code {
        "storage_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "conflict" => StatusCode::CONFLICT,
        _ => StatusCode::FORBIDDEN,
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message, "trace_id": trace_id } });
    super::json_response(status, &body)
}

fn unavailable(why: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", why)
}

fn user_agent(parts: &http::request::Parts) -> String {
    parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// A subject as the audit log names it: hashed, so the log holds no
/// provider's identifier of a person.
fn hashed(subject: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(subject.as_bytes())[..8])
}
