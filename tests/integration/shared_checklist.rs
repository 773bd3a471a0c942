//! The shared checklist slice (examples/shared-checklist): two people on
//! one checklist in real headless Chromium sessions against the real
//! server (an edit in one reaches the other live, a conflicting edit is
//! shown as a conflict), a read-only link in a third, the item schema kept
//! equal to the item form's, and its README run as written.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::{click, element, filled_text, filled_value, text_of, type_into, unlabelled_controls};
use crate::chromium::Chromedriver;
use crate::slices::{self, PASSWORD};
use crate::support::{Deployment, TestServer, get_json};

fn deployment() -> Deployment {
    slices::deployment("shared-checklist", ("lists", plinth_test_guests::LISTS))
}

/// The server with two people who accepted their invitations.
async fn start() -> (Deployment, TestServer) {
    let deployment = deployment();
    let invitations: Vec<String> =
        ["ada@example.com", "bo@example.com"].iter().map(|email| slices::invite(&deployment, email, "")).collect();
    let server = TestServer::start(&deployment).await;
    for (token, name) in invitations.iter().zip(["Ada", "Bo"]) {
        slices::accept(&server, token, name).await;
    }
    (deployment, server)
}

async fn sign_in(browser: &Client, server: &TestServer, who: &str) {
    browser.goto(&server.url("/lists")).await.unwrap();
    type_into(browser, "#email", &format!("{who}@example.com")).await;
    type_into(browser, "#password", PASSWORD).await;
    click(browser, "#sign-in button[type=submit]").await;
    element(browser, "#my-code").await;
}

/// The checklist's items as the page shows them.
async fn items(browser: &Client) -> Vec<String> {
    let texts = browser
        .execute("return [...document.querySelectorAll('#items li .text')].map(e => e.textContent)", vec![])
        .await
        .unwrap();
    serde_json::from_value(texts).unwrap()
}

async fn wait_for_item(browser: &Client, text: &str) {
    for _ in 0..200 {
        if items(browser).await.iter().any(|t| t == text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = browser.execute("return document.getElementById('list-status')?.textContent", vec![]).await;
    panic!(
        "`{text}` never appeared on {:?}: {:?} (status: {status:?})",
        browser.current_url().await.map(|u| u.to_string()),
        items(browser).await
    );
}

/// Adds an item through the page's add form (the item form's fields).
async fn add_item(browser: &Client, text: &str) {
    type_into(browser, "#new-text", text).await;
    click(browser, "#add-form button[type=submit]").await;
    wait_for_item(browser, text).await;
}

/// Opens the editor of the item showing `text`.
async fn edit(browser: &Client, text: &str) {
    let button = format!("//li[label[@class='text'][. = '{text}']]/button[@class='edit']");
    browser.find(Locator::XPath(&button)).await.unwrap().click().await.unwrap();
    element(browser, "#items li form.editor").await;
}

/// Replaces the text in the open editor and saves.
async fn save_text(browser: &Client, text: &str) {
    let input = element(browser, "#items li form.editor input[name=text]").await;
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    click(browser, "#items li form.editor button[type=submit]").await;
}

#[tokio::test]
async fn two_people_see_each_others_edits_live_a_conflict_is_shown_and_a_link_reads_along() {
    let (_deployment, server) = start().await;
    let bo_id = get_json(&server, "/v1/me", &slices::bearer(&server, "bo@example.com").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let driver = Chromedriver::start();
    let ada = driver.browser(&dir.path().join("ada")).await;
    let bo = driver.browser(&dir.path().join("bo")).await;
    let reader = driver.browser(&dir.path().join("reader")).await;

    let flow = async {
        sign_in(&ada, &server, "ada").await;
        type_into(&ada, "#new-title", "Groceries").await;
        click(&ada, "#new-list button[type=submit]").await;
        element(&ada, "#add-form input[name=text]").await;
        assert_eq!(unlabelled_controls(&ada).await, 0, "every control has a label");
        // The item form's checks, before anything is sent.
        click(&ada, "#add-form button[type=submit]").await;
        let error = filled_text(&ada, "#new-text-error").await;
        assert!(error.contains("is required"), "an empty item is refused by its field: {error}");
        add_item(&ada, "Milk").await;
        let list = ada.current_url().await.unwrap();
        type_into(&ada, "#grant-code", &bo_id).await;
        click(&ada, "#grant-form button[type=submit]").await;
        assert_eq!(filled_text(&ada, "#owner-status").await, "Shared.");

        sign_in(&bo, &server, "bo").await;
        bo.goto(list.as_str()).await.unwrap();
        wait_for_item(&bo, "Milk").await;
        // Wait for Bo's change stream before Ada edits.
        tokio::time::sleep(Duration::from_millis(500)).await;

        // An edit by Ada reaches Bo's page over its change stream, without
        // a reload (the fan-out's latency is measured in BENCHMARKS.md).
        add_item(&ada, "Bread").await;
        wait_for_item(&bo, "Bread").await;

        // Both edit Milk; Ada saves first, so Bo's save is a conflict.
        edit(&ada, "Milk").await;
        edit(&bo, "Milk").await;
        save_text(&ada, "Milk, 2 l").await;
        wait_for_item(&ada, "Milk, 2 l").await;
        save_text(&bo, "Oat milk").await;
        let conflict = text_of(&bo, "#items .conflict").await;
        assert!(conflict.contains("Someone else changed this item"), "{conflict}");
        assert!(conflict.contains("Now: Milk, 2 l") && conflict.contains("Yours: Oat milk"), "{conflict}");
        // Bo keeps his own, knowingly.
        bo.find(Locator::XPath("//div[@class='conflict']/button[. = 'Save mine']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_item(&bo, "Oat milk").await;
        wait_for_item(&ada, "Oat milk").await;

        // A read-only link, opened without an account, follows along.
        click(&ada, "#make-link").await;
        let link = filled_value(&ada, "#read-link").await;
        reader.goto(&link).await.unwrap();
        wait_for_item(&reader, "Bread").await;
        assert!(element(&reader, "#add").await.attr("hidden").await.unwrap().is_some(), "no editing by link");
        let boxes =
            reader.execute("return [...document.querySelectorAll('#items input')].every(i => i.disabled)", vec![]);
        assert_eq!(boxes.await.unwrap(), json!(true));
        tokio::time::sleep(Duration::from_millis(500)).await;
        add_item(&ada, "Eggs").await;
        wait_for_item(&reader, "Eggs").await;

        // A view (open items only) in a signed link, opened by Bo.
        click(&ada, "#items li input[type=checkbox]").await;
        element(&ada, "#items li.done").await;
        ada.find(Locator::Css("#show")).await.unwrap().select_by_value("open").await.unwrap();
        assert!(!items(&ada).await.contains(&"Oat milk".to_owned()), "done items are hidden");
        click(&ada, "#share-view").await;
        let view = filled_value(&ada, "#view-link").await;
        assert!(view.contains("view=v1."), "{view}");
        bo.goto(&view).await.unwrap();
        wait_for_item(&bo, "Eggs").await;
        assert_eq!(items(&bo).await, items(&ada).await, "the shared view shows the same items");

        // A video link becomes a sandboxed embed of the listed provider.
        type_into(&ada, "#video-url", "https://www.youtube.com/watch?v=dQw4w9WgXcQ").await;
        click(&ada, "#video-form button[type=submit]").await;
        let frame = element(&ada, "#video iframe").await;
        let src = frame.attr("src").await.unwrap();
        assert_eq!(src.as_deref(), Some("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"));
        assert!(frame.attr("sandbox").await.unwrap().is_some_and(|s| !s.contains("allow-top-navigation")));
        element(&bo, "#video iframe").await;
    };
    let result = tokio::time::timeout(Duration::from_secs(240), flow).await;
    for browser in [ada, bo, reader] {
        browser.close().await.unwrap();
    }
    result.expect("the browser flow finished in time");
    server.stop().await;
}

#[tokio::test]
async fn the_checklist_kinds_item_schema_is_the_item_forms() {
    let (deployment, server) = start().await;
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(deployment.config_path()).unwrap()).unwrap();
    let state = config["plugins"].as_array().unwrap().iter().find(|p| p["name"].as_str() == Some("state")).unwrap();
    let kinds: Value = serde_json::from_str(state["settings"]["kinds"].as_str().unwrap()).unwrap();
    let item = &kinds["checklists"]["schema"]["properties"]["items"]["additionalProperties"];
    let ada = slices::bearer(&server, "ada@example.com").await;
    let mut form = get_json(&server, "/v1/forms/checklist-item", &ada).await["schema"].clone();
    form.as_object_mut().unwrap().remove("$schema");
    assert_eq!(item, &form, "edit forms/checklist-item.form.json and the kind's item schema together");

    // Whatever the client, every patch is held to that schema.
    let client = reqwest::Client::new();
    let made = client
        .put(server.url("/v1/state/checklists/mine"))
        .header("authorization", &ada)
        .header("if-none-match", "*")
        .json(&json!({ "title": "Mine", "items": {}, "order": [] }))
        .send()
        .await
        .unwrap();
    let etag = made.headers()["etag"].to_str().unwrap().to_owned();
    for (bad, why) in [
        (json!({ "text": "" }), "an empty text"),
        (json!({ "text": "Milk", "colour": "red" }), "a field the form does not have"),
        (json!({ "text": "Milk", "due": "next week" }), "a date that is not one"),
    ] {
        let patched = client
            .patch(server.url("/v1/state/checklists/mine"))
            .header("authorization", &ada)
            .header("if-match", &etag)
            .header("content-type", "application/json-patch+json")
            .json(&json!([{ "op": "add", "path": "/items/a1", "value": bad }, { "op": "add", "path": "/order/-", "value": "a1" }]))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 422, "{why}");
    }
    server.stop().await;
}

#[test]
fn the_shared_checklist_readme_runs_as_written() {
    let stdout = slices::run_readme("shared-checklist");
    assert!(stdout.contains(r#""title":"Groceries""#), "created: {stdout}");
    assert!(
        stdout.contains("validation_failed") && stdout.contains("Co"),
        "the item form's check, in Polish: {stdout}"
    );
    assert!(stdout.contains(r#""access":"write""#), "shared: {stdout}");
    assert!(stdout.contains("Oat milk"), "Bo's edit: {stdout}");
    assert!(stdout.contains("\n412\n"), "Ada's stale edit refused: {stdout}");
    assert!(stdout.contains("\n404\n"), "the revoked link: {stdout}");
    assert!(stdout.contains("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"), "the embed: {stdout}");
    assert!(stdout.contains("embed_refused"), "an unlisted host: {stdout}");
}
