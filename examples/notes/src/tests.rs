//! The notes handlers against the kit's in-memory host.

use plinth_kit::testing::{TestHost, TestRequest};
use serde_json::{Value, json};

use super::router;

fn create(host: &TestHost, owner: &str, text: &str) -> Value {
    let created = host.send(TestRequest::post("/v1/notes").signed_in(owner, &[]).json(&json!({ "text": text })));
    assert_eq!(created.status, 201);
    created.body_json()
}

#[test]
fn owners_see_only_their_own_notes() {
    let host = TestHost::new(router());
    let note = create(&host, "ada", "first");
    let id = note["id"].as_str().unwrap();
    let mine = host.send(TestRequest::get(&format!("/v1/notes/{id}")).signed_in("ada", &[]));
    assert_eq!(mine.body_json::<Value>()["text"], "first");
    let theirs = host.send(TestRequest::get(&format!("/v1/notes/{id}")).signed_in("bob", &[]));
    assert_eq!(theirs.status, 404);
    let anonymous = host.send(TestRequest::get("/v1/notes"));
    assert_eq!(anonymous.status, 401);
}

#[test]
fn pages_follow_the_next_marker() {
    let host = TestHost::new(router());
    for i in 0..5 {
        create(&host, "ada", &format!("note {i}"));
    }
    create(&host, "bob", "not ada's");
    let (mut seen, mut after) = (Vec::new(), String::new());
    loop {
        let page = host.send(TestRequest::get(&format!("/v1/notes?limit=2{after}")).signed_in("ada", &[]));
        let page: Value = page.body_json();
        seen.extend(page["notes"].as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["note 0", "note 1", "note 2", "note 3", "note 4"]);
}

#[test]
fn updates_and_deletes_honour_if_match() {
    let host = TestHost::new(router());
    let id = create(&host, "ada", "v1")["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/notes/{id}");
    let read = host.send(TestRequest::get(&path).signed_in("ada", &[]));
    let etag = read.header_value("etag").unwrap().to_owned();
    let edit = |tag: &str, text: &str| {
        host.send(TestRequest::put(&path).signed_in("ada", &[]).header("if-match", tag).json(&json!({ "text": text })))
    };
    assert_eq!(edit(&etag, "v2").status, 200);
    let stale = edit(&etag, "v3");
    assert_eq!(
        (stale.status, stale.body_json::<Value>()["error"]["code"].clone()),
        (412, json!("precondition_failed"))
    );
    assert_eq!(host.send(TestRequest::delete(&path).signed_in("ada", &[]).header("if-match", &etag)).status, 412);
    assert_eq!(host.send(TestRequest::delete(&path).signed_in("ada", &[])).status, 204);
    assert_eq!(host.send(TestRequest::get(&path).signed_in("ada", &[])).status, 404);
    let unknown = host.send(TestRequest::put("/v1/notes/nope").signed_in("ada", &[]).json(&json!({ "text": "x" })));
    assert_eq!(unknown.status, 404);
}
