//! The feedback desk slice (examples/feedback-desk): its pages in a real
//! headless Chromium against the real server, and its README run as
//! written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{attribute, click, element, filled_text, text_of, type_into, unlabelled_controls};
use crate::chromium::Chromedriver;
use crate::slices::{self, PASSWORD};
use crate::support::{Deployment, TestServer};

const ADMIN: &str = "admin@example.com";

fn deployment() -> Deployment {
    slices::deployment("feedback-desk", ("desk", plinth_test_guests::DESK))
}

/// A 1200×800 PNG screenshot carrying a text chunk that names a place,
/// as metadata a person would not want passed on.
fn screenshot(dir: &Path) -> PathBuf {
    let pixels: Vec<u8> =
        (0..800u32).flat_map(|y| (0..1200u32).flat_map(move |x| [(x % 256) as u8, (y % 256) as u8, 90])).collect();
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, 1200, 800);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.add_text_chunk("Location".into(), "Krakow, Rynek Glowny 1".into()).unwrap();
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    let path = dir.join("zrzut-ekranu.png");
    std::fs::write(&path, png).unwrap();
    path
}

/// Sends the feedback form in `browser` in Polish, with `attachment`.
async fn send_feedback(browser: &Client, server: &TestServer, topic: usize, message: &str, attachment: Option<&Path>) {
    browser.goto(&server.url("/forms/feedback?locale=pl")).await.unwrap();
    assert_eq!(attribute(browser, "html", "lang").await.as_deref(), Some("pl"));
    assert_eq!(text_of(browser, "h1").await, "Powiedz nam, co myślisz");
    assert_eq!(unlabelled_controls(browser).await, 0, "every control has a label");
    click(browser, &format!("#f-topic-{topic}")).await;
    type_into(browser, "#f-message", message).await;
    if let Some(path) = attachment {
        let input = element(browser, "#f-screenshots:not([disabled])").await;
        input.send_keys(path.to_str().unwrap()).await.unwrap();
        let attached = filled_text(browser, "[data-file-field] li span").await;
        assert!(attached.contains("zrzut-ekranu.png"), "{attached}");
        element(browser, "[data-file-field] li input[type=hidden][name=screenshots]").await;
        let done = text_of(browser, "[data-file-field] li span").await;
        assert_eq!(done, "Dołączono zrzut-ekranu.png.");
    }
    // The form's minimum fill time (3 s) must pass.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    if attachment.is_some() {
        // Sent once without its message: the page comes back with the
        // error, the screenshot still attached, its script answering a new
        // challenge (the first post used the first).
        let typed = element(browser, "#f-message").await;
        typed.clear().await.unwrap();
        click(browser, "button[type=submit]").await;
        element(browser, "#f-message-error").await;
        let kept = text_of(browser, "[data-file-field] li span").await;
        assert_eq!(kept, "zrzut-ekranu.png");
        element(browser, "[data-file-field] li input[type=hidden][name=screenshots]").await;
        element(browser, "#f-screenshots:not([disabled])").await;
        type_into(browser, "#f-message", message).await;
    }
    click(browser, "button[type=submit]").await;
    let thanks = text_of(browser, "p[role=status]").await;
    assert_eq!(thanks, "Dziękujemy. Otrzymaliśmy Twoją wiadomość.", "{}", browser.source().await.unwrap());
}

async fn sign_in_to_desk(browser: &Client, server: &TestServer) {
    browser.goto(&server.url("/desk")).await.unwrap();
    type_into(browser, "#email", ADMIN).await;
    type_into(browser, "#password", PASSWORD).await;
    click(browser, "#sign-in button[type=submit]").await;
    element(browser, "#inbox").await;
}

/// The inbox's rows once it has loaded: (message, topic) each.
async fn rows(browser: &Client) -> Vec<(String, String)> {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//p[@id='inbox-status'][contains(., 'shown') or contains(., 'No submissions')]"))
        .await
        .unwrap();
    let script = "return [...document.querySelectorAll('#inbox tbody tr')]
        .map(r => [r.querySelector('td.message').textContent, r.children[2].textContent])";
    let rows = browser.execute(script, vec![]).await.unwrap();
    serde_json::from_value(rows).unwrap()
}

async fn wait_for(browser: &Client, script: &str, what: &str) {
    for _ in 0..600 {
        if browser.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened:\n{}", browser.source().await.unwrap_or_default());
}

#[tokio::test]
async fn a_polish_screenshot_reaches_the_inbox_and_a_shared_view_shows_the_same_rows() {
    let deployment = deployment();
    let token = slices::invite(&deployment, ADMIN, "admin");
    let server = TestServer::start(&deployment).await;
    slices::accept(&server, &token, "Desk admin").await;
    let dir = tempfile::tempdir().unwrap();
    let picture = screenshot(dir.path());
    let driver = Chromedriver::start();
    let visitor = driver.browser(&dir.path().join("visitor")).await;
    let admin = driver.browser(&dir.path().join("admin")).await;
    let colleague = driver.browser(&dir.path().join("colleague")).await;

    let flow = async {
        send_feedback(&visitor, &server, 0, "Przycisk eksportu nic nie robi", Some(&picture)).await;
        send_feedback(&visitor, &server, 1, "Ciemny motyw, proszę", None).await;

        sign_in_to_desk(&admin, &server).await;
        let all = rows(&admin).await;
        assert_eq!(all.len(), 2, "both are open: {all:?}");
        assert_eq!(all[0], ("Przycisk eksportu nic nie robi".to_owned(), "Something does not work".to_owned()));
        wait_for(
            &admin,
            "const i = document.querySelector('td.files img'); return !!i && i.complete && i.naturalWidth > 0",
            "the thumbnail",
        )
        .await;
        let size = admin
            .execute(
                "const i = document.querySelector('td.files img'); return [i.naturalWidth, i.naturalHeight]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(size, json!([240, 160]), "the 240 px thumbnail of a 1200×800 screenshot");

        // A filter: only problems. Its view goes into a signed link.
        admin.find(Locator::Css("#topic")).await.unwrap().select_by_value("problem").await.unwrap();
        click(&admin, "#filters button[type=submit]").await;
        wait_for(&admin, "return location.search.startsWith('?view=v1.')", "the view's link").await;
        let filtered = rows(&admin).await;
        assert_eq!(filtered.len(), 1, "{filtered:?}");
        let link = element(&admin, "#share-link").await.prop("value").await.unwrap().unwrap();
        assert!(link.contains("/desk?view=v1."), "{link}");

        sign_in_to_desk(&colleague, &server).await;
        colleague.goto(&link).await.unwrap();
        assert_eq!(rows(&colleague).await, filtered, "the shared link shows the same view");
        let topic = element(&colleague, "#topic").await.prop("value").await.unwrap();
        assert_eq!(topic.as_deref(), Some("problem"), "the filter's controls show the view");

        // Handled, by one admin; the other's stale checkbox is a conflict.
        click(&admin, "#inbox tbody input[type=checkbox]").await;
        wait_for(&admin, "return !!document.querySelector('#inbox tbody tr.handled')", "the mark").await;
        click(&colleague, "#inbox tbody input[type=checkbox]").await;
        let conflict = text_of(&colleague, "#inbox .conflict").await;
        assert!(conflict.contains("Someone else changed this meanwhile: it is handled."), "{conflict}");
        assert!(element(&colleague, "#inbox tbody input[type=checkbox]").await.is_selected().await.unwrap());
    };
    let result = tokio::time::timeout(Duration::from_secs(240), flow).await;
    for browser in [visitor, admin, colleague] {
        browser.close().await.unwrap();
    }
    result.expect("the browser flow finished in time");

    // What the admins saw is what is stored: the large copy has no metadata.
    let authorization = slices::bearer(&server, ADMIN).await;
    let listed = crate::support::get_json(&server, "/v1/forms/feedback/submissions", &authorization).await;
    let first = &listed["items"][0];
    assert_eq!(first["locale"], "pl");
    let file = &first["attachments"][0];
    let large = reqwest::Client::new()
        .get(server.url(&format!(
            "/v1/forms/feedback/submissions/{}/files/{}/variants/large",
            first["id"].as_str().unwrap(),
            file["id"].as_str().unwrap()
        )))
        .header("authorization", &authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(large.status(), 200);
    let bytes = large.bytes().await.unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"Krakow"), "the large copy carries no text chunk");
    let original = std::fs::read(&picture).unwrap();
    assert!(original.windows(6).any(|w| w == b"Krakow"), "while the screenshot sent did");
    let marks = crate::support::get_json(&server, "/v1/state/marks?scope=all", &authorization).await;
    assert_eq!(marks["items"][0]["document"], json!({ "handled": true }));
    server.stop().await;
}

#[test]
fn the_feedback_desk_readme_runs_as_written() {
    let stdout = slices::run_readme("feedback-desk");
    assert_eq!(stdout.matches("202 {").count(), 2, "two submissions: {stdout}");
    assert!(stdout.contains("The export button does nothing"), "the filtered listing: {stdout}");
    assert!(stdout.contains("\"handled\":true") || stdout.contains("\"handled\": true"), "the mark: {stdout}");
    assert!(stdout.contains("export done\nid,submitted_at"), "the CSV, after its header: {stdout}");
    assert_eq!(stdout.matches("verified form.submitted").count(), 2, "the webhook, verified: {stdout}");
}
