//! Notes: each signed-in user's own, with paging and `If-Match`.
//! Stored as `note/{owner}/{id}`; nobody reaches another owner's keys.

use plinth_kit::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn router() -> Router {
    Router::new()
        .get("/v1/notes", list)
        .post("/v1/notes", create)
        .get("/v1/notes/{id}", read)
        .put("/v1/notes/{id}", update)
        .delete("/v1/notes/{id}", remove)
}

plinth_kit::plugin!(router);

#[cfg(test)]
mod tests;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    #[serde(default)]
    id: String,
    text: String,
}

#[derive(Deserialize)]
struct Paging {
    after: Option<String>,
    limit: Option<u32>,
}

fn key(req: &Request, id: &str) -> Result<String> {
    Ok(format!("note/{}/{id}", req.signed_in()?.account_id))
}

fn reply(status: u16, note: kv::Versioned<Note>) -> Response {
    Response::json(status, &note.value).header("etag", note.etag())
}

fn list(req: &Request) -> Result<Response> {
    let paging: Paging = req.query_as()?;
    let prefix = key(req, "")?;
    let after = paging.after.map(|id| format!("{prefix}{id}"));
    let page = kv::page::<Note>(&prefix, after.as_deref(), paging.limit.unwrap_or(50).min(100))?;
    let next = page.next.map(|k| k[prefix.len()..].to_owned());
    let notes: Vec<Note> = page.entries.into_iter().map(|(_, note)| note).collect();
    Ok(Response::json(200, &json!({ "notes": notes, "next": next })))
}

fn create(req: &Request) -> Result<Response> {
    let note = Note { id: plinth_kit::new_id(), ..req.json()? };
    let etag = kv::insert_json(&key(req, &note.id)?, &note)?.ok_or_else(|| Error::conflict("id taken; retry"))?;
    Ok(Response::json(201, &note).header("etag", etag))
}

fn read(req: &Request) -> Result<Response> {
    let note = kv::get_versioned(&key(req, &req.param::<String>("id")?)?)?;
    Ok(reply(200, note.ok_or_else(|| Error::not_found("no such note"))?))
}

fn update(req: &Request) -> Result<Response> {
    let (id, input): (String, Note) = (req.param("id")?, req.json()?);
    let changed = kv::update(&key(req, &id)?, req.if_match().as_deref(), |current: Option<Note>| {
        current
            .map(|_| Some(Note { id: id.clone(), text: input.text.clone() }))
            .ok_or_else(|| Error::not_found("no such note"))
    })?;
    Ok(reply(200, changed.expect("just written")))
}

fn remove(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    kv::update(&key(req, &id)?, req.if_match().as_deref(), |current: Option<Note>| {
        current.map(|_| None).ok_or_else(|| Error::not_found("no such note"))
    })?;
    Ok(Response::empty(204))
}
