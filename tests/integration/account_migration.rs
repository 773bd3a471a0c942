//! The accounts plugin as the first real user of a migration window: its
//! step 1 (`verified_at`, plugins/accounts/migrations) rehearsed, applied
//! while people edit their profiles and sign up, a canary at the new data
//! version rolled back, then completed — with the real binary, real sled
//! on disk, and the plugin built at both data versions from its source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, mail, token_in};
use crate::migration_windows::Admin;
use crate::migrations::{LOOSE_LIMITS, stop};
use crate::support::{Deployment, ServerProcess, example_deployment};

const V0: &str = plinth_test_guests::ACCOUNTS_DATA_V0;
const V1: &str = plinth_test_guests::ACCOUNTS;
const STEP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/accounts/migrations/0001-verified-at.toml");

/// The example deployment with the accounts plugin's component (and
/// canary) chosen by the test, and its step file in a directory of its own,
/// present while a version that declares it is configured.
struct Accounts {
    deployment: Deployment,
    config: String,
    steps: std::path::PathBuf,
}

impl Accounts {
    fn new() -> Self {
        let deployment = example_deployment("");
        let config = std::fs::read_to_string(deployment.config_path()).unwrap() + LOOSE_LIMITS;
        let steps = deployment.config_path().parent().unwrap().join("account-steps");
        std::fs::create_dir_all(&steps).unwrap();
        let accounts = Self { deployment, config, steps };
        accounts.serve(V0, None);
        accounts
    }

    fn serve(&self, component: &str, canary: Option<(&str, u8)>) {
        let step = self.steps.join("0001-verified-at.toml");
        if canary.map_or(component, |(c, _)| c) == V1 {
            std::fs::copy(STEP, &step).unwrap();
        } else if step.exists() {
            std::fs::remove_file(&step).unwrap();
        }
        let canary = canary
            .map(|(component, weight)| format!("\ncanary = {{ component = {component:?}, weight = {weight} }}"))
            .unwrap_or_default();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let config = self
            .config
            .replacen(&format!("component = {V1:?}"), &format!("component = {component:?}{canary}"), 1)
            .replace(
                &format!("migrations = {:?}", format!("{root}/plugins/accounts/migrations")),
                &format!("migrations = {:?}", self.steps.display().to_string()),
            );
        assert_ne!(config, self.config, "the accounts plugin's component and steps are in the example config");
        std::fs::write(self.deployment.config_path(), config).unwrap();
    }
}

/// Signs `email` up and verifies it through the mail, by whichever version
/// serves each request.
async fn sign_up(accounts: &Accounts, base: &str, email: &str) {
    let client = Client::new();
    let body = json!({ "email": email, "password": PASSWORD, "display_name": email });
    let signup = client.post(format!("{base}/v1/accounts/signup")).json(&body).send().await.unwrap();
    assert_eq!(signup.status(), StatusCode::ACCEPTED, "{}", signup.text().await.unwrap());
    let token = token_in(&mail(&accounts.deployment, email, "verify", 1).await);
    let verify = client
        .post(format!("{base}/v1/accounts/verify"))
        .json(&json!({ "token": token, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), StatusCode::NO_CONTENT, "{}", verify.text().await.unwrap());
}

/// `Bearer …` for a new session of `email`.
async fn session(base: &str, email: &str) -> String {
    let body = json!({ "email": email, "password": PASSWORD });
    let response = Client::new().post(format!("{base}/v1/sessions/token")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    format!("Bearer {}", response.json::<Value>().await.unwrap()["token"].as_str().unwrap())
}

/// The profile, its ETag, and the data version of the plugin that served
/// it (only data version 1 knows `verified_at`; every account here is
/// verified).
async fn me(client: &Client, base: &str, bearer: &str) -> Result<(Value, String, u8), String> {
    let response = client.get(format!("{base}/v1/me")).header("authorization", bearer).send().await.unwrap();
    if response.status() != StatusCode::OK {
        return Err(format!("GET /v1/me: {} {}", response.status(), response.text().await.unwrap()));
    }
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let profile: Value = response.json().await.unwrap();
    let version = u8::from(profile["verified_at"].is_u64());
    Ok((profile, etag, version))
}

/// What one person's edits saw: the last name written, failed requests,
/// the data versions that served them.
#[derive(Default)]
struct Seen {
    last_name: Option<String>,
    failures: Vec<String>,
    versions: [u32; 2],
}

/// Renames `email`'s profile again and again, each time from the ETag just
/// read, until `stop`.
fn edits(base: &str, email: String, bearer: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(String, Seen)> {
    let base = base.to_owned();
    tokio::spawn(async move {
        let client = Client::new();
        let mut seen = Seen::default();
        let mut pass = 0;
        while !stop.load(Ordering::Relaxed) {
            let (_, etag, version) = match me(&client, &base, &bearer).await {
                Ok(found) => found,
                Err(failure) => {
                    seen.failures.push(failure);
                    continue;
                }
            };
            seen.versions[usize::from(version)] += 1;
            let name = format!("{email} pass {pass}");
            let patched = client
                .patch(format!("{base}/v1/me"))
                .header("authorization", &bearer)
                .header("if-match", etag)
                .json(&json!({ "display_name": name }))
                .send()
                .await
                .unwrap();
            match patched.status() {
                StatusCode::OK => seen.last_name = Some(name),
                status => seen.failures.push(format!("PATCH /v1/me: {status} {}", patched.text().await.unwrap())),
            }
            pass += 1;
        }
        (email, seen)
    })
}

#[test]
fn the_accounts_verified_at_step_is_applied_under_load_rolled_back_at_a_canary_and_completed() {
    let accounts = Accounts::new();
    let server = ServerProcess::start(&accounts.deployment);
    let base = server.url("");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let people: Vec<String> = (0..24).map(|i| format!("person{i}@example.com")).collect();
        for email in &people {
            sign_up(&accounts, &base, email).await;
        }
        let mut sessions = Vec::new();
        for email in &people {
            sessions.push((email.clone(), session(&base, email).await));
        }
        let (before, _, version) = me(&Client::new(), &base, &sessions[0].1).await.unwrap();
        assert_eq!((version, &before["verified_at"]), (0, &Value::Null), "data version 0 has no verified_at");

        let admin = Admin::of(&server, "accounts").await;
        accounts.serve(V0, Some((V1, 20)));
        let receipt = admin.rehearsed().await;
        assert_eq!((receipt["to"].as_u64(), receipt["converted"].as_u64()), (Some(1), Some(24)), "{receipt}");

        let stop_load = Arc::new(AtomicBool::new(false));
        let mut load: Vec<_> = sessions
            .iter()
            .map(|(email, bearer)| edits(&base, email.clone(), bearer.clone(), stop_load.clone()))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, opened) = admin.migration("apply").await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        assert_eq!((opened["window"]["from"].as_u64(), opened["window"]["to"].as_u64()), (Some(0), Some(1)));
        let (status, report) = admin.reload().await;
        assert_eq!(status, StatusCode::OK, "the canary at data version 1 serves: {report}");
        // Sessions are sticky to a version: one more person, signed in
        // until a session lands on the canary, so that it surely writes.
        let late = "late@example.com".to_owned();
        sign_up(&accounts, &base, &late).await;
        let mut on_canary = None;
        for _ in 0..100 {
            let bearer = session(&base, &late).await;
            if me(&Client::new(), &base, &bearer).await.unwrap().2 == 1 {
                on_canary = Some(bearer);
                break;
            }
        }
        let on_canary = on_canary.expect("one of 100 sessions lands on a 20 % canary");
        load.push(edits(&base, late.clone(), on_canary, stop_load.clone()));
        // Sign-ups go on during the window, each request to either version.
        let mut joined = Vec::new();
        for i in 0..6 {
            let email = format!("joined{i}@example.com");
            sign_up(&accounts, &base, &email).await;
            joined.push(email);
        }

        let window = admin.backfilled(false).await;
        assert!(window["failure"].is_null(), "{window}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The rollback: the canary leaves while the edits go on.
        accounts.serve(V0, None);
        let (status, report) = admin.reload().await;
        assert_eq!(status, StatusCode::OK, "{report}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_load.store(true, Ordering::Relaxed);

        let mut names = BTreeMap::new();
        let mut versions = [0, 0];
        for person in load {
            let (email, seen) = person.await.unwrap();
            assert!(seen.failures.is_empty(), "{email}'s failed requests: {:?}", seen.failures);
            versions = [versions[0] + seen.versions[0], versions[1] + seen.versions[1]];
            names.insert(email, seen.last_name.expect("every person renamed themselves"));
        }
        assert!(versions[0] > 0 && versions[1] > 0, "both versions served the edits: {versions:?}");

        // No edit lost, read at either version; at 1, every account says
        // when it was verified: its creation for those the step converted.
        let client = Client::new();
        let everyone: Vec<&String> = names.keys().chain(&joined).collect();
        let mut bearers = BTreeMap::new();
        for email in &everyone {
            bearers.insert(*email, session(&base, email).await);
        }
        for (email, bearer) in &bearers {
            let (profile, _, version) = me(&client, &base, bearer).await.unwrap();
            assert_eq!(version, 0, "{profile}");
            assert_eq!(profile["display_name"].as_str(), Some(names.get(*email).map_or(email.as_str(), |n| n)));
        }
        accounts.serve(V0, Some((V1, 100)));
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        for (email, bearer) in &bearers {
            let (profile, _, version) = me(&client, &base, bearer).await.unwrap();
            assert_eq!(version, 1, "{profile}");
            assert_eq!(profile["display_name"].as_str(), Some(names.get(*email).map_or(email.as_str(), |n| n)));
            let (created, verified) = (profile["created_at"].as_u64().unwrap(), profile["verified_at"].as_u64());
            if people.contains(*email) {
                assert_eq!(verified, Some(created), "converted by the step: {profile}");
            } else {
                assert!(verified >= Some(created), "{profile}");
            }
        }

        accounts.serve(V1, None);
        assert_eq!(admin.reload().await.0, StatusCode::OK);
        let (status, completed) = admin.migration("complete").await;
        assert_eq!((status, completed["data_version"].as_u64()), (StatusCode::OK, Some(1)), "{completed}");
        let (status, refused) = admin.post("/admin/plugins/accounts/rollback").await;
        assert_eq!(status, StatusCode::CONFLICT, "data version 0 is gone: {refused}");
        let (profile, _, version) = me(&client, &base, &bearers[&people[3]]).await.unwrap();
        assert_eq!((version, profile["display_name"].as_str()), (1, Some(names[&people[3]].as_str())));
    });
    stop(server);
}
