//! Migrating while serving: a step's window beside a canary, with the real
//! binary, real sled on disk and the migrator test guests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::migrations::{Notes, stop};
use crate::support::{ServerProcess, sign_in};

const V0: &str = plinth_test_guests::MIGRATOR_V0;
const V1: &str = plinth_test_guests::MIGRATOR_V1;

/// An admin's calls to one server, about the migrations of one plugin.
pub(crate) struct Admin {
    client: Client,
    base: String,
    bearer: String,
    plugin: &'static str,
}

impl Admin {
    pub(crate) async fn of(server: &ServerProcess, plugin: &'static str) -> Self {
        let base = server.url("");
        let bearer = sign_in(&base, "ops", &["admin"], None).await.bearer();
        Self { client: Client::new(), base, bearer, plugin }
    }

    pub(crate) async fn post(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("authorization", &self.bearer)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn reload(&self) -> (StatusCode, Value) {
        self.post("/admin/reload").await
    }

    /// `POST /admin/migrations/{plugin}/{action}`.
    pub(crate) async fn migration(&self, action: &str) -> (StatusCode, Value) {
        self.post(&format!("/admin/migrations/{}/{action}", self.plugin)).await
    }

    /// The plugin's migration status.
    pub(crate) async fn status(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/admin/migrations", self.base))
            .header("authorization", &self.bearer)
            .send()
            .await
            .unwrap();
        let all: Value = response.json().await.unwrap();
        all["plugins"].as_array().unwrap().iter().find(|p| p["plugin"] == self.plugin).unwrap().clone()
    }

    /// Starts a rehearsal and waits for its receipt.
    pub(crate) async fn rehearsed(&self) -> Value {
        assert_eq!(self.migration("rehearse").await.0, StatusCode::ACCEPTED);
        for _ in 0..600 {
            let receipt = self.status().await["receipt"].clone();
            if !receipt.is_null() {
                return receipt;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no rehearsal receipt in 60 s: {}", self.status().await);
    }

    /// Waits until the window's backfill is through, or halted when `halted`.
    pub(crate) async fn backfilled(&self, halted: bool) -> Value {
        for _ in 0..600 {
            let window = self.status().await["window"].clone();
            if window["done"] == true || (halted && !window["failure"].is_null()) {
                return window;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the backfill did not end in 30 s: {}", self.status().await);
    }

    async fn metric(&self, line_start: &str) -> Option<f64> {
        crate::support::metric(&self.base, &self.bearer, line_start).await
    }
}

async fn put(client: &Client, base: &str, id: &str, text: &str) -> (StatusCode, Value) {
    let response = client.put(format!("{base}/v1/notes/{id}")).json(&json!({ "text": text })).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(client: &Client, base: &str, id: &str) -> (StatusCode, Value) {
    let response = client.get(format!("{base}/v1/notes/{id}")).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `count` notes `s{i}` written 16 at a time.
async fn seed(base: &str, count: usize) -> BTreeMap<String, String> {
    let client = Client::new();
    let notes: BTreeMap<String, String> = (0..count).map(|i| (format!("s{i:05}"), format!("seed note {i}"))).collect();
    let all: Vec<_> = notes.iter().collect();
    for chunk in all.chunks(16) {
        let mut writes = tokio::task::JoinSet::new();
        for (id, text) in chunk {
            let (client, base, id, text) = (client.clone(), base.to_owned(), id.to_string(), text.to_string());
            writes.spawn(async move { put(&client, &base, &id, &text).await });
        }
        for (status, body) in writes.join_all().await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    notes
}

/// What the load saw: the notes it wrote, failed requests, data versions served.
#[derive(Default)]
struct Seen {
    written: BTreeMap<String, String>,
    failures: Vec<String>,
    versions: BTreeSet<u64>,
}

/// Writers and readers at once until `stop`: each writes new notes and
/// rewrites its own, and reads seeded ones.
fn load(base: &str, seeded: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..3)
        .map(|writer| {
            let (base, stop) = (base.to_owned(), stop.clone());
            tokio::spawn(async move {
                let client = Client::new();
                let mut seen = Seen::default();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Every third write rewrites an earlier note of this writer.
                    let n = if i % 3 == 2 { i / 2 } else { i };
                    let (id, text) = (format!("w{writer}-{n:05}"), format!("load {writer} note {n} pass {i}"));
                    match put(&client, &base, &id, &text).await {
                        (StatusCode::OK, _) => {
                            seen.written.insert(id, text);
                        }
                        (status, body) => seen.failures.push(format!("PUT {id}: {status} {body}")),
                    }
                    let read = format!("s{:05}", (i * 7919 + writer) % seeded);
                    match get(&client, &base, &read).await {
                        (StatusCode::OK, body) => {
                            seen.versions.insert(body["data_version"].as_u64().unwrap());
                        }
                        (status, body) => seen.failures.push(format!("GET {read}: {status} {body}")),
                    }
                    i += 1;
                }
                seen
            })
        })
        .collect()
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Every note, read by whichever version serves: as it was written, in
/// that version's format.
async fn assert_notes(base: &str, notes: &BTreeMap<String, String>, version: u64) {
    let client = Client::new();
    for (id, text) in notes {
        let (status, body) = get(&client, base, id).await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}");
        let expected =
            if version == 0 { json!({ "text": text }) } else { json!({ "text": text, "words": words(text) }) };
        assert_eq!((body["data_version"].as_u64(), &body["note"]), (Some(version), &expected), "{id}");
    }
}

#[test]
fn a_window_keeps_stable_and_canary_in_step_under_load_and_a_rollback_at_20_percent_loses_nothing() {
    let notes = Notes::new("64MiB");
    let server = ServerProcess::start(&notes.deployment);
    let base = server.url("");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut all = seed(&base, 600).await;
        let admin = Admin::of(&server, "notes").await;
        notes.serve_with(V0, Some((V1, 20)));
        let (status, report) = admin.reload().await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a canary at the next version, with no window: {report}");
        assert!(report["error"].as_str().unwrap().contains("while a migration window is open"), "{report}");
        let (status, refused) = admin.post("/admin/migrations/notes/apply").await;
        assert_eq!(status, StatusCode::CONFLICT, "no rehearsal yet: {refused}");
        assert_eq!(refused["error"]["code"], "migration_refused");
        assert!(refused["error"]["message"].as_str().unwrap().contains("there is no rehearsal receipt"), "{refused}");
        admin.rehearsed().await;

        let stop_load = Arc::new(AtomicBool::new(false));
        let writers = load(&base, 600, stop_load.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, opened) = admin.post("/admin/migrations/notes/apply").await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        assert_eq!((opened["window"]["from"].as_u64(), opened["window"]["to"].as_u64()), (Some(0), Some(1)));
        assert!(opened["window"]["total"].as_u64().unwrap() >= 600, "{opened}");
        let (status, report) = admin.reload().await;
        assert_eq!(status, StatusCode::OK, "the canary at the window's version serves: {report}");
        let window = admin.backfilled(false).await;
        let (copied, total) = (window["copied"].as_u64().unwrap(), window["total"].as_u64().unwrap());
        assert!(window["failure"].is_null() && copied >= total, "{window}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The rollback: the canary leaves while the load goes on.
        notes.serve(V0);
        let (status, report) = admin.reload().await;
        assert_eq!(status, StatusCode::OK, "{report}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_load.store(true, Ordering::Relaxed);
        let mut versions = BTreeSet::new();
        for writer in writers {
            let seen = writer.await.unwrap();
            assert!(seen.failures.is_empty(), "failed requests: {:?}", seen.failures);
            versions.extend(seen.versions);
            all.extend(seen.written);
        }
        assert_eq!(versions, BTreeSet::from([0, 1]), "both versions served the load");
        assert!(admin.metric("plinth_migration_backfill_progress{plugin=\"notes\"}").await == Some(1.0));

        // No write lost, by either version, in either format.
        assert_notes(&base, &all, 0).await;
        notes.serve_with(V0, Some((V1, 100)));
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        assert_notes(&base, &all, 1).await;

        let (status, refused) = admin.post("/admin/migrations/notes/complete").await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("still serves data version 0"), "{refused}");
        notes.serve(V1);
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        let (status, completed) = admin.post("/admin/migrations/notes/complete").await;
        assert_eq!((status, completed["data_version"].as_u64()), (StatusCode::OK, Some(1)), "{completed}");
        let status = admin.status().await;
        assert_eq!((status["data_version"].as_u64(), &status["window"]), (Some(1), &Value::Null), "{status}");
        let (status, refused) = admin.post("/admin/plugins/notes/rollback").await;
        assert_eq!(status, StatusCode::CONFLICT, "the previous version's data is gone: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("no longer at"), "{refused}");
        let (status, written) = put(&Client::new(), &base, "after", "written after complete").await;
        assert_eq!((status, written["words"].as_u64()), (StatusCode::OK, Some(3)));
        all.insert("after".into(), "written after complete".into());
        assert_notes(&base, &all, 1).await;
    });
    stop(server);
    let status = notes.migrate_ok(&["status"]);
    assert!(status.contains("data at version 1;") && status.contains("step 1 words"), "{status}");
    let server = ServerProcess::start(&notes.deployment);
    let (status, body) =
        tokio::runtime::Runtime::new().unwrap().block_on(get(&Client::new(), &server.url(""), "s00007"));
    assert_eq!((status, &body["note"]), (StatusCode::OK, &json!({ "text": "seed note 7", "words": 3 })));
    stop(server);
}

/// The digest `plinth migrate status` shows for the completed step's data.
fn completed_digest(notes: &Notes) -> String {
    let status = notes.migrate_ok(&["status"]);
    let line = status.lines().find(|l| l.contains("step 1 words")).unwrap_or_else(|| panic!("{status}"));
    line.rsplit(' ').next().unwrap().to_owned()
}

#[test]
fn a_backfill_killed_midway_resumes_and_ends_with_the_digest_of_an_uninterrupted_one() {
    let digests: Vec<String> = [false, true]
        .into_iter()
        .map(|kill| {
            let notes = Notes::new("64MiB");
            let mut server = ServerProcess::start(&notes.deployment);
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                seed(&server.url(""), 4000).await;
                notes.serve_with(V0, Some((V1, 0)));
                let admin = Admin::of(&server, "notes").await;
                let (status, opened) = admin.post("/admin/migrations/notes/apply?override=test%20twin").await;
                assert_eq!(status, StatusCode::CREATED, "{opened}");
                assert_eq!(opened["window"]["override_reason"], "test twin");
            });
            if kill {
                server.signal("KILL");
                server.child.wait().unwrap();
                let status = notes.migrate_ok(&["status"]);
                let progress = status.split("(backfill ").nth(1).unwrap_or_else(|| panic!("{status}"));
                let (copied, total) = progress.split_once(" of ").unwrap();
                let total: u64 = total.split(' ').next().unwrap().parse().unwrap();
                assert!(copied.parse::<u64>().unwrap() < total, "killed before the backfill ended: {status}");
                server = ServerProcess::start(&notes.deployment);
            }
            runtime.block_on(async {
                let window = Admin::of(&server, "notes").await.backfilled(false).await;
                assert_eq!(window["copied"].as_u64(), Some(4000), "{window}");
            });
            stop(server);
            notes.migrate_ok(&["complete", "notes"]);
            completed_digest(&notes)
        })
        .collect();
    assert_eq!(digests[0], digests[1], "the resumed backfill ended where the uninterrupted one did");
}

#[test]
fn a_record_that_does_not_convert_halts_the_backfill_fails_only_requests_touching_it_and_abort_goes_back() {
    let notes = Notes::new("1MiB");
    let server = ServerProcess::start(&notes.deployment);
    let base = server.url("");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = Client::new();
        for (id, text) in [("a", "fine"), ("b", "trap me"), ("c", "also fine")] {
            assert_eq!(put(&client, &base, id, text).await.0, StatusCode::OK);
        }
        let admin = Admin::of(&server, "notes").await;
        notes.serve_with(V0, Some((V1, 100)));
        let (status, opened) = admin.post("/admin/migrations/notes/apply?override=trap%20test").await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        let window = admin.backfilled(true).await;
        assert!(window["failure"].as_str().unwrap().contains("record `note/b`"), "{window}");
        assert_eq!(window["done"], false);

        let (status, a) = get(&client, &base, "a").await;
        assert_eq!((status, &a["note"]), (StatusCode::OK, &json!({ "text": "fine", "words": 1 })));
        let (status, c) = get(&client, &base, "c").await;
        assert_eq!((status, &c["note"]), (StatusCode::OK, &json!({ "text": "also fine", "words": 2 })));
        let (status, b) = get(&client, &base, "b").await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("migration_conversion_failed"))
        );
        // The stable version's write of such a record fails the same way; others go on.
        notes.serve_with(V0, Some((V1, 0)));
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        let (status, body) = put(&client, &base, "d", "trap me").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("migration_conversion_failed"))
        );
        assert_eq!(put(&client, &base, "e", "new note").await.0, StatusCode::OK);
        assert!(admin.metric("plinth_migration_conversion_failures_total{plugin=\"notes\"}").await >= Some(2.0));

        let (status, refused) = admin.post("/admin/migrations/notes/complete").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(refused["error"]["message"].as_str().unwrap().contains("halted"), "{refused}");
        let (status, refused) = admin.post("/admin/migrations/notes/abort").await;
        assert_eq!(status, StatusCode::CONFLICT, "the canary still serves version 1: {refused}");
        notes.serve(V0);
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        let (status, aborted) = admin.post("/admin/migrations/notes/abort").await;
        assert_eq!((status, aborted["data_version"].as_u64()), (StatusCode::OK, Some(0)), "{aborted}");
        for (id, text) in [("a", "fine"), ("b", "trap me"), ("c", "also fine"), ("e", "new note")] {
            let (status, body) = get(&client, &base, id).await;
            assert_eq!((status, &body["note"]), (StatusCode::OK, &json!({ "text": text })), "{id}");
        }
        assert_eq!(get(&client, &base, "d").await.0, StatusCode::NOT_FOUND);
        assert_eq!(admin.status().await["window"], Value::Null);
    });
    stop(server);
}

#[test]
fn a_backfill_past_the_quota_halts_naming_it_and_abort_gives_back_the_older_data() {
    // The 20 seeded notes take 670 bytes at data version 0 and 870 with
    // their word counts at 1: the rehearsal fits the quota of 900.
    let notes = Notes::with_config("900B", "[storage]\nbackfill_rate = 5\n");
    let server = ServerProcess::start(&notes.deployment);
    let base = server.url("");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = Client::new();
        let mut seeded = seed(&base, 20).await;
        let admin = Admin::of(&server, "notes").await;
        notes.serve_with(V0, Some((V1, 0)));
        let receipt = admin.rehearsed().await;
        assert!(receipt["peak_bytes"].as_u64() <= receipt["quota_bytes"].as_u64(), "{receipt}");
        let (status, opened) = admin.migration("apply").await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        // A note written while the backfill is under way: 30 bytes more at
        // version 0 (700 in all), 40 at version 1 (910, past the quota).
        assert_eq!(put(&client, &base, "w", "a window note").await.0, StatusCode::OK);
        seeded.insert("w".into(), "a window note".into());
        let window = admin.backfilled(true).await;
        let failure = window["failure"].as_str().unwrap();
        assert!(failure.contains("quota"), "{window}");
        assert_eq!(window["done"], false);
        // A write the newer data cannot hold is refused whole; reads go on.
        let (status, body) = put(&client, &base, "x", "one more").await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
        assert_notes(&base, &seeded, 0).await;

        notes.serve(V0);
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        let (status, aborted) = admin.migration("abort").await;
        assert_eq!((status, aborted["data_version"].as_u64()), (StatusCode::OK, Some(0)), "{aborted}");
        assert_notes(&base, &seeded, 0).await;
        assert_eq!(get(&client, &base, "x").await.0, StatusCode::NOT_FOUND, "the refused write left nothing");
        assert_eq!(put(&client, &base, "x", "one more").await.0, StatusCode::OK, "the older data has room");
    });
    stop(server);
}
