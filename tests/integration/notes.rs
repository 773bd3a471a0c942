//! `examples/notes`, the plugin written with the kit, as a real component
//! behind the real edge: owners, paging, If-Match, and the edge's HEAD.

use serde_json::{Value, json};

use crate::support::{Deployment, ISSUER_POLICY, TestServer, assert_error, issuer_plugin, plugin, sign_in};

const NOTES_POLICY: &str = "[[route]]\nroute = \"/v1/notes/**\"\nallow = \"authenticated\"\n";

#[tokio::test]
async fn notes_are_private_paged_and_guarded_by_if_match() {
    let config =
        format!("{}{}", plugin("notes", plinth_test_guests::NOTES, &["/v1/notes/**"], &["kv"], ""), issuer_plugin());
    let deployment = Deployment::with_policy(&config, &format!("{NOTES_POLICY}{ISSUER_POLICY}"));
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let (ada, bob) = (sign_in(&base, "ada", &[], None).await, sign_in(&base, "bob", &[], None).await);
    let client = reqwest::Client::new();
    let as_user = |method: reqwest::Method, path: &str, who: &crate::support::SignedIn| {
        client.request(method, server.url(path)).header("authorization", who.bearer())
    };

    let mut ids = Vec::new();
    for i in 0..3 {
        let created = as_user(reqwest::Method::POST, "/v1/notes", &ada).json(&json!({ "text": format!("n{i}") }));
        let created = created.send().await.unwrap();
        assert_eq!(created.status(), 201);
        ids.push(created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let path = format!("/v1/notes/{}", ids[0]);
    assert_error(as_user(reqwest::Method::GET, &path, &bob).send().await.unwrap(), 404, "not_found").await;
    assert_error(client.get(server.url(&path)).send().await.unwrap(), 401, "unauthenticated").await;

    let first = as_user(reqwest::Method::GET, "/v1/notes?limit=2", &ada).send().await.unwrap();
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["notes"].as_array().unwrap().len(), 2);
    let next = first["next"].as_str().unwrap();
    let rest = as_user(reqwest::Method::GET, &format!("/v1/notes?limit=2&after={next}"), &ada).send().await.unwrap();
    let rest: Value = rest.json().await.unwrap();
    assert_eq!((rest["notes"].as_array().unwrap().len(), rest["next"].clone()), (1, Value::Null));

    let read = as_user(reqwest::Method::GET, &path, &ada).send().await.unwrap();
    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
    let head = as_user(reqwest::Method::HEAD, &path, &ada).send().await.unwrap();
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    let edit =
        |tag: &str| as_user(reqwest::Method::PUT, &path, &ada).header("if-match", tag).json(&json!({ "text": "v2" }));
    assert_eq!(edit(&etag).send().await.unwrap().status(), 200);
    assert_error(edit(&etag).send().await.unwrap(), 412, "precondition_failed").await;
    let bad = as_user(reqwest::Method::POST, "/v1/notes", &ada).json(&json!({ "text": 5 })).send().await.unwrap();
    let bad = assert_error(bad, 422, "invalid_body").await;
    assert_eq!(bad["error"]["field"], "text");
    server.stop().await;
}
