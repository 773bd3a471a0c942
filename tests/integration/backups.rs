//! Backups taken from the real server while it serves, checked and
//! restored with the real binary, and served again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Deployment, ServerProcess, SignedIn, example_deployment, plinth_cli, sign_in};

/// Requests as one signed-in account.
struct As {
    client: Client,
    base: String,
    bearer: String,
}

impl As {
    async fn sign_in(server: &ServerProcess, id: &str, roles: &[&str]) -> Self {
        let who: SignedIn = sign_in(&server.url(""), id, roles, None).await;
        Self { client: Client::new(), base: server.url(""), bearer: who.bearer() }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).header("authorization", &self.bearer)
    }

    /// Takes a backup through the admin API and waits for it; its status.
    async fn backup(&self) -> Value {
        let started = self.req(Method::POST, "/admin/backups").send().await.unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        for _ in 0..600 {
            let status: Value = self.req(Method::GET, &location).send().await.unwrap().json().await.unwrap();
            if status["state"] != "running" {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the backup did not end in a minute");
    }

    async fn upload(&self, bytes: &[u8]) -> String {
        let response = self
            .req(Method::POST, "/v1/media?purpose=attachment&filename=f.txt")
            .header("content-type", "text/plain")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.headers()["location"].to_str().unwrap().to_owned()
    }
}

fn stop(mut server: ServerProcess) {
    server.signal("TERM");
    assert!(server.child.wait().unwrap().success());
}

fn cli(args: &[&str]) -> String {
    let (ok, stdout, stderr) = plinth_cli(args);
    assert!(ok, "plinth {args:?} failed: {stderr}");
    stdout
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Counts `POST /v1/hello/count` until told to stop; every answer but a
/// 200 or a 409 (the counter too contended this time) is a failure.
fn load(base: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<u16>)> {
    tokio::spawn(async move {
        let client = Client::new();
        let (mut counted, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let response = client.post(format!("{base}/v1/hello/count")).send().await.unwrap();
            match response.status().as_u16() {
                200 => counted += 1,
                409 | 429 => {}
                other => failures.push(other),
            }
        }
        (counted, failures)
    })
}

/// The example deployment, with room for a load from one address.
fn deployment() -> Deployment {
    let deployment = example_deployment("");
    let mut config = std::fs::read_to_string(deployment.config_path()).unwrap();
    config.push_str("\n[rate_limits.classes.default]\nper_address = \"100000/min\"\nper_principal = \"100000/min\"\n");
    std::fs::write(deployment.config_path(), config).unwrap();
    deployment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_data_files_and_versions_and_links_the_audit_chain() {
    let deployment = deployment();
    let server = ServerProcess::start(&deployment);
    let admin = As::sign_in(&server, "root", &["admin"]).await;
    let alice = As::sign_in(&server, "alice", &[]).await;

    let created = alice
        .req(Method::PUT, "/v1/state/notes/plan")
        .header("if-none-match", "*")
        .json(&json!({"title": "before the backup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let at_backup = created.headers()["etag"].to_str().unwrap().to_owned();
    let kept = admin.upload(b"a file from before the backup").await;
    let tus = admin
        .req(Method::POST, "/v1/media/uploads")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", "purpose YXR0YWNobWVudA==,filename aGFsZi50eHQ=")
        .send()
        .await
        .unwrap();
    assert_eq!(tus.status(), StatusCode::CREATED);
    let half = tus.headers()["location"].to_str().unwrap().to_owned();
    let patched = admin
        .req(Method::PATCH, &half)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);

    let stop_load = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4).map(|_| load(server.url(""), stop_load.clone())).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup = admin.backup().await;
    assert_eq!(backup["state"], "done", "{backup}");
    assert!(backup["write_pause_us"].as_u64().is_some(), "{backup}");
    let file = PathBuf::from(backup["file"].as_str().unwrap());
    assert_eq!(file.parent().unwrap(), deployment.data_path().parent().unwrap().join("backups"));

    // Changes after the backup, which the restore undoes.
    let replaced = alice
        .req(Method::PUT, "/v1/state/notes/plan")
        .header("if-match", &at_backup)
        .json(&json!({"title": "after the backup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let after_backup = replaced.headers()["etag"].to_str().unwrap().to_owned();
    let later = admin.upload(b"a file from after the backup").await;
    assert_eq!(admin.req(Method::DELETE, &kept).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    stop_load.store(true, Ordering::Relaxed);
    let mut counted = 0;
    for writer in writers {
        let (n, failures) = writer.await.unwrap();
        assert!(failures.is_empty(), "requests failed while the backup was taken: {failures:?}");
        counted += n;
    }
    assert!(counted > 0);
    let shapes: Value = admin.req(Method::GET, "/admin/data/shape").send().await.unwrap().json().await.unwrap();
    let audit_shape = shapes["namespaces"].as_array().unwrap().iter().find(|n| n["namespace"] == "system/audit");
    let families = audit_shape.expect("the audit namespace's shape")["families"].to_string();
    assert!(families.contains("r/{}") && families.contains("action: string"), "{families}");
    assert!(!shapes.to_string().contains("before the backup"), "no value is shown");
    let listed: Value = admin.req(Method::GET, "/admin/backups").send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["backups"][0]["id"], backup["id"], "{listed}");
    let audit: Value = admin.req(Method::GET, "/admin/audit?limit=1000").send().await.unwrap().json().await.unwrap();
    let records = audit["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["action"] == "backup.created" && r["target"] == backup["id"]));
    stop(server);

    let data = deployment.data_path();
    let config = deployment.config_path();
    assert!(cli(&["backup", "verify", path_str(&file)]).starts_with("ok: backup"));
    let restored =
        cli(&["backup", "restore", path_str(&file), "--config", path_str(&config), "--data", path_str(&data)]);
    assert!(restored.contains("the data it replaced is in"), "{restored}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the restored data directory is its owner's alone: {mode:o}");
    let verified = cli(&["backup", "verify", path_str(&file), "--config", path_str(&config)]);
    assert!(verified.contains("this deployment's key wrote it"), "{verified}");

    let server = ServerProcess::start(&deployment);
    let admin = As::sign_in(&server, "root", &["admin"]).await;
    let alice = As::sign_in(&server, "alice", &[]).await;
    let plan = alice.req(Method::GET, "/v1/state/notes/plan").send().await.unwrap();
    assert_eq!(plan.headers()["etag"].to_str().unwrap(), at_backup);
    assert_eq!(plan.json::<Value>().await.unwrap()["title"], "before the backup");
    let stale = alice
        .req(Method::PUT, "/v1/state/notes/plan")
        .header("if-match", &after_backup)
        .json(&json!({"title": "from a client that saw the lost change"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED, "an ETag of the undone timeline matches nothing");
    let rewritten = alice
        .req(Method::PUT, "/v1/state/notes/plan")
        .header("if-match", &at_backup)
        .json(&json!({"title": "after the restore"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rewritten.status(), StatusCode::OK);
    assert_ne!(rewritten.headers()["etag"].to_str().unwrap(), after_backup, "versions are never issued twice");

    let file_back = admin.req(Method::GET, &kept).send().await.unwrap();
    assert_eq!(file_back.status(), StatusCode::OK, "the file deleted after the backup is back");
    assert_eq!(file_back.bytes().await.unwrap(), &b"a file from before the backup"[..]);
    assert_eq!(admin.req(Method::GET, &later).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let resumed = admin
        .req(Method::PATCH, &half)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "5")
        .header("content-type", "application/offset+octet-stream")
        .body("world")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::NO_CONTENT, "the upload resumes where the backup saw it");
    let counted_after: Value =
        Client::new().post(server.url("/v1/hello/count")).send().await.unwrap().json().await.unwrap();
    assert!(counted_after["count"].as_u64().unwrap() <= counted + 1);

    let audit: Value = admin.req(Method::GET, "/admin/audit?limit=1000").send().await.unwrap().json().await.unwrap();
    let records = audit["records"].as_array().unwrap();
    let noted = records.iter().find(|r| r["action"] == "backup.restored").expect("the restore is recorded");
    assert_eq!(noted["target"], backup["id"]);
    assert!(noted["reason"].as_str().unwrap().contains("the chain it replaced ended at record"), "{noted}");
    assert!(
        !records.iter().any(|r| r["action"] == "backup.created"),
        "the chain is the backup's: its own creation came after the cut"
    );
    let verified: Value = admin.req(Method::GET, "/admin/audit/verify").send().await.unwrap().json().await.unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
}

#[test]
fn a_damaged_backup_is_named_and_restores_nothing() {
    let deployment = deployment();
    let server = ServerProcess::start(&deployment);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let file = runtime.block_on(async {
        let admin = As::sign_in(&server, "root", &["admin"]).await;
        admin.upload(b"some bytes to keep").await;
        let backup = admin.backup().await;
        PathBuf::from(backup["file"].as_str().unwrap())
    });
    let (config, data) = (deployment.config_path(), deployment.data_path());
    let (ok, _, stderr) =
        plinth_cli(&["backup", "restore", path_str(&file), "--config", path_str(&config), "--data", path_str(&data)]);
    assert!(!ok && stderr.contains("stop it first"), "a restore under a running server is refused: {stderr}");
    stop(server);

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let damaged = file.with_file_name("damaged.plinth-backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let (ok, _, stderr) = plinth_cli(&["backup", "verify", path_str(&damaged)]);
    assert!(!ok && stderr.contains("is damaged"), "{stderr}");
    let before = dir_listing(&data);
    let (ok, _, stderr) = plinth_cli(&[
        "backup",
        "restore",
        path_str(&damaged),
        "--config",
        path_str(&config),
        "--data",
        path_str(&data),
    ]);
    assert!(!ok && stderr.contains("is damaged"), "{stderr}");
    assert_eq!(dir_listing(&data), before, "the data directory is untouched");
    let siblings: Vec<_> = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("data."))
        .collect();
    assert!(siblings.is_empty(), "nothing is left beside it: {siblings:?}");
}

/// Files under `dir` with their lengths.
fn dir_listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                found.push((entry.path(), entry.metadata().unwrap().len()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_full_disk_fails_the_backup_leaves_no_file_and_the_server_serves_on() {
    let deployment = deployment();
    // `ulimit -f` also bounds the memory images wasmtime maps for each
    // component, and the JavaScript and Python runtimes' are larger than it
    // (a full disk does not touch them).
    let config = std::fs::read_to_string(deployment.config_path()).unwrap();
    let config = crate::support::without_plugins(&config, &["counters-js", "counters-py"]);
    std::fs::write(deployment.config_path(), config).unwrap();
    // Files the server writes may grow to 12 MiB: each of three 5 MB files
    // fits, a backup holding all three does not.
    let server = ServerProcess::start_with_file_size_limit(&deployment, 12 << 10);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = As::sign_in(&server, "root", &["admin"]).await;
        for i in 0..3u8 {
            admin.upload(&vec![b'a' + i; 5_000_000]).await;
        }
        for _ in 0..2 {
            let backup = admin.backup().await;
            assert_eq!(backup["state"], "failed", "{backup}");
            assert!(backup["error"].as_str().unwrap().contains("File too large"), "{backup}");
        }
        let backups = deployment.data_path().parent().unwrap().join("backups");
        let left: Vec<_> = std::fs::read_dir(&backups).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "no partial backup is left: {left:?}");
        let item = admin.upload(b"stored after the failed backups").await;
        assert_eq!(admin.req(Method::DELETE, &item).send().await.unwrap().status(), StatusCode::NO_CONTENT);
        let audit: Value =
            admin.req(Method::GET, "/admin/audit?limit=1000").send().await.unwrap().json().await.unwrap();
        let failed = audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "backup.created" && r["outcome"] == "failure")
            .count();
        assert_eq!(failed, 2);
    });
}
