//! A migration step over 1,000,000 small records (`note/{n}` → with a
//! word count), as `plinth migrate apply` runs it with the server stopped:
//! a backup first, then each record converted in a fresh instance of the
//! migrator test guest and written into the next version's namespace.
//! Prints one tab-separated line for benches/report.py:
//!   migration  <records>  <backup seconds>  <convert seconds>  <records/s>  <conversion µs (mean)>

use std::sync::Arc;
use std::time::Instant;

use plinth::storage::{SledStorage, Storage};

#[path = "common/notes.rs"]
mod notes;

const RECORDS: usize = 1_000_000;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let steps = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/guests/wasm/migrator-steps");
    let only_first = dir.path().join("steps");
    std::fs::create_dir_all(&only_first).unwrap();
    std::fs::copy(format!("{steps}/0001-words.toml"), only_first.join("0001-words.toml")).unwrap();
    let config = format!(
        "[[plugins]]\nname = \"notes\"\ncomponent = {:?}\nroutes = [\"/v1/notes/**\"]\ngrants = [\"kv\"]\n\
         migrations = {:?}\nlimits = {{ kv_bytes = \"1GiB\" }}\n",
        plinth_test_guests::MIGRATOR_V1,
        only_first.display().to_string()
    );
    std::fs::write(dir.path().join("plinth.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/routes.toml"), "[[route]]\nroute = \"/**\"\nallow = \"public\"\n")
        .unwrap();
    let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
    let data = &config.storage.path;
    std::fs::create_dir_all(data).unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(data).unwrap());
    notes::seed(storage.as_ref(), RECORDS).await;

    let bench = plinth::migrations::run::Workbench::offline(&config, storage.clone()).await.unwrap();
    let runtime = plinth::runtime::Runtime::new(4, None).unwrap();
    let plugin =
        plinth::migrations::run::PluginMigrations::load(&runtime, &config.plugins[0], &bench.ledger).await.unwrap();
    let started = Instant::now();
    let applied = bench.apply(&plugin, "bench", Some("a benchmark")).await.unwrap();
    let total = started.elapsed().as_secs_f64();
    let step = &applied[0];
    assert_eq!(step.converted, RECORDS as u64);
    let convert = step.duration_ms as f64 / 1000.0;
    println!(
        "migration\t{RECORDS}\t{:.2}\t{convert:.2}\t{:.0}\t{:.1}",
        total - convert,
        RECORDS as f64 / convert,
        convert * 1e6 / RECORDS as f64
    );
}
