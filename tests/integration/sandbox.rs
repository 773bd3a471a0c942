//! Guests that misbehave end their own request only; grants and
//! namespaces hold.

use std::time::Duration;

use crate::support::{Deployment, ServerProcess, TEST_SERVER, TestServer, assert_error, plugin};

#[tokio::test]
async fn a_looping_guest_is_cut_off_while_others_are_served() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("spin", plinth_test_guests::SPIN, &["GET /v1/spin/**"], &[], "timeout_ms = 1500")
    ));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let spinning = tokio::spawn(client.get(server.url("/v1/spin")).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both worker threads stay available: the spinning guest yields every tick.
    for _ in 0..5 {
        let ok = client.get(server.url("/v1/spin/ok")).send().await.unwrap();
        assert_eq!(ok.status(), 204);
    }
    if spinning.is_finished() {
        let early = spinning.await.unwrap().unwrap();
        panic!("the spinning request ended too early: {} {:?}", early.status(), early.text().await);
    }
    let response = spinning.await.unwrap().unwrap();
    assert_error(response, 503, "plugin_timeout").await;
    server.stop().await;
}

/// Times the server's epoch thread has woken (voluntary context switches).
fn epoch_wakeups(server: &ServerProcess) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id())).unwrap();
    let epoch = tasks
        .flatten()
        .find(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == "plinth-epoch"))
        .expect("the server has an epoch thread");
    let status = std::fs::read_to_string(epoch.path().join("status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The epoch that bounds guests moves while one may run and rests while
/// none can: an idle server's epoch thread does not wake, yet a looping
/// guest is still cut off at its deadline.
#[tokio::test]
async fn the_epoch_ticks_while_a_guest_runs_and_rests_when_idle() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("spin", plinth_test_guests::SPIN, &["GET /v1/spin/**"], &[], "timeout_ms = 300")
    ));
    let server = ServerProcess::start(&deployment);
    // Loading ran the guest (its routes); let that spell's last tick pass.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Ticking, it would wake 60 times in 300 ms; a stray wake is no tick.
    let idle = epoch_wakeups(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(epoch_wakeups(&server) <= idle + 2, "an idle server's epoch thread sleeps");

    let spin = tokio::time::timeout(Duration::from_secs(10), reqwest::get(server.url("/v1/spin")));
    let spinning = spin.await.expect("the looping guest is cut off at its deadline").unwrap();
    assert_error(spinning, 503, "plugin_timeout").await;
    let after = epoch_wakeups(&server);
    assert!(after >= idle + 20, "the epoch moved while the guest ran: {idle} → {after} wakeups");

    // The last tick of the busy spell, then rest.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rested = epoch_wakeups(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(epoch_wakeups(&server) <= rested + 2, "idle again, the epoch thread sleeps");
}

#[tokio::test]
async fn an_allocating_guest_is_stopped_by_its_memory_cap() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("hog", plinth_test_guests::HOG, &["GET /v1/hog"], &[], "memory = \"8MiB\"")
    ));
    let server = TestServer::start(&deployment).await;
    for _ in 0..2 {
        let response = reqwest::get(server.url("/v1/hog")).await.unwrap();
        let body = assert_error(response, 503, "plugin_memory_limit").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("8388608"));
    }
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_trapping_guest_gets_a_500_and_the_host_keeps_serving() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("trap", plinth_test_guests::TRAP, &["GET /v1/trap", "GET /v1/trap/overflow"], &[], "")
    ));
    let server = TestServer::start(&deployment).await;
    for _ in 0..3 {
        let response = reqwest::get(server.url("/v1/trap")).await.unwrap();
        assert_error(response, 500, "plugin_trap").await;
        // A guest that exhausts its stack ends the same way.
        let response = reqwest::get(server.url("/v1/trap/overflow")).await.unwrap();
        let body = assert_error(response, 500, "plugin_trap").await;
        assert!(!body.to_string().contains("stack"), "no internals in the answer: {body}");
    }
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn wasi_gives_a_guest_clocks_and_randomness_and_nothing_else() {
    assert!(std::env::vars_os().count() > 0, "the host has an environment a guest could inherit");
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("wasiprobe", plinth_test_guests::WASIPROBE, &["GET /v1/wasiprobe"], &[], "")
    ));
    let server = TestServer::start(&deployment).await;
    let response = reqwest::get(server.url("/v1/wasiprobe")).await.unwrap();
    assert_eq!(response.status(), 200);
    let report = response.text().await.unwrap();
    assert_eq!(report, "env=0\nargs=0\nread_root=false\nread_cwd=false\ncreate_file=false\nclock=true\nrandom=true\n");
    assert!(!std::path::Path::new("probe.txt").exists(), "nothing was written beside the host");
    server.stop().await;
}

#[tokio::test]
async fn an_ungranted_import_is_refused_at_load() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("sneaky", plinth_test_guests::KVPROBE, &["/v1/sneaky/kv/{key}"], &["log"], "")
    ));
    let config = deployment.load().unwrap();
    let err = match plinth::App::build(config).await {
        Ok(_) => panic!("a component importing an ungranted interface loaded"),
        Err(e) => format!("{e:#}"),
    };
    for part in ["plugin `sneaky`", "`plinth:platform/kv@0.1.0`", "grant `kv`", "[log]"] {
        assert!(err.contains(part), "missing {part:?} in: {err}");
    }
}

#[tokio::test]
async fn two_plugins_writing_the_same_key_see_only_their_own() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}{}",
        plugin("alpha", plinth_test_guests::KVPROBE, &["/v1/alpha/kv/{key}"], &["kv"], ""),
        plugin("beta", plinth_test_guests::KVPROBE, &["/v1/beta/kv/{key}"], &["kv"], "")
    ));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    for (name, value) in [("alpha", "from alpha"), ("beta", "from beta")] {
        let put = client.put(server.url(&format!("/v1/{name}/kv/shared"))).body(value).send().await.unwrap();
        assert_eq!(put.status(), 204);
    }
    for (name, value) in [("alpha", "from alpha"), ("beta", "from beta")] {
        let got = client.get(server.url(&format!("/v1/{name}/kv/shared"))).send().await.unwrap();
        assert_eq!(got.text().await.unwrap(), value);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_write_over_quota_is_a_guest_visible_error() {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("small", plinth_test_guests::KVPROBE, &["/v1/small/kv/{key}"], &["kv"], "kv_bytes = 64")
    ));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let fits = client.put(server.url("/v1/small/kv/a")).body(vec![b'x'; 40]).send().await.unwrap();
    assert_eq!(fits.status(), 204);
    let over = client.put(server.url("/v1/small/kv/b")).body(vec![b'x'; 40]).send().await.unwrap();
    assert_eq!(over.status(), 507, "the guest saw the error and answered itself");
    assert!(over.text().await.unwrap().contains("QuotaExceeded"));
    let first = client.get(server.url("/v1/small/kv/a")).send().await.unwrap();
    assert_eq!(first.bytes().await.unwrap().len(), 40, "the earlier value is intact");
    server.stop().await;
}
