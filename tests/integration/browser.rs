//! The forms plugin's pages in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`, which `make test` installs), driven
//! over WebDriver: a person fills the form, sends it with a mistake, sees
//! the error by its field with the other answers kept, fixes it, sends it
//! again and reads the thanks, in Polish and in Arabic (right to left).

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::chromium::Chromedriver;
use crate::forms;
use crate::support::{TestServer, sign_in};

/// The element, waited for: after a click the next page may still be loading.
pub async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
        Ok(found) => found,
        Err(e) => panic!("{css}: {e}\n{}", browser.source().await.unwrap_or_default()),
    }
}

pub async fn text_of(browser: &Client, css: &str) -> String {
    element(browser, css).await.text().await.unwrap()
}

/// The text of `css` once the page has put some there.
pub async fn filled_text(browser: &Client, css: &str) -> String {
    for _ in 0..400 {
        let text = text_of(browser, css).await;
        if !text.is_empty() {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{css} stayed empty");
}

/// The value of the input `css` once the page has put one there (the
/// input may exist, empty, before the request that fills it is answered).
pub async fn filled_value(browser: &Client, css: &str) -> String {
    for _ in 0..400 {
        let value = element(browser, css).await.prop("value").await.unwrap().unwrap_or_default();
        if !value.is_empty() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{css} stayed empty");
}

pub async fn attribute(browser: &Client, css: &str, name: &str) -> Option<String> {
    element(browser, css).await.attr(name).await.unwrap()
}

pub async fn type_into(browser: &Client, css: &str, text: &str) {
    let input = element(browser, css).await;
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

pub async fn click(browser: &Client, css: &str) {
    element(browser, css).await.click().await.unwrap();
}

/// Every visible control has a label.
pub async fn unlabelled_controls(browser: &Client) -> u64 {
    let script = "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !e.closest('[hidden]') && !(e.labels && e.labels.length)).length";
    browser.execute(script, vec![]).await.unwrap().as_u64().unwrap()
}

/// The form in `locale`: a wrong address and no consent, then fixed.
async fn fill_wrong_then_right(browser: &Client, server: &TestServer, locale: &str, expected: &Expected) {
    browser.goto(&server.url(&format!("/forms/contact?locale={locale}"))).await.unwrap();
    assert_eq!(attribute(browser, "html", "lang").await.as_deref(), Some(locale));
    assert_eq!(attribute(browser, "html", "dir").await.as_deref(), Some(expected.dir));
    assert_eq!(text_of(browser, "h1").await, expected.title);
    assert_eq!(unlabelled_controls(browser).await, 0, "every control has a label");
    type_into(browser, "#f-name", "Ada Lovelace").await;
    type_into(browser, "#f-email", "ada@").await;
    click(browser, "#f-topic-1").await;
    type_into(browser, "#f-message", expected.message).await;
    // The form's minimum fill time (1 s in this deployment) must pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    click(browser, "button[type=submit]").await;

    let error = text_of(browser, "#f-email-error").await;
    assert!(error.contains(expected.email_error), "{error}");
    assert!(text_of(browser, "#f-consent-error").await.contains(expected.required), "consent is required");
    assert_eq!(attribute(browser, "#f-email", "aria-invalid").await.as_deref(), Some("true"));
    assert_eq!(attribute(browser, "#f-name", "value").await.as_deref(), Some("Ada Lovelace"), "answers kept");
    assert!(element(browser, "#f-topic-1").await.is_selected().await.unwrap(), "choice kept");
    let summary = text_of(browser, "#form-errors").await;
    assert!(summary.contains(expected.email_error), "the summary lists the errors: {summary}");
    let focused = browser.execute("return document.activeElement.id", vec![]).await.unwrap();
    assert_eq!(focused, json!("form-errors"), "the error summary takes the focus");

    type_into(browser, "#f-email", "ada@example.com").await;
    click(browser, "#f-consent").await;
    click(browser, "button[type=submit]").await;
    let thanks = text_of(browser, "p[role=status]").await;
    assert_eq!(thanks, expected.thanks);
    let url = browser.current_url().await.unwrap();
    assert_eq!(url.path(), "/forms/contact/sent");
}

struct Expected {
    dir: &'static str,
    title: &'static str,
    message: &'static str,
    email_error: &'static str,
    required: &'static str,
    thanks: &'static str,
}

#[tokio::test]
async fn a_person_fills_the_form_in_chromium_fixes_a_mistake_and_sends_it_in_two_locales() {
    let (deployment, dir) = forms::deployment(forms::LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let driver = Chromedriver::start();
    let browser = driver.browser(&dir.join("chromium-profile")).await;
    let polish = Expected {
        dir: "ltr",
        title: "Napisz do nas",
        message: "Dzień dobry!\nMam pytanie.",
        email_error: "nie zawiera poprawnego adresu e-mail",
        required: "jest wymagane",
        thanks: "Dziękujemy. Otrzymaliśmy Twoją wiadomość.",
    };
    let arabic = Expected {
        dir: "rtl",
        title: "اتصل بنا",
        message: "مرحبًا",
        email_error: "ليس عنوان بريد إلكتروني صالحًا",
        required: "مطلوب",
        thanks: "شكرًا لك. لقد تلقينا رسالتك.",
    };
    let outcome = async {
        fill_wrong_then_right(&browser, &server, "pl", &polish).await;
        fill_wrong_then_right(&browser, &server, "ar", &arabic).await;
    };
    // The browser is closed whatever happened.
    let result = tokio::time::timeout(Duration::from_secs(120), outcome).await;
    browser.close().await.unwrap();
    result.expect("the browser flow finished in time");

    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let items = forms::submissions(&server, &admin).await;
    let locales: Vec<&str> = items.iter().map(|i| i["locale"].as_str().unwrap()).collect();
    assert_eq!(locales, ["pl", "ar"], "one submission each, nothing from the refused tries");
    assert_eq!(items[0]["data"]["message"], "Dzień dobry!\nMam pytanie.", "line breaks as typed");
    assert_eq!(items[0]["data"]["topic"], "bug");
    server.stop().await;
}
