//! Reloads: swaps under load lose no request, a broken component changes
//! nothing, SIGHUP works, and settings fixed at start are refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Deployment, ISSUER_POLICY, LOOSE_LIMITS, ServerProcess, TestServer, eventually, get_json, issuer_plugin, plugin,
    sign_in,
};

/// The config with the `version` plugin at `component`, with `version`.
fn config(component: &str, version: &str, grants: &[&str]) -> String {
    let versioned = plugin("version", component, &["GET /v1/version"], grants, "")
        .replace("limits = {  }\n", &format!("limits = {{  }}\nsettings = {{ version = {version:?} }}\n"));
    // Load tests come from one address; the default class must not throttle them.
    let unthrottled = "[rate_limits.classes.default]\nper_address = \"1000000/min\"\n\n";
    format!("{LOOSE_LIMITS}{unthrottled}{versioned}{}", issuer_plugin())
}

const POLICY: &str = "[[route]]\nroute = \"GET /v1/version\"\nallow = \"public\"\n";

fn deployment(version: &str) -> Deployment {
    Deployment::with_policy(&config(plinth_test_guests::VERSION, version, &[]), &format!("{POLICY}{ISSUER_POLICY}"))
}

async fn reload(server: &TestServer, admin: &str) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(server.url("/admin/reload")).header("authorization", admin).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn version(server: &TestServer) -> String {
    reqwest::get(server.url("/v1/version")).await.unwrap().text().await.unwrap()
}

/// A client requesting `/v1/version` back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(u16, String)>>,
}

impl Load {
    fn start(server: &TestServer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, url) = (stop.clone(), server.url("/v1/version"));
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = Vec::new();
            // Bounded: stops when told, or after this many requests.
            for _ in 0..20_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let response = client.get(&url).send().await.unwrap();
                seen.push((response.status().as_u16(), response.text().await.unwrap()));
            }
            seen
        });
        Self { stop, task }
    }

    /// Stops and returns (status, body) of every request, after checking
    /// that there were some and that none failed.
    async fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.task.await.unwrap();
        assert!(seen.len() > 5, "the load ran: {} requests", seen.len());
        assert!(seen.iter().all(|(status, _)| *status == 200), "a request failed under load");
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_under_load_fail_no_request() {
    let deployment = deployment("1");
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let load = Load::start(&server);
    for swap in 0..10 {
        let next = if swap % 2 == 0 { "2" } else { "1" };
        std::fs::write(deployment.config_path(), config(plinth_test_guests::VERSION, next, &[])).unwrap();
        let (status, report) = reload(&server, &admin).await;
        assert_eq!(status, 200, "{report}");
        let changes = report["plugins"].as_array().unwrap();
        // The file watcher may have picked the change up first; then this
        // reload finds the plugin unchanged.
        let outcome = changes.iter().find(|c| c["name"] == "version").unwrap()["outcome"].clone();
        assert!(outcome == "loaded" || outcome == "unchanged", "{report}");
        assert!(changes.iter().any(|c| c["name"] == "issuer" && c["outcome"] == "unchanged"), "{report}");
        assert_eq!(version(&server).await, next, "new requests get the new version at once");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let seen = load.finish().await;
    let flips = seen.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(flips >= 5, "responses moved between versions {flips} times");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_component_changes_nothing_and_shows_its_error() {
    let deployment = deployment("1");
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let load = Load::start(&server);
    let broken = deployment.dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm but not really").unwrap();
    for (component, grants, needle) in [
        (broken.to_str().unwrap(), &[][..], "not a loadable wasm component"),
        (plinth_test_guests::KVPROBE, &[][..], "needs grant `kv`"),
    ] {
        std::fs::write(deployment.config_path(), config(component, "2", grants)).unwrap();
        let (status, report) = reload(&server, &admin).await;
        assert_eq!((status, report["applied"].as_bool()), (422, Some(false)), "{report}");
        assert!(report["error"].as_str().unwrap().contains(needle), "{report}");
        assert_eq!(version(&server).await, "1", "the old version keeps serving");
        let plugins: Value = get_json(&server, "/admin/plugins", &admin).await;
        let listed = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "version").unwrap().clone();
        assert!(listed["last_error"].as_str().unwrap().contains(needle), "{listed}");
        assert_eq!(listed["version"], "1");
        assert_eq!(listed["digest"].as_str().unwrap().len(), 64);
    }
    let seen = load.finish().await;
    assert!(seen.iter().all(|(_, body)| body == "1"), "only the old version answered while the new one was broken");
    std::fs::write(deployment.config_path(), config(plinth_test_guests::VERSION, "2", &[])).unwrap();
    assert_eq!(reload(&server, &admin).await.0, 200);
    assert_eq!(version(&server).await, "2");
    server.stop().await;
}

#[tokio::test]
async fn settings_fixed_at_start_are_refused_on_reload() {
    let deployment = deployment("1");
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let changed = format!("[server]\nmax_body = \"2KiB\"\n\n{}", config(plinth_test_guests::VERSION, "2", &[]));
    std::fs::write(deployment.config_path(), changed).unwrap();
    let (status, report) = reload(&server, &admin).await;
    assert_eq!(status, 422);
    assert!(report["error"].as_str().unwrap().contains("[server] changed"), "{report}");
    assert_eq!(version(&server).await, "1");
    server.stop().await;
}

#[tokio::test]
async fn sighup_reloads() {
    let deployment = deployment("1");
    let server = ServerProcess::start(&deployment);
    let get = || async { reqwest::get(server.url("/v1/version")).await.unwrap().text().await.unwrap() };
    assert_eq!(get().await, "1");
    std::fs::write(deployment.config_path(), config(plinth_test_guests::VERSION, "2", &[])).unwrap();
    server.signal("HUP");
    for _ in 0..100 {
        if get().await == "2" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("SIGHUP did not reload");
}

async fn compiled_from_cache(server: &TestServer, admin: &str) -> bool {
    let plugins: Value = get_json(server, "/admin/plugins", admin).await;
    let version = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "version").unwrap().clone();
    version["compiled_from_cache"].as_bool().unwrap()
}

#[tokio::test]
async fn restarts_use_the_compiled_cache_and_a_damaged_entry_is_rebuilt() {
    let deployment = deployment("1");
    let mut from_cache = Vec::new();
    for round in 0..4 {
        if round == 2 {
            // Damage every entry: a truncated file must be detected, not trusted.
            for entry in std::fs::read_dir(deployment.data_path().join("compiled")).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "cwasm") {
                    let bytes = std::fs::read(&path).unwrap();
                    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
                }
            }
        }
        let server = TestServer::start(&deployment).await;
        let admin = sign_in(&server.url(""), &format!("ops{round}"), &["admin"], None).await.bearer();
        assert_eq!(version(&server).await, "1");
        from_cache.push(compiled_from_cache(&server, &admin).await);
        server.stop().await;
    }
    assert_eq!(from_cache, [false, true, false, true]);
}

#[tokio::test]
async fn editing_the_config_file_reloads() {
    let deployment = deployment("1");
    let server = TestServer::start(&deployment).await;
    assert_eq!(version(&server).await, "1");
    std::fs::write(deployment.config_path(), config(plinth_test_guests::VERSION, "2", &[])).unwrap();
    for _ in 0..100 {
        if version(&server).await == "2" {
            server.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the file change was not picked up");
}

#[tokio::test]
async fn a_reload_that_leaves_a_route_without_a_rule_is_refused() {
    let deployment = deployment("1");
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    std::fs::write(deployment.dir.path().join("policies/routes.toml"), ISSUER_POLICY).unwrap();
    let (status, report) = reload(&server, &admin).await;
    assert_eq!(status, 422);
    assert!(report["error"].as_str().unwrap().contains("no rule covers `GET` on route `GET /v1/version`"), "{report}");
    assert_eq!(version(&server).await, "1", "the old policy and plugin keep serving");
    server.stop().await;
}

/// The config with a canary of the `version` plugin answering `2`.
fn canary_config(weight: u8) -> String {
    config(plinth_test_guests::VERSION, "1", &[]).replace(
        "settings = { version = \"1\" }\n",
        &format!(
            "settings = {{ version = \"1\" }}\ncanary = {{ component = {:?}, weight = {weight}, settings = {{ version = \"2\" }} }}\n",
            plinth_test_guests::VERSION
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_sticky_per_session() {
    let deployment = Deployment::with_policy(&canary_config(30), &format!("{POLICY}{ISSUER_POLICY}"));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let total = 2000;
    let mut canary = 0;
    for _ in 0..total {
        if client.get(server.url("/v1/version")).send().await.unwrap().text().await.unwrap() == "2" {
            canary += 1;
        }
    }
    let share = f64::from(canary) / f64::from(total);
    assert!((0.25..=0.35).contains(&share), "the canary served {share:.3} of requests, configured 0.30");
    for who in ["s1", "s2", "s3", "s4"] {
        let session = sign_in(&server.url(""), who, &[], None).await.bearer();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let response =
                client.get(server.url("/v1/version")).header("authorization", &session).send().await.unwrap();
            seen.insert(response.text().await.unwrap());
        }
        assert_eq!(seen.len(), 1, "session {who} moved between versions: {seen:?}");
    }
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let plugins: Value = get_json(&server, "/admin/plugins", &admin).await;
    let listed = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "version").unwrap().clone();
    assert_eq!((listed["canary"]["weight"].as_u64(), listed["canary"]["version"].as_str()), (Some(30), Some("2")));
    server.stop().await;
}

#[tokio::test]
async fn a_canary_that_declares_other_routes_is_refused() {
    let config = canary_config(10).replace(
        &format!("component = {:?}, weight", plinth_test_guests::VERSION),
        &format!("component = {:?}, weight", plinth_test_guests::HELLO),
    );
    let config = config.replace("grants = []", "grants = [\"kv\"]");
    let deployment = Deployment::with_policy(&config, &format!("{POLICY}{ISSUER_POLICY}"));
    let err = format!("{:#}", plinth::App::build(deployment.load().unwrap()).await.err().expect("refused"));
    assert!(err.contains("plugin `version`: its canary declares other routes than the main version"), "{err}");
}

#[tokio::test]
async fn a_rollback_restores_the_previous_version() {
    let deployment = deployment("1");
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let rollback = || {
        reqwest::Client::new()
            .post(server.url("/admin/plugins/version/rollback"))
            .header("authorization", &admin)
            .send()
    };
    assert_eq!(rollback().await.unwrap().status(), 409, "nothing to roll back to yet");
    std::fs::write(deployment.config_path(), config(plinth_test_guests::VERSION, "2", &[])).unwrap();
    assert_eq!(reload(&server, &admin).await.0, 200);
    assert_eq!(version(&server).await, "2");
    assert_eq!(rollback().await.unwrap().status(), 200);
    assert_eq!(version(&server).await, "1");
    assert_eq!(rollback().await.unwrap().status(), 200, "and forward again");
    assert_eq!(version(&server).await, "2");
    server.stop().await;
}

#[tokio::test]
async fn a_new_kv_quota_applies_when_its_reload_goes_into_service_and_not_before() {
    let small = |kv_bytes: &str, extra: &str| {
        format!(
            "{LOOSE_LIMITS}{}{}{extra}",
            plugin(
                "small",
                plinth_test_guests::KVPROBE,
                &["/v1/small/kv/{key}"],
                &["kv"],
                &format!("kv_bytes = {kv_bytes}")
            ),
            issuer_plugin()
        )
    };
    let policy = format!("[[route]]\nroute = \"/v1/small/**\"\nallow = \"public\"\n{ISSUER_POLICY}");
    let deployment = Deployment::with_policy(&small("64", ""), &policy);
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let client = reqwest::Client::new();
    let put = |key: &str| client.put(server.url(&format!("/v1/small/kv/{key}"))).body(vec![b'x'; 40]).send();
    assert_eq!(put("a").await.unwrap().status(), 204);
    assert_eq!(put("b").await.unwrap().status(), 507);

    // A bigger quota in a config that is refused (another plugin's component is missing).
    let broken = plugin("broken", "/nonexistent.wasm", &["/v1/broken"], &[], "");
    std::fs::write(deployment.config_path(), small("4096", &broken)).unwrap();
    let (status, _) = reload(&server, &admin).await;
    assert_eq!(status, 422);
    assert_eq!(put("b").await.unwrap().status(), 507, "the refused config changed nothing");

    std::fs::write(deployment.config_path(), small("4096", "")).unwrap();
    let (status, report) = reload(&server, &admin).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(put("b").await.unwrap().status(), 204, "the new quota is in service");
    server.stop().await;
}

/// `digest` of the `version` plugin as `GET /admin/plugins` lists it.
async fn served_digest(server: &TestServer, admin: &str) -> String {
    let plugins: Value = get_json(server, "/admin/plugins", admin).await;
    let listed = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "version").unwrap().clone();
    listed["digest"].as_str().unwrap().to_owned()
}

/// Polls until the `version` plugin serves the component `bytes`.
async fn wait_for_digest(server: &TestServer, admin: &str, bytes: &[u8], what: &str) {
    for _ in 0..100 {
        if served_digest(server, admin).await == plinth::runtime::digest(bytes) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} was not picked up");
}

/// Whether an inotify instance of this process watches directory `dir`
/// (its inode, as `/proc/self/fdinfo` lists each watch).
fn watched(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = format!("ino:{:x} ", std::fs::metadata(dir).unwrap().ino());
    std::fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:inotify")
            && std::fs::read_to_string(std::path::Path::new("/proc/self/fdinfo").join(fd.file_name()))
                .is_ok_and(|info| info.lines().any(|line| line.starts_with("inotify ") && line.contains(&inode)))
    })
}

/// The version guest with a custom section named `tag` added: the same
/// plugin in other bytes, so another digest.
fn tagged_version(tag: &[u8; 4]) -> Vec<u8> {
    let mut bytes = std::fs::read(plinth_test_guests::VERSION).unwrap();
    bytes.extend_from_slice(b"\x00\x05\x04");
    bytes.extend_from_slice(tag);
    bytes
}

/// Re-points `link` at `target` as `ln -sfn` does: a new link renamed over
/// the old one.
fn re_point(link: &std::path::Path, target: &std::path::Path) {
    let staged = link.with_extension("next");
    std::os::unix::fs::symlink(target, &staged).unwrap();
    std::fs::rename(&staged, link).unwrap();
}

/// An operator who deploys by re-pointing a symlink at the new release
/// gets it swapped in, as when the component file itself is replaced:
/// a link to the file, or to the release directory above it.
#[tokio::test]
async fn re_pointing_a_symlinked_component_swaps_it_in() {
    let scratch = tempfile::tempdir().unwrap();
    let (first, second, third) = (tagged_version(b"one_"), tagged_version(b"two_"), tagged_version(b"tri_"));
    for (release, bytes) in [("r1", &first), ("r2", &second), ("r3", &third)] {
        std::fs::create_dir(scratch.path().join(release)).unwrap();
        std::fs::write(scratch.path().join(release).join("version.wasm"), bytes).unwrap();
    }
    // The file is a link into r1; r1 is also where `current` points.
    let (file_link, current) = (scratch.path().join("version.wasm"), scratch.path().join("current"));
    std::os::unix::fs::symlink(scratch.path().join("r1/version.wasm"), &file_link).unwrap();
    std::os::unix::fs::symlink(scratch.path().join("r1"), &current).unwrap();

    let deployment =
        Deployment::with_policy(&config(file_link.to_str().unwrap(), "1", &[]), &format!("{POLICY}{ISSUER_POLICY}"));
    let server = TestServer::start(&deployment).await;
    let admin = admin_of(&server).await;
    assert_eq!(served_digest(&server, &admin).await, plinth::runtime::digest(&first));
    assert!(watched(&scratch.path().join("r1")));
    re_point(&file_link, &scratch.path().join("r2/version.wasm"));
    wait_for_digest(&server, &admin, &second, "the re-pointed file link").await;
    // Release after release, the watches do not pile up.
    let (left, taken) = (scratch.path().join("r1"), scratch.path().join("r2"));
    eventually("the left release let go", async || (!watched(&left) && watched(&taken)).then_some(())).await;
    server.stop().await;

    let through_dir = config(current.join("version.wasm").to_str().unwrap(), "1", &[]);
    let deployment = Deployment::with_policy(&through_dir, &format!("{POLICY}{ISSUER_POLICY}"));
    let server = TestServer::start(&deployment).await;
    let admin = admin_of(&server).await;
    assert_eq!(served_digest(&server, &admin).await, plinth::runtime::digest(&first));
    // A release that does not load changes nothing; fixed where it lies,
    // it is swapped in.
    std::fs::write(scratch.path().join("r3/version.wasm"), b"\0asm but not really").unwrap();
    re_point(&current, &scratch.path().join("r3"));
    let mut refused = false;
    for _ in 0..100 {
        let plugins: Value = get_json(&server, "/admin/plugins", &admin).await;
        let listed = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "version").unwrap().clone();
        if listed["last_error"].as_str().is_some_and(|e| e.contains("not a loadable wasm component")) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the re-pointed directory link was not picked up");
    assert_eq!(served_digest(&server, &admin).await, plinth::runtime::digest(&first), "the old release serves");
    std::fs::write(scratch.path().join("r3/version.wasm"), &third).unwrap();
    wait_for_digest(&server, &admin, &third, "the release fixed after a failed reload").await;
    assert_eq!(version(&server).await, "1");
    server.stop().await;
}

/// A bearer for a new admin of `server`.
async fn admin_of(server: &TestServer) -> String {
    sign_in(&server.url(""), "ops", &["admin"], None).await.bearer()
}

/// A canary's or a worker's component file is watched like a plugin's:
/// rewritten in place, it is swapped in.
#[tokio::test]
async fn a_rewritten_canary_or_worker_component_is_swapped_in() {
    let scratch = tempfile::tempdir().unwrap();
    let (canary, worker) = (scratch.path().join("canary.wasm"), scratch.path().join("worker.wasm"));
    std::fs::write(&canary, tagged_version(b"can1")).unwrap();
    std::fs::copy(plinth_test_guests::JOBPROBE, &worker).unwrap();
    let config = config(plinth_test_guests::VERSION, "1", &["blobs", "jobs"]).replace(
        "settings = { version = \"1\" }\n",
        &format!("settings = {{ version = \"1\" }}\ncanary = {{ component = {canary:?}, weight = 10 }}\n"),
    );
    let config = format!("{config}\n[[workers]]\nname = \"probe\"\ncomponent = {worker:?}\nplugins = [\"version\"]\n");
    let deployment = Deployment::with_policy(&config, &format!("{POLICY}{ISSUER_POLICY}"));
    let server = TestServer::start(&deployment).await;
    let admin = admin_of(&server).await;
    let canary_digest = async || {
        let plugins: Value = get_json(&server, "/admin/plugins", &admin).await;
        let listed = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "version").unwrap().clone();
        listed["canary"]["digest"].as_str().unwrap().to_owned()
    };
    let worker_digest = || server.app.deployment.load().workers[0].digest.clone();
    assert_eq!(worker_digest(), plinth::runtime::digest(&std::fs::read(&worker).unwrap()));

    let (new_canary, mut new_worker) = (tagged_version(b"can2"), std::fs::read(plinth_test_guests::JOBPROBE).unwrap());
    new_worker.extend_from_slice(b"\x00\x05\x04wrk2");
    std::fs::write(&canary, &new_canary).unwrap();
    std::fs::write(&worker, &new_worker).unwrap();
    for _ in 0..100 {
        if canary_digest().await == plinth::runtime::digest(&new_canary)
            && worker_digest() == plinth::runtime::digest(&new_worker)
        {
            server.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the rewritten canary or worker was not picked up");
}
