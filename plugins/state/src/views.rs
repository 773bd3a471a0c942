//! URL-state tokens: a view of a kind (filters, sort, page...) signed into
//! a token a client keeps in its URL. The token is bound to this plugin and
//! to the purpose `state.view` by the host's signing key; a view too large
//! for a URL is stored as a snapshot and the token names it instead, so a
//! token is never longer than [`MAX_TOKEN`]. Snapshots are kept per
//! account (at most [`MAX_SNAPSHOTS`] live ones), expire
//! ([`SNAPSHOT_LIFETIME`] unless asked otherwise), and expired ones are
//! removed when their account makes the next.

use plinth_kit::{Error, Request, Response, Result, kv, signing};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::kinds::Kind;

/// The purpose tokens are signed for.
const PURPOSE: &str = "state.view";
/// Longest token put in a URL; a larger view becomes a snapshot.
pub const MAX_TOKEN: usize = 512;
/// Largest view, as JSON (snapshots included).
const MAX_VIEW_BYTES: usize = 16 * 1024;
/// Longest lifetime a view may ask for: a year.
const MAX_EXPIRES_IN: u64 = 366 * 24 * 3600;
/// Lifetime of a snapshot whose view asked for none: 30 days.
const SNAPSHOT_LIFETIME: u64 = 30 * 24 * 3600;
/// Live snapshots one account may hold.
pub const MAX_SNAPSHOTS: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewView {
    kind: String,
    view: Map<String, Value>,
    expires_in: Option<u64>,
}

/// What a token carries: the view itself, or the id of its snapshot.
#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "k", skip_serializing_if = "Option::is_none", default)]
    kind: Option<String>,
    #[serde(rename = "v", skip_serializing_if = "Option::is_none", default)]
    view: Option<Map<String, Value>>,
    #[serde(rename = "s", skip_serializing_if = "Option::is_none", default)]
    snapshot: Option<String>,
    /// The expiry the host checks, repeated for the answer.
    #[serde(rename = "e", skip_serializing_if = "Option::is_none", default)]
    expires_at: Option<u64>,
}

/// A stored view.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    kind: String,
    view: Map<String, Value>,
    expires_at: Option<u64>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sign(payload: &Payload, expires_at: Option<u64>) -> Result<String> {
    let bytes = serde_json::to_vec(payload).expect("payloads serialize");
    signing::sign(PURPOSE, &bytes, expires_at).map_err(|e| Error::new(500, "signing_failed", e))
}

/// `POST /v1/state/views`: a token for a view.
pub fn create(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let new: NewView = req.json()?;
    Kind::named(&new.kind)?;
    let expires_at = match new.expires_in {
        Some(0) => return Err(Error::invalid("expires_in", "must be at least 1 second")),
        Some(seconds) if seconds > MAX_EXPIRES_IN => {
            return Err(Error::invalid("expires_in", &format!("must be at most {MAX_EXPIRES_IN} seconds")));
        }
        Some(seconds) => Some(now() + seconds),
        None => None,
    };
    let size = serde_json::to_vec(&new.view).expect("views serialize").len();
    if size > MAX_VIEW_BYTES {
        return Err(
            Error::new(413, "view_too_large", format!("the view is {size} bytes; at most {MAX_VIEW_BYTES}")).at("view")
        );
    }
    let inline = Payload { kind: Some(new.kind.clone()), view: Some(new.view.clone()), snapshot: None, expires_at };
    let token = sign(&inline, expires_at)?;
    let (token, snapshot, expires_at) = if token.len() <= MAX_TOKEN {
        (token, false, expires_at)
    } else {
        let expires_at = Some(expires_at.unwrap_or(now() + SNAPSHOT_LIFETIME));
        let id = format!("{}/{}", me.account_id, plinth_kit::new_id());
        make_room(&me.account_id)?;
        kv::set_json(&format!("view/{id}"), &Snapshot { kind: new.kind.clone(), view: new.view, expires_at })?;
        (sign(&Payload { kind: None, view: None, snapshot: Some(id), expires_at }, expires_at)?, true, expires_at)
    };
    let body = json!({ "token": token, "kind": new.kind, "snapshot": snapshot, "expires_at": expires_at });
    Ok(Response::json(201, &body))
}

/// Removes the account's expired snapshots; 507 `too_many_views` when it
/// still holds [`MAX_SNAPSHOTS`].
fn make_room(account: &str) -> Result<()> {
    let held = kv::scan_prefix(&format!("view/{account}/"), None, MAX_SNAPSHOTS)?;
    let now = now();
    let mut expired = Vec::new();
    for entry in &held.entries {
        let snapshot: Option<Snapshot> = serde_json::from_slice(&entry.value).ok();
        if snapshot.is_none_or(|s| s.expires_at.is_some_and(|at| at <= now)) {
            expired.push(kv::Op::Delete(entry.key.clone()));
        }
    }
    if held.entries.len() - expired.len() >= MAX_SNAPSHOTS as usize {
        return Err(Error::new(
            507,
            "too_many_views",
            format!("you hold {MAX_SNAPSHOTS} stored views, the most one account may; they expire in time"),
        ));
    }
    if !expired.is_empty() {
        kv::batch(&expired)?;
    }
    Ok(())
}

/// `GET /v1/state/views/{token}`: the view a token carries.
pub fn open(req: &Request) -> Result<Response> {
    req.signed_in()?;
    let token: String = req.param("token")?;
    let bytes = signing::verify(PURPOSE, &token).map_err(|e| Error::from(e).at("token"))?;
    let payload: Payload = serde_json::from_slice(&bytes)
        .map_err(|_| Error::new(400, "token_invalid", "the token does not carry a view").at("token"))?;
    let (kind, view, expires_at) = match payload {
        Payload { snapshot: Some(id), .. } => {
            let gone = || Error::new(410, "view_gone", "the stored view no longer exists").at("token");
            let snapshot: Snapshot = kv::get_json(&format!("view/{id}"))?.ok_or_else(gone)?;
            if snapshot.expires_at.is_some_and(|at| at <= now()) {
                return Err(gone());
            }
            (snapshot.kind, snapshot.view, snapshot.expires_at)
        }
        Payload { kind: Some(kind), view: Some(view), expires_at, .. } => (kind, view, expires_at),
        _ => return Err(Error::new(400, "token_invalid", "the token does not carry a view").at("token")),
    };
    Ok(Response::json(200, &json!({ "kind": kind, "view": view, "expires_at": expires_at })))
}
