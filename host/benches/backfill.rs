//! A migration window's backfill over 1,000,000 small records (`note/{n}`
//! → with a word count) while the plugin serves, in this process: the
//! migrator test guest at data version 0, its next version as a 20% canary
//! once the window opens. Two clients each read a record and write one,
//! paced at 100 requests/s each, first with nothing else running (idle),
//! then for as long as the backfill runs; once at the default
//! `storage.backfill_rate`, once unpaced. Prints a tab-separated line each
//! for benches/report.py:
//!   backfill  <rate (0: unpaced)>  <records>  <seconds>  <records/s>  <idle p50 ms>  <idle p99 ms>  <p50 ms during>  <p99 ms during>  <failed>

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plinth::storage::SledStorage;

#[path = "common/notes.rs"]
mod notes;

/// Records in the plugin's data; `BACKFILL_RECORDS` sets another count.
static RECORDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("BACKFILL_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
});
const IDLE: Duration = Duration::from_secs(10);
const PACE: Duration = Duration::from_millis(10);

fn config_text(dir: &std::path::Path, canary: bool, rate: Option<u32>) -> String {
    let canary = if canary {
        format!("canary = {{ component = {:?}, weight = 20 }}\n", plinth_test_guests::MIGRATOR_V1)
    } else {
        String::new()
    };
    format!(
        "[[plugins]]\nname = \"notes\"\ncomponent = {:?}\nroutes = [\"/v1/notes/**\"]\ngrants = [\"kv\"]\n\
         migrations = {:?}\n{canary}limits = {{ kv_bytes = \"1GiB\" }}\n\n\
         [rate_limits.classes.default]\nper_address = \"1000000/min\"\n{}",
        plinth_test_guests::MIGRATOR_V0,
        dir.join("steps").display().to_string(),
        rate.map(|r| format!("\n[storage]\nbackfill_rate = {r}\n")).unwrap_or_default()
    )
}

/// Latencies of paced reads and writes by two clients until `stop`, and
/// the requests that failed.
async fn sample(base: String, stop: Arc<AtomicBool>, until: Option<Instant>) -> (Vec<Duration>, usize) {
    let clients: Vec<_> = (0..2)
        .map(|client| {
            let (base, stop) = (base.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut took, mut failed) = (Vec::new(), 0usize);
                let mut tick = tokio::time::interval(PACE);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) && until.is_none_or(|u| Instant::now() < u) {
                    tick.tick().await;
                    let started = Instant::now();
                    let ok = if i.is_multiple_of(2) {
                        let n = (i * 7919 + client * 104_729) % *RECORDS;
                        http.get(format!("{base}/v1/notes/{n:08}")).send().await
                    } else {
                        let body = serde_json::json!({ "text": format!("written by client {client} at {i}") });
                        http.put(format!("{base}/v1/notes/c{client}-{i}")).json(&body).send().await
                    }
                    .is_ok_and(|r| r.status().is_success());
                    took.push(started.elapsed());
                    failed += usize::from(!ok);
                    i += 1;
                }
                (took, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for client in clients {
        let (took, f) = client.await.unwrap();
        all.extend(took);
        failed += f;
    }
    all.sort();
    (all, failed)
}

fn ms(sorted: &[Duration], quantile: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * quantile) as usize].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    run(None).await;
    run(Some(0)).await;
}

/// One window's backfill at `rate` (`None`: the default).
async fn run(rate: Option<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let steps = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guests/wasm/migrator-steps");
    std::fs::create_dir_all(dir.path().join("steps")).unwrap();
    std::fs::copy(format!("{steps}/0001-words.toml"), dir.path().join("steps/0001-words.toml")).unwrap();
    let file = dir.path().join("plinth.toml");
    std::fs::write(&file, config_text(dir.path(), false, rate)).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/routes.toml"), "[[route]]\nroute = \"/**\"\nallow = \"public\"\n")
        .unwrap();
    let source =
        plinth::app::ConfigSource { file: file.clone(), data: None, listen: Some("127.0.0.1:0".parse().unwrap()) };
    let config = source.load().unwrap();
    std::fs::create_dir_all(&config.storage.path).unwrap();
    notes::seed(&SledStorage::open(&config.storage.path).unwrap(), *RECORDS).await;
    let listener = tokio::net::TcpListener::bind(config.server.listen).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Arc::new(plinth::App::build_from(config, Some(source.clone())).await.unwrap());
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plinth::run(listener, app.clone(), async {
        let _ = stopped.await;
    }));

    let (idle, idle_failed) = sample(base.clone(), Arc::default(), Some(Instant::now() + IDLE)).await;

    std::fs::write(&file, config_text(dir.path(), true, rate)).unwrap();
    let entry = source.load().unwrap().plugins.into_iter().find(|p| p.name == "notes").unwrap();
    let bench = plinth::migrations::run::Workbench {
        storage: app.storage.clone(),
        blobs: app.blobs.clone(),
        key: app.audit.key(),
        audit: app.audit.clone(),
        ledger: plinth::migrations::Ledger::open(app.storage.as_ref()).unwrap(),
        backups: app.backups.clone(),
        actor: plinth::audit::Actor::Cli,
    };
    let plugin = plinth::migrations::run::PluginMigrations::load(&app.runtime, &entry, &bench.ledger).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(sample(base.clone(), stop.clone(), None));
    let started = Instant::now();
    let limits = (entry.limits.memory.0, entry.limits.timeout_ms);
    app.windows.open(&bench, plugin, limits, Some("a benchmark")).await.unwrap();
    let report = app.reload(&plinth::audit::Envelope::system()).await;
    assert!(report.applied, "{:?}", report.error);
    let window = loop {
        let window = bench.ledger.window("notes").await.unwrap().unwrap();
        assert!(window.failure.is_none(), "{window:?}");
        if window.done {
            break window;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (during, during_failed) = during.await.unwrap();
    assert!(window.copied >= *RECORDS as u64);
    stop_server.send(()).unwrap();
    server.await.unwrap().unwrap();
    let default_rate = plinth::config::StorageConfig::default().backfill_rate;
    println!(
        "backfill\t{}\t{}\t{seconds:.1}\t{:.0}\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t{}",
        rate.unwrap_or(default_rate),
        *RECORDS,
        *RECORDS as f64 / seconds,
        ms(&idle, 0.5),
        ms(&idle, 0.99),
        ms(&during, 0.5),
        ms(&during, 0.99),
        idle_failed + during_failed
    );
}
