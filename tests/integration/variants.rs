//! Image variants end to end: the media plugin queues a job per image, the
//! `images` worker (a real component, its own sandbox) makes the variant,
//! and the host serves it. A photo's variant is upright (its EXIF
//! orientation applied) and carries none of its metadata (no GPS); a
//! decompression bomb fails inside the worker, at its decoder limits or,
//! with those lifted, at its memory cap.

use std::time::Duration;

use image::{GenericImageView, ImageEncoder, Rgb};
use reqwest::StatusCode;
use serde_json::Value;

use crate::media::MEDIA_POLICY;
use crate::support::{Deployment, ISSUER_POLICY, LOOSE_LIMITS, SignedIn, TestServer, issuer_plugin, plugin, sign_in};

const PURPOSES: &str =
    r#"{"photo": {"types": ["image/*"], "max_bytes": 16777216, "read": "public", "variants": {"thumb": 200}}}"#;

fn deployment(variant_limits: &str) -> Deployment {
    let media = plugin(
        "media",
        plinth_test_guests::MEDIA,
        &["/v1/media/**"],
        &["kv", "audit", "blobs", "signing", "jobs"],
        "memory = \"32MiB\", blob_bytes = \"1GiB\", blob_bytes_per_owner = \"256MiB\"",
    );
    let config = format!(
        "[server]\nmax_body = \"1MiB\"\n\n{media}[plugins.settings]\npurposes = '''{PURPOSES}'''\n\
         variant_limits = '{variant_limits}'\n\n{}\
         [[workers]]\nname = \"images\"\ncomponent = {:?}\nplugins = [\"media\"]\n\
         limits = {{ memory = \"64MiB\", timeout_ms = 30000 }}\n\n\
         {LOOSE_LIMITS}[scanner]\nunscanned = \"serve\"\n",
        issuer_plugin(),
        plinth_test_guests::IMAGES,
    );
    Deployment::with_policy(&config, &format!("{MEDIA_POLICY}{ISSUER_POLICY}"))
}

async fn upload(server: &TestServer, who: &SignedIn, bytes: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/v1/media?purpose=photo"))
        .header("authorization", who.bearer())
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// The item's `variants` once they are no longer pending.
async fn settled(server: &TestServer, item: &str) -> Value {
    for _ in 0..600 {
        let info: Value =
            reqwest::get(server.url(&format!("/v1/media/{item}/info"))).await.unwrap().json().await.unwrap();
        if info["variants"]["state"] != "pending" {
            return info["variants"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the variants of {item} stayed pending");
}

/// A 600×300 JPEG, its left half red and its right half blue, that says
/// (EXIF orientation 6) it must be turned 90° clockwise to be seen, and
/// where it was taken (GPS latitude 52° 13′ N).
fn sideways_photo_with_gps() -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(600, 300, |x, _| if x < 300 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .write_image(pixels.as_raw(), 600, 300, image::ExtendedColorType::Rgb8)
        .unwrap();
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0\x08\0\0\0");
    // IFD0: Orientation = 6, and where the GPS IFD is (at 38).
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // GPS IFD: GPSLatitudeRef "N", GPSLatitude 52/1 13/1 0/1 (at 68).
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&[0x02, 0x00, 5, 0, 3, 0, 0, 0, 68, 0, 0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    for (numerator, denominator) in [(52u32, 1u32), (13, 1), (0, 1)] {
        tiff.extend_from_slice(&numerator.to_le_bytes());
        tiff.extend_from_slice(&denominator.to_le_bytes());
    }
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&u16::try_from(2 + 6 + tiff.len()).unwrap().to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut photo = jpeg[..2].to_vec();
    photo.extend_from_slice(&app1);
    photo.extend_from_slice(&jpeg[2..]);
    photo
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_photos_thumbnail_is_upright_and_carries_none_of_its_metadata() {
    let server = TestServer::start(&deployment("{}")).await;
    let alice = sign_in(&server.url(""), "alice", &[], None).await;
    let photo = sideways_photo_with_gps();
    assert!(contains(&photo, b"Exif\0\0II*\0"), "the source carries EXIF");
    let item = upload(&server, &alice, photo).await;
    let variants = settled(&server, &item).await;
    assert_eq!(variants["state"], "ready", "{variants}");
    let thumb = &variants["variants"]["thumb"];
    assert_eq!((thumb["width"].as_u64(), thumb["height"].as_u64()), (Some(100), Some(200)), "{variants}");
    let url = thumb["url"].as_str().unwrap();

    let response = reqwest::get(server.url(url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let bytes = response.bytes().await.unwrap();
    assert!(!contains(&bytes, b"Exif") && !contains(&bytes, b"II*\0") && !contains(&bytes, b"MM\0*"), "metadata left");
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!(decoded.dimensions(), (100, 200), "turned upright: portrait");
    let [r, _, b, _] = decoded.get_pixel(50, 30).0;
    assert!(r > 200 && b < 60, "the left (red) half is on top: {r} {b}");
    let [r, _, b, _] = decoded.get_pixel(50, 170).0;
    assert!(r < 60 && b > 200, "the right (blue) half is below: {r} {b}");

    let range = reqwest::Client::new().get(server.url(url)).header("range", "bytes=0-1").send().await.unwrap();
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.bytes().await.unwrap().as_ref(), [0xFF, 0xD8]);
    let usage = |alice: &SignedIn| {
        let request = reqwest::Client::new().get(server.url("/v1/media/usage")).header("authorization", alice.bearer());
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["stored"].as_u64().unwrap() }
    };
    let with_variant = usage(&alice).await;
    let deleted = reqwest::Client::new()
        .delete(server.url(&format!("/v1/media/{item}")))
        .header("authorization", alice.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(with_variant > 0);
    assert_eq!(usage(&alice).await, 0, "the variant goes with its item");
    assert_eq!(reqwest::get(server.url(url)).await.unwrap().status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

/// A 388 KB PNG that decodes to 10,000 × 10,000 RGBA pixels (400 MB).
fn png_bomb() -> Vec<u8> {
    let mut file = Vec::new();
    let mut encoder = png::Encoder::new(&mut file, 10_000, 10_000);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut header = encoder.write_header().unwrap();
    let mut writer = header.stream_writer().unwrap();
    let row = vec![0u8; 40_000];
    for _ in 0..10_000 {
        std::io::Write::write_all(&mut writer, &row).unwrap();
    }
    writer.finish().unwrap();
    drop(header);
    file
}

#[tokio::test]
async fn a_decompression_bomb_fails_inside_the_worker() {
    let bomb = png_bomb();
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    // Its decoder limits refuse it from the header.
    let server = TestServer::start(&deployment("{}")).await;
    let alice = sign_in(&server.url(""), "alice", &[], None).await;
    let item = upload(&server, &alice, bomb.clone()).await;
    let variants = settled(&server, &item).await;
    assert_eq!(variants["state"], "failed", "{variants}");
    assert!(variants["reason"].as_str().unwrap().contains("10000×10000 pixels"), "{variants}");
    let refused = reqwest::get(server.url(&format!("/v1/media/{item}/variants/thumb"))).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;

    // With those lifted, the worker's memory cap stops the decoder.
    let server = TestServer::start(&deployment(r#"{"max_pixels": 1000000000, "max_alloc": 100000000000}"#)).await;
    let alice = sign_in(&server.url(""), "alice", &[], None).await;
    let item = upload(&server, &alice, bomb).await;
    let variants = settled(&server, &item).await;
    assert_eq!(variants["state"], "failed", "{variants}");
    assert!(variants["reason"].as_str().unwrap().contains("memory limit of 64 MiB"), "{variants}");
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.stop().await;
}
