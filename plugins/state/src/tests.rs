//! Unit tests on the kit's in-memory host; `tests/integration/state.rs`
//! runs the real component behind the real edge.

use plinth_kit::testing::{TestHost, TestRequest};
use serde_json::{Value, json};

const KINDS: &str = r#"{
    "notes": {"max_bytes": 2048, "sharing": true, "schema": {
        "type": "object", "required": ["title"],
        "properties": {"title": {"type": "string", "maxLength": 20}, "done": {"type": "boolean"}}}},
    "boards": {"read": ["viewer"], "write": ["editor"], "create": ["editor"]},
    "lists": {"sharing": true, "links": true}
}"#;

fn host() -> TestHost {
    TestHost::new(super::router()).setting("kinds", KINDS)
}

/// Ada's new `lists` document `id` (a kind with sharing and links): its ETag.
fn create_list(host: &TestHost, id: &str, body: Value) -> String {
    let made = host.send(
        TestRequest::put(&format!("/v1/state/lists/{id}"))
            .signed_in("ada", &[])
            .header("if-none-match", "*")
            .json(&body),
    );
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    made.header_value("etag").unwrap().to_owned()
}

fn create(host: &TestHost, who: &str, id: &str, body: Value) -> String {
    let response = host.send(
        TestRequest::put(&format!("/v1/state/notes/{id}")).signed_in(who, &[]).header("if-none-match", "*").json(&body),
    );
    assert_eq!(response.status, 201, "{}", String::from_utf8_lossy(&response.body));
    response.header_value("etag").unwrap().to_owned()
}

#[test]
fn documents_are_versioned_and_every_write_states_what_it_read() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "milk"}));
    let read = host.send(TestRequest::get("/v1/state/notes/n1").signed_in("ada", &[]));
    assert_eq!((read.status, read.header_value("etag")), (200, Some(etag.as_str())));
    let cached = host.send(TestRequest::get("/v1/state/notes/n1").signed_in("ada", &[]).header("if-none-match", &etag));
    assert_eq!(cached.status, 304);

    let again = host.send(
        TestRequest::put("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-none-match", "*")
            .json(&json!({"title": "x"})),
    );
    assert_eq!((again.status, again.header_value("etag")), (412, Some(etag.as_str())));
    let blind = host.send(TestRequest::put("/v1/state/notes/n1").signed_in("ada", &[]).json(&json!({"title": "x"})));
    assert_eq!(
        (blind.status, blind.body_json::<Value>()["error"]["code"].as_str()),
        (428, Some("precondition_required"))
    );
    let weak = host.send(
        TestRequest::put("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &format!("W/{etag}"))
            .json(&json!({"title": "x"})),
    );
    assert_eq!(weak.status, 412, "a weak tag never satisfies If-Match");
    let replaced = host.send(
        TestRequest::put("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .json(&json!({"title": "eggs"})),
    );
    assert_eq!(replaced.status, 200);
    assert_ne!(replaced.header_value("etag"), Some(etag.as_str()));
    let stale = host.send(
        TestRequest::put("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .json(&json!({"title": "z"})),
    );
    assert_eq!(stale.status, 412);
}

#[test]
fn patches_apply_entirely_or_not_at_all() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "milk", "done": false}));
    let before = host.kv("doc/notes/n1");
    let failing = json!([
        {"op": "replace", "path": "/title", "value": "eggs"},
        {"op": "test", "path": "/done", "value": true}
    ]);
    let refused = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/json-patch+json")
            .body(failing.to_string()),
    );
    let error = refused.body_json::<Value>()["error"].clone();
    assert_eq!((refused.status, error["code"].as_str()), (422, Some("patch_failed")));
    assert_eq!(error["problems"][0]["code"], "test_failed");
    assert_eq!(error["problems"][0]["path"], "/done");
    assert_eq!(host.kv("doc/notes/n1"), before, "nothing was written");

    let invalid = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"title": null, "done": "yes"}).to_string()),
    );
    let error = invalid.body_json::<Value>()["error"].clone();
    assert_eq!((invalid.status, error["code"].as_str()), (422, Some("schema_violation")));
    let mut problems: Vec<(String, String)> = error["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap().to_owned(), p["code"].as_str().unwrap().to_owned()))
        .collect();
    problems.sort();
    assert_eq!(problems, vec![("".into(), "required".into()), ("/done".into(), "type".into())]);
    assert_eq!(host.kv("doc/notes/n1"), before);

    let merged = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"done": true}).to_string()),
    );
    assert_eq!(merged.status, 200);
    assert_eq!(merged.body_json::<Value>(), json!({"title": "milk", "done": true}));
    let form = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", merged.header_value("etag").unwrap())
            .header("content-type", "text/plain")
            .body("done"),
    );
    assert_eq!(form.status, 415);
}

#[test]
fn owner_only_documents_are_invisible_to_others_until_shared() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "secret"}));
    let bob = |req: TestRequest| host.send(req.signed_in("bob", &[]));
    assert_eq!(bob(TestRequest::get("/v1/state/notes/n1")).status, 404);
    assert_eq!(bob(TestRequest::get("/v1/state/notes/nope")).status, 404, "absent and hidden look the same");
    let write = TestRequest::put("/v1/state/notes/n1").header("if-match", &etag).json(&json!({"title": "mine"}));
    assert_eq!(bob(write.clone()).status, 404);

    let shared = host
        .send(TestRequest::put("/v1/state/notes/n1/grants/bob").signed_in("ada", &[]).json(&json!({"access": "read"})));
    assert_eq!(shared.status, 200);
    assert_eq!(bob(TestRequest::get("/v1/state/notes/n1")).status, 200);
    assert_eq!(bob(write).status, 403, "a reader may not write");
    assert_eq!(bob(TestRequest::get("/v1/state/notes/n1/grants")).status, 403);
    let revoked = host.send(TestRequest::delete("/v1/state/notes/n1/grants/bob").signed_in("ada", &[]));
    assert_eq!(revoked.status, 204);
    assert_eq!(bob(TestRequest::get("/v1/state/notes/n1")).status, 404);
}

#[test]
fn roles_reach_every_document_of_their_kind() {
    let host = host();
    let create = |who: &str, roles: &[&str]| {
        host.send(
            TestRequest::put("/v1/state/boards/b1").signed_in(who, roles).header("if-none-match", "*").json(&json!({})),
        )
    };
    assert_eq!(create("ada", &[]).status, 403, "creating boards needs a role");
    assert_eq!(create("ada", &["editor"]).status, 201);
    assert_eq!(host.send(TestRequest::get("/v1/state/boards/b1").signed_in("cy", &["viewer"])).status, 200);
    assert_eq!(host.send(TestRequest::get("/v1/state/boards/b1").signed_in("dee", &[])).status, 404);
    let unknown = host.send(TestRequest::get("/v1/state/widgets/w1").signed_in("ada", &[]));
    assert_eq!((unknown.status, unknown.body_json::<Value>()["error"]["code"].as_str()), (404, Some("unknown_kind")));
}

#[test]
fn role_holders_list_every_document_of_their_kind() {
    let host = host();
    for (who, id) in [("ada", "b1"), ("bo", "b2"), ("ada", "b3")] {
        let made = host.send(
            TestRequest::put(&format!("/v1/state/boards/{id}"))
                .signed_in(who, &["editor"])
                .header("if-none-match", "*")
                .json(&json!({ "by": who })),
        );
        assert_eq!(made.status, 201);
    }
    let ids = |who: &str, roles: &[&str], query: &str| {
        let listed = host.send(TestRequest::get(&format!("/v1/state/boards?{query}")).signed_in(who, roles));
        let body: Value = listed.body_json();
        let ids: Vec<String> =
            body["items"].as_array().into_iter().flatten().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
        (listed.status, ids, body["next"].as_str().map(str::to_owned))
    };
    assert_eq!(ids("ada", &["editor"], "").1, ["b1", "b3"], "without a scope: one's own");
    assert_eq!(ids("cy", &["viewer"], "scope=all").1, ["b1", "b2", "b3"], "a reader's role lists them all");
    let (_, first, next) = ids("cy", &["viewer"], "scope=all&limit=2");
    assert_eq!((first, next.as_deref()), (vec!["b1".to_owned(), "b2".to_owned()], Some("b2")));
    assert_eq!(ids("cy", &["viewer"], "scope=all&after=b2").1, ["b3"]);
    assert_eq!(ids("dee", &[], "scope=all").0, 403, "no role, no listing of others' documents");
    assert_eq!(ids("ada", &[], "scope=everything").0, 400);
    let notes = host.send(TestRequest::get("/v1/state/notes?scope=all").signed_in("ada", &["editor"]));
    assert_eq!(notes.status, 403, "an owner-only kind has no readers by role");
}

#[test]
fn a_retried_write_returns_its_first_result() {
    let host = host();
    let first = host.send(
        TestRequest::put("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-none-match", "*")
            .header("idempotency-key", "k-1")
            .json(&json!({"title": "milk"})),
    );
    assert_eq!(first.status, 201);
    let retry = host.send(
        TestRequest::put("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-none-match", "*")
            .header("idempotency-key", "k-1")
            .json(&json!({"title": "milk"})),
    );
    assert_eq!((retry.status, retry.header_value("idempotent-replayed")), (201, Some("true")));
    assert_eq!(retry.header_value("etag"), first.header_value("etag"));
    let reused = host.send(
        TestRequest::put("/v1/state/notes/n2")
            .signed_in("ada", &[])
            .header("if-none-match", "*")
            .header("idempotency-key", "k-1")
            .json(&json!({"title": "other"})),
    );
    assert_eq!(reused.body_json::<Value>()["error"]["code"], "idempotency_key_reused");
    assert_eq!(host.changes("doc/notes/n1").len(), 1, "one write, one change");
}

#[test]
fn changes_run_from_a_cursor_or_reset() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "a"}));
    let v1: u64 = etag.trim_matches('"').parse().unwrap();
    let patched = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/merge-patch+json")
            .body(r#"{"title": "b"}"#),
    );
    let feed = host.send(TestRequest::get(&format!("/v1/state/notes/n1/changes?since={v1}")).signed_in("ada", &[]));
    let body: Value = feed.body_json();
    assert_eq!(body["changes"].as_array().unwrap().len(), 1);
    assert_eq!(body["changes"][0]["change"]["patch"], json!([{"op": "replace", "path": "/title", "value": "b"}]));
    assert_eq!(format!("\"{}\"", body["version"]), patched.header_value("etag").unwrap());

    host.forget_changes();
    let reset = host.send(TestRequest::get(&format!("/v1/state/notes/n1/changes?since={v1}")).signed_in("ada", &[]));
    assert_eq!(reset.body_json::<Value>()["reset"], true);
    assert_eq!(reset.body_json::<Value>()["document"], json!({"title": "b"}));

    let stream = host.send(
        TestRequest::get("/v1/state/notes/n1/changes").signed_in("ada", &[]).header("accept", "text/event-stream"),
    );
    let text = String::from_utf8(stream.body.clone()).unwrap();
    assert!(text.contains("event: reset"), "{text}");
    assert_eq!(stream.followed().map(|(key, _)| key), Some("doc/notes/n1"));
}

#[test]
fn view_tokens_round_trip_and_refuse_tampering() {
    let host = host();
    let made = host.send(
        TestRequest::post("/v1/state/views")
            .signed_in("ada", &[])
            .json(&json!({"kind": "notes", "view": {"sort": "title"}})),
    );
    assert_eq!(made.status, 201);
    let token = made.body_json::<Value>()["token"].as_str().unwrap().to_owned();
    let opened = host.send(TestRequest::get(&format!("/v1/state/views/{token}")).signed_in("bob", &[]));
    assert_eq!(opened.body_json::<Value>()["view"], json!({"sort": "title"}));
    let mut altered = token.clone().into_bytes();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).unwrap();
    let refused = host.send(TestRequest::get(&format!("/v1/state/views/{altered}")).signed_in("bob", &[]));
    assert_eq!(refused.status, 400);

    let big: serde_json::Map<String, Value> = (0..60).map(|i| (format!("filter{i}"), json!("some value"))).collect();
    let large = host
        .send(TestRequest::post("/v1/state/views").signed_in("ada", &[]).json(&json!({"kind": "notes", "view": big})));
    let body: Value = large.body_json();
    assert_eq!(body["snapshot"], true);
    assert!(body["token"].as_str().unwrap().len() <= super::views::MAX_TOKEN);
    let opened = host
        .send(TestRequest::get(&format!("/v1/state/views/{}", body["token"].as_str().unwrap())).signed_in("bob", &[]));
    assert_eq!(opened.body_json::<Value>()["view"]["filter59"], "some value");
}

#[test]
fn a_patch_cannot_grow_a_document_past_its_limit_on_the_way() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "t", "body": "x".repeat(1200)}));
    let doubling: Vec<Value> = (0..30).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
    let refused = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/json-patch+json")
            .body(Value::Array(doubling).to_string()),
    );
    let error = refused.body_json::<Value>()["error"].clone();
    assert_eq!(
        (refused.status, error["code"].as_str(), error["field"].as_str()),
        (413, Some("document_too_large"), Some("[0]"))
    );
}

#[test]
fn a_grant_that_raced_a_delete_reaches_no_later_document() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "ada's"}));
    let stored = host.kv("doc/notes/n1").unwrap();
    let life = serde_json::from_slice::<Value>(&stored[8..]).unwrap()["life"].clone();
    let deleted = host.send(TestRequest::delete("/v1/state/notes/n1").signed_in("ada", &[]).header("if-match", &etag));
    assert_eq!(deleted.status, 204);
    // The grant's write landing after the delete, as when it read the
    // document just before it went.
    host.put_kv_json("acl/notes/n1", &json!({"life": life, "grants": {"bob": "write"}}));
    create(&host, "cy", "n1", json!({"title": "cy's private note"}));
    assert_eq!(host.send(TestRequest::get("/v1/state/notes/n1").signed_in("bob", &[])).status, 404);
    let grants = host.send(TestRequest::get("/v1/state/notes/n1/grants").signed_in("cy", &[]));
    assert_eq!(grants.body_json::<Value>()["grants"], json!({}));
}

#[test]
fn a_patch_cannot_nest_a_document_past_what_parses() {
    let host = host();
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }));
    let etag = create(&host, "ada", "n1", json!({"title": "t", "a": nested(90)}));
    let deep_path = format!("{}/b", "/a".repeat(90));
    let ops = json!([{"op": "add", "path": deep_path, "value": nested(90)}]);
    let refused = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string()),
    );
    assert_eq!((refused.status, refused.body_json::<Value>()["error"]["code"].as_str()), (422, Some("too_deep")));
    assert_eq!(host.send(TestRequest::get("/v1/state/notes/n1").signed_in("ada", &[])).status, 200);
}

#[test]
fn posts_get_random_ids_and_owners_a_bounded_number_of_documents() {
    let host = TestHost::new(super::router()).setting("kinds", r#"{"memos": {"max_per_owner": 2}}"#);
    let post = || host.send(TestRequest::post("/v1/state/memos").signed_in("ada", &[]).json(&json!({"n": 1})));
    let first = post();
    assert_eq!(first.status, 201);
    let location = first.header_value("location").unwrap().to_owned();
    assert!(location.starts_with("/v1/state/memos/") && location.len() > "/v1/state/memos/".len() + 16, "{location}");
    assert_eq!(post().status, 201);
    let full = post();
    assert_eq!((full.status, full.body_json::<Value>()["error"]["code"].as_str()), (507, Some("too_many_documents")));
    let other = host.send(TestRequest::post("/v1/state/memos").signed_in("bob", &[]).json(&json!({})));
    assert_eq!(other.status, 201, "the limit is per owner");
}

#[test]
fn only_a_versions_own_spelling_matches_it() {
    let host = host();
    let etag = create(&host, "ada", "n1", json!({"title": "t"}));
    let version = etag.trim_matches('"');
    for other in [format!("\"+{version}\""), format!("\"0{version}\"")] {
        let put = host.send(
            TestRequest::put("/v1/state/notes/n1")
                .signed_in("ada", &[])
                .header("if-match", &other)
                .json(&json!({"title": "x"})),
        );
        assert_eq!(put.status, 412, "{other}");
    }
}

#[test]
fn a_views_expiry_is_reported_and_snapshots_are_bounded_per_account() {
    let host = host();
    let made = host.send(
        TestRequest::post("/v1/state/views")
            .signed_in("ada", &[])
            .json(&json!({"kind": "notes", "view": {"sort": "title"}, "expires_in": 3600})),
    );
    let expires_at = made.body_json::<Value>()["expires_at"].as_u64().unwrap();
    let token = made.body_json::<Value>()["token"].as_str().unwrap().to_owned();
    let opened = host.send(TestRequest::get(&format!("/v1/state/views/{token}")).signed_in("bob", &[]));
    assert_eq!(opened.body_json::<Value>()["expires_at"], expires_at);

    let big: serde_json::Map<String, Value> = (0..60).map(|i| (format!("filter{i}"), json!("some value"))).collect();
    let snapshot = || {
        host.send(
            TestRequest::post("/v1/state/views").signed_in("ada", &[]).json(&json!({"kind": "notes", "view": big})),
        )
    };
    for _ in 0..super::views::MAX_SNAPSHOTS {
        let made = snapshot();
        assert_eq!((made.status, made.body_json::<Value>()["snapshot"].clone()), (201, json!(true)));
        assert!(made.body_json::<Value>()["expires_at"].is_u64(), "snapshots always expire");
    }
    let refused = snapshot();
    assert_eq!((refused.status, refused.body_json::<Value>()["error"]["code"].as_str()), (507, Some("too_many_views")));
}

#[test]
fn retried_posts_create_one_document_and_refuse_preconditions() {
    let host = host();
    let post = |key: &str| {
        host.send(
            TestRequest::post("/v1/state/notes")
                .signed_in("ada", &[])
                .header("idempotency-key", key)
                .json(&json!({"title": "once"})),
        )
    };
    let (first, retry) = (post("k-1"), post("k-1"));
    assert_eq!((first.status, retry.status), (201, 201));
    assert_eq!(first.header_value("location"), retry.header_value("location"));
    assert_eq!(retry.header_value("idempotent-replayed"), Some("true"));
    assert_ne!(post("k-2").header_value("location"), first.header_value("location"));
    let conditional = host.send(
        TestRequest::post("/v1/state/notes").signed_in("ada", &[]).header("if-match", "*").json(&json!({"title": "x"})),
    );
    assert_eq!(
        (conditional.status, conditional.body_json::<Value>()["error"]["field"].as_str()),
        (400, Some("if-match"))
    );
}

#[test]
fn an_account_keeps_a_bounded_number_of_idempotency_records() {
    let host = host();
    create(&host, "ada", "n1", json!({"title": "t"}));
    let total = super::idempotency::MAX_RECORDS as usize + 20;
    for i in 0..total {
        let patched = host.send(
            TestRequest::patch("/v1/state/notes/n1")
                .signed_in("ada", &[])
                .header("if-match", "*")
                .header("idempotency-key", &format!("key-{i}"))
                .header("content-type", "application/merge-patch+json")
                .body("{}"),
        );
        assert_eq!(patched.status, 200);
    }
    let records = host.kv_keys().iter().filter(|k| k.starts_with("idem/ada/")).count();
    let index = host.kv_keys().iter().filter(|k| k.starts_with("idemx/ada/")).count();
    assert_eq!((records, index), (super::idempotency::MAX_RECORDS as usize, super::idempotency::MAX_RECORDS as usize));
}

#[test]
fn nested_copies_are_refused_before_they_nest_too_deep() {
    let host = host();
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }));
    let etag = create(&host, "ada", "n1", json!({"title": "t", "a": nested(60)}));
    let ops: Vec<Value> =
        (0..6).map(|i| json!({"op": "copy", "from": "/a", "path": format!("{}/c{i}", "/a".repeat(59))})).collect();
    let refused = host.send(
        TestRequest::patch("/v1/state/notes/n1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/json-patch+json")
            .body(Value::Array(ops).to_string()),
    );
    let error = refused.body_json::<Value>()["error"].clone();
    assert_eq!((refused.status, error["code"].as_str(), error["field"].as_str()), (422, Some("too_deep"), Some("[0]")));
}

#[test]
fn a_read_only_link_opens_one_document_to_anyone_until_revoked_or_gone() {
    let host = host();
    create_list(&host, "l1", json!({"t": 1}));
    let link = |who: Option<&str>, path: &str| {
        let request = TestRequest::post(path);
        let request = match who {
            Some(who) => request.signed_in(who, &[]),
            None => request,
        };
        host.send(request)
    };
    let created = link(Some("ada"), "/v1/state/lists/l1/links");
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let token = created.body_json::<Value>()["token"].as_str().unwrap().to_owned();
    let open = |token: &str| host.send(TestRequest::get(&format!("/v1/state/links/{token}")));
    let opened = open(&token);
    assert_eq!((opened.status, opened.body_json::<Value>()), (200, json!({"t": 1})), "anyone, signed in or not");
    let changes = host.send(TestRequest::get(&format!("/v1/state/links/{token}/changes")));
    assert_eq!(changes.body_json::<Value>()["document"], json!({"t": 1}));
    assert_eq!(link(Some("bo"), "/v1/state/lists/l1/links").status, 404, "only the owner makes links");
    let notes = create(&host, "ada", "n1", json!({"title": "x"}));
    assert!(!notes.is_empty());
    assert_eq!(link(Some("ada"), "/v1/state/notes/n1/links").status, 409, "a kind without links");
    let mut forged = token.clone();
    forged.replace_range(forged.len() - 2.., "AA");
    assert_eq!(open(&forged).status, 404);
    let short =
        host.send(TestRequest::post("/v1/state/lists/l1/links").signed_in("ada", &[]).json(&json!({"expires_in": 10})));
    assert_eq!(short.status, 422);

    let revoked = host.send(TestRequest::delete("/v1/state/lists/l1/links").signed_in("ada", &[]));
    assert_eq!(revoked.status, 204);
    assert_eq!(open(&token).status, 404, "revoked with every link before it");
    let again =
        link(Some("ada"), "/v1/state/lists/l1/links").body_json::<Value>()["token"].as_str().unwrap().to_owned();
    assert_eq!(open(&again).status, 200, "a new link works");

    let etag = open(&again).header_value("etag").unwrap().to_owned();
    let deleted = host.send(TestRequest::delete("/v1/state/lists/l1").signed_in("ada", &[]).header("if-match", &etag));
    assert_eq!(deleted.status, 204);
    create_list(&host, "l1", json!({"t": 2}));
    assert_eq!(open(&again).status, 404, "a link dies with its document, not with its id");
}

#[test]
fn a_kind_only_role_holders_create_may_have_no_bound_per_owner() {
    let kinds = r#"{"marks": {"read": ["admin"], "write": ["admin"], "create": ["admin"], "max_per_owner": 0},
                    "memos": {"max_per_owner": 0}}"#;
    let host = TestHost::new(super::router()).setting("kinds", kinds);
    for n in 0..1_005 {
        let made = host.send(
            TestRequest::put(&format!("/v1/state/marks/m{n}"))
                .signed_in("boss", &["admin"])
                .header("if-none-match", "*")
                .json(&json!({})),
        );
        assert_eq!(made.status, 201, "mark {n}");
    }
    let refused = host.send(TestRequest::post("/v1/state/memos").signed_in("ada", &[]).json(&json!({})));
    assert_eq!(
        (refused.status, refused.body_json::<Value>()["error"]["code"].as_str()),
        (500, Some("invalid_settings")),
        "anyone could fill an unbounded kind"
    );
}

#[test]
fn a_link_shows_no_change_from_before_it_was_made() {
    let host = host();
    let etag = create_list(&host, "l1", json!({}));
    let first: u64 = etag.trim_matches('"').parse().unwrap();
    let secret = host.send(
        TestRequest::patch("/v1/state/lists/l1")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/merge-patch+json")
            .json(&json!({"pin": "4711"})),
    );
    let removed = host.send(
        TestRequest::patch("/v1/state/lists/l1")
            .signed_in("ada", &[])
            .header("if-match", secret.header_value("etag").unwrap())
            .header("content-type", "application/merge-patch+json")
            .json(&json!({"pin": null})),
    );
    assert_eq!(removed.status, 200);
    let owner = host.send(TestRequest::get(&format!("/v1/state/lists/l1/changes?since={first}")).signed_in("ada", &[]));
    assert!(String::from_utf8_lossy(&owner.body).contains("4711"), "the owner's own history");
    let token =
        host.send(TestRequest::post("/v1/state/lists/l1/links").signed_in("ada", &[])).body_json::<Value>()["token"]
            .as_str()
            .unwrap()
            .to_owned();
    let linked = host.send(TestRequest::get(&format!("/v1/state/links/{token}/changes?since={first}")));
    let body: Value = linked.body_json();
    assert_eq!((body["reset"].clone(), body["document"].clone()), (json!(true), json!({})), "{body}");
    assert!(!String::from_utf8_lossy(&linked.body).contains("4711"));
    assert_eq!(linked.header_value("cache-control"), Some("no-store"));
}

#[test]
fn someone_a_document_is_shared_with_changes_it_but_only_its_owner_deletes_it() {
    let host = host();
    let etag = create_list(&host, "l1", json!({}));
    let shared = host
        .send(TestRequest::put("/v1/state/lists/l1/grants/bo").signed_in("ada", &[]).json(&json!({"access": "write"})));
    assert_eq!(shared.status, 200);
    let deleted = host.send(TestRequest::delete("/v1/state/lists/l1").signed_in("bo", &[]).header("if-match", &etag));
    assert_eq!(deleted.status, 403, "a grantee cannot free the id to take it");
    let owner = host.send(TestRequest::delete("/v1/state/lists/l1").signed_in("ada", &[]).header("if-match", &etag));
    assert_eq!(owner.status, 204);
}

#[test]
fn patches_and_pages_are_bounded() {
    let host = host();
    let etag = create_list(&host, "ops", json!({"t": 1}));
    let ops: Vec<Value> = (0..257).map(|_| json!({"op": "test", "path": "/t", "value": 1})).collect();
    let refused = host.send(
        TestRequest::patch("/v1/state/lists/ops")
            .signed_in("ada", &[])
            .header("if-match", &etag)
            .header("content-type", "application/json-patch+json")
            .json(&json!(ops)),
    );
    assert_eq!(
        (refused.status, refused.body_json::<Value>()["error"]["code"].as_str()),
        (422, Some("too_many_operations"))
    );
    let big = "x".repeat(60_000);
    for n in 0..40 {
        create_list(&host, &format!("big{n:02}"), json!({ "text": big }));
    }
    let page: Value =
        host.send(TestRequest::get("/v1/state/lists?limit=100&after=big").signed_in("ada", &[])).body_json();
    let held = page["items"].as_array().unwrap().len();
    assert!((30..40).contains(&held), "about 2 MiB of documents: {held}");
    assert_eq!(page["next"].as_str(), page["items"][held - 1]["id"].as_str(), "the next page goes on from the last");
}
