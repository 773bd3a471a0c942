//! The state plugin as a real component behind the real edge: versioned
//! documents under concurrency, atomic patches, change streams the host
//! serves (resume, reset, revocation), signed view tokens, access,
//! idempotent retries, limits, and durability across `kill -9`.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    Deployment, ISSUER_POLICY, LOOSE_LIMITS, ServerProcess, SignedIn, TestServer, assert_error, issuer_plugin, plugin,
    sign_in,
};

const KINDS: &str = r#"{
  "notes": {"max_bytes": 4096, "sharing": true, "schema": {
     "type": "object", "required": ["title"],
     "properties": {"title": {"type": "string", "maxLength": 40}, "count": {"type": "integer"}, "done": {"type": "boolean"}}}},
  "boards": {"read": ["viewer"], "write": ["editor"]}
}"#;

const STATE_POLICY: &str = "[[route]]\nroute = \"/v1/state/**\"\nallow = \"authenticated\"\n";

/// The state plugin, the issuer for sign-ins, streams with a 1 s heartbeat
/// and at most 3 per client, and `extra` appended.
fn deployment(kv_bytes: &str, extra: &str) -> Deployment {
    let state = plugin(
        "state",
        plinth_test_guests::STATE,
        &["/v1/state/**"],
        &["kv", "events", "signing"],
        &format!("memory = \"64MiB\", timeout_ms = 5000, kv_bytes = \"{kv_bytes}\""),
    );
    let config = format!(
        "{state}[plugins.settings]\nkinds = '''{KINDS}'''\n\n{}{extra}\n[streams]\nheartbeat = \"1s\"\nmax_per_client = 3\n\n\
         {LOOSE_LIMITS}[rate_limits.classes.default]\nper_address = \"100000/min\"\nper_principal = \"100000/min\"\n",
        issuer_plugin()
    );
    Deployment::with_policy(&config, &format!("{STATE_POLICY}{ISSUER_POLICY}"))
}

/// Requests as one signed-in account.
struct As<'a> {
    client: Client,
    base: String,
    who: &'a SignedIn,
}

impl<'a> As<'a> {
    fn new(base: &str, who: &'a SignedIn) -> Self {
        Self { client: Client::new(), base: base.to_owned(), who }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).header("authorization", self.who.bearer())
    }

    async fn create(&self, path: &str, body: &Value) -> String {
        let response = self.req(Method::PUT, path).header("if-none-match", "*").json(body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        response.headers()["etag"].to_str().unwrap().to_owned()
    }

    async fn read(&self, path: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let response = self.req(Method::GET, path).send().await.unwrap();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        (response.status(), etag, response.bytes().await.unwrap().to_vec())
    }

    /// The document's changes since the version `etag` names, as JSON.
    async fn changes_since(&self, path: &str, etag: &str) -> Value {
        let since = format!("{path}/changes?since={}", version(etag));
        self.req(Method::GET, &since).send().await.unwrap().json().await.unwrap()
    }

    fn patch(&self, path: &str, etag: &str, kind: &str, body: &Value) -> reqwest::RequestBuilder {
        self.req(Method::PATCH, path).header("if-match", etag).header("content-type", kind).body(body.to_string())
    }
}

const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

fn version(etag: &str) -> u64 {
    etag.trim_matches('"').parse().unwrap()
}

#[tokio::test]
async fn concurrent_patches_with_one_if_match_let_exactly_one_through_and_retries_lose_nothing() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    let etag = me.create("/v1/state/notes/race", &json!({"title": "race", "count": 0})).await;

    let attempts = (0..32).map(|i| me.patch("/v1/state/notes/race", &etag, MERGE, &json!({"count": i})).send());
    let statuses: Vec<u16> = futures_statuses(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 31, "{statuses:?}");

    me.create("/v1/state/notes/counter", &json!({"title": "counter", "count": 0})).await;
    let increments = (0..32).map(|_| async {
        loop {
            let (_, etag, body) = me.read("/v1/state/notes/counter").await;
            let count = serde_json::from_slice::<Value>(&body).unwrap()["count"].as_i64().unwrap();
            let ops = json!([{"op": "test", "path": "/count", "value": count}, {"op": "replace", "path": "/count", "value": count + 1}]);
            let response = me.patch("/v1/state/notes/counter", &etag.unwrap(), JSON_PATCH, &ops).send().await.unwrap();
            match response.status().as_u16() {
                200 => return,
                412 => continue,
                other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
            }
        }
    });
    // All 32 in flight at once, polled together on this task.
    join_all(increments.map(Box::pin).collect()).await;
    let (_, _, body) = me.read("/v1/state/notes/counter").await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["count"], 32, "no increment was lost");

    // `If-Match: *` asks only that the document exist: concurrent writers
    // are applied one after the other, none refused, none lost.
    me.create("/v1/state/notes/list", &json!({"title": "list", "items": []})).await;
    let appends = (0..32).map(|i| {
        me.patch("/v1/state/notes/list", "*", JSON_PATCH, &json!([{"op": "add", "path": "/items/-", "value": i}]))
            .send()
    });
    let statuses = futures_statuses(appends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (_, _, body) = me.read("/v1/state/notes/list").await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["items"].as_array().unwrap().len(), 32);
    server.stop().await;
}

/// Every response's status, all requests in flight at once.
async fn futures_statuses<F>(requests: impl Iterator<Item = F>) -> Vec<u16>
where
    F: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let mut statuses = Vec::new();
    let pending: Vec<_> = requests.map(Box::pin).collect();
    for response in join_all(pending).await {
        statuses.push(response.unwrap().status().as_u16());
    }
    statuses
}

/// Polls every future to completion together.
async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match std::pin::Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[tokio::test]
async fn a_failing_patch_or_schema_leaves_the_document_byte_identical() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    let etag = me.create("/v1/state/notes/n1", &json!({"title": "milk", "done": false})).await;
    let before = me.read("/v1/state/notes/n1").await;

    let failing =
        json!([{"op": "replace", "path": "/title", "value": "eggs"}, {"op": "test", "path": "/done", "value": true}]);
    let refused = me.patch("/v1/state/notes/n1", &etag, JSON_PATCH, &failing).send().await.unwrap();
    let body = assert_error(refused, 422, "patch_failed").await;
    assert_eq!(body["error"]["problems"][0]["code"], "test_failed");
    let missing = json!([{"op": "replace", "path": "/nope/deeper", "value": 1}]);
    let refused = me.patch("/v1/state/notes/n1", &etag, JSON_PATCH, &missing).send().await.unwrap();
    assert_eq!(assert_error(refused, 422, "patch_failed").await["error"]["problems"][0]["code"], "path_missing");
    let invalid = json!({"title": "x".repeat(41), "count": "many"});
    let refused = me.patch("/v1/state/notes/n1", &etag, MERGE, &invalid).send().await.unwrap();
    let body = assert_error(refused, 422, "schema_violation").await;
    let mut paths: Vec<&str> =
        body["error"]["problems"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/count", "/title"]);
    assert_eq!(me.read("/v1/state/notes/n1").await, before, "status, ETag and bytes unchanged");

    // Bad input, each with its code.
    let form = me.patch("/v1/state/notes/n1", &etag, "application/json", &json!({"done": true})).send().await.unwrap();
    assert_error(form, 415, "unsupported_media_type").await;
    let weak =
        me.patch("/v1/state/notes/n1", &format!("W/{etag}"), MERGE, &json!({"done": true})).send().await.unwrap();
    assert_error(weak, 412, "precondition_failed").await;
    let unquoted = me.patch("/v1/state/notes/n1", &etag.replace('"', ""), MERGE, &json!({})).send().await.unwrap();
    assert_error(unquoted, 400, "invalid_header").await;
    let blind = me.req(Method::PUT, "/v1/state/notes/n1").json(&json!({"title": "t"})).send().await.unwrap();
    assert_error(blind, 428, "precondition_required").await;
    let big = json!({"title": "big", "body": "x".repeat(5000)});
    let big = me.req(Method::PUT, "/v1/state/notes/n2").header("if-none-match", "*").json(&big).send().await.unwrap();
    assert_eq!(big.status(), 413);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let deep = me
        .req(Method::PUT, "/v1/state/boards/b1")
        .header("if-none-match", "*")
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(deep.status(), 422, "nesting past serde_json's limit is refused");
    let unknown = me.read("/v1/state/widgets/w1").await;
    assert_eq!(unknown.0, 404);
    assert_eq!(serde_json::from_slice::<Value>(&unknown.2).unwrap()["error"]["code"], "unknown_kind");
    let bad_id = me.read("/v1/state/notes/a.b").await;
    assert_eq!(bad_id.0, 400);
    server.stop().await;
}

#[tokio::test]
async fn owner_only_documents_are_404_to_others_and_sharing_is_revocable() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let (ada, bob) = (sign_in(&base, "ada", &[], None).await, sign_in(&base, "bob", &[], None).await);
    let (owner, other) = (As::new(&base, &ada), As::new(&base, &bob));
    let etag = owner.create("/v1/state/notes/n1", &json!({"title": "private"})).await;
    assert_eq!(other.read("/v1/state/notes/n1").await.0, 404);
    assert_eq!(other.read("/v1/state/notes/absent").await.0, 404, "absent and hidden answer alike");
    let write = || other.req(Method::PUT, "/v1/state/notes/n1").header("if-match", &etag).json(&json!({"title": "x"}));
    assert_error(write().send().await.unwrap(), 404, "not_found").await;
    let delete = other.req(Method::DELETE, "/v1/state/notes/n1").header("if-match", &etag).send().await.unwrap();
    assert_eq!(delete.status(), 404);
    let taken = other.req(Method::PUT, "/v1/state/notes/n1").header("if-none-match", "*").json(&json!({"title": "x"}));
    let taken = taken.send().await.unwrap();
    assert_eq!((taken.status(), taken.headers().get("etag")), (StatusCode::PRECONDITION_FAILED, None), "no ETag leaks");

    let share = owner.req(Method::PUT, "/v1/state/notes/n1/grants/bob").json(&json!({"access": "write"}));
    assert_eq!(share.send().await.unwrap().status(), 200);
    assert_eq!(write().send().await.unwrap().status(), 200, "a write grant lets bob change it");
    let listed = owner.req(Method::GET, "/v1/state/notes/n1/grants").send().await.unwrap();
    assert_eq!(listed.json::<Value>().await.unwrap()["grants"], json!({"bob": "write"}));
    let revoke = owner.req(Method::DELETE, "/v1/state/notes/n1/grants/bob").send().await.unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(other.read("/v1/state/notes/n1").await.0, 404);

    let mine = owner.req(Method::GET, "/v1/state/notes?limit=10").send().await.unwrap();
    let mine: Value = mine.json().await.unwrap();
    assert_eq!(mine["items"][0]["id"], "n1");
    let theirs: Value = other.req(Method::GET, "/v1/state/notes").send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs["items"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_documents_earlier_life_is_never_in_the_feed_of_the_next() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let (ada, bob) = (sign_in(&base, "ada", &[], None).await, sign_in(&base, "bob", &[], None).await);
    let (first, second) = (As::new(&base, &bob), As::new(&base, &ada));
    let etag = first.create("/v1/state/notes/reused", &json!({"title": "bob's"})).await;
    let secret = first.patch("/v1/state/notes/reused", &etag, MERGE, &json!({"body": "my PIN is 4242"})).send().await;
    let etag = secret.unwrap().headers()["etag"].to_str().unwrap().to_owned();
    let deleted = first.req(Method::DELETE, "/v1/state/notes/reused").header("if-match", &etag).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    second.create("/v1/state/notes/reused", &json!({"title": "ada's"})).await;
    for cursor in [version(&etag) - 1, version(&etag), version(&etag) + 1] {
        let feed = second.req(Method::GET, &format!("/v1/state/notes/reused/changes?since={cursor}")).send().await;
        let feed = feed.unwrap().text().await.unwrap();
        assert!(!feed.contains("PIN"), "{feed}");
        assert!(feed.contains("\"reset\":true"), "{feed}");
        let mut stream = Stream::open(&second, "/v1/state/notes/reused/changes", Some(cursor)).await;
        let first_event = stream.next(WAIT).await.unwrap();
        assert_eq!(first_event.event, "reset", "{first_event:?}");
        assert_eq!(first_event.data["document"]["title"], "ada's");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_retried_write_with_its_idempotency_key_is_applied_once() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    let etag = me.create("/v1/state/notes/n1", &json!({"title": "t", "count": 0})).await;
    let bump = || {
        me.patch("/v1/state/notes/n1", &etag, JSON_PATCH, &json!([{"op": "replace", "path": "/count", "value": 1}]))
            .header("idempotency-key", "retry-me")
            .send()
    };
    let statuses = futures_statuses([bump(), bump(), bump(), bump()].into_iter()).await;
    assert_eq!(statuses, [200, 200, 200, 200], "the retries get the first result, not a 412");
    let first = bump().await.unwrap();
    assert_eq!(first.headers()["idempotent-replayed"], "true");
    let feed = me.changes_since("/v1/state/notes/n1", &etag).await;
    assert_eq!(feed["changes"].as_array().unwrap().len(), 1, "one write happened: {feed}");
    let reused = me
        .patch("/v1/state/notes/n1", &etag, MERGE, &json!({"count": 9}))
        .header("idempotency-key", "retry-me")
        .send()
        .await
        .unwrap();
    assert_error(reused, 422, "idempotency_key_reused").await;

    // With `If-Match: *` a retry admits whatever version it loads, its
    // first attempt's too: it must find that attempt's record, not apply
    // the patch again (a race: five rounds of twelve retries).
    for round in 0..5 {
        let (_, current, _) = me.read("/v1/state/notes/n1").await;
        let current = current.unwrap();
        let bump = || {
            let patch = json!([{"op": "replace", "path": "/count", "value": round + 2}]);
            me.patch("/v1/state/notes/n1", "*", JSON_PATCH, &patch)
                .header("idempotency-key", format!("any-version-{round}"))
                .send()
        };
        assert_eq!(futures_statuses((0..12).map(|_| bump())).await, [200; 12]);
        let feed = me.changes_since("/v1/state/notes/n1", &current).await;
        assert_eq!(feed["changes"].as_array().unwrap().len(), 1, "round {round}: one write happened: {feed}");
    }

    // Retries of one create racing each other make one document.
    let post = || {
        me.req(Method::POST, "/v1/state/notes").header("idempotency-key", "create-once").json(&json!({"title": "t"}))
    };
    let mut pending = Vec::new();
    for _ in 0..8 {
        pending.push(Box::pin(post().send()));
    }
    let mut locations = std::collections::BTreeSet::new();
    for response in join_all(pending).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 201);
        locations.insert(response.headers()["location"].to_str().unwrap().to_owned());
    }
    assert_eq!(locations.len(), 1, "{locations:?}");
    server.stop().await;
}

/// An open Server-Sent Events stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its `id`, `event` name and `data`.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: Option<u64>,
    event: String,
    data: Value,
}

impl Stream {
    async fn open(me: &As<'_>, path: &str, last_event_id: Option<u64>) -> Stream {
        let mut request = me.req(Method::GET, path).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{}", path);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream { response, buffer: String::new() }
    }

    /// The next event within `wait`, skipping comments and `retry`; none at
    /// the end of the stream or past the wait.
    async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event { id: None, event: String::new(), data: Value::Null };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = Some(id.parse().unwrap());
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = name.to_owned();
                    } else if let Some(line) = line.strip_prefix("data: ") {
                        data.push_str(line);
                    }
                }
                if !event.event.is_empty() {
                    event.data = serde_json::from_str(&data).unwrap();
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_stream_resumes_with_exactly_the_missed_changes_or_resets() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    let mut etag = me.create("/v1/state/notes/live", &json!({"title": "t", "count": 0})).await;
    let feed = "/v1/state/notes/live/changes";

    let mut stream = Stream::open(&me, feed, None).await;
    let reset = stream.next(WAIT).await.unwrap();
    assert_eq!((reset.event.as_str(), reset.id), ("reset", Some(version(&etag))));
    assert_eq!(reset.data["document"]["count"], 0);
    let bump = async |count: i64, etag: &mut String| {
        let response = me.patch("/v1/state/notes/live", etag, MERGE, &json!({"count": count})).send().await.unwrap();
        assert_eq!(response.status(), 200);
        *etag = response.headers()["etag"].to_str().unwrap().to_owned();
        version(etag)
    };
    let v1 = bump(1, &mut etag).await;
    let live = stream.next(WAIT).await.unwrap();
    assert_eq!((live.event.as_str(), live.id), ("change", Some(v1)));
    assert_eq!(live.data["patch"], json!([{"op": "replace", "path": "/count", "value": 1}]));
    drop(stream);

    let mut missed = Vec::new();
    for count in 2..=4 {
        missed.push(bump(count, &mut etag).await);
    }
    let mut resumed = Stream::open(&me, feed, Some(v1)).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(resumed.next(WAIT).await.unwrap().id.unwrap());
    }
    assert_eq!(got, missed, "exactly the missed changes, in order");
    let v5 = bump(5, &mut etag).await;
    assert_eq!(resumed.next(WAIT).await.unwrap().id, Some(v5), "then live ones, no duplicates");
    drop(resumed);

    // More changes than the host holds: a cursor from before them resets.
    for count in 6..50 {
        bump(count, &mut etag).await;
    }
    let mut stale = Stream::open(&me, feed, Some(v5)).await;
    let reset = stale.next(WAIT).await.unwrap();
    assert_eq!((reset.event.as_str(), reset.id), ("reset", Some(version(&etag))));
    assert_eq!(reset.data["document"]["count"], 49);
    let json: Value = me.req(Method::GET, &format!("{feed}?since={v1}")).send().await.unwrap().json().await.unwrap();
    assert_eq!((json["reset"].clone(), json["document"]["count"].clone()), (json!(true), json!(49)));
    server.stop().await;
}

#[tokio::test]
async fn a_stream_ends_within_a_heartbeat_of_logout_suspension_or_revoked_access() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let owner = As::new(&base, &ada);
    owner.create("/v1/state/notes/n1", &json!({"title": "shared"})).await;
    owner.req(Method::PUT, "/v1/state/notes/n1/grants/bob").json(&json!({"access": "read"})).send().await.unwrap();
    let feed = "/v1/state/notes/n1/changes";
    let ended_by = async |stream: &mut Stream| loop {
        match stream.next(Duration::from_secs(4)).await {
            Some(event) if event.event == "end" => return event.data,
            Some(_) => continue,
            None => panic!("the stream did not end within a heartbeat or two"),
        }
    };

    let bob = sign_in(&base, "bob", &[], None).await;
    let reader = As::new(&base, &bob);
    let mut stream = Stream::open(&reader, feed, None).await;
    stream.next(WAIT).await.unwrap();
    let revoked = owner.req(Method::DELETE, "/v1/state/notes/n1/grants/bob").send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(ended_by(&mut stream).await, json!({"status": 404, "code": "stream_refused"}));

    let mut own = Stream::open(&owner, feed, None).await;
    own.next(WAIT).await.unwrap();
    let logout = owner.req(Method::POST, "/v1/test/logout").send().await.unwrap();
    assert!(logout.status().is_success());
    assert_eq!(ended_by(&mut own).await["code"], "session_ended");

    let ada = sign_in(&base, "ada", &[], None).await;
    let owner = As::new(&base, &ada);
    let mut own = Stream::open(&owner, feed, None).await;
    own.next(WAIT).await.unwrap();
    let suspend = Client::new().post(format!("{base}/v1/test/status/ada/suspended")).send().await.unwrap();
    assert!(suspend.status().is_success());
    assert_eq!(ended_by(&mut own).await["code"], "session_ended");
    server.stop().await;
}

#[tokio::test]
async fn streams_are_limited_per_principal_and_counted() {
    let deployment = deployment("4MiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    me.create("/v1/state/notes/n1", &json!({"title": "t"})).await;
    let feed = "/v1/state/notes/n1/changes";
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = Stream::open(&me, feed, None).await;
        stream.next(WAIT).await.unwrap();
        open.push(stream);
    }
    let fourth = me.req(Method::GET, feed).header("accept", "text/event-stream").send().await.unwrap();
    assert_error(fourth, 429, "too_many_streams").await;

    let admin = sign_in(&base, "root", &["admin"], None).await;
    let admin = As::new(&base, &admin);
    let plugins: Value = admin.req(Method::GET, "/admin/plugins").send().await.unwrap().json().await.unwrap();
    let state = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "state").unwrap().clone();
    assert_eq!(state["open_streams"], 3);
    drop(open);
    let metrics = admin.req(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("plinth_streams_opened_total 3"), "{metrics}");
    assert!(metrics.contains("plinth_versioned_writes_total{name=\"written\"} 1"), "{metrics}");
    // The dropped streams are noticed and give their places back.
    let mut reopened = None;
    for _ in 0..50 {
        let response = me.req(Method::GET, feed).header("accept", "text/event-stream").send().await.unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "closed streams free their places");
    server.stop().await;
}

#[tokio::test]
async fn past_the_servers_total_a_stream_is_503() {
    let deployment = deployment("4MiB", "");
    let config = std::fs::read_to_string(deployment.config_path()).unwrap();
    let config = config.replace("max_per_client = 3", "max_per_client = 2\nmax_total = 2");
    std::fs::write(deployment.config_path(), config).unwrap();
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let (ada, bob) = (sign_in(&base, "ada", &[], None).await, sign_in(&base, "bob", &[], None).await);
    let (first, second) = (As::new(&base, &ada), As::new(&base, &bob));
    first.create("/v1/state/notes/a", &json!({"title": "a"})).await;
    second.create("/v1/state/notes/b", &json!({"title": "b"})).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = Stream::open(&first, "/v1/state/notes/a/changes", None).await;
        stream.next(WAIT).await.unwrap();
        held.push(stream);
    }
    let refused = second.req(Method::GET, "/v1/state/notes/b/changes").header("accept", "text/event-stream");
    let refused = assert_error(refused.send().await.unwrap(), 503, "streams_full").await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("retry"));
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn view_tokens_refuse_tampering_other_plugins_and_expiry_and_survive_rotation() {
    let signer = plugin("signer", plinth_test_guests::SIGNER, &["POST /v1/signer/**"], &["signing"], "");
    let deployment = deployment("4MiB", &signer);
    std::fs::write(
        deployment.dir.path().join("policies/routes.toml"),
        format!("{STATE_POLICY}{ISSUER_POLICY}[[route]]\nroute = \"/v1/signer/**\"\nallow = \"public\"\n"),
    )
    .unwrap();
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    let make = async |body: Value| -> Value {
        let response = me.req(Method::POST, "/v1/state/views").json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    };
    let open = async |token: &str| me.req(Method::GET, &format!("/v1/state/views/{token}")).send().await.unwrap();

    let view = json!({"filter": {"done": false}, "sort": "-updated", "page": 2});
    let made = make(json!({"kind": "notes", "view": view})).await;
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("v1.1.") && token.len() <= 512, "{token}");
    assert_eq!(open(&token).await.json::<Value>().await.unwrap()["view"], view);

    let refused = async |token: &str| {
        let response = open(token).await;
        assert_eq!(response.status(), 400, "{token}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].as_str().unwrap().starts_with("token_"), "{body}");
    };
    for at in [0, 3, 6, token.len() / 2, token.len() - 1] {
        let mut altered = token.clone().into_bytes();
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        refused(std::str::from_utf8(&altered).unwrap()).await;
    }
    refused(&token[..token.len() - 4]).await;

    let payload = format!("state.view {}", json!({"k": "notes", "v": {"sort": "forged"}}));
    let foreign = Client::new().post(format!("{base}/v1/signer/sign")).body(payload).send().await.unwrap();
    let foreign = foreign.text().await.unwrap();
    assert!(foreign.starts_with("v1."), "{foreign}");
    assert_error(open(&foreign).await, 400, "token_invalid").await;

    let brief = make(json!({"kind": "notes", "view": {}, "expires_in": 1})).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(open(brief["token"].as_str().unwrap()).await, 410, "token_expired").await;

    let large: serde_json::Map<String, Value> = (0..80).map(|i| (format!("column{i}"), json!(i))).collect();
    let snapshot = make(json!({"kind": "notes", "view": large})).await;
    assert_eq!(snapshot["snapshot"], true);
    let short = snapshot["token"].as_str().unwrap();
    assert!(short.len() < 200, "{short}");
    assert_eq!(open(short).await.json::<Value>().await.unwrap()["view"]["column79"], 79);

    let root = sign_in(&base, "root", &["admin"], None).await;
    let admin = As::new(&base, &root);
    let rotated = admin.req(Method::POST, "/admin/signing-keys/rotate").send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    assert_eq!(open(&token).await.status(), 200, "tokens of the previous key still verify");
    let newer = make(json!({"kind": "notes", "view": {"sort": "new"}})).await;
    assert!(newer["token"].as_str().unwrap().starts_with("v1.2."));
    let retired = admin.req(Method::POST, "/admin/signing-keys/retire").send().await.unwrap();
    assert_eq!(retired.json::<Value>().await.unwrap()["retired"], json!([1]));
    assert_error(open(&token).await, 400, "token_retired").await;
    assert_eq!(open(newer["token"].as_str().unwrap()).await.status(), 200);
    let audit: Value = admin.req(Method::GET, "/admin/audit?limit=1000").send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"signing.rotated") && actions.contains(&"signing.retired"), "{actions:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_full_namespace_is_507_and_loses_nothing() {
    let deployment = deployment("6KiB", "");
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let ada = sign_in(&base, "ada", &[], None).await;
    let me = As::new(&base, &ada);
    let mut stored = Vec::new();
    let mut full = None;
    for i in 0..10 {
        let body = json!({"title": format!("n{i}"), "body": "x".repeat(1500)});
        let response =
            me.req(Method::PUT, &format!("/v1/state/notes/n{i}")).header("if-none-match", "*").json(&body).send().await;
        let response = response.unwrap();
        if response.status() == 201 {
            stored.push(i);
        } else {
            full = Some(response);
            break;
        }
    }
    assert_error(full.expect("the quota is reached"), 507, "quota_exceeded").await;
    for i in stored {
        assert_eq!(me.read(&format!("/v1/state/notes/n{i}")).await.0, 200);
    }
    server.stop().await;
}

#[test]
fn an_acknowledged_write_survives_kill_9() {
    let deployment = deployment("4MiB", "");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut server = ServerProcess::start(&deployment);
    let base = server.url("");
    let (etag, body) = runtime.block_on(async {
        let ada = sign_in(&base, "ada", &[], None).await;
        let me = As::new(&base, &ada);
        let etag = me.create("/v1/state/notes/kept", &json!({"title": "kept"})).await;
        let response = me.patch("/v1/state/notes/kept", &etag, MERGE, &json!({"done": true})).send().await.unwrap();
        assert_eq!(response.status(), 200);
        (response.headers()["etag"].to_str().unwrap().to_owned(), response.bytes().await.unwrap())
    });
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let restarted = ServerProcess::start(&deployment);
    let base = restarted.url("");
    runtime.block_on(async {
        let ada = sign_in(&base, "ada", &[], None).await;
        let (status, after, bytes) = As::new(&base, &ada).read("/v1/state/notes/kept").await;
        assert_eq!((status.as_u16(), after.as_deref(), bytes.as_slice()), (200, Some(etag.as_str()), &body[..]));
    });
}

#[tokio::test]
async fn a_plugin_built_before_these_interfaces_keeps_loading_and_working() {
    let legacy = plugin("legacy", plinth_test_guests::LEGACY, &["/v1/legacy/**"], &["kv"], "");
    let deployment = Deployment::new(&legacy);
    let server = TestServer::start(&deployment).await;
    for expected in ["1", "2"] {
        let response = Client::new().get(server.url("/v1/legacy/count")).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), expected);
    }
    server.stop().await;
}
