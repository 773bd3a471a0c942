//! The feedback desk slice (examples/feedback-desk): its pages in a real
//! headless Chromium against the real server, and its README run as
//! written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::{attribute, click, element, text_of, type_into, unlabelled_controls};
use crate::chromium::Chromedriver;
use crate::support::{Deployment, TestServer, plinth_cli};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const DESK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/feedback-desk");
const ADMIN: &str = "admin@example.com";
const PASSWORD: &str = "velvet lantern orchard";

/// examples/feedback-desk/plinth.toml and its policies, with the
/// components built for tests and absolute paths to its files.
fn deployment() -> Deployment {
    let config = std::fs::read_to_string(format!("{DESK}/plinth.toml"))
        .unwrap()
        .replace("../../target/plugins/accounts.wasm", plinth_test_guests::ACCOUNTS)
        .replace("../../target/plugins/state.wasm", plinth_test_guests::STATE)
        .replace("../../target/plugins/forms.wasm", plinth_test_guests::FORMS)
        .replace("../../target/plugins/images.wasm", plinth_test_guests::IMAGES)
        .replace("../../target/plugins/exports.wasm", plinth_test_guests::EXPORTS)
        .replace("../../target/plugins/desk.wasm", plinth_test_guests::DESK)
        .replace("\"../../plugins/forms/locales\"", &format!("{:?}", format!("{ROOT}/plugins/forms/locales")))
        .replace("\"forms/locales\"", &format!("{:?}", format!("{DESK}/forms/locales")))
        .replace("assets = \"forms\"", &format!("assets = {:?}", format!("{DESK}/forms")))
        .replace("policies = \"policies.toml\"", "policies = \"policies/routes.toml\"")
        .replace("path = \"../../data/feedback-desk\"", "path = \"data\"")
        .replace("source = \"desk\"", &format!("source = {:?}", format!("{DESK}/desk")));
    let policy = std::fs::read_to_string(format!("{DESK}/policies.toml")).unwrap();
    Deployment::with_policy(&config, &policy)
}

/// Invites the admin from the command line (the server stopped), as the
/// README does; the invitation's token.
fn invite(deployment: &Deployment) -> String {
    let config = deployment.config_path();
    let (ok, stdout, stderr) =
        plinth_cli(&["admin", "invite", "--config", config.to_str().unwrap(), "--email", ADMIN, "--roles", "admin"]);
    assert!(ok, "{stderr}");
    let start = stdout.find("token=").expect("the invitation carries its link") + "token=".len();
    stdout[start..].chars().take_while(char::is_ascii_hexdigit).collect()
}

async fn accept(server: &TestServer, token: &str) {
    let accepted = reqwest::Client::new()
        .post(server.url("/v1/accounts/accept-invite"))
        .json(&json!({ "token": token, "password": PASSWORD, "display_name": "Desk admin" }))
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success(), "{}", accepted.text().await.unwrap());
}

async fn bearer(server: &TestServer) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/v1/sessions/token"))
        .json(&json!({ "email": ADMIN, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    format!("Bearer {}", response.json::<Value>().await.unwrap()["token"].as_str().unwrap())
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
        let attached = text_of(browser, "[data-file-field] li span").await;
        assert!(attached.contains("zrzut-ekranu.png"), "{attached}");
        element(browser, "[data-file-field] li input[type=hidden][name=screenshots]").await;
        let done = text_of(browser, "[data-file-field] li span").await;
        assert_eq!(done, "Dołączono zrzut-ekranu.png.");
    }
    // The form's minimum fill time (3 s) must pass.
    tokio::time::sleep(Duration::from_millis(3100)).await;
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
    let token = invite(&deployment);
    let server = TestServer::start(&deployment).await;
    accept(&server, &token).await;
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
    let authorization = bearer(&server).await;
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
    use std::os::unix::process::CommandExt;
    let readme = std::fs::read_to_string(format!("{DESK}/README.md")).unwrap();
    let mut script = String::from("set -euo pipefail\n");
    let mut in_block = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" if in_block => in_block = false,
            _ if in_block => script.push_str(&format!("{line}\n")),
            _ => {}
        }
    }
    assert!(script.contains("make feedback-desk") && script.contains("send.py"), "{script}");
    // The README's data directory, moved to a fresh one.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/feedback-desk");
    let script = script.replace("data/feedback-desk", data.to_str().unwrap());
    let plinth = Path::new(env!("CARGO_BIN_EXE_plinth"));
    let path = format!("{}:{}", plinth.parent().unwrap().display(), std::env::var("PATH").unwrap());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    // Output goes to files: the server and receiver the README starts in
    // the background hold whatever the script's output was.
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = std::process::Command::new("timeout")
        .args(["900", "bash", "-c", &script])
        .current_dir(ROOT)
        .env("PATH", path)
        .process_group(0)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let group = child.id().to_string();
    let status = child.wait().unwrap();
    // The server and the receiver the README left running.
    let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).status();
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let log = std::fs::read_to_string(dir.path().join("data/feedback-desk.log")).unwrap_or_default();
    assert!(
        status.success(),
        "the README failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{log}"
    );
    assert_eq!(stdout.matches("202 {").count(), 2, "two submissions: {stdout}");
    assert!(stdout.contains("The export button does nothing"), "the filtered listing: {stdout}");
    assert!(stdout.contains("\"handled\":true") || stdout.contains("\"handled\": true"), "the mark: {stdout}");
    assert!(stdout.contains("export done\nid,submitted_at"), "the CSV, after its header: {stdout}");
    assert_eq!(stdout.matches("verified form.submitted").count(), 2, "the webhook, verified: {stdout}");
}
