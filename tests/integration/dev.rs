//! `plinth dev` on a scaffolded plugin: a source change is rebuilt and
//! swapped in while requests keep flowing, none failing; a change that does
//! not build is printed and the running version keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::ServerProcess;

/// Polls `check` every 200 ms until it holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_change_is_swapped_under_load_and_a_broken_one_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("devdemo");
    let kit = concat!(env!("CARGO_MANIFEST_DIR"), "/../kit");
    plinth::scaffold::new_plugin("devdemo", &krate, std::path::Path::new(kit), plinth::scaffold::Language::Rust)
        .unwrap();
    // The load below is far over the default class's 600 requests a minute.
    let config = krate.join("plinth.toml");
    let scaffolded = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{scaffolded}\n[rate_limits.classes.default]\nper_address = \"1000000/min\"\n"))
        .unwrap();
    let log = dir.path().join("dev.log");
    // Data inside the crate, as an operator might put it: writes there are no source change.
    let server = ServerProcess::dev(&config, &krate.join("data"), &log);
    let url = server.url("/v1/devdemo");
    let client = reqwest::Client::new();
    let body = async |client: &reqwest::Client| client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(body(&client).await.contains(r#""plugin":"devdemo""#));
    // The server writing its data and audit log triggers no build.
    let builds = || std::fs::read_to_string(&log).unwrap().matches("dev: building `devdemo`").count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(builds(), 1, "only the first build: {}", std::fs::read_to_string(&log).unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            let (served, failed) = (served.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = client.get(&url).send().await.is_ok_and(|r| r.status() == 200);
                    let counter = if ok { &served } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let source = krate.join("src/lib.rs");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, text.replace(r#""plugin": "devdemo""#, r#""plugin": "devdemo v2""#)).unwrap();
    eventually(Duration::from_secs(300), "the rebuilt version", async || {
        body(&client).await.contains(r#""plugin":"devdemo v2""#)
    })
    .await;

    let rebuilt = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, format!("{rebuilt}\nfn broken( {{\n")).unwrap();
    eventually(Duration::from_secs(300), "the build failure to be printed", async || {
        std::fs::read_to_string(&log).unwrap().contains("`devdemo` failed to build; the running version keeps serving")
    })
    .await;
    assert!(body(&client).await.contains(r#""plugin":"devdemo v2""#), "the last good version still serves");

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("error"), "cargo's diagnostics reach the terminal: {log_text}");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during the swap");
    assert!(served.load(Ordering::Relaxed) > 100, "the load ran: {}", served.load(Ordering::Relaxed));
}
