//! Telling a form's webhooks of a submission. The host delivers, signs and
//! retries; a webhook that cannot be queued (switched off, refused) is
//! logged and never costs the submission, which is stored already.

use plinth_forms::Definition;
use plinth_kit::{Error, Request, Response, Result, webhooks};
use serde_json::json;

use crate::store;
use crate::submissions::Stored;

/// The event a submission sends.
pub const SUBMITTED: &str = "form.submitted";

/// Queues `form.submitted` for every webhook of `definition`.
pub fn submitted(definition: &Definition, stored: &Stored) {
    if definition.settings.webhooks.is_empty() {
        return;
    }
    let payload = json!({
        "type": SUBMITTED,
        "timestamp": stored.submitted_at,
        "data": {
            "form": stored.form, "version": stored.version, "id": stored.id, "submitted_at": stored.submitted_at,
            "submitter": stored.submitter, "locale": stored.locale, "data": stored.data,
        },
    })
    .to_string();
    for hook in &definition.settings.webhooks {
        let queued =
            webhooks::endpoint_for(&hook.url).and_then(|e| webhooks::send(&e.id, SUBMITTED, payload.as_bytes()));
        if let Err(e) = queued {
            plinth_kit::log::warn(
                "a submission's webhook was not queued",
                &[("form", &stored.form), ("url", &hook.url), ("error", &format!("{e:?}"))],
            );
        }
    }
}

/// Why a webhook URL cannot be used, for a definition being published.
pub fn refused_url(url: &str) -> Option<String> {
    match webhooks::endpoint_for(url) {
        Ok(_) => None,
        Err(webhooks::Error::InvalidUrl(why)) => Some(why),
        Err(other) => Some(format!("{other:?}")),
    }
}

fn endpoint_error(e: webhooks::Error) -> Error {
    match e {
        webhooks::Error::NotFound => Error::new(404, "webhook_not_found", "the form has no such webhook"),
        other => Error::unavailable(other),
    }
}

/// `GET /v1/admin/forms/{id}/webhooks`: each webhook of the current
/// version, its state, secret (what the receiver verifies with) and last
/// deliveries.
pub fn list(req: &Request) -> Result<Response> {
    req.require_role("admin")?;
    let id: String = req.param("id")?;
    let form = store::load(&id)?;
    let mut items = Vec::new();
    for hook in &form.definition.settings.webhooks {
        let endpoint = webhooks::endpoint_for(&hook.url).map_err(endpoint_error)?;
        let deliveries = webhooks::deliveries(&endpoint.id).map_err(endpoint_error)?;
        let deliveries: Vec<_> = deliveries
            .iter()
            .map(|d| {
                json!({ "message_id": d.message_id, "event_type": d.event_type, "attempt": d.attempt, "at": d.at,
                        "status": d.status, "error": d.error, "duration_ms": d.duration_ms })
            })
            .collect();
        items.push(json!({
            "id": endpoint.id, "url": endpoint.url, "secret": endpoint.secret, "enabled": endpoint.enabled,
            "failures": endpoint.failures, "disabled_reason": endpoint.disabled_reason, "deliveries": deliveries,
        }));
    }
    Ok(Response::json(200, &json!({ "items": items })).header("cache-control", "no-store"))
}

/// `POST /v1/admin/forms/{id}/webhooks/{endpoint}/enable`.
pub fn enable(req: &Request) -> Result<Response> {
    req.require_role("admin")?;
    let id: String = req.param("id")?;
    let wanted: String = req.param("endpoint")?;
    let form = store::load(&id)?;
    let known = form
        .definition
        .settings
        .webhooks
        .iter()
        .filter_map(|hook| webhooks::endpoint_for(&hook.url).ok())
        .any(|e| e.id == wanted);
    if !known {
        return Err(endpoint_error(webhooks::Error::NotFound));
    }
    let endpoint = webhooks::enable(&wanted).map_err(endpoint_error)?;
    Ok(Response::json(200, &json!({ "id": endpoint.id, "url": endpoint.url, "enabled": endpoint.enabled })))
}
