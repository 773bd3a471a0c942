//! `GET`, `PUT`, `PATCH` and `DELETE /v1/state/{kind}/{id}`, and the
//! caller's documents of a kind. Every write states what it read
//! (`If-Match`) or that it creates (`If-None-Match: *`), applies entirely
//! or not at all, and publishes its change.

use plinth_kit::events::WriteOutcome;
use plinth_kit::kv::{self, Op};
use plinth_kit::{Error, Problem, Request, Response, Result};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::idempotency::Idempotency;
use crate::kinds::Kind;
use crate::store::{self, Loaded, Precondition, Stored, Write, etag, not_found, stale};

/// `GET /v1/state/{kind}/{id}`: the document with its ETag; 304 when
/// `If-None-Match` names it.
pub fn get(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let (kind, id) = store::address(req)?;
    let Loaded { version, doc, .. } = store::load(&kind, &id, &me)?.ok_or_else(|| not_found(&kind, &id))?;
    let tag = etag(version);
    let cached = req
        .header("if-none-match")
        .is_some_and(|tags| tags.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t == tag));
    if cached {
        return Ok(Response::empty(304).header("etag", tag));
    }
    Ok(Response::json(200, &doc.body).header("etag", tag))
}

/// `PUT`: create with `If-None-Match: *` (201), replace with `If-Match` (200).
pub fn put(req: &Request) -> Result<Response> {
    let (kind, id) = store::address(req)?;
    write_whole(req, kind, id, Precondition::of(req)?)
}

/// `POST /v1/state/{kind}`: creates a document under a new random id (201
/// with `Location`), so that ids tell nothing and cannot be taken first.
/// With `Idempotency-Key` the id comes from the key, so retries racing each
/// other create one document.
pub fn create(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let kind = Kind::named(&req.param::<String>("kind")?)?;
    if let Some(header) = ["if-match", "if-none-match"].into_iter().find(|h| req.header(h).is_some()) {
        return Err(
            Error::new(400, "invalid_header", "a POST creates a new document; preconditions do not apply").at(header)
        );
    }
    let id = match Idempotency::of(req, &me)? {
        Some(idempotency) => idempotency.document_id(),
        None => plinth_kit::new_id(),
    };
    write_whole(req, kind, id, Precondition::Absent)
}

/// Creates or replaces a whole document.
fn write_whole(req: &Request, kind: Kind, id: String, precondition: Precondition) -> Result<Response> {
    let me = req.signed_in()?;
    let idempotency = Idempotency::of(req, &me)?;
    if let Some(first) = replayed(idempotency.as_ref())? {
        return Ok(first);
    }
    let body: Value = req.json_limited(kind.max_bytes)?;
    kind.check(&body)?;
    until_committed(&precondition, || {
        let (expected, owner, loaded_life, old, status, op) = if precondition == Precondition::Absent {
            kind.may_create(&me)?;
            store::check_room(&kind, &me.account_id)?;
            (None, me.account_id.clone(), None, None, 201, "create")
        } else {
            let loaded = store::load_for_write(&kind, &id, &me)?;
            if !precondition.admits(loaded.version) {
                return Err(stale(&id, Some(loaded.version)));
            }
            (Some(loaded.version), loaded.doc.owner, Some(loaded.doc.life), Some(loaded.doc.body), 200, "replace")
        };
        let mut response = Response::json(status, &body);
        let mut also = Vec::new();
        if status == 201 {
            response = response.header("location", format!("/v1/state/{}/{id}", kind.name));
            also.push(store::set(format!("{}{id}", store::own_prefix(&kind.name, &owner)), &json!({})));
        }
        let life = loaded_life.clone().unwrap_or_else(plinth_kit::new_id);
        let stored = Stored { owner, life, body: body.clone() };
        let write = Write { kind: &kind, id: &id, expected, old: old.as_ref(), new: Some(&stored), also, op };
        finish(&kind, &id, &me, write, response, idempotency.as_ref())
    })
}

/// `PATCH` with a JSON merge patch (RFC 7396) or a JSON Patch (RFC 6902,
/// `test` included) and `If-Match`.
pub fn patch(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let (kind, id) = store::address(req)?;
    let precondition = Precondition::of(req)?;
    if precondition == Precondition::Absent {
        return Err(Error::new(400, "invalid_header", "a PATCH changes an existing document; send If-Match")
            .at("if-none-match"));
    }
    let idempotency = Idempotency::of(req, &me)?;
    if let Some(first) = replayed(idempotency.as_ref())? {
        return Ok(first);
    }
    let patch = Patch::of(req, kind.max_bytes)?;
    until_committed(&precondition, || {
        let loaded = store::load_for_write(&kind, &id, &me)?;
        if !precondition.admits(loaded.version) {
            return Err(stale(&id, Some(loaded.version)));
        }
        let mut body = loaded.doc.body.clone();
        patch.apply(&mut body, kind.max_bytes)?;
        kind.check(&body)?;
        let response = Response::json(200, &body);
        let stored = Stored { owner: loaded.doc.owner, life: loaded.doc.life, body };
        let write = Write {
            kind: &kind,
            id: &id,
            expected: Some(loaded.version),
            old: Some(&loaded.doc.body),
            new: Some(&stored),
            also: Vec::new(),
            op: "patch",
        };
        finish(&kind, &id, &me, write, response, idempotency.as_ref())
    })
}

/// `DELETE` with `If-Match`: the document, its grants and its index entry.
pub fn delete(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let (kind, id) = store::address(req)?;
    let precondition = Precondition::of(req)?;
    let idempotency = Idempotency::of(req, &me)?;
    if let Some(first) = replayed(idempotency.as_ref())? {
        return Ok(first);
    }
    until_committed(&precondition, || {
        let loaded = store::load_for_write(&kind, &id, &me)?;
        // Someone it is shared with may change it, not end it (and take its
        // id: attack review); the kind's writers by role may.
        if loaded.doc.owner != me.account_id && !kind.writes_by_role(&me) {
            return Err(Error::forbidden("only the document's owner deletes it"));
        }
        if !precondition.admits(loaded.version) {
            return Err(stale(&id, Some(loaded.version)));
        }
        let also = vec![
            Op::Delete(store::acl_key(&kind.name, &id)),
            Op::Delete(format!("{}{id}", store::own_prefix(&kind.name, &loaded.doc.owner))),
        ];
        let write = Write {
            kind: &kind,
            id: &id,
            expected: Some(loaded.version),
            old: Some(&loaded.doc.body),
            new: None,
            also,
            op: "delete",
        };
        finish(&kind, &id, &me, write, Response::empty(204), idempotency.as_ref())
    })
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
    scope: Option<String>,
}

/// Documents per page when `limit` is not given, and at most.
const PAGE: (u32, u32) = (20, 100);
/// A page holds documents until it passes this many bytes.
const MAX_PAGE_BYTES: usize = 2 << 20;

/// `GET /v1/state/{kind}?after=&limit=&scope=`: the caller's own
/// documents, by id; with `scope=all`, every document of a kind whose
/// `read` or `write` roles the caller holds (such as an inbox's marks,
/// which several people make).
pub fn list(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let kind = Kind::named(&req.param::<String>("kind")?)?;
    let query: ListQuery = req.query_as()?;
    let limit = query.limit.unwrap_or(PAGE.0);
    if !(1..=PAGE.1).contains(&limit) {
        return Err(Error::new(400, "invalid_query", format!("`limit` is 1 to {}", PAGE.1)).at("limit"));
    }
    let prefix = match query.scope.as_deref() {
        None | Some("own") => store::own_prefix(&kind.name, &me.account_id),
        Some("all") if kind.readable_by_role(&me) => store::doc_key(&kind.name, ""),
        Some("all") => {
            return Err(Error::forbidden(format!(
                "listing every `{}` document needs one of the kind's `read` or `write` roles",
                kind.name
            )));
        }
        Some(_) => return Err(Error::new(400, "invalid_query", "`scope` is `own` or `all`").at("scope")),
    };
    let after = query.after.map(|id| format!("{prefix}{id}"));
    let page = kv::scan_prefix(&prefix, after.as_deref(), limit)?;
    let mut items = Vec::with_capacity(page.entries.len());
    let mut next = page.next.as_deref();
    let mut bytes = 0;
    for (i, entry) in page.entries.iter().enumerate() {
        // A page of large documents stops short (attack review: 100 of
        // them outgrew the plugin's memory); `next` goes on from there.
        if bytes > MAX_PAGE_BYTES {
            next = Some(&page.entries[i - 1].key);
            break;
        }
        let id = &entry.key[prefix.len()..];
        if let Some(Loaded { version, doc, .. }) = store::load(&kind, id, &me)? {
            bytes += serde_json::to_vec(&doc.body).map_or(0, |body| body.len());
            items.push(json!({ "id": id, "etag": etag(version), "document": doc.body }));
        }
    }
    let next = next.map(|key| &key[prefix.len()..]);
    Ok(Response::json(200, &json!({ "items": items, "next": next })))
}

/// Attempts at a write whose precondition is `If-Match: *` before 409
/// `contended`.
const MAX_ATTEMPTS: usize = 16;

/// Runs `attempt` (read, check, write) until it commits. `If-Match: *` asks
/// only that the document exist, so a concurrent write in between is not a
/// failed precondition: the attempt runs again on the new version. A named
/// version that moved on is 412 at once.
fn until_committed(precondition: &Precondition, mut attempt: impl FnMut() -> Result<Response>) -> Result<Response> {
    for _ in 0..MAX_ATTEMPTS {
        match attempt() {
            Err(lost) if lost.status == 412 && *precondition == Precondition::Exists => continue,
            outcome => return outcome,
        }
    }
    Err(Error::new(409, "contended", "the document is changing too often; retry"))
}

/// The first result of a retried write, if this is one.
fn replayed(idempotency: Option<&Idempotency>) -> Result<Option<Response>> {
    idempotency.map_or(Ok(None), Idempotency::replay)
}

/// Commits, answering `response` with the new ETag; a concurrent write
/// in between is 412 (or, for a retry that lost to its own first attempt,
/// that attempt's result).
fn finish(
    kind: &Kind,
    id: &str,
    me: &plinth_kit::Principal,
    mut write: Write<'_>,
    response: Response,
    idempotency: Option<&Idempotency>,
) -> Result<Response> {
    // A retry that loaded the version its first attempt committed (after
    // the replay check at its start) finds that attempt's record here, as
    // the two were written together; `If-Match: *` would let it apply twice.
    if let Some(first) = replayed(idempotency)? {
        return Ok(first);
    }
    if let Some(idempotency) = idempotency {
        write.also.extend(idempotency.record(&response)?);
    }
    match store::commit(write)? {
        WriteOutcome::Written(version) => {
            let response = if response.status == 204 { response } else { response.header("etag", etag(version)) };
            if let Some(idempotency) = idempotency {
                idempotency.complete(&response)?;
            }
            Ok(response)
        }
        WriteOutcome::Conflict(current) => {
            if let Some(first) = replayed(idempotency)? {
                return Ok(first);
            }
            // The current version only for a caller who may read it.
            let visible = match current {
                Some(_) => store::load(kind, id, me)?.map(|l| l.version),
                None => None,
            };
            Err(stale(id, visible))
        }
    }
}

/// A patch in one of the two JSON patch formats.
enum Patch {
    Merge(Value),
    Json(json_patch::Patch),
}

const MERGE_PATCH: &str = "application/merge-patch+json";
/// Most operations in one JSON Patch.
const MAX_OPERATIONS: usize = 256;
const JSON_PATCH: &str = "application/json-patch+json";

impl Patch {
    /// The request body as a patch: 415 for any other content type.
    fn of(req: &Request, max_bytes: usize) -> Result<Patch> {
        let media_type = req.header("content-type").unwrap_or_default();
        let media_type = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if media_type != MERGE_PATCH && media_type != JSON_PATCH {
            return Err(Error::new(
                415,
                "unsupported_media_type",
                format!("send a patch as `{MERGE_PATCH}` or `{JSON_PATCH}`"),
            )
            .at("content-type"));
        }
        let body = req.body();
        if body.len() > max_bytes {
            return Err(Error::new(
                413,
                "body_too_large",
                format!("the patch is {} bytes; at most {max_bytes}", body.len()),
            ));
        }
        let invalid = |e: serde_json::Error| Error::new(400, "invalid_json", format!("the patch is not valid: {e}"));
        if media_type == MERGE_PATCH {
            return Ok(Patch::Merge(serde_json::from_slice(&body).map_err(invalid)?));
        }
        let patch: json_patch::Patch = serde_json::from_slice(&body).map_err(invalid)?;
        // Each operation is checked against the whole document (a copy can
        // double it): their number bounds the work (attack review).
        if patch.0.len() > MAX_OPERATIONS {
            return Err(Error::new(
                422,
                "too_many_operations",
                format!("a patch has at most {MAX_OPERATIONS} operations; this one has {}", patch.0.len()),
            ));
        }
        Ok(Patch::Json(patch))
    }

    /// Applies the patch to `document` (the caller's copy, dropped on
    /// failure): a failing operation is 422 `patch_failed` naming it. A
    /// `copy` can double the document, so the size is checked after each
    /// one: a patch cannot grow a document past `max_bytes` on the way.
    fn apply(&self, document: &mut Value, max_bytes: usize) -> Result<()> {
        match self {
            Patch::Merge(patch) => {
                json_patch::merge(document, patch);
                Ok(())
            }
            Patch::Json(patch) => {
                for (index, operation) in patch.0.iter().enumerate() {
                    Self::apply_one(document, index, operation)?;
                    if matches!(operation, json_patch::PatchOperation::Copy(_)) {
                        // Depth first: a copy can double it too, and measuring
                        // the size of a very deep document would recurse.
                        let depth = crate::kinds::depth(document);
                        if depth > crate::kinds::MAX_DEPTH {
                            return Err(Error::new(
                                422,
                                "too_deep",
                                format!("operation {index} nests the document {depth} levels deep"),
                            )
                            .at(format!("[{index}]")));
                        }
                        let size = serde_json::to_vec(document).expect("JSON serializes").len();
                        if size > max_bytes {
                            return Err(Error::new(
                                413,
                                "document_too_large",
                                format!("operation {index} makes the document {size} bytes; at most {max_bytes}"),
                            )
                            .at(format!("[{index}]")));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// One JSON Patch operation, `index` in its patch.
    fn apply_one(document: &mut Value, index: usize, operation: &json_patch::PatchOperation) -> Result<()> {
        json_patch::patch(document, std::slice::from_ref(operation)).map_err(|e| {
            let code = match e.kind {
                json_patch::PatchErrorKind::TestFailed => "test_failed",
                json_patch::PatchErrorKind::InvalidPointer => "path_missing",
                json_patch::PatchErrorKind::InvalidFromPointer => "from_missing",
                json_patch::PatchErrorKind::CannotMoveInsideItself => "move_inside_itself",
                _ => "patch_failed",
            };
            let path = e.path.to_string();
            Error::new(422, "patch_failed", format!("operation {index} at `{path}`: {}", e.kind))
                .at(format!("[{index}]"))
                .with_problems(vec![Problem { path, code: code.to_owned(), message: e.kind.to_string() }])
        })
    }
}
