//! A backup of 1 GiB of data (256 MiB of 1 KiB records in a plugin's
//! namespace, 768 MiB of blob files) on the real sled database and blob
//! store, taken while four writers keep writing small records: the
//! backup's throughput, the pause writers saw while the cut was taken, the
//! slowest write during the whole backup, and the time to verify the file.
//! Prints one tab-separated line for benches/report.py:
//!   backup  <data MiB>  <seconds>  <MiB/s>  <cut pause ms>  <slowest write ms>  <writes>  <verify seconds>

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use plinth::blobs::{Blobs, Scope};
use plinth::storage::{NamespaceId, Op, SledStorage, Storage};

const RECORD_BYTES: usize = 1024;
const RECORDS: usize = 256 << 10;
const FILES: usize = 24;
const FILE_BYTES: usize = 32 << 20;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(&data).unwrap());
    let scanner = plinth::config::ScannerConfig { clamd: None, unscanned: plinth::config::Unscanned::Serve };
    let blobs = Arc::new(Blobs::open(data.join("blobs"), storage.clone(), &scanner).await.unwrap());

    let records = storage.namespace(NamespaceId::Plugin("records".into()), None).unwrap();
    for batch in 0..RECORDS / 1024 {
        let ops = (0..1024)
            .map(|i| {
                let n = batch * 1024 + i;
                Op::Set(format!("record/{n:08}"), vec![(n % 251) as u8; RECORD_BYTES - 15])
            })
            .collect();
        records.batch(ops).await.unwrap();
    }
    let scope = Scope { plugin: "media", plugin_bytes: 1 << 40, owner_bytes: 1 << 40 };
    for f in 0..FILES {
        let bytes: Vec<u8> = (0..FILE_BYTES).map(|i| (i.wrapping_mul(31) ^ f) as u8).collect();
        blobs.create(&scope, &format!("owner{f}"), bytes.into()).await.unwrap();
    }
    storage.flush().await.unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let slowest_us = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (running, slowest_us, writes) = (running.clone(), slowest_us.clone(), writes.clone());
            let ns = storage.namespace(NamespaceId::Plugin(format!("writer{w}")), None).unwrap();
            tokio::spawn(async move {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    ns.set(&format!("k{}", n % 10_000), n.to_be_bytes().to_vec()).await.unwrap();
                    slowest_us.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    writes.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    slowest_us.store(0, Ordering::Relaxed);
    writes.store(0, Ordering::Relaxed);

    let key = plinth::backup::BackupKey::of(&plinth::audit::AuditKey::from_bytes([3; 32]));
    let backups = plinth::backup::Backups::new(dir.path().join("backups"), key.clone());
    let id = backups.start().unwrap();
    let started = Instant::now();
    let summary = backups.take(&id, storage.as_ref(), &blobs).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let verify_started = Instant::now();
    plinth::backup::verify(&summary.file, Some(&key)).unwrap();
    let verify_seconds = verify_started.elapsed().as_secs_f64();
    let mib = summary.data_bytes as f64 / f64::from(1 << 20);
    println!(
        "backup\t{mib:.0}\t{seconds:.2}\t{:.0}\t{:.3}\t{:.2}\t{}\t{verify_seconds:.2}",
        mib / seconds,
        summary.write_pause_us as f64 / 1000.0,
        slowest_us.load(Ordering::Relaxed) as f64 / 1000.0,
        writes.load(Ordering::Relaxed),
    );
}
