//! A 320 px thumbnail of a 12-megapixel JPEG inside the `images` worker,
//! through the real job queue, in a 64 MiB worker: the worker's own time
//! and its instance's peak memory (as the job records them) and the time
//! from submit to done. Prints one tab-separated line for
//! benches/report.py:
//!   thumbnail  <source MiB>  <runs>  <p50 ms>  <p90 ms>  <max ms>  <peak MiB>  <submit-to-done p50 ms>

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::ImageEncoder;
use plinth::blobs::Scope;
use plinth::jobs::JobState;

const RUNS: usize = 30;
const WIDTH: u32 = 4000;
const HEIGHT: u32 = 3000;

/// A 4000×3000 photo-like JPEG (gradients with fine grain, quality 90).
fn twelve_megapixels() -> Vec<u8> {
    let mut seed = 0x9E37_79B9u32;
    let pixels = image::RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let grain = (seed % 24) as u8;
        let r = (x * 200 / WIDTH) as u8 + grain;
        let g = (y * 200 / HEIGHT) as u8 + grain;
        let b = (((x + y) / 40) % 200) as u8 + grain;
        image::Rgb([r, g, b])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .write_image(pixels.as_raw(), WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
        .unwrap();
    jpeg
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[plugins]]\nname = \"media\"\ncomponent = {:?}\nroutes = [\"/v1/media/**\"]\n\
         grants = [\"kv\", \"audit\", \"blobs\", \"signing\", \"jobs\"]\n\
         limits = {{ blob_bytes = \"1GiB\", blob_bytes_per_owner = \"1GiB\" }}\n\n\
         [[workers]]\nname = \"images\"\ncomponent = {:?}\nplugins = [\"media\"]\n\
         limits = {{ memory = \"64MiB\", timeout_ms = 20000 }}\n\n[scanner]\nunscanned = \"serve\"\n",
        plinth_test_guests::MEDIA,
        plinth_test_guests::IMAGES
    );
    std::fs::write(dir.path().join("plinth.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/routes.toml"), "[[route]]\nroute = \"/**\"\nallow = \"public\"\n")
        .unwrap();
    let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
    let app = Arc::new(plinth::App::build(config).await.unwrap());
    tokio::spawn(plinth::jobs::dispatch::run_until(app.clone(), std::future::pending()));

    let photo = twelve_megapixels();
    let scope = Scope { plugin: "media", plugin_bytes: 1 << 30, owner_bytes: 1 << 30 };
    let blob = app.blobs.create(&scope, "bench", photo.clone().into()).await.unwrap().id;
    let params = r#"{"sizes": {"thumb": 320}}"#.to_owned();
    let (mut worker_ms, mut total_ms, mut peak) = (Vec::new(), Vec::new(), 0u64);
    // One unmeasured run first: it compiles nothing (done at load) but
    // warms the instance pool's slot.
    for run in 0..=RUNS {
        let started = Instant::now();
        let id = app
            .jobs
            .submit(
                "media",
                "images",
                "bench",
                plinth::jobs::Work::on(vec![blob.clone()], params.clone()),
                plinth::jobs::JobLimits { plugin: 10, owner: 10 },
            )
            .await
            .unwrap();
        let record = loop {
            let record = app.jobs.get("media", &id).await.unwrap();
            if !matches!(record.state, JobState::Queued | JobState::Running) {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let elapsed = started.elapsed();
        assert!(matches!(record.state, JobState::Done(_)), "{:?}", record.state);
        let ran = record.ran.expect("a run records its figures");
        if run > 0 {
            worker_ms.push(ran.micros as f64 / 1000.0);
            total_ms.push(elapsed.as_secs_f64() * 1000.0);
            peak = peak.max(ran.peak_memory);
        }
        app.jobs.forget("media", &id).await.unwrap();
    }
    worker_ms.sort_by(f64::total_cmp);
    total_ms.sort_by(f64::total_cmp);
    println!(
        "thumbnail\t{:.1}\t{RUNS}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.1}",
        photo.len() as f64 / (1 << 20) as f64,
        percentile(&worker_ms, 0.5),
        percentile(&worker_ms, 0.9),
        worker_ms[worker_ms.len() - 1],
        peak as f64 / (1 << 20) as f64,
        percentile(&total_ms, 0.5),
    );
}
