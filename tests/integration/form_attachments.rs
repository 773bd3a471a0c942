//! Files attached to form submissions, in the real server: uploaded with
//! tus for one field of one showing of the example contact form, typed by
//! their bytes, sent with one submission only, read by the form's readers
//! with ranges, and erased from disk with their submission.

use std::path::Path;

use reqwest::{Client, Method, RequestBuilder};
use serde_json::{Value, json};

use crate::forms::{LOOSE_FORM_SUBMIT, audit_log, contact, deployment, post, show, wait_fill_time};
use crate::support::{TestServer, assert_error, get_json, sign_in};

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn tus(server: &TestServer, method: Method, path: &str) -> RequestBuilder {
    Client::new().request(method, server.url(path)).header("tus-resumable", "1.0.0")
}

/// Starts an upload of `length` bytes for `field` of the showing `token`
/// names: the response.
async fn start(server: &TestServer, token: &str, field: &str, filename: &str, length: usize) -> reqwest::Response {
    let metadata = format!("token {},field {},filename {}", b64(token), b64(field), b64(filename));
    tus(server, Method::POST, "/v1/forms/contact/uploads")
        .header("upload-length", length.to_string())
        .header("upload-metadata", metadata)
        .send()
        .await
        .unwrap()
}

/// An upload's path, once started.
async fn started(server: &TestServer, token: &str, filename: &str, length: usize) -> String {
    let response = start(server, token, "attachment", filename, length).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn patch(server: &TestServer, path: &str, offset: usize, bytes: &[u8]) -> reqwest::Response {
    tus(server, Method::PATCH, path)
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_owned()
}

/// A PNG header and then `len` bytes of a pattern.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..len).map(|i| (i * 7 % 251) as u8));
    bytes
}

/// Files the forms plugin has stored on disk.
fn stored_files(data: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { count(&p) } else { 1 }).sum()
        })
    }
    count(&data.join("blobs/objects/forms"))
}

async fn submit(server: &TestServer, token: &str, files: &[&str]) -> reqwest::Response {
    let mut data = contact();
    data["attachment"] = json!(files);
    post(server, "/v1/forms/contact/submissions", &json!({ "token": token, "data": data }), &[]).await
}

fn error_codes(body: &Value) -> Vec<(String, String)> {
    let fields = body["error"]["fields"].as_array().unwrap();
    fields.iter().map(|f| (f["path"].as_str().unwrap().into(), f["code"].as_str().unwrap().into())).collect()
}

#[tokio::test]
async fn files_are_uploaded_for_a_showing_sent_once_read_by_readers_and_erased_with_their_submission() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let token = show(&server, "contact", "en").await["token"].as_str().unwrap().to_owned();
    let other_showing = show(&server, "contact", "en").await["token"].as_str().unwrap().to_owned();

    // A PNG in two pieces, resumed from HEAD's offset.
    let picture = png(3000);
    let shot = started(&server, &token, "../shot\u{202E}gnp.png", picture.len()).await;
    assert!(shot.starts_with("/v1/forms/contact/uploads/"), "{shot}");
    assert_eq!(patch(&server, &shot, 0, &picture[..1000]).await.status(), 204);
    let head = tus(&server, Method::HEAD, &shot).send().await.unwrap();
    assert_eq!(head.headers()["upload-offset"], "1000");
    let wrong = patch(&server, &shot, 10, &picture[10..]).await;
    assert_eq!((wrong.status().as_u16(), wrong.headers()["upload-offset"].to_str().unwrap()), (409, "1000"));
    assert_eq!(patch(&server, &shot, 1000, &picture[1000..]).await.status(), 204);
    assert_eq!(stored_files(&deployment.data_path()), 1);

    // Bytes decide the type, not the name: markup called a PDF is refused,
    // removed and audited.
    let page = b"<!DOCTYPE html><script>alert(1)</script>";
    let fake = started(&server, &token, "invoice.pdf", page.len()).await;
    assert_error(patch(&server, &fake, 0, page).await, 415, "type_not_allowed").await;
    assert_eq!(tus(&server, Method::HEAD, &fake).send().await.unwrap().status(), 404, "a refused upload is gone");
    assert!(audit_log(&server, &admin).await.contains("form.file_refused"));
    assert_eq!(stored_files(&deployment.data_path()), 1);

    // Only file fields of this form, a size the field allows, a token.
    assert_error(start(&server, &token, "name", "a.png", 10).await, 422, "not_a_file_field").await;
    assert_error(start(&server, &token, "attachment", "a.png", 6 << 20).await, 413, "too_large").await;
    let no_token = tus(&server, Method::POST, "/v1/forms/contact/uploads")
        .header("upload-length", "10")
        .header("upload-metadata", format!("field {}", b64("attachment")))
        .send()
        .await
        .unwrap();
    assert_error(no_token, 400, "token_required").await;

    // A submission names finished uploads of its own showing only.
    let unfinished = started(&server, &token, "notes.txt", 100).await;
    assert_eq!(patch(&server, &unfinished, 0, b"half of it").await.status(), 204);
    wait_fill_time().await;
    let refused = submit(&server, &token, &[&id_of(&unfinished), &"0".repeat(32)]).await;
    let body = assert_error(refused, 422, "validation_failed").await;
    assert_eq!(
        error_codes(&body),
        [("/attachment".into(), "attachment_incomplete".into()), ("/attachment".into(), "attachment".into())]
    );
    let theirs = submit(&server, &other_showing, &[&id_of(&shot)]).await;
    let body = assert_error(theirs, 422, "validation_failed").await;
    assert_eq!(error_codes(&body), [("/attachment".into(), "attachment".into())], "another showing's file");
    assert!(body["error"]["fields"][0]["message"].as_str().unwrap().contains("Upload it again"), "{body}");

    let accepted = submit(&server, &token, &[&id_of(&shot)]).await;
    assert_eq!(accepted.status(), 202);
    let submission = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // Sent once: not again, and the showing takes no more uploads.
    let again = submit(&server, &token, &[&id_of(&shot)]).await;
    assert_eq!(error_codes(&assert_error(again, 422, "validation_failed").await)[0].1, "attachment");
    assert_error(start(&server, &token, "attachment", "more.png", 10).await, 409, "attachments_already_sent").await;
    assert_eq!(tus(&server, Method::DELETE, &shot).send().await.unwrap().status(), 404, "a sent file stays");

    // Readers see what it is and fetch it, with ranges; nobody else does.
    let path = format!("/v1/forms/contact/submissions/{submission}");
    let read = |path: String| Client::new().get(server.url(&path)).header("authorization", admin.bearer());
    let stored: Value = read(path.clone()).send().await.unwrap().json().await.unwrap();
    let file = &stored["attachments"][0];
    assert_eq!(stored["data"]["attachment"], json!([id_of(&shot)]));
    assert_eq!((file["filename"].as_str(), file["media_type"].as_str()), (Some("shotgnp.png"), Some("image/png")));
    assert_eq!(file["size"], picture.len());
    let file_path = format!("{path}/files/{}", id_of(&shot));
    let whole = read(file_path.clone()).send().await.unwrap();
    assert_eq!(whole.headers()["content-type"], "image/png");
    assert_eq!(whole.headers()["x-content-type-options"], "nosniff");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), picture.as_slice());
    let part = read(file_path.clone()).header("range", "bytes=8-15").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &picture[8..16]);
    let user = sign_in(&server.url(""), "nosy", &["user"], None).await;
    let nosy = Client::new().get(server.url(&file_path)).header("authorization", user.bearer()).send().await;
    assert_eq!(nosy.unwrap().status(), 403);

    // Erased with its submission: gone from the API and from the disk.
    let erased = Client::new().delete(server.url(&path)).header("authorization", admin.bearer()).send().await;
    assert_eq!(erased.unwrap().status(), 204);
    assert_eq!(read(file_path).send().await.unwrap().status(), 404);
    assert_eq!(stored_files(&deployment.data_path()), 0, "the erased submission's file is unlinked");
    server.stop().await;
}

#[tokio::test]
async fn a_removed_upload_cannot_be_sent_and_two_submissions_racing_for_one_showing_send_its_files_once() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let token = show(&server, "contact", "en").await["token"].as_str().unwrap().to_owned();
    let text = b"plain words";
    let removed = started(&server, &token, "a.txt", text.len()).await;
    assert_eq!(patch(&server, &removed, 0, text).await.status(), 204);
    assert_eq!(tus(&server, Method::DELETE, &removed).send().await.unwrap().status(), 204);
    assert_eq!(stored_files(&deployment.data_path()), 0, "a removed upload's file goes");
    let kept = started(&server, &token, "b.txt", text.len()).await;
    assert_eq!(patch(&server, &kept, 0, text).await.status(), 204);
    wait_fill_time().await;
    let body = assert_error(submit(&server, &token, &[&id_of(&removed)]).await, 422, "validation_failed").await;
    assert_eq!(error_codes(&body)[0].1, "attachment");

    // Many at once, on connections opened beforehand and released
    // together, so that they overlap inside the server.
    const RACERS: usize = 16;
    let client = Client::new();
    let warm: Vec<_> = (0..RACERS)
        .map(|_| {
            let request = client.get(server.url("/healthz"));
            tokio::spawn(async move { request.send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    for response in warm {
        response.await.unwrap();
    }
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let (client, gate) = (client.clone(), gate.clone());
            let (url, token, id) = (server.url("/v1/forms/contact/submissions"), token.clone(), id_of(&kept));
            tokio::spawn(async move {
                let mut data = contact();
                data["attachment"] = json!([id]);
                let request = client.post(url).json(&json!({ "token": token, "data": data }));
                gate.wait().await;
                request.send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [202, 409, 422].contains(s)), "{statuses:?}");
    let listed = get_json(&server, "/v1/forms/contact/submissions", &admin.bearer()).await;
    let with_files: Vec<&Value> =
        listed["items"].as_array().unwrap().iter().filter(|s| s["attachments"].is_array()).collect();
    assert_eq!(with_files.len(), 1, "one submission holds the file");
    assert_eq!(stored_files(&deployment.data_path()), 1);
    server.stop().await;
}

#[tokio::test]
async fn an_image_sent_with_a_form_gets_a_thumbnail_from_the_images_worker() {
    use image::{GenericImageView, ImageEncoder, Rgb};
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let token = show(&server, "contact", "pl").await["token"].as_str().unwrap().to_owned();
    let pixels = image::RgbImage::from_fn(640, 320, |x, _| if x < 320 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let mut picture = Vec::new();
    image::codecs::png::PngEncoder::new(&mut picture)
        .write_image(pixels.as_raw(), 640, 320, image::ExtendedColorType::Rgb8)
        .unwrap();
    let path = started(&server, &token, "zrzut.png", picture.len()).await;
    assert_eq!(patch(&server, &path, 0, &picture).await.status(), 204);
    wait_fill_time().await;
    let accepted = submit(&server, &token, &[&id_of(&path)]).await;
    assert_eq!(accepted.status(), 202);
    let submission = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let thumb = format!("/v1/forms/contact/submissions/{submission}/files/{}/variants/thumb", id_of(&path));
    let mut answer = None;
    for _ in 0..600 {
        let response = Client::new().get(server.url(&thumb)).header("authorization", admin.bearer()).send().await;
        let response = response.unwrap();
        match response.status().as_u16() {
            503 => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            200 => {
                answer = Some(response);
                break;
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    let answer = answer.expect("the thumbnail within 30 s");
    assert_eq!(answer.headers()["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.dimensions(), (320, 160), "fits the 320 px box, proportions kept");
    let [r, _, b, _] = decoded.get_pixel(40, 80).0;
    assert!(r > 200 && b < 60, "red half on the left");
    server.stop().await;
}
