//! Unit tests on the kit's in-memory host; `tests/integration/media.rs`
//! runs the real component over the real blob store.

use plinth_kit::testing::{TestHost, TestRequest};
use serde_json::Value;
use sha2::Digest as _;

const PURPOSES: &str = r#"{
    "avatar": {"types": ["image/png"], "max_bytes": 1000, "read": "public"},
    "attachment": {"types": ["image/*", "text/plain"], "max_bytes": 100000, "read": ["support"]}
}"#;

fn host() -> TestHost {
    TestHost::new(super::router()).setting("purposes", PURPOSES)
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..len).map(|i| i as u8));
    bytes
}

fn tus(request: TestRequest, who: &str) -> TestRequest {
    request.signed_in(who, &[]).header("tus-resumable", "1.0.0")
}

fn create(host: &TestHost, who: &str, length: usize, purpose: &str) -> String {
    let created = host.send(
        tus(TestRequest::post(&format!("/v1/media/uploads?purpose={purpose}")), who)
            .header("upload-length", &length.to_string()),
    );
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    created.header_value("location").unwrap().to_owned()
}

fn patch(host: &TestHost, who: &str, upload: &str, offset: usize, bytes: &[u8]) -> plinth_kit::Response {
    host.send(
        tus(TestRequest::patch(upload), who)
            .header("upload-offset", &offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(bytes.to_vec()),
    )
}

#[test]
fn a_tus_upload_in_pieces_becomes_an_item_the_host_serves() {
    let host = host();
    let file = png(500);
    let upload = create(&host, "ada", file.len(), "attachment");
    let first = patch(&host, "ada", &upload, 0, &file[..100]);
    assert_eq!((first.status, first.header_value("upload-offset")), (204, Some("100")));
    let wrong = patch(&host, "ada", &upload, 0, &file[..100]);
    assert_eq!((wrong.status, wrong.header_value("upload-offset")), (409, Some("100")));
    let checksum = format!("sha256 {}", base64_of(&sha2::Sha256::digest(&file[100..])));
    let last = host.send(
        tus(TestRequest::patch(&upload), "ada")
            .header("upload-offset", "100")
            .header("upload-checksum", &checksum)
            .header("content-type", "application/offset+octet-stream")
            .body(file[100..].to_vec()),
    );
    assert_eq!(last.status, 204, "{}", String::from_utf8_lossy(&last.body));
    let item = last.header_value("content-location").unwrap().to_owned();
    let served = host.send(TestRequest::get(&item).signed_in("ada", &[]));
    assert_eq!((served.status, served.header_value("content-type")), (200, Some("image/png")));
    let blob = served.served_blob().expect("the host serves the blob");
    assert_eq!(host.blob(blob).unwrap(), file);
    assert_eq!(served.header_value("content-disposition"), Some("inline"));
    let again = patch(&host, "ada", &upload, file.len(), b"");
    assert_eq!((again.status, again.header_value("content-location")), (204, Some(item.as_str())));
    let events = host.audit_events();
    assert!(events.iter().any(|e| e.action == "media.uploaded"));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_file_whose_bytes_the_purpose_refuses_is_removed_and_audited() {
    let host = host();
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>";
    let upload = create(&host, "ada", svg.len(), "avatar");
    let refused = patch(&host, "ada", &upload, 0, svg);
    assert_eq!(refused.status, 415, "{}", String::from_utf8_lossy(&refused.body));
    let usage: Value =
        serde_json::from_slice(&host.send(TestRequest::get("/v1/media/usage").signed_in("ada", &[])).body).unwrap();
    assert_eq!((usage["stored"].as_u64(), usage["reserved"].as_u64()), (Some(0), Some(0)));
    let refusal = host.audit_events().into_iter().find(|e| e.action == "media.refused").expect("audited");
    assert!(refusal.reason.unwrap().contains("image/svg+xml"));
    let status = host.send(tus(TestRequest::get(&upload), "ada"));
    assert_eq!(status.status, 404, "the refused upload is gone");
}

#[test]
fn readers_are_the_owner_the_purposes_roles_and_link_holders() {
    let host = host();
    let created = host
        .send(TestRequest::post("/v1/media?purpose=attachment").signed_in("ada", &[]).body(b"secret plans".to_vec()));
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let item = created.header_value("location").unwrap().to_owned();
    assert_eq!(host.send(TestRequest::get(&item).signed_in("bob", &[])).status, 404);
    assert_eq!(host.send(TestRequest::get(&item)).status, 404);
    assert_eq!(host.send(TestRequest::get(&item).signed_in("sam", &["support"])).status, 200);
    let link = host.send(TestRequest::post(&format!("{item}/links")).signed_in("ada", &[]));
    assert_eq!(link.status, 201);
    let link: Value = serde_json::from_slice(&link.body).unwrap();
    assert_eq!(host.send(TestRequest::get(link["url"].as_str().unwrap())).status, 200);
    let long = host.send(
        TestRequest::post(&format!("{item}/links")).signed_in("ada", &[]).json(&serde_json::json!({"ttl": 99999999})),
    );
    assert_eq!(long.status, 422);
    assert_eq!(host.send(TestRequest::delete(&item).signed_in("bob", &[])).status, 404);
    assert_eq!(host.send(TestRequest::delete(&item).signed_in("ada", &[])).status, 204);
    assert_eq!(host.send(TestRequest::get(&item).signed_in("ada", &[])).status, 404);
}

#[test]
fn quotas_and_expiry_bound_uploads() {
    let host = host().blob_quota(1_000_000, 600);
    let _first = create(&host, "ada", 500, "attachment");
    let over =
        host.send(tus(TestRequest::post("/v1/media/uploads?purpose=attachment"), "ada").header("upload-length", "200"));
    assert_eq!(over.status, 413);
    let upload = create(&host, "bob", 10, "attachment");
    host.expire_uploads();
    let status = host.send(tus(TestRequest::get(&upload), "bob"));
    assert_eq!(status.status, 410);
    assert_eq!(host.send(tus(TestRequest::get(&upload), "bob")).status, 404, "an expired upload's record goes");
}

const PROVIDERS: &str = r#"{
    "youtube": {"hosts": ["www.youtube.com", "youtu.be"], "paths": ["/watch?v={id}", "/{id}"],
                "id": {"chars": "A-Za-z0-9_-", "min": 11, "max": 11},
                "embed": "https://www.youtube-nocookie.com/embed/{id}", "allow": "fullscreen"},
    "vimeo": {"hosts": ["vimeo.com"], "paths": ["/{id}"], "id": {"chars": "0-9", "min": 1, "max": 12},
              "embed": "https://player.vimeo.com/video/{id}"}
}"#;

fn embed(host: &TestHost, url: &str) -> plinth_kit::Response {
    host.send(TestRequest::post("/v1/media/embeds").signed_in("ada", &[]).json(&serde_json::json!({ "url": url })))
}

#[test]
fn embeds_come_from_listed_providers_only() {
    let host = host().setting("embed_providers", PROVIDERS);
    let ok = embed(&host, "https://youtu.be/dQw4w9WgXcQ");
    assert_eq!(ok.status, 200);
    let ok: Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(ok["embed_url"], "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ");
    assert_eq!(ok["iframe"]["sandbox"], "allow-scripts allow-same-origin allow-presentation");
    assert_eq!(ok["iframe"]["allow"], "fullscreen");
    let vimeo: Value = serde_json::from_slice(&embed(&host, "https://vimeo.com/76979871").body).unwrap();
    assert_eq!(vimeo["provider"], "vimeo");
    for refused in [
        "javascript:alert(1)//https://youtu.be/dQw4w9WgXcQ",
        "data:text/html,<script>alert(1)</script>",
        "https://youtu.be.evil.example/dQw4w9WgXcQ",
        "https://user:pw@youtu.be/dQw4w9WgXcQ",
        "https://vimeo.com/12ab",
        "ftp://vimeo.com/76979871",
        "not a url",
    ] {
        let response = embed(&host, refused);
        assert_eq!(response.status, 422, "{refused}");
    }
    let frames: Value =
        serde_json::from_slice(&host.send(TestRequest::get("/v1/media/embeds/frame-src").signed_in("ada", &[])).body)
            .unwrap();
    assert_eq!(frames["directive"], "frame-src https://player.vimeo.com https://www.youtube-nocookie.com");
}

#[test]
fn images_of_a_purpose_with_variants_get_a_job_and_its_variants_are_served_once_ready() {
    let purposes = r#"{
        "photo": {"types": ["image/*"], "max_bytes": 100000, "variants": {"thumb": 320, "big": 1024}}
    }"#;
    let host = TestHost::new(super::router())
        .setting("purposes", purposes)
        .setting("variant_limits", r#"{"max_pixels": 1000}"#);
    let upload = |body: &[u8]| {
        let created = host.send(TestRequest::post("/v1/media?purpose=photo").signed_in("ada", &[]).body(body.to_vec()));
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        created.body_json::<Value>()["id"].as_str().unwrap().to_owned()
    };
    let item = upload(&png(300));
    let [job] = host.jobs().try_into().expect("one job per image");
    assert_eq!((job.worker.as_str(), job.owner.as_str()), ("images", "ada"));
    let (inputs, params) = host.job_request(&job.id).unwrap();
    let original = host.send(TestRequest::get(&format!("/v1/media/{item}")).signed_in("ada", &[]));
    assert_eq!(inputs, [original.served_blob().unwrap()]);
    let params: Value = serde_json::from_str(&params).unwrap();
    assert_eq!(params, serde_json::json!({"sizes": {"thumb": 320, "big": 1024}, "max_pixels": 1000}));
    let variant = |name: &str, who: &str| {
        host.send(TestRequest::get(&format!("/v1/media/{item}/variants/{name}")).signed_in(who, &[]))
    };
    let pending = variant("thumb", "ada");
    assert_eq!((pending.status, pending.header_value("retry-after")), (503, Some("2")));
    assert_eq!(pending.body_json::<Value>()["error"]["code"], "variant_pending");
    let info = host.send(TestRequest::get(&format!("/v1/media/{item}/info")).signed_in("ada", &[]));
    assert_eq!(info.body_json::<Value>()["variants"]["state"], "pending");

    let made = [host.store_blob("ada", b"thumb bytes"), host.store_blob("ada", b"big bytes")];
    let answer = serde_json::json!({"width": 10, "height": 20, "variants": {
        "thumb": {"blob": made[0], "type": "image/jpeg", "width": 5, "height": 10, "size": 11},
        "big": {"blob": made[1], "type": "image/png", "width": 10, "height": 20, "size": 9}}});
    host.finish_job(&job.id, Ok(&answer.to_string()), &made);
    let thumb = variant("thumb", "ada");
    assert_eq!((thumb.status, thumb.header_value("content-type")), (200, Some("image/jpeg")));
    // The original's scan verdict stands for its variants.
    let source = inputs[0].clone();
    host.set_scan(&source, plinth_kit::blobs::ScanState::Infected("Eicar-Test-Signature".into()));
    assert_eq!(variant("thumb", "ada").status, 403);
    host.set_scan(&source, plinth_kit::blobs::ScanState::Pending);
    assert_eq!(variant("thumb", "ada").status, 503);
    host.set_scan(&source, plinth_kit::blobs::ScanState::Clean);
    assert_eq!(thumb.served_blob(), Some(made[0].as_str()));
    assert_eq!(variant("thumb", "mallory").status, 404, "a variant is read like its item");
    assert_eq!(variant("huge", "ada").status, 404);
    let info = host.send(TestRequest::get(&format!("/v1/media/{item}/info")).signed_in("ada", &[]));
    let described = &info.body_json::<Value>()["variants"];
    assert_eq!(described["state"], "ready");
    assert_eq!(described["variants"]["big"]["url"], format!("/v1/media/{item}/variants/big"));

    let deleted = host.send(TestRequest::delete(&format!("/v1/media/{item}")).signed_in("ada", &[]));
    assert_eq!(deleted.status, 204);
    assert!(host.jobs().is_empty(), "deleting the item forgets its job");
    assert_eq!(host.blob(&made[0]), None, "and the job's blobs go with it");

    let svg = upload(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>");
    assert!(host.jobs().is_empty(), "no variants of an SVG");
    assert_eq!(variant_of(&host, &svg).status, 404);
    let refused = upload(&png(40));
    let [job] = host.jobs().try_into().unwrap();
    host.finish_job(&job.id, Err("the image is 9000×9000 pixels"), &[]);
    let failed = variant_of(&host, &refused);
    assert_eq!(failed.status, 422);
    assert!(failed.body_json::<Value>()["error"]["message"].as_str().unwrap().contains("9000×9000"));
}

fn variant_of(host: &TestHost, item: &str) -> plinth_kit::Response {
    host.send(TestRequest::get(&format!("/v1/media/{item}/variants/thumb")).signed_in("ada", &[]))
}

#[test]
fn with_a_media_origin_urls_point_there_and_private_ones_carry_a_link() {
    let host = host().setting("origin", "https://Media.Example.test");
    let upload = |purpose: &str, body: Vec<u8>| {
        let created =
            host.send(TestRequest::post(&format!("/v1/media?purpose={purpose}")).signed_in("ada", &[]).body(body));
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        created.body_json::<Value>()
    };
    let private = upload("attachment", b"secret plans".to_vec());
    let url = private["url"].as_str().unwrap();
    let prefix = format!("https://media.example.test/v1/media/{}?token=", private["id"].as_str().unwrap());
    assert!(url.starts_with(&prefix), "{url}");
    let path = url.strip_prefix("https://media.example.test").unwrap();
    assert_eq!(host.send(TestRequest::get(path)).status, 200, "the link in the URL reads it without a session");
    let public = upload("avatar", png(10));
    assert_eq!(public["url"], format!("https://media.example.test/v1/media/{}", public["id"].as_str().unwrap()));
    let link = host
        .send(TestRequest::post(&format!("/v1/media/{}/links", private["id"].as_str().unwrap())).signed_in("ada", &[]));
    assert!(link.body_json::<Value>()["url"].as_str().unwrap().starts_with(&prefix));

    let broken =
        TestHost::new(super::router()).setting("purposes", PURPOSES).setting("origin", "https://m.example.test/files");
    let refused = broken.send(TestRequest::post("/v1/media?purpose=avatar").signed_in("ada", &[]).body(png(10)));
    assert_eq!(refused.status, 500);
    assert!(refused.body_json::<Value>()["error"]["message"].as_str().unwrap().contains("setting `origin`"));
    assert!(broken.kv_keys().iter().all(|k| !k.starts_with("item/")), "nothing kept for a refused upload");
}

/// Ends a job as the worker would for one `thumb` variant.
fn finish_thumb(host: &TestHost, job: &str) {
    let made = host.store_blob("ada", b"thumb bytes");
    let answer = serde_json::json!({"width": 4, "height": 4, "variants": {
        "thumb": {"blob": made, "type": "image/jpeg", "width": 2, "height": 2, "size": 11}}});
    host.finish_job(job, Ok(&answer.to_string()), std::slice::from_ref(&made));
}

#[test]
fn variants_that_found_the_queue_full_are_queued_when_next_asked_for() {
    let purposes = r#"{"photo": {"types": ["image/*"], "max_bytes": 100000, "variants": {"thumb": 64}}}"#;
    let host = TestHost::new(super::router()).setting("purposes", purposes).jobs_per_owner(1);
    let upload = |bytes: Vec<u8>| {
        let created = host.send(TestRequest::post("/v1/media?purpose=photo").signed_in("ada", &[]).body(bytes));
        created.body_json::<Value>()["id"].as_str().unwrap().to_owned()
    };
    let first = upload(png(10));
    let second = upload(png(20));
    let info = |item: &str| host.send(TestRequest::get(&format!("/v1/media/{item}/info")).signed_in("ada", &[]));
    assert_eq!(host.jobs().len(), 1);
    let described = info(&second).body_json::<Value>()["variants"].clone();
    assert_eq!(described["state"], "failed", "{described}");
    let reason = described["reason"].as_str().unwrap();
    assert_eq!(reason, "variants could not be queued: you have too much work queued; try again when it is done");
    let [job] = host.jobs().try_into().unwrap();
    finish_thumb(&host, &job.id);
    assert_eq!(info(&second).body_json::<Value>()["variants"]["state"], "pending", "queued once there was room");
    assert_eq!(host.jobs().len(), 2);
    assert_eq!(info(&second).body_json::<Value>()["variants"]["state"], "pending");
    assert_eq!(host.jobs().len(), 2, "queued once, not at every ask");
    assert_eq!(info(&first).body_json::<Value>()["variants"]["state"], "ready");
}

#[test]
fn a_link_in_a_url_opens_only_its_file_and_is_never_renewed() {
    let purposes = r#"{"photo": {"types": ["image/*"], "max_bytes": 100000, "variants": {"thumb": 64, "big": 512}}}"#;
    let host = TestHost::new(super::router()).setting("purposes", purposes).setting("origin", "https://m.example.test");
    let created = host.send(TestRequest::post("/v1/media?purpose=photo").signed_in("ada", &[]).body(png(10)));
    let item = created.body_json::<Value>()["id"].as_str().unwrap().to_owned();
    let [job] = host.jobs().try_into().unwrap();
    let made = host.store_blob("ada", b"variant");
    let answer = serde_json::json!({"width": 4, "height": 4, "variants": {
        "thumb": {"blob": made, "type": "image/jpeg", "width": 2, "height": 2, "size": 7},
        "big": {"blob": made, "type": "image/jpeg", "width": 4, "height": 4, "size": 7}}});
    host.finish_job(&job.id, Ok(&answer.to_string()), &[made.clone(), made.clone()]);
    let info: Value = host.send(TestRequest::get(&format!("/v1/media/{item}/info")).signed_in("ada", &[])).body_json();
    let path = |url: &Value| url.as_str().unwrap().strip_prefix("https://m.example.test").unwrap().to_owned();
    let thumb = path(&info["variants"]["variants"]["thumb"]["url"]);
    let token = thumb.split_once("?token=").unwrap().1.to_owned();
    assert_eq!(host.send(TestRequest::get(&thumb)).status, 200, "the thumbnail's URL opens it");
    for other in
        [format!("/v1/media/{item}"), format!("/v1/media/{item}/variants/big"), format!("/v1/media/{item}/info")]
    {
        let status = host.send(TestRequest::get(&format!("{other}?token={token}"))).status;
        assert_eq!(status, 404, "a thumbnail's link opens nothing else: {other}");
    }
    // Whoever holds the owner's link to the item reads it through that link
    // only: the URLs they are shown carry that same link, not a fresh one.
    let link: Value =
        host.send(TestRequest::post(&format!("/v1/media/{item}/links")).signed_in("ada", &[])).body_json();
    let shared = path(&link["url"]);
    let shared_token = shared.split_once("?token=").unwrap().1;
    let seen: Value = host.send(TestRequest::get(&format!("/v1/media/{item}/info?token={shared_token}"))).body_json();
    for url in
        [&seen["url"], &seen["variants"]["variants"]["thumb"]["url"], &seen["variants"]["variants"]["big"]["url"]]
    {
        assert!(url.as_str().unwrap().ends_with(&format!("?token={shared_token}")), "{url}");
    }
}
