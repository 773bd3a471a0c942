//! Read-only links to one document (kinds with `links` on), for people
//! without an account or a grant: a token signed under this plugin's key
//! for the purpose `state.link`, naming the kind, the id, the document's
//! life and the link epoch of its owner's links. Whoever holds it reads the
//! document and follows its changes, signed in or not, and nothing else.
//! A link dies when it expires, with its document (a new document under
//! the same id has another life), and when the owner revokes every link
//! (`DELETE .../links` moves the epoch on); an open stream ends at its
//! next heartbeat, when the host asks again.

use plinth_kit::{Error, Request, Response, Result, signing};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::changes;
use crate::kinds::Kind;
use crate::sharing::{change_acl, owned};
use crate::store::{self, Stored, acl_key, doc_key, etag};

/// What link tokens are signed for.
const PURPOSE: &str = "state.link";
/// A link's life when the request names none, and the longest.
const LIFETIME: (u64, u64) = (30 * 86_400, 365 * 86_400);

/// What a link names.
#[derive(Serialize, Deserialize)]
struct Link {
    #[serde(rename = "k")]
    kind: String,
    #[serde(rename = "i")]
    id: String,
    #[serde(rename = "l")]
    life: String,
    #[serde(rename = "n")]
    epoch: u32,
    /// The document's version when the link was made: its holder is shown
    /// no change from before (such as an item removed before it was shared).
    #[serde(rename = "f")]
    floor: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLink {
    expires_in: Option<u64>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// [`owned`], and 409 when the kind has no links.
fn linkable(req: &Request) -> Result<(Kind, String, String)> {
    let (kind, id, life) = owned(req)?;
    if !kind.links {
        return Err(Error::new(409, "links_disabled", format!("`{}` documents have no links", kind.name)));
    }
    Ok((kind, id, life))
}

/// `POST /v1/state/{kind}/{id}/links` with `{"expires_in": seconds}`
/// (optional): a new read-only link, for the owner.
pub fn create(req: &Request) -> Result<Response> {
    let (kind, id, life) = linkable(req)?;
    let asked: NewLink = if req.body().is_empty() { NewLink { expires_in: None } } else { req.json()? };
    let lifetime = asked.expires_in.unwrap_or(LIFETIME.0);
    if !(60..=LIFETIME.1).contains(&lifetime) {
        return Err(
            Error::new(422, "invalid_expiry", format!("`expires_in` is 60 to {} seconds", LIFETIME.1)).at("expires_in")
        );
    }
    let epoch = store::acl(&kind, &id, &life)?.link_epoch;
    let (floor, _) = store::read(&kind, &id)?.ok_or_else(|| store::not_found(&kind, &id))?;
    let link = Link { kind: kind.name.clone(), id: id.clone(), life, epoch, floor };
    let expires_at = now() + lifetime;
    let payload = serde_json::to_vec(&link).expect("links serialize");
    let token = signing::sign(PURPOSE, &payload, Some(expires_at)).map_err(|e| Error::new(500, "signing_failed", e))?;
    Ok(Response::json(
        201,
        &json!({ "token": token, "url": format!("/v1/state/links/{token}"), "expires_at": expires_at }),
    ))
}

/// `DELETE /v1/state/{kind}/{id}/links`: every link made so far stops
/// opening the document.
pub fn revoke(req: &Request) -> Result<Response> {
    let (kind, id, life) = linkable(req)?;
    change_acl(&acl_key(&kind.name, &id), &life, |acl| {
        acl.link_epoch += 1;
        true
    })?;
    Ok(Response::empty(204))
}

/// The document the path's link opens: 404 `link_not_found` for a token
/// that is not a live link of this plugin (forged, revoked, or its
/// document gone), 410 `link_expired` past its expiry.
fn opened(req: &Request) -> Result<(Link, u64, Stored)> {
    let token: String = req.param("token")?;
    let dead = || Error::new(404, "link_not_found", "this link does not open any document (any more)");
    let bytes = signing::verify(PURPOSE, &token).map_err(|e| match e {
        signing::Error::Expired(_) => Error::new(410, "link_expired", "this link has expired; ask for a new one"),
        _ => dead(),
    })?;
    let link: Link = serde_json::from_slice(&bytes).map_err(|_| dead())?;
    let kind = Kind::named(&link.kind).map_err(|_| dead())?;
    if !kind.links {
        return Err(dead());
    }
    let (version, doc) = store::read(&kind, &link.id)?.ok_or_else(dead)?;
    if doc.life != link.life || store::acl(&kind, &link.id, &doc.life)?.link_epoch != link.epoch {
        return Err(dead());
    }
    Ok((link, version, doc))
}

/// `GET /v1/state/links/{token}`: the document, with its ETag.
pub fn get(req: &Request) -> Result<Response> {
    let (_, version, doc) = opened(req)?;
    let tag = etag(version);
    if req.header("if-none-match").is_some_and(|tags| tags.split(',').any(|t| t.trim() == tag)) {
        return Ok(Response::empty(304).header("etag", tag));
    }
    Ok(Response::json(200, &doc.body).header("etag", tag).header("cache-control", "no-store"))
}

/// `GET /v1/state/links/{token}/changes`: as for the document's own
/// changes route.
pub fn changes(req: &Request) -> Result<Response> {
    let (link, version, doc) = opened(req)?;
    let answer = changes::respond(req, &doc_key(&link.kind, &link.id), version, &doc.body, link.floor)?;
    Ok(answer.header("cache-control", "no-store"))
}
