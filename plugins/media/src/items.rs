//! Media items: a stored file with its purpose, owner and sniffed type,
//! served by the host from the blob store. Who may read one: its owner,
//! holders of a role its purpose lists, anyone for a public purpose, and
//! anyone with a signed link the owner made. Everyone else gets 404, so an
//! id reveals nothing.

use plinth_kit::audit::{self, Outcome};
use plinth_kit::{Error, Request, Response, Result, blobs, files, kv, signing, sniff};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::origin::Urls;
use crate::purposes::{self, Purpose, Readers};
use crate::variants::{self, Variants};

/// The purpose signed links are made for.
const LINK_PURPOSE: &str = "media.link";
/// Longest a signed link may live: a week.
pub const MAX_LINK_TTL: u64 = 7 * 24 * 3600;
/// A link's life when the owner asks for none: an hour.
const DEFAULT_LINK_TTL: u64 = 3600;

/// A stored item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub owner: String,
    pub purpose: String,
    pub blob: String,
    pub media_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Variants>,
}

fn key(id: &str) -> String {
    format!("item/{id}")
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes `next` over `current` if the stored item is still `current`;
/// whether it did.
pub fn swap(current: &Item, next: &Item) -> Result<bool> {
    let encode = |item: &Item| serde_json::to_vec(item).expect("serializable");
    let swapped = kv::compare_and_swap(&key(&current.id), Some(&encode(current)), Some(&encode(next)))?;
    Ok(matches!(swapped, kv::Swap::Swapped))
}

/// Makes a stored blob an item of `purpose` for `owner`, after checking
/// what its bytes are; a refused blob is unlinked and the refusal audited.
pub fn admit(owner: &str, purpose: &Purpose, blob: blobs::Blob, filename: Option<String>) -> Result<Item> {
    let refuse = |error: Error| -> Error {
        if let Err(e) = blobs::unlink(&blob.id) {
            plinth_kit::log::error("a refused upload could not be removed", &[("error", &format!("{e:?}"))]);
        }
        let reason = format!("{}: {}", error.code, error.message);
        match audit::record("media.refused", &blob.id, Outcome::Denied, Some(&reason)) {
            Ok(()) => error,
            Err(unavailable) => unavailable,
        }
    };
    if purpose.retired() {
        return Err(refuse(
            Error::new(422, "unknown_purpose", format!("`{}` is no longer an upload purpose", purpose.name))
                .at("purpose"),
        ));
    }
    if blob.size == 0 {
        return Err(refuse(Error::new(400, "empty_upload", "the file is empty")));
    }
    if blob.size > purpose.max_bytes {
        return Err(refuse(Error::new(
            413,
            "too_large",
            format!("a `{}` file is at most {} bytes", purpose.name, purpose.max_bytes),
        )));
    }
    let head = blobs::read(&blob.id, 0, sniff::HEAD_BYTES).map_err(|e| refuse(e.into()))?;
    let sniffed = sniff::sniff(&head);
    if sniffed.polyglot {
        return Err(refuse(Error::new(
            422,
            "polyglot_file",
            format!("the file is a {} that also carries markup a browser would run", sniffed.media_type),
        )));
    }
    if !purpose.allows(&sniffed.media_type) {
        return Err(refuse(Error::new(
            415,
            "type_not_allowed",
            format!(
                "the file is {} (from its bytes); a `{}` file is one of: {}",
                sniffed.media_type,
                purpose.name,
                purpose.types()
            ),
        )));
    }
    let variants = variants::request(owner, &blob.id, &sniffed.media_type, &purpose.variants);
    let item = Item {
        id: plinth_kit::new_id(),
        owner: owner.to_owned(),
        purpose: purpose.name.clone(),
        blob: blob.id.clone(),
        media_type: sniffed.media_type,
        size: blob.size,
        filename,
        created: now(),
        variants,
    };
    // Recorded before it is acknowledged: an upload the log cannot name
    // is not kept.
    let reason = format!("purpose={} type={} bytes={}", item.purpose, item.media_type, item.size);
    let stored = audit::record("media.uploaded", &item.id, Outcome::Success, Some(&reason))
        .and_then(|()| kv::set_json(&key(&item.id), &item).map(drop));
    if let Err(e) = stored {
        let _ = variants::forget(item.variants.as_ref());
        let _ = blobs::unlink(&blob.id);
        return Err(e);
    }
    Ok(item)
}

/// How the caller may read an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// As its owner, a reader of its purpose, or anyone (a public purpose).
    Reader,
    /// Only through this signed link, which the URLs it is shown reuse (so
    /// a link never yields a longer-lived or wider one).
    Link(String),
}

/// What a signed link opens: the item (its file, its description and its
/// variants), or one variant of it alone.
pub fn link_scope(id: &str, variant: Option<&str>) -> String {
    match variant {
        Some(name) => format!("{id}/variants/{name}"),
        None => id.to_owned(),
    }
}

/// An item that exists and the caller may read (its `variant` alone, when
/// one is named); 404 otherwise. A token is checked before the item is
/// looked up, so a bad token gets the same answer whether the id exists or
/// not.
pub fn readable(req: &Request, variant: Option<&str>) -> Result<(Item, Purpose, Access)> {
    let id: String = req.param("id")?;
    let link = link_token(req)?.filter(|(_, payload)| {
        *payload == id.as_bytes() || variant.is_some_and(|_| *payload == link_scope(&id, variant).as_bytes())
    });
    let not_found = || Error::not_found(format!("no media item `{id}`"));
    let item: Item = kv::get_json(&key(&id))?.ok_or_else(not_found)?;
    // A purpose since removed from the settings keeps its items to their owners.
    let purpose = purposes::all()?.remove(&item.purpose).unwrap_or_else(|| Purpose::owner_only(&item.purpose));
    let principal = req.principal();
    let reader = purpose.readers == Readers::Public
        || principal.as_ref().is_some_and(|p| p.account_id == item.owner || purpose.readable_by(&p.roles));
    match (reader, link) {
        (true, _) => Ok((item, purpose, Access::Reader)),
        (false, Some((token, _))) => Ok((item, purpose, Access::Link(token))),
        (false, None) => Err(not_found()),
    }
}

/// The request's signed link and its payload, if it carries one; an
/// altered, foreign or expired one is refused with its own error.
fn link_token(req: &Request) -> Result<Option<(String, Vec<u8>)>> {
    #[derive(Deserialize)]
    struct Query {
        token: Option<String>,
    }
    let Query { token } = req.query_as()?;
    let Some(token) = token else { return Ok(None) };
    let payload = signing::verify(LINK_PURPOSE, &token).map_err(|e| Error::from(e).at("token"))?;
    Ok(Some((token, payload)))
}

/// `Cache-Control` for a purpose's files (and their variants).
pub fn caching(purpose: &Purpose) -> &'static str {
    if purpose.readers == Readers::Public { "public, max-age=86400" } else { "private, max-age=0, must-revalidate" }
}

/// `GET /v1/media/{id}`: the file, served by the host (ranges, validators).
pub fn get(req: &Request) -> Result<Response> {
    let (item, purpose, _) = readable(req, None)?;
    let caching = caching(&purpose);
    // Text is only ever UTF-8 here (see `sniff`); saying so leaves a
    // browser nothing to guess.
    let content_type =
        if item.media_type == "text/plain" { "text/plain; charset=utf-8" } else { item.media_type.as_str() };
    Ok(Response::blob(&item.blob, content_type)
        .header("content-disposition", files::disposition(&item.media_type, item.filename.as_deref()))
        .header("cache-control", caching))
}

/// `GET /v1/media/{id}/info`: what the item is, and how its scan stands.
pub fn info(req: &Request) -> Result<Response> {
    let (item, purpose, access) = readable(req, None)?;
    let item = variants::requeue(item, &purpose)?;
    let scan = match blobs::get(&item.blob)?.scan {
        blobs::ScanState::Pending => "pending",
        blobs::ScanState::Clean => "clean",
        blobs::ScanState::Infected(_) => "infected",
        blobs::ScanState::Failed(_) => "failed",
        blobs::ScanState::Unscanned => "unscanned",
    };
    let urls = Urls::from_settings()?;
    let mut view = view(&item, &purpose, &urls, &access)?;
    view["scan"] = scan.into();
    view["variants"] = variants::describe(&item, &purpose, &urls, &access)?;
    Ok(Response::json(200, &view))
}

/// An item as clients see it; `url` is where its file is fetched.
pub fn view(item: &Item, purpose: &Purpose, urls: &Urls, access: &Access) -> Result<serde_json::Value> {
    Ok(json!({
        "id": item.id,
        "purpose": item.purpose,
        "type": item.media_type,
        "size": item.size,
        "filename": item.filename,
        "created": item.created,
        "url": urls.file(item, purpose, None, access)?,
    }))
}

/// A signed link's token for `scope` (see [`link_scope`]), living `ttl`
/// seconds, and when it expires.
pub fn sign_link(scope: &str, ttl: u64) -> Result<(String, u64)> {
    let expires = now() + ttl;
    let token = signing::sign(LINK_PURPOSE, scope.as_bytes(), Some(expires)).map_err(Error::unavailable)?;
    Ok((token, expires))
}

/// The item the caller owns (or, when `admin` may, administers), with its
/// stored bytes; 404 otherwise.
fn owned(req: &Request, admin: bool) -> Result<(Item, Vec<u8>)> {
    let principal = req.signed_in()?;
    let id: String = req.param("id")?;
    let not_found = || Error::not_found(format!("no media item `{id}`"));
    let stored = kv::get(&key(&id))?.ok_or_else(not_found)?;
    let item: Item = serde_json::from_slice(&stored).map_err(|e| Error::new(500, "corrupt_item", e.to_string()))?;
    let allowed = item.owner == principal.account_id || admin && principal.roles.iter().any(|r| r == "admin");
    if allowed { Ok((item, stored)) } else { Err(not_found()) }
}

/// `DELETE /v1/media/{id}`: the item goes; its bytes go with their last
/// link. Deletes racing each other: one removes the item (and unlinks its
/// bytes once), the others find nothing.
pub fn delete(req: &Request) -> Result<Response> {
    let (item, stored) = owned(req, true)?;
    let key = key(&item.id);
    if !matches!(kv::compare_and_swap(&key, Some(&stored), None)?, kv::Swap::Swapped) {
        return Err(Error::not_found(format!("no media item `{}`", item.id)));
    }
    // Recorded before it is acknowledged; put back if it cannot be.
    if let Err(unavailable) = audit::record("media.deleted", &item.id, Outcome::Success, None) {
        let _ = kv::compare_and_swap(&key, None, Some(&stored));
        return Err(unavailable);
    }
    variants::forget(item.variants.as_ref())?;
    match blobs::unlink(&item.blob) {
        Ok(_) | Err(blobs::Error::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Response::empty(204))
}

/// `POST /v1/media/{id}/links {"ttl": seconds}`: a link anyone holding it
/// may read the item through until it expires.
pub fn link(req: &Request) -> Result<Response> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewLink {
        ttl: Option<u64>,
    }
    // The owner's alone: a link reads the item without any other check.
    let (item, _) = owned(req, false)?;
    let NewLink { ttl } = if req.body().is_empty() { NewLink { ttl: None } } else { req.json()? };
    let ttl = ttl.unwrap_or(DEFAULT_LINK_TTL);
    if ttl == 0 || ttl > MAX_LINK_TTL {
        return Err(Error::invalid("ttl", &format!("a link lives 1 to {MAX_LINK_TTL} seconds")));
    }
    let (token, expires) = sign_link(&item.id, ttl)?;
    let url = Urls::from_settings()?.at_origin(&format!("/v1/media/{}?token={token}", item.id));
    Ok(Response::json(201, &json!({ "url": url, "expires": expires })))
}

/// `GET /v1/media/usage`: bytes the caller's files hold and its unfinished
/// uploads have reserved.
pub fn usage(req: &Request) -> Result<Response> {
    let principal = req.signed_in()?;
    let (stored, reserved) = blobs::usage(Some(&principal.account_id))?;
    Ok(Response::json(200, &json!({ "stored": stored, "reserved": reserved })))
}
