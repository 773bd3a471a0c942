//! The kit's extractors and kv helpers, through the in-memory host: every
//! bad input is a client error in the platform's shape, naming the field.

use plinth_kit::prelude::*;
use plinth_kit::testing::{TestHost, TestRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    name: String,
    tags: Vec<Tag>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tag {
    label: String,
}

#[derive(Deserialize)]
struct Listing {
    limit: Option<u32>,
}

fn router() -> Router {
    Router::new()
        .post("/items", create)
        .post("/small", small)
        .get("/items/{n}", by_number)
        .get("/items", list)
        .put("/items/{n}", replace)
}

fn create(req: &Request) -> Result<Response> {
    let item: Item = req.json()?;
    Ok(Response::json(201, &item))
}

fn small(req: &Request) -> Result<Response> {
    let item: Item = req.json_limited(32)?;
    Ok(Response::json(201, &item))
}

fn by_number(req: &Request) -> Result<Response> {
    let n: u32 = req.param("n")?;
    Ok(Response::json(200, &json!({ "n": n, "locale": req.locale() })))
}

fn list(req: &Request) -> Result<Response> {
    let listing: Listing = req.query_as()?;
    Ok(Response::json(200, &json!({ "limit": listing.limit })))
}

/// Stores a counter under `counter/{n}`, honouring `If-Match`.
fn replace(req: &Request) -> Result<Response> {
    let key = format!("counter/{}", req.param::<u32>("n")?);
    let stored = kv::update(&key, req.if_match().as_deref(), |count: Option<u64>| Ok(Some(count.unwrap_or(0) + 1)))?;
    let stored = stored.expect("a value was written");
    Ok(Response::json(200, &json!({ "count": stored.value })).header("etag", stored.etag()))
}

fn error_of(response: &Response) -> (u16, String, Option<String>) {
    let body: Value = response.body_json();
    let error = &body["error"];
    assert!(error["trace_id"].is_string(), "{body}");
    (response.status, error["code"].as_str().unwrap().to_owned(), error["field"].as_str().map(str::to_owned))
}

#[test]
fn json_bodies_are_checked_for_type_size_and_shape() {
    let host = TestHost::new(router());
    let good = json!({ "name": "a", "tags": [{ "label": "x" }] });
    assert_eq!(host.send(TestRequest::post("/items").json(&good)).status, 201);

    let form = TestRequest::post("/items").header("content-type", "text/plain").body(good.to_string());
    assert_eq!(error_of(&host.send(form)), (415, "unsupported_media_type".into(), Some("content-type".into())));
    let missing = TestRequest::post("/items").header("content-type", "application/json");
    assert_eq!(error_of(&host.send(missing)).1, "missing_body");
    let too_big = TestRequest::post("/small").json(&json!({ "name": "a".repeat(64), "tags": [] }));
    assert_eq!(error_of(&host.send(too_big)).0, 413);

    let not_json = TestRequest::post("/items").header("content-type", "application/json").body("{nope");
    assert_eq!(error_of(&host.send(not_json)).0, 422);
    let trailing = TestRequest::post("/items").header("content-type", "application/json").body(format!("{good} x"));
    assert_eq!(error_of(&host.send(trailing)).1, "invalid_body");
    let wrong_type = TestRequest::post("/items").json(&json!({ "name": "a", "tags": [{ "label": 7 }] }));
    assert_eq!(error_of(&host.send(wrong_type)), (422, "invalid_body".into(), Some("tags[0].label".into())));
    let unknown = TestRequest::post("/items").json(&json!({ "name": "a", "tags": [], "admin": true }));
    assert_eq!(error_of(&host.send(unknown)).1, "invalid_body");
    let charset =
        TestRequest::post("/items").header("content-type", "Application/JSON; charset=utf-8").body(good.to_string());
    assert_eq!(host.send(charset).status, 201);
}

#[test]
fn parameters_and_queries_are_typed() {
    let host = TestHost::new(router()).locales(&["en", "de"]);
    let found = host.send(TestRequest::get("/items/42").locale("de"));
    assert_eq!(found.body_json::<Value>(), json!({ "n": 42, "locale": "de" }));
    let default = host.send(TestRequest::get("/items/42"));
    assert_eq!(default.body_json::<Value>()["locale"], "en", "the default locale unless negotiated");
    assert_eq!(error_of(&host.send(TestRequest::get("/items/x"))), (400, "invalid_param".into(), Some("n".into())));
    assert_eq!(host.send(TestRequest::get("/items?limit=5")).body_json::<Value>()["limit"], 5);
    assert_eq!(
        error_of(&host.send(TestRequest::get("/items?limit=many"))),
        (400, "invalid_query".into(), Some("limit".into()))
    );
}

#[test]
fn routing_matches_the_edge() {
    let host = TestHost::new(router());
    assert_eq!(error_of(&host.send(TestRequest::get("/nothing"))).1, "not_found");
    let wrong = host.send(TestRequest::delete("/items/1"));
    assert_eq!((wrong.status, wrong.header_value("allow")), (405, Some("GET, PUT")));
    let head = host.send(TestRequest::new("HEAD", "/items/1"));
    assert_eq!((head.status, head.body.is_empty()), (200, true));
    assert_eq!(router().declared(), ["POST /items", "POST /small", "GET /items/{n}", "GET /items", "PUT /items/{n}"]);
}

#[test]
#[should_panic(expected = "declared twice")]
fn a_route_declared_twice_is_a_mistake_caught_at_once() {
    let _ = TestHost::new(Router::new().get("/a/{x}", list).get("/a/{y}", list));
}

#[test]
fn updates_honour_if_match_and_etags() {
    let host = TestHost::new(router());
    let first = host.send(TestRequest::put("/items/1"));
    let etag = first.header_value("etag").unwrap().to_owned();
    assert_eq!(first.body_json::<Value>()["count"], 1);
    let second = host.send(TestRequest::put("/items/1").header("if-match", &etag));
    assert_eq!(second.body_json::<Value>()["count"], 2);
    assert_ne!(second.header_value("etag").unwrap(), etag);
    // The version the client read is gone: 412, and nothing changes.
    let stale = host.send(TestRequest::put("/items/1").header("if-match", &etag));
    assert_eq!(error_of(&stale), (412, "precondition_failed".into(), Some("if-match".into())));
    assert_eq!(host.kv_json::<u64>("counter/1"), Some(2));
    // If-Match on something that does not exist fails too.
    assert_eq!(host.send(TestRequest::put("/items/2").header("if-match", "*")).status, 412);
}

#[test]
fn storage_failures_have_the_platforms_statuses() {
    let host = TestHost::new(router()).kv_quota(16);
    let full = host.send(TestRequest::put("/items/123456789"));
    assert_eq!(error_of(&full).1, "quota_exceeded");
    assert_eq!(full.status, 507);
}

#[test]
fn scans_page_through_everything_in_key_order() {
    let _host = TestHost::new(router());
    for i in 0..250u32 {
        kv::set_json(&format!("n/{i:04}"), &i).unwrap();
    }
    kv::set_json("other", &0).unwrap();
    let all: Vec<u32> = kv::scan::<u32>("n/").map(|entry| entry.unwrap().1).collect();
    assert_eq!(all, (0..250).collect::<Vec<_>>());
    let page = kv::page::<u32>("n/", Some("n/0009"), 3).unwrap();
    assert_eq!(page.entries.iter().map(|e| e.1).collect::<Vec<_>>(), [10, 11, 12]);
    assert_eq!(page.next.as_deref(), Some("n/0012"));
}
