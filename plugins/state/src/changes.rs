//! `GET /v1/state/{kind}/{id}/changes`: the changes after a version, as
//! JSON or, with `Accept: text/event-stream`, as a live stream the host
//! serves. A cursor the host no longer holds changes for gets an explicit
//! `reset` with the current document, never a silent skip.

use plinth_kit::{Error, Request, Response, Result, events};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::store::{self, Loaded, doc_key, not_found};

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<u64>,
}

/// The changes route.
pub fn changes(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let (kind, id) = store::address(req)?;
    let Loaded { version, doc, .. } = store::load(&kind, &id, &me)?.ok_or_else(|| not_found(&kind, &id))?;
    respond(req, &doc_key(&kind.name, &id), version, &doc.body, 0)
}

/// The changes of the document at `key`, now at `version` and `body`, to
/// a caller who may read it from version `floor` on: a cursor below it
/// gets a reset, not the changes before (what a link's holder was never
/// shown).
pub fn respond(req: &Request, key: &str, version: u64, body: &Value, floor: u64) -> Result<Response> {
    let streaming = req.header("accept").is_some_and(|accept| accept.contains("text/event-stream"));
    let query: SinceQuery = req.query_as()?;
    let cursor = match req.header("last-event-id").filter(|_| streaming) {
        Some(id) => Some(id.trim().parse::<u64>().map_err(|_| {
            Error::new(400, "invalid_header", "`last-event-id` is a version number").at("last-event-id")
        })?),
        None => query.since,
    }
    .filter(|cursor| *cursor >= floor);
    let held = match cursor {
        Some(cursor) if cursor == version => Some(Vec::new()),
        Some(cursor) if cursor < version => events::since(key, cursor),
        // No cursor, or one from the future (a write lost in a crash).
        _ => None,
    };
    if streaming {
        return Ok(match (held, cursor) {
            (Some(_), Some(cursor)) => Response::bytes(200, "text/event-stream", Vec::new()).follow(key, cursor),
            _ => {
                let reset = json!({ "version": version, "document": body });
                let event = format!("id: {version}\nevent: reset\ndata: {reset}\n\n");
                Response::bytes(200, "text/event-stream", event.into_bytes()).follow(key, version)
            }
        });
    }
    Ok(match held {
        Some(changes) => {
            let changes: Vec<Value> = changes
                .into_iter()
                .map(|c| {
                    let change: Value = serde_json::from_slice(&c.data).unwrap_or(Value::Null);
                    json!({ "version": c.version, "previous": c.previous, "change": change })
                })
                .collect();
            Response::json(200, &json!({ "version": version, "changes": changes }))
        }
        None => Response::json(200, &json!({ "version": version, "reset": true, "document": body })),
    })
}
