//! An export of 100,000 form submissions as CSV by the `exports` worker,
//! through the real job queue and blob store: the time from submit to done
//! (rows per second), the worker's peak memory, and the whole process's
//! RSS growth while it runs (sampled every 10 ms). The submissions are
//! written straight into the forms plugin's namespace first, as the plugin
//! stores them. Prints one tab-separated line for benches/report.py:
//!   export  <rows>  <seconds>  <rows/s>  <MiB written>  <worker peak MiB>  <RSS growth KiB>

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plinth::jobs::{JobState, Work};
use plinth::storage::Op;

const ROWS: usize = 100_000;
const BATCH: usize = 1_000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let config = format!(
        "[[plugins]]\nname = \"forms\"\ncomponent = {:?}\nroutes = [\"/v1/forms/**\"]\n\
         grants = [\"kv\", \"audit\", \"blobs\", \"signing\", \"jobs\", \"webhooks\"]\n\
         messages = [{:?}, {:?}]\nassets = {:?}\n\
         limits = {{ kv_bytes = \"1GiB\", blob_bytes = \"1GiB\", blob_bytes_per_owner = \"1GiB\" }}\n\n\
         [[workers]]\nname = \"exports\"\ncomponent = {:?}\nplugins = [\"forms\"]\n\
         limits = {{ memory = \"32MiB\", timeout_ms = 600000 }}\n\n\
         [i18n]\nlocales = [\"en\", \"pl\", \"ar\"]\ndefault = \"en\"\n",
        plinth_test_guests::FORMS,
        format!("{root}/plugins/forms/locales"),
        format!("{root}/examples/forms/locales"),
        format!("{root}/examples/forms"),
        plinth_test_guests::EXPORTS
    );
    std::fs::write(dir.path().join("plinth.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/routes.toml"), "[[route]]\nroute = \"/**\"\nallow = \"public\"\n")
        .unwrap();
    let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
    let app = Arc::new(plinth::App::build(config).await.unwrap());
    tokio::spawn(plinth::jobs::dispatch::run_until(app.clone(), std::future::pending()));

    // 100,000 submissions of the example contact form, as the plugin stores them.
    let namespace = app.deployment.load().plugins[0].plugin.namespace();
    for batch in 0..ROWS / BATCH {
        let ops = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                let id = format!("{:013}-{n:022}", 1_795_000_000_000u64 + n as u64);
                let record = serde_json::json!({
                    "id": id, "form": "contact", "version": 1, "submitted_at": 1_795_000_000u64 + n as u64,
                    "submitter": null, "locale": "pl",
                    "data": { "name": format!("Zażółć gęślą jaźń {n}"), "email": format!("person{n}@example.com"),
                              "topic": "question", "message": "Dzień dobry, mam pytanie o zamówienie.",
                              "copies": 1, "consent": true },
                });
                Op::Set(format!("sub/contact/{id}"), serde_json::to_vec(&record).unwrap())
            })
            .collect();
        namespace.batch(ops).await.unwrap();
    }

    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, running) = (peak.clone(), running.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let columns = ["name", "email", "topic", "other", "message", "copies", "consent"];
    let params = serde_json::json!({ "format": "csv", "columns": columns, "max_bytes": 256u64 << 20 }).to_string();
    let work = Work { inputs: Vec::new(), params, read_prefix: Some("sub/contact/".into()) };
    let started = Instant::now();
    let limits = plinth::jobs::JobLimits { plugin: 10, owner: 10 };
    let id = app.jobs.submit("forms", "exports", "bench", work, limits).await.unwrap();
    let record = loop {
        let record = app.jobs.get("forms", &id).await.unwrap();
        if !matches!(record.state, JobState::Queued | JobState::Running) {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let JobState::Done(answer) = &record.state else { panic!("the export failed: {:?}", record.state) };
    let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
    assert_eq!(answer["rows"], ROWS);
    let peak_memory = record.ran.expect("a run records its figures").peak_memory;
    println!(
        "export\t{ROWS}\t{elapsed:.2}\t{:.0}\t{:.1}\t{:.1}\t{}",
        ROWS as f64 / elapsed,
        answer["bytes"].as_f64().unwrap() / (1 << 20) as f64,
        peak_memory as f64 / (1 << 20) as f64,
        peak.load(Ordering::Relaxed).saturating_sub(before),
    );
}
