//! Data migrations run with the real binary on a real data directory, with
//! the migrator test guests (data versions 0, 1 and 2) built from source.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::{Deployment, OPEN_POLICY, ServerProcess, issuer_plugin, plinth_cli, sign_in};

/// Rate limits no test's load reaches.
pub(crate) const LOOSE_LIMITS: &str = "[rate_limits.classes.default]\nper_address = \"1000000/min\"\n\
                            per_principal = \"1000000/min\"\n\
                            [rate_limits.classes.admin]\nper_address = \"1000000/min\"\n\
                            per_principal = \"1000000/min\"\n";

const STEPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guests/wasm/migrator-steps");

/// The migrator as plugin `notes` at `component`, its steps copied into
/// the deployment's directory (so a test can edit them), under `kv_bytes`.
pub(crate) struct Notes {
    pub(crate) deployment: Deployment,
    steps: PathBuf,
    kv_bytes: &'static str,
    /// More of the config (tables), as TOML.
    extra: &'static str,
}

impl Notes {
    pub(crate) fn new(kv_bytes: &'static str) -> Self {
        Self::with_config(kv_bytes, "")
    }

    /// Like [`Notes::new`], with `extra` tables in the config.
    pub(crate) fn with_config(kv_bytes: &'static str, extra: &'static str) -> Self {
        let deployment = Deployment::with_policy("", OPEN_POLICY);
        let steps = deployment.config_path().parent().unwrap().join("steps");
        std::fs::create_dir_all(&steps).unwrap();
        let notes = Self { deployment, steps, kv_bytes, extra };
        notes.serve(plinth_test_guests::MIGRATOR_V0);
        notes
    }

    /// Names `component` in the config, with the files of the steps it
    /// declares (a file already there is kept as it is).
    pub(crate) fn serve(&self, component: &str) {
        self.serve_with(component, None);
    }

    /// Names `component` in the config, and `canary` beside it at a weight,
    /// with the files of the steps the newer declares.
    pub(crate) fn serve_with(&self, component: &str, canary: Option<(&str, u8)>) {
        let known = |component: &str| {
            [plinth_test_guests::MIGRATOR_V0, plinth_test_guests::MIGRATOR_V1, plinth_test_guests::MIGRATOR_V2]
                .iter()
                .position(|c| *c == component)
                .unwrap()
        };
        let known = known(canary.map_or(component, |(c, _)| c));
        for (i, name) in ["0001-words.toml", "0002-rekey.toml"].iter().enumerate() {
            let path = self.steps.join(name);
            if i < known && !path.exists() {
                std::fs::copy(Path::new(STEPS).join(name), &path).unwrap();
            } else if i >= known && path.exists() {
                std::fs::remove_file(&path).unwrap();
            }
        }
        let canary = canary
            .map(|(component, weight)| format!("canary = {{ component = {component:?}, weight = {weight} }}\n"))
            .unwrap_or_default();
        let config = format!(
            "[[plugins]]\nname = \"notes\"\ncomponent = {component:?}\nroutes = [\"/v1/notes/**\"]\ngrants = [\"kv\"]\n\
             migrations = {:?}\n{canary}limits = {{ kv_bytes = {:?} }}\n\n{}\n{LOOSE_LIMITS}\n{}",
            self.steps.display().to_string(),
            self.kv_bytes,
            issuer_plugin(),
            self.extra
        );
        std::fs::write(self.deployment.config_path(), config).unwrap();
    }

    fn migrate(&self, args: &[&str]) -> (bool, String) {
        let config = self.deployment.config_path();
        let data = self.deployment.data_path();
        let mut all = vec!["migrate"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()]);
        let (ok, stdout, stderr) = plinth_cli(&all);
        (ok, format!("{stdout}{stderr}"))
    }

    pub(crate) fn migrate_ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.migrate(args);
        assert!(ok, "plinth migrate {args:?} failed: {out}");
        out
    }

    /// `plinth serve` on the deployment, expected to refuse to start.
    fn refused(&self) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(self.deployment.config_path())
            .arg("--data")
            .arg(self.deployment.data_path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "the server started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

fn put(server: &ServerProcess, id: &str, text: &str) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = Client::new()
            .put(server.url(&format!("/v1/notes/{id}")))
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    })
}

fn get(server: &ServerProcess, id: &str) -> Option<Value> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = Client::new().get(server.url(&format!("/v1/notes/{id}"))).send().await.unwrap();
        match response.status() {
            StatusCode::OK => Some(response.json().await.unwrap()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET note {id}: {other}"),
        }
    })
}

pub(crate) fn stop(mut server: ServerProcess) {
    server.signal("TERM");
    assert!(server.child.wait().unwrap().success());
}

/// A data directory at version 0 holding notes with these texts.
fn notes_at_v0(kv_bytes: &'static str, texts: &[(&str, &str)]) -> Notes {
    let notes = Notes::new(kv_bytes);
    let server = ServerProcess::start(&notes.deployment);
    for (id, text) in texts {
        put(&server, id, text);
    }
    stop(server);
    notes
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from));
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn a_step_is_rehearsed_applied_served_aborted_reapplied_completed_and_taken_back_down() {
    let notes = notes_at_v0("1MiB", &[("a", "hello big world"), ("b", "one")]);
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    let refused = notes.refused();
    assert!(
        refused.contains("serves data version 1, its stored data is at version 0") && refused.contains("migrate apply"),
        "{refused}"
    );
    let status = notes.migrate_ok(&["status"]);
    assert!(status.contains("data at version 0; its component serves version 1"), "{status}");
    let (ok, out) = notes.migrate(&["apply", "notes"]);
    assert!(!ok && out.contains("there is no rehearsal receipt"), "{out}");

    let rehearsed = notes.migrate_ok(&["rehearse", "notes"]);
    assert!(rehearsed.contains("rehearsed 0 → 1") && rehearsed.contains("2 records converted"), "{rehearsed}");
    notes.migrate_ok(&["apply", "notes"]);
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap(), json!({"data_version": 1, "note": {"text": "hello big world", "words": 3}}));
    put(&server, "c", "written at version one");
    let status: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let admin = sign_in(&server.url(""), "ops", &["admin"], None).await;
        let response = Client::new().get(server.url("/admin/migrations")).header("authorization", admin.bearer());
        response.send().await.unwrap().json().await.unwrap()
    });
    let notes_status = status["plugins"].as_array().unwrap().iter().find(|p| p["plugin"] == "notes").unwrap();
    assert_eq!((notes_status["data_version"].as_u64(), notes_status["kept_version"].as_u64()), (Some(1), Some(0)));
    assert_eq!(notes_status["applied"][0]["name"], "words");
    assert_eq!(notes_status["receipt"]["to"], 1, "{status}");
    stop(server);

    // Abort: the data as it was before the step, and the version-0 component
    // serving it; the note written since is lost, which takes --force.
    let (ok, out) = notes.migrate(&["abort", "notes"]);
    assert!(!ok && out.contains("changed since `apply`") && out.contains("--force"), "{out}");
    notes.migrate_ok(&["abort", "notes", "--force"]);
    notes.serve(plinth_test_guests::MIGRATOR_V0);
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap(), json!({"data_version": 0, "note": {"text": "hello big world"}}));
    assert_eq!(get(&server, "c"), None, "an abort goes back to the data the step started from");
    stop(server);

    notes.serve(plinth_test_guests::MIGRATOR_V1);
    notes.migrate_ok(&["apply", "notes"]);
    notes.migrate_ok(&["complete", "notes"]);
    let (ok, out) = notes.migrate(&["abort", "notes"]);
    assert!(!ok && out.contains("no step is waiting"), "{out}");
    let status = notes.migrate_ok(&["status"]);
    assert!(status.contains("step 1 words: applied") && status.contains("by cli after backup"), "{status}");

    // A layout-only edit of an applied step is fine; a change of content is named.
    let file = notes.steps.join("0001-words.toml");
    edit(&file, "description = ", "# reformatted\r\ndescription   =   ");
    notes.migrate_ok(&["lint"]);
    edit(&file, "\"words\": 3}", "\"words\": 3, \"extra\": true}");
    let (ok, out) = notes.migrate(&["lint"]);
    assert!(!ok, "{out}");
    assert!(out.contains("0001-words.toml") && out.contains("step 1 was applied with canonical checksum"), "{out}");
    assert!(out.contains("fixture 1: up gives"), "the fixture no longer matches the conversion: {out}");
    let (ok, out) = notes.migrate(&["down", "notes", "--to", "0"]);
    assert!(!ok && out.contains("have problems"), "nothing runs on edited steps: {out}");
    std::fs::copy(Path::new(STEPS).join("0001-words.toml"), &file).unwrap();

    // Down after completion, with the component that knows the way back.
    notes.migrate_ok(&["down", "notes", "--to", "0"]);
    notes.serve(plinth_test_guests::MIGRATOR_V0);
    notes.migrate_ok(&["complete", "notes"]);
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap(), json!({"data_version": 0, "note": {"text": "hello big world"}}));
    assert_eq!(get(&server, "b").unwrap()["note"], json!({"text": "one"}));
    stop(server);
}

#[test]
fn two_steps_with_a_new_key_apply_in_one_go() {
    let notes = notes_at_v0("1MiB", &[("a", "two words")]);
    notes.serve(plinth_test_guests::MIGRATOR_V2);
    let rehearsed = notes.migrate_ok(&["rehearse", "notes"]);
    assert!(rehearsed.contains("rehearsed 0 → 2"), "{rehearsed}");
    let applied = notes.migrate_ok(&["apply", "notes"]);
    assert!(applied.contains("step 1 words") && applied.contains("step 2 rekey"), "{applied}");
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap(), json!({"data_version": 2, "note": {"text": "two words", "words": 2}}));
    stop(server);
}

#[test]
fn a_conversion_that_traps_halts_the_step_and_changes_nothing() {
    let notes = notes_at_v0("1MiB", &[("a", "fine"), ("x", "trap me")]);
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    let (ok, out) = notes.migrate(&["rehearse", "notes"]);
    assert!(!ok && out.contains("halted at record `note/x`") && out.contains("trapped"), "{out}");
    let (ok, out) = notes.migrate(&["apply", "notes", "--override", "the rehearsal is known to fail"]);
    assert!(!ok && out.contains("halted at record `note/x`"), "{out}");
    assert!(notes.migrate_ok(&["status"]).contains("data at version 0"));
    notes.serve(plinth_test_guests::MIGRATOR_V0);
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap()["note"], json!({"text": "fine"}), "the data is as it was");
    stop(server);
}

#[test]
fn a_rehearsal_finds_a_down_that_does_not_undo_up_and_a_stale_receipt_is_refused() {
    let notes = notes_at_v0("1MiB", &[("a", "Capitalised")]);
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    let (ok, out) = notes.migrate(&["rehearse", "notes"]);
    assert!(!ok && out.contains("down does not give the data back"), "{out}");

    let notes = notes_at_v0("1MiB", &[("a", "lower case")]);
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    notes.migrate_ok(&["rehearse", "notes"]);
    edit(&notes.steps.join("0001-words.toml"), "Notes count their words.", "Notes count words.");
    let (ok, out) = notes.migrate(&["apply", "notes"]);
    assert!(!ok && out.contains("the receipt is stale"), "{out}");
}

#[test]
fn a_step_past_the_quota_halts_and_the_data_stays_as_it_was() {
    // `note/a` + `{"text":"a"}` is 18 bytes, two of them 36; with their
    // word counts (`,"words":1`) 56, past the quota of 40.
    let notes = notes_at_v0("40B", &[("a", "a"), ("b", "b")]);
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    let (ok, out) = notes.migrate(&["apply", "notes", "--override", "testing the quota"]);
    assert!(!ok && out.contains("does not fit plugin `notes`'s kv quota"), "{out}");
    assert!(notes.migrate_ok(&["status"]).contains("data at version 0"));
}

/// `plinth data shape --json` of the deployment's data.
fn data_shape(deployment: &Deployment) -> Value {
    let (config, data) = (deployment.config_path(), deployment.data_path());
    let (ok, stdout, stderr) = plinth_cli(&[
        "data",
        "shape",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn the_data_shape_names_families_and_fields_and_shows_a_migration() {
    let notes = notes_at_v0("1MiB", &[("a", "one"), ("b", "two words")]);
    let shape = |notes: &Notes| data_shape(&notes.deployment);
    let family = |shapes: &Value, namespace: &str| -> Value {
        let found = shapes.as_array().unwrap().iter().find(|n| n["namespace"] == namespace);
        found.unwrap_or_else(|| panic!("no {namespace} in {shapes}"))["families"][0].clone()
    };
    let before = shape(&notes);
    let notes_v0 = family(&before, "plugin/notes");
    assert_eq!((notes_v0["family"].as_str(), notes_v0["records"].as_u64()), (Some("note/{}"), Some(2)));
    assert_eq!(notes_v0["shapes"], json!([["{text: string}", 2]]));
    assert!(!before.to_string().contains("two words"), "no value leaves the data directory");

    notes.serve(plinth_test_guests::MIGRATOR_V1);
    notes.migrate_ok(&["apply", "notes", "--override", "a shape test"]);
    let after = shape(&notes);
    assert_eq!(family(&after, "plugin/notes@1")["shapes"], json!([["{text: string, words: number}", 2]]));
    assert_eq!(family(&after, "plugin/notes")["digest"], notes_v0["digest"], "the data the step started from is kept");
}

#[test]
fn a_rehearsal_runs_beside_the_serving_server_and_apply_follows_with_it_stopped() {
    let notes = Notes::new("1MiB");
    let server = ServerProcess::start(&notes.deployment);
    put(&server, "a", "written while serving");
    // The next version in the config: the running deployment refuses it
    // (its data version is not the data's) and serves on.
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receipt = runtime.block_on(async {
        let admin = sign_in(&server.url(""), "ops", &["admin"], None).await;
        let client = Client::new();
        let started = client
            .post(server.url("/admin/migrations/notes/rehearse"))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let again = client
            .post(server.url("/admin/migrations/notes/rehearse"))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["error"]["code"], "migration_running", "one rehearsal at a time");
        let missing = client
            .post(server.url("/admin/migrations/nobody/rehearse"))
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        for _ in 0..300 {
            let status: Value = client
                .get(server.url("/admin/migrations"))
                .header("authorization", admin.bearer())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let notes = status["plugins"].as_array().unwrap().iter().find(|p| p["plugin"] == "notes").unwrap().clone();
            if !notes["receipt"].is_null() {
                return notes["receipt"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no receipt after 30 s");
    });
    assert_eq!(
        (receipt["from"].as_u64(), receipt["to"].as_u64(), receipt["converted"].as_u64()),
        (Some(0), Some(1), Some(1))
    );
    assert_eq!(get(&server, "a").unwrap()["data_version"], 0, "the running version served on");
    stop(server);
    notes.migrate_ok(&["apply", "notes"]);
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap()["note"], json!({"text": "written while serving", "words": 3}));
    stop(server);
}

#[test]
fn a_refused_version_or_canary_changes_nothing_of_the_serving_one() {
    // `note/a` + `{"text":"x…40"}` is 57 bytes: one note fits, two do not.
    let notes = Notes::new("100B");
    let server = ServerProcess::start(&notes.deployment);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status_of_put = |id: &str| {
        runtime.block_on(async {
            let response = Client::new()
                .put(server.url(&format!("/v1/notes/{id}")))
                .json(&json!({ "text": "x".repeat(40) }))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        })
    };
    assert_eq!((status_of_put("a"), status_of_put("b")), (200, 507), "one note fits in 100 bytes");
    let reload = || {
        runtime.block_on(async {
            let admin = sign_in(&server.url(""), "ops", &["admin"], None).await;
            let response = Client::new().post(server.url("/admin/reload")).header("authorization", admin.bearer());
            let response = response.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    notes.serve(plinth_test_guests::MIGRATOR_V1);
    let (status, report) = reload();
    assert!(status == 422 && report.contains("stored data is at version 0"), "{status} {report}");
    assert_eq!(status_of_put("c"), 507, "the serving version keeps its quota");

    notes.serve(plinth_test_guests::MIGRATOR_V0);
    let config = std::fs::read_to_string(notes.deployment.config_path()).unwrap().replacen(
        "limits = ",
        &format!("canary = {{ component = {:?}, weight = 50 }}\nlimits = ", plinth_test_guests::MIGRATOR_V2),
        1,
    );
    std::fs::write(notes.deployment.config_path(), config).unwrap();
    let (status, report) = reload();
    assert!(status == 422 && report.contains("its canary serves data version 2, its main version 0"), "{report}");
    assert_eq!(get(&server, "a").unwrap()["data_version"], 0);
    stop(server);
    notes.serve(plinth_test_guests::MIGRATOR_V0);
    let server = ServerProcess::start(&notes.deployment);
    assert_eq!(get(&server, "a").unwrap()["note"], json!({ "text": "x".repeat(40) }), "served after a restart");
    stop(server);
}

/// The key families of the host's `sessions` namespace.
fn session_families(deployment: &Deployment) -> Vec<String> {
    let shapes = data_shape(deployment);
    let sessions = shapes.as_array().unwrap().iter().find(|n| n["namespace"] == "system/sessions").unwrap().clone();
    sessions["families"].as_array().unwrap().iter().map(|f| f["family"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_hosts_own_step_is_applied_at_start_after_a_backup_and_taken_down_for_an_older_plinth() {
    let notes = Notes::new("1MiB");
    let server = ServerProcess::start(&notes.deployment);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let admin = runtime.block_on(async {
        sign_in(&server.url(""), "ada", &[], None).await;
        sign_in(&server.url(""), "ops", &["admin"], None).await.bearer()
    });
    let get = |server: &ServerProcess, path: &str| -> Value {
        runtime.block_on(async {
            let response = Client::new().get(server.url(path)).header("authorization", &admin).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}: the session outlives the steps");
            response.json().await.unwrap()
        })
    };
    let fresh = get(&server, "/admin/migrations")["host"].clone();
    assert_eq!((fresh["data_version"].as_u64(), &fresh["applied"]), (Some(1), &json!([])), "a new data directory");
    stop(server);
    let has_index = |notes: &Notes| session_families(&notes.deployment).iter().any(|f| f.starts_with("i/"));
    assert!(!has_index(&notes), "{:?}", session_families(&notes.deployment));

    let out = notes.migrate_ok(&["down", "--host", "--to", "0"]);
    assert!(out.contains("the host's data is at version 0"), "{out}");
    assert!(has_index(&notes), "down rebuilt the index: {:?}", session_families(&notes.deployment));
    let status = notes.migrate_ok(&["status"]);
    assert!(status.contains("host: data at version 0; the next start applies steps 1 to 1"), "{status}");

    let server = ServerProcess::start(&notes.deployment);
    let host = get(&server, "/admin/migrations")["host"].clone();
    assert_eq!(host["data_version"].as_u64(), Some(1), "{host}");
    let applied = &host["applied"][0];
    assert_eq!((applied["name"].as_str(), applied["converted"].as_u64()), (Some("session-id-index"), Some(2)));
    assert!(!applied["backup"].as_str().unwrap().is_empty(), "{applied}");
    let audit = get(&server, "/admin/audit?limit=1000");
    let recorded = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "migration.host_applied" && r["target"] == "host/1" && r["outcome"] == "success");
    assert!(recorded, "{audit}");
    stop(server);
    assert!(!has_index(&notes));
    let status = notes.migrate_ok(&["status"]);
    assert!(status.contains("host: data at version 1\n  step 1 session-id-index: applied"), "{status}");
}
