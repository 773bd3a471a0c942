//! The forms plugin in the real server, as examples/plinth.toml deploys it:
//! definitions shipped as files and published over the API, localized
//! (Polish and Arabic plurals), validated by the host's schema check,
//! quiet spam controls, idempotent submissions, the version window, the
//! localization lint refusing a reload, and webhooks delivered by the host
//! to a receiver that verifies them with the Standard Webhooks library.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{
    Deployment, SignedIn, TestServer, assert_error, eventually, example_deployment, get_json, plinth_cli, sign_in,
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The example deployment with the forms plugin's messages and the example
/// forms copied beside the config (so a test may break them), the contact
/// form's minimum fill time cut to 1 s and its daily quota set to 1,300,
/// and `form_submit` limits set.
pub fn deployment(form_submit: &str) -> (Deployment, PathBuf) {
    let deployment = example_deployment("");
    let dir = deployment.config_path().parent().unwrap().to_owned();
    copy_dir(&Path::new(ROOT).join("plugins/forms/locales"), &dir.join("forms-messages"));
    copy_dir(&Path::new(ROOT).join("examples/forms"), &dir.join("forms"));
    let contact = dir.join("forms/contact.form.json");
    let text = std::fs::read_to_string(&contact)
        .unwrap()
        .replace("\"min_fill_seconds\": 3", "\"min_fill_seconds\": 1")
        .replace("\"max_per_day\": 1000", "\"max_per_day\": 1300");
    std::fs::write(&contact, text).unwrap();
    let config = std::fs::read_to_string(deployment.config_path())
        .unwrap()
        .replace(&format!("{:?}", format!("{ROOT}/plugins/forms/locales")), "\"forms-messages\"")
        .replace(&format!("{:?}", format!("{ROOT}/examples/forms/locales")), "\"forms/locales\"")
        .replace(&format!("{:?}", format!("{ROOT}/examples/forms")), "\"forms\"");
    std::fs::write(deployment.config_path(), format!("{config}\n{form_submit}")).unwrap();
    (deployment, dir)
}

pub const LOOSE_FORM_SUBMIT: &str = "[rate_limits.classes.form_submit]\nper_address = \"100000/min\"\n";

pub async fn show(server: &TestServer, form: &str, locale: &str) -> Value {
    let response = reqwest::Client::new()
        .get(server.url(&format!("/v1/forms/{form}")))
        .header("accept-language", locale)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-language"], locale);
    response.json().await.unwrap()
}

pub async fn post(server: &TestServer, path: &str, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(server.url(path)).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

pub fn contact() -> Value {
    json!({ "name": "Ada", "email": "ada@example.com", "topic": "question", "message": "Hello", "consent": true })
}

pub async fn wait_fill_time() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

/// `PUT /v1/admin/forms/{id}` as `admin`, with one precondition header.
async fn publish(
    server: &TestServer,
    admin: &SignedIn,
    id: &str,
    definition: &Value,
    precondition: (&str, &str),
) -> reqwest::Response {
    reqwest::Client::new()
        .put(server.url(&format!("/v1/admin/forms/{id}")))
        .header("authorization", admin.bearer())
        .header(precondition.0, precondition.1)
        .json(definition)
        .send()
        .await
        .unwrap()
}

/// The audit log as `admin` reads it, as text.
pub async fn audit_log(server: &TestServer, admin: &SignedIn) -> String {
    let url = server.url("/admin/audit?limit=1000");
    let response = reqwest::Client::new().get(url).header("authorization", admin.bearer()).send().await.unwrap();
    response.text().await.unwrap()
}

pub async fn submissions(server: &TestServer, admin: &SignedIn) -> Vec<Value> {
    let response = reqwest::Client::new()
        .get(server.url("/v1/forms/contact/submissions?limit=100"))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_form_is_shown_and_its_errors_worded_in_the_negotiated_locale_with_each_languages_plurals() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let polish = show(&server, "contact", "pl").await;
    assert_eq!((polish["locale"].clone(), polish["dir"].clone()), (json!("pl"), json!("ltr")));
    assert_eq!(polish["texts"]["contact-title"], "Napisz do nas");
    assert_eq!(polish["errors"]["/name"]["maxLength"], "Pole „Imię i nazwisko” może mieć najwyżej 80 znaków.");
    let arabic = reqwest::get(server.url("/v1/forms/contact?locale=ar")).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!((arabic["locale"].clone(), arabic["dir"].clone()), (json!("ar"), json!("rtl")));
    assert_eq!(arabic["errors"]["/name"]["maxLength"], "«اسمك»: 80 حرفًا على الأكثر.", "no bidi marks around $label");
    let fallback = show(&server, "contact", "en").await;
    assert_eq!(fallback["texts"]["contact-title"], "Contact us");
    let german = reqwest::Client::new()
        .get(server.url("/v1/forms/contact"))
        .header("accept-language", "de-DE, pl;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(german.headers()["content-language"], "pl", "the best enabled locale the client accepts");

    // Each plural form: a form published with limits 1, 2, 3 and 11.
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let field =
        |name: &str, limit: u32| json!({ "name": name, "type": "text", "label": "contact-name", "max_length": limit });
    let limits = json!({ "id": "limits", "title": "contact-title",
        "fields": [field("a", 1), field("b", 2), field("c", 3), field("d", 11)] });
    assert_eq!(publish(&server, &admin, "limits", &limits, ("if-none-match", "*")).await.status(), 201);
    let too_long = json!({ "data": { "a": "xx", "b": "xxx", "c": "xxxx", "d": "x".repeat(12) } });
    let worded = |locale: &'static str| {
        let (server, too_long) = (&server, &too_long);
        async move {
            let refused = post(server, &format!("/v1/forms/limits/validate?locale={locale}"), too_long, &[]).await;
            let body = assert_error(refused, 422, "validation_failed").await;
            let fields = body["error"]["fields"].as_array().unwrap().clone();
            fields.iter().map(|f| f["message"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        worded("pl").await,
        [
            "Pole „Imię i nazwisko” może mieć najwyżej 1 znak.",
            "Pole „Imię i nazwisko” może mieć najwyżej 2 znaki.",
            "Pole „Imię i nazwisko” może mieć najwyżej 3 znaki.",
            "Pole „Imię i nazwisko” może mieć najwyżej 11 znaków.",
        ]
    );
    assert_eq!(
        worded("ar").await,
        [
            "«اسمك»: حرف واحد على الأكثر.",
            "«اسمك»: حرفان على الأكثر.",
            "«اسمك»: 3 أحرف على الأكثر.",
            "«اسمك»: 11 حرفًا على الأكثر."
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn submissions_are_validated_stored_with_their_version_and_read_by_admins_only() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let shown = show(&server, "contact", "pl").await;
    let token = shown["token"].as_str().unwrap();
    wait_fill_time().await;
    let mut bad = contact();
    bad["email"] = json!("not an address");
    bad["topic"] = json!("other");
    bad["extra"] = json!(true);
    let refused = post(
        &server,
        "/v1/forms/contact/submissions",
        &json!({ "token": token, "data": bad }),
        &[("accept-language", "pl")],
    )
    .await;
    let body = assert_error(refused, 422, "validation_failed").await;
    let mut codes: Vec<(String, String)> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f["code"].as_str().unwrap().to_owned()))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("/email".to_owned(), "format".to_owned()), ("/extra".to_owned(), "additionalProperties".to_owned())]
    );
    let mut needs_rule = contact();
    needs_rule["topic"] = json!("other");
    let rule =
        post(&server, "/v1/forms/contact/submissions", &json!({ "token": token, "data": needs_rule }), &[]).await;
    let body = assert_error(rule, 422, "validation_failed").await;
    assert_eq!(body["error"]["fields"][0]["code"], "other_topic_needed", "the rule runs once the schema is met");
    assert_eq!(body["error"]["fields"][0]["message"], "Tell us what it is about.");

    let accepted =
        post(&server, "/v1/forms/contact/submissions", &json!({ "token": token, "data": contact() }), &[]).await;
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let stored = submissions(&server, &admin).await;
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0]["id"].as_str(), stored[0]["version"].clone()), (Some(id.as_str()), json!(1)));
    assert_eq!(stored[0]["locale"], "en");
    let user = sign_in(&server.url(""), "ada", &[], None).await;
    let denied = reqwest::Client::new()
        .get(server.url(&format!("/v1/forms/contact/submissions/{id}")))
        .header("authorization", user.bearer())
        .send()
        .await
        .unwrap();
    assert_error(denied, 403, "forbidden").await;
    let anonymous = reqwest::get(server.url("/v1/forms/contact/submissions")).await.unwrap();
    assert_eq!(anonymous.status(), 401, "the edge's policy asks for a session first");
    let erased = reqwest::Client::new()
        .delete(server.url(&format!("/v1/forms/contact/submissions/{id}")))
        .header("authorization", admin.bearer())
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 204);
    assert_eq!(submissions(&server, &admin).await.len(), 0);
    let audit = audit_log(&server, &admin).await;
    assert!(audit.contains("form.submission_erased"), "{audit}");
    server.stop().await;
}

#[tokio::test]
async fn spam_is_dropped_quietly_and_an_idempotency_key_stores_one_submission_even_when_raced() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let token = show(&server, "contact", "en").await["token"].as_str().unwrap().to_owned();
    let too_fast =
        post(&server, "/v1/forms/contact/submissions", &json!({ "token": token, "data": contact() }), &[]).await;
    assert_eq!(too_fast.status(), 202, "a bot that submits at once is answered as if accepted");
    wait_fill_time().await;
    let mut filled = contact();
    filled["website"] = json!("https://spam.example");
    let honeypot =
        post(&server, "/v1/forms/contact/submissions", &json!({ "token": token, "data": filled }), &[]).await;
    assert_eq!(honeypot.status(), 202);
    assert!(honeypot.json::<Value>().await.unwrap()["id"].as_str().is_some_and(|id| id.len() > 14));
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    assert_eq!(submissions(&server, &admin).await.len(), 0, "neither was stored");

    let body = json!({ "token": token, "data": contact() });
    let same_key = [("idempotency-key", "order-7")];
    // Eight requests with one key at once, on eight connections.
    let raced: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (server.url("/v1/forms/contact/submissions"), body.clone());
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .header("idempotency-key", "order-7")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for answer in raced {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].clone());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "every answer names one submission: {ids:?}");
    assert_eq!(submissions(&server, &admin).await.len(), 1);
    let mut other = body.clone();
    other["data"]["message"] = json!("Another message");
    let reused = post(&server, "/v1/forms/contact/submissions", &other, &same_key).await;
    assert_error(reused, 422, "idempotency_key_reused").await;
    let audit = audit_log(&server, &admin).await;
    assert_eq!(audit.matches("form.spam").count(), 2, "{audit}");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_code_and_nothing_stored() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let token = show(&server, "contact", "en").await["token"].as_str().unwrap().to_owned();
    let path = "/v1/forms/contact/submissions";
    let form_post = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "text/plain")
        .body(json!({ "token": token, "data": contact() }).to_string())
        .send()
        .await
        .unwrap();
    assert_error(form_post, 415, "unsupported_media_type").await;
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let nested = post(&server, path, &json!({ "token": token, "data": { "message": deep } }), &[]).await;
    assert_error(nested, 422, "invalid_body").await;
    let unknown = post(&server, path, &json!({ "token": token, "data": contact(), "admin": true }), &[]).await;
    assert_error(unknown, 422, "invalid_body").await;
    let huge = post(&server, path, &json!({ "token": token, "data": { "message": "x".repeat(300_000) } }), &[]).await;
    assert_eq!(huge.status(), 413);
    let forged = post(&server, path, &json!({ "token": "v1.0.e30.AAAA", "data": contact() }), &[]).await;
    assert_error(forged, 403, "invalid_render_token").await;
    let limits_token = {
        let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
        let other = json!({ "id": "other", "title": "contact-title",
                            "fields": [ { "name": "a", "type": "text", "label": "contact-name" } ] });
        assert_eq!(publish(&server, &admin, "other", &other, ("if-none-match", "*")).await.status(), 201);
        show(&server, "other", "en").await["token"].as_str().unwrap().to_owned()
    };
    let crossed = post(&server, path, &json!({ "token": limits_token, "data": contact() }), &[]).await;
    assert_error(crossed, 403, "render_token_mismatch").await;
    let missing = reqwest::get(server.url("/v1/forms/nope")).await.unwrap();
    assert_error(missing, 404, "form_not_found").await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    assert_eq!(submissions(&server, &admin).await.len(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_published_version_replaces_the_last_which_is_taken_for_its_window() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let survey_as = async |definition: Value, precondition: (&str, &str)| {
        publish(&server, &admin, "survey", &definition, precondition).await
    };
    let survey = |max: u32| {
        json!({ "id": "survey", "title": "contact-title",
                "fields": [ { "name": "answer", "type": "text", "label": "contact-message", "required": true, "max_length": max } ],
                "settings": { "accept_previous_seconds": 3600 } })
    };
    let first = survey_as(survey(10), ("if-none-match", "*")).await;
    assert_eq!((first.status().as_u16(), first.headers()["etag"].to_str().unwrap()), (201, "\"1\""));
    let v1 = show(&server, "survey", "en").await["token"].as_str().unwrap().to_owned();
    let second = survey_as(survey(3), ("if-match", "\"1\"")).await;
    assert_eq!(second.status(), 200);
    let stale = survey_as(survey(4), ("if-match", "\"1\"")).await;
    assert_error(stale, 412, "precondition_failed").await;
    let old =
        post(&server, "/v1/forms/survey/submissions", &json!({ "token": v1, "data": { "answer": "sure thing" } }), &[])
            .await;
    let accepted: Value = old.json().await.unwrap();
    assert_eq!(accepted["version"], 1, "validated against version 1 (10 characters), not 2 (3)");
    let v2 = show(&server, "survey", "en").await["token"].as_str().unwrap().to_owned();
    let new =
        post(&server, "/v1/forms/survey/submissions", &json!({ "token": v2, "data": { "answer": "sure thing" } }), &[])
            .await;
    assert_error(new, 422, "validation_failed").await;
    let mut unknown_key = survey(5);
    unknown_key["fields"][0]["label"] = json!("survey-question");
    let refused = survey_as(unknown_key, ("if-match", "\"2\"")).await;
    let body = assert_error(refused, 422, "messages_missing").await;
    let problems: Vec<&str> =
        body["error"]["problems"].as_array().unwrap().iter().map(|p| p["message"].as_str().unwrap()).collect();
    assert_eq!(problems.len(), 3, "one per locale: {problems:?}");
    let shipped = survey_as(json!({}), ("if-none-match", "*")).await;
    assert_eq!(shipped.status(), 422, "an empty definition is refused whole");
    let contact = publish(&server, &admin, "contact", &survey(3), ("if-none-match", "*")).await;
    assert_error(contact, 409, "form_defined_in_config").await;
    server.stop().await;
}

#[tokio::test]
async fn a_missing_translation_refuses_the_reload_naming_file_key_and_locale_and_the_old_deployment_serves_on() {
    let (deployment, dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let polish = dir.join("forms/locales/pl/contact.ftl");
    let text = std::fs::read_to_string(&polish).unwrap();
    let without = text.lines().filter(|l| !l.starts_with("contact-email =")).collect::<Vec<_>>().join("\n");
    std::fs::write(&polish, format!("{without}\n")).unwrap();
    let (ok, stdout, _) = plinth_cli(&["forms", "lint", "--config", deployment.config_path().to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("pl/contact.ftl: locale `pl`: message `contact-email`: is missing"), "{stdout}");
    let reload = reqwest::Client::new()
        .post(server.url("/admin/reload"))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_ne!(reload.status(), 200);
    let report = reload.text().await.unwrap();
    assert!(report.contains("contact-email") && report.contains("`pl`") && report.contains("contact.ftl"), "{report}");
    let still = show(&server, "contact", "pl").await;
    assert_eq!(still["texts"]["contact-email"], "Adres e-mail", "the running deployment keeps its messages");
    std::fs::write(&polish, text).unwrap();
    let (ok, stdout, _) = plinth_cli(&["forms", "lint", "--config", deployment.config_path().to_str().unwrap()]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("plugin `forms`: messages, 1 form definition(s)"), "{stdout}");
    server.stop().await;
}

#[tokio::test]
async fn form_submissions_have_their_own_rate_limit_class() {
    let (deployment, _dir) = deployment("");
    let server = TestServer::start(&deployment).await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let response = post(&server, "/v1/forms/contact/submissions", &json!({ "token": "x", "data": {} }), &[]).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..10], [403; 10], "refused by the plugin: a bad token");
    assert_eq!(statuses[10], 429, "the 11th in a minute, by the form_submit class (10/min per address)");
    assert_eq!(reqwest::get(server.url("/v1/forms/contact")).await.unwrap().status(), 200, "showing is another class");
    server.stop().await;
}

/// The receiver in `webhook_receiver.py`, verifying with the Standard
/// Webhooks reference library.
struct Receiver {
    child: std::process::Child,
    out: PathBuf,
}

impl Receiver {
    fn start(port: u16, secret: &str, dir: &Path, failures: i32) -> Self {
        let out = dir.join(format!("received-{port}-{failures}.jsonl"));
        let child = std::process::Command::new("python3")
            .arg(format!("{ROOT}/tests/integration/webhook_receiver.py"))
            .args([port.to_string(), secret.to_owned(), out.display().to_string(), failures.to_string()])
            .spawn()
            .expect("python3 with standardwebhooks (make test installs it)");
        // Dropped (killed and waited for) however this ends.
        let receiver = Self { child, out };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return receiver;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the webhook receiver did not start");
    }

    fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks for an export of the contact form's submissions as `admin` and
/// waits for it to be done: its URL and final state.
async fn export(server: &TestServer, admin: &SignedIn, format: &str) -> (String, Value) {
    let client = reqwest::Client::new();
    let asked = client
        .post(server.url("/v1/forms/contact/exports"))
        .header("authorization", admin.bearer())
        .json(&json!({ "format": format }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
    let url = asked.headers()["location"].to_str().unwrap().to_owned();
    for _ in 0..1_200 {
        let state = get_json(server, &url, &admin.bearer()).await;
        assert_ne!(state["state"], "failed", "{state}");
        if state["state"] == "done" {
            return (url, state);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the export did not finish within a minute");
}

#[tokio::test]
async fn webhooks_are_signed_retried_switched_off_after_failures_and_never_sent_inside() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let webhooks = format!(
        "[webhooks]\nallow_hosts = [\"127.0.0.1:{port}\"]\nretry_base = \"100ms\"\nmax_attempts = 3\ndisable_after = 2\n"
    );
    let (deployment, dir) = deployment(&format!("{LOOSE_FORM_SUBMIT}{webhooks}"));
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let client = reqwest::Client::new();
    let hooked = async |url: String| {
        let definition = json!({ "id": "hooked", "title": "contact-title",
            "fields": [ { "name": "answer", "type": "text", "label": "contact-message", "required": true } ],
            "settings": { "webhooks": [ { "url": url } ] } });
        publish(&server, &admin, "hooked", &definition, ("if-none-match", "*")).await
    };
    let other_port = format!("http://127.0.0.1:{}/", port.wrapping_add(1));
    for inside in
        ["http://10.0.0.1/hook", "http://169.254.169.254/latest", "http://[::1]:9/", "http://localhost:9/", &other_port]
    {
        let refused = hooked(inside.to_owned()).await;
        let body = assert_error(refused, 422, "invalid_definition").await;
        assert_eq!(body["error"]["field"], "/settings/webhooks/0/url", "{inside}: {body}");
    }
    assert_eq!(hooked(format!("http://127.0.0.1:{port}/hook")).await.status(), 201, "allowed by the operator");
    let hooks = get_json(&server, "/v1/admin/forms/hooked/webhooks", &admin.bearer()).await;
    let secret = hooks["items"][0]["secret"].as_str().unwrap().to_owned();
    let endpoint = hooks["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    // The receiver fails the first attempt; the second is delivered and verifies.
    let receiver = Receiver::start(port, &secret, &dir, 1);
    let submit = async |answer: &str| {
        let token = show(&server, "hooked", "en").await["token"].as_str().unwrap().to_owned();
        let body = json!({ "token": token, "data": { "answer": answer } });
        let response = post(&server, "/v1/forms/hooked/submissions", &body, &[]).await;
        assert_eq!(response.status(), 202);
        response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    };
    let id = submit("first").await;
    let received = eventually("a verified delivery", async || {
        let received = receiver.received();
        (received.len() >= 2).then_some(received)
    })
    .await;
    assert_eq!((received[0]["answered"].clone(), received[1]["answered"].clone()), (json!(500), json!(204)));
    assert!(
        received.iter().all(|r| r["verified"] == true),
        "the reference library verifies every signature: {received:?}"
    );
    assert_eq!(received[0]["id"], received[1]["id"], "a retry is the same message");
    let payload: Value = serde_json::from_str(received[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!((payload["type"].clone(), payload["data"]["id"].clone()), (json!("form.submitted"), json!(id)));
    assert_eq!(payload["data"]["data"], json!({ "answer": "first" }));
    let deliveries_path = format!("/admin/webhooks/{endpoint}/deliveries");
    let log = async |server: &TestServer| {
        get_json(server, &deliveries_path, &admin.bearer()).await["deliveries"].as_array().unwrap().clone()
    };
    // The host records a delivery once the receiver's answer is in: the
    // receiver can have seen the retry a moment before its record exists.
    let deliveries = eventually("both deliveries recorded", async || {
        let deliveries = log(&server).await;
        (deliveries.len() >= 2 && deliveries[0]["attempt"] == json!(2)).then_some(deliveries)
    })
    .await;
    assert_eq!((deliveries[0]["attempt"].clone(), deliveries[0]["status"].clone()), (json!(2), json!(204)));
    assert_eq!((deliveries[1]["attempt"].clone(), deliveries[1]["status"].clone()), (json!(1), json!(500)));
    drop(receiver);

    // Nobody listens: two messages fail every attempt, and the endpoint is switched off.
    submit("second").await;
    submit("third").await;
    let disabled = eventually("the endpoint switched off", async || {
        let hooks = get_json(&server, "/v1/admin/forms/hooked/webhooks", &admin.bearer()).await;
        (hooks["items"][0]["enabled"] == false).then_some(hooks)
    })
    .await;
    assert!(disabled["items"][0]["disabled_reason"].as_str().unwrap().contains("2 messages in a row"), "{disabled}");
    assert_eq!(log(&server).await.iter().filter(|d| d["status"].is_null()).count(), 6, "3 attempts each");
    assert!(audit_log(&server, &admin).await.contains("webhook.disabled"));
    submit("while off").await;
    let receiver = Receiver::start(port, &secret, &dir, 0);
    let enabled = client
        .post(server.url(&format!("/admin/webhooks/{endpoint}/enable")))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    submit("back on").await;
    let received = eventually("the delivery after enabling", async || {
        let received = receiver.received();
        (!received.is_empty()).then_some(received)
    })
    .await;
    let payload: Value = serde_json::from_str(received[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(payload["data"]["data"]["answer"], "back on", "nothing was queued while it was off");
    assert_eq!(received[0]["verified"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_signed_in_page_post_carries_the_sessions_csrf_token_in_its_body() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let ada = sign_in(&server.url(""), "ada", &[], None).await;
    let client = reqwest::Client::new();
    let page = client.get(server.url("/forms/contact")).header("cookie", ada.cookie()).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    let hidden = |name: &str| {
        let start = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("{name} in {html}"));
        let value = &html[start + name.len() + 15..];
        value[..value.find('"').unwrap()].to_owned()
    };
    assert_eq!(hidden("_csrf"), ada.csrf, "the page carries the session's token");
    let token = hidden("_token");
    wait_fill_time().await;
    let send = |csrf: Option<&str>| {
        let mut pairs = vec![
            ("_token", token.clone()),
            ("name", "Ada".to_owned()),
            ("email", "ada@example.com".to_owned()),
            ("topic", "question".to_owned()),
            ("message", "Hi".to_owned()),
            ("consent", "on".to_owned()),
        ];
        if let Some(csrf) = csrf {
            pairs.push(("_csrf", csrf.to_owned()));
        }
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(server.url("/forms/contact"))
            .header("cookie", ada.cookie())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_error(send(None).await.unwrap(), 403, "csrf_token_invalid").await;
    assert_error(send(Some("wrong")).await.unwrap(), 403, "csrf_token_invalid").await;
    let sent = send(Some(&ada.csrf)).await.unwrap();
    assert_eq!(sent.status(), 303);
    assert!(sent.headers()["location"].to_str().unwrap().starts_with("/forms/contact/sent"));
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let stored = submissions(&server, &admin).await;
    assert_eq!((stored.len(), stored[0]["submitter"].clone()), (1, json!("ada")));
    server.stop().await;
}

#[tokio::test]
async fn submissions_export_as_csv_and_json_lines_in_the_background_and_download_with_ranges() {
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let server = TestServer::start(&deployment).await;
    let token = show(&server, "contact", "en").await["token"].as_str().unwrap().to_owned();
    wait_fill_time().await;
    const ROWS: usize = 1_200;
    let client = reqwest::Client::new();
    for i in 0..ROWS {
        let mut data = contact();
        data["name"] = json!(if i == 7 { "=SUM(A1:A9)".to_owned() } else { format!("Zażółć {i}") });
        let body = json!({ "token": token, "data": data });
        let response = client.post(server.url("/v1/forms/contact/submissions")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 202);
    }
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let (url, done) = export(&server, &admin, "csv").await;
    assert_eq!(done["rows"], ROWS);
    let file =
        client.get(server.url(&format!("{url}/file"))).header("authorization", admin.bearer()).send().await.unwrap();
    assert_eq!(file.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(file.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let csv = file.text().await.unwrap();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), ROWS + 1, "a header and a line per submission");
    assert_eq!(
        lines[0],
        "id,submitted_at,version,locale,submitter,name,email,topic,other,message,copies,attachment,consent"
    );
    assert!(csv.contains(",'=SUM(A1:A9),"), "a formula is made inert");
    assert!(csv.contains(",Zażółć 1199,"), "UTF-8 kept");
    assert_eq!(done["bytes"], csv.len());
    let ranged = client
        .get(server.url(&format!("{url}/file")))
        .header("authorization", admin.bearer())
        .header("range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.text().await.unwrap(), "id");

    let (jsonl_url, done) = export(&server, &admin, "jsonl").await;
    let file = client
        .get(server.url(&format!("{jsonl_url}/file")))
        .header("authorization", admin.bearer())
        .send()
        .await
        .unwrap();
    let text = file.text().await.unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((records.len(), done["rows"].clone()), (ROWS, json!(ROWS)));
    // Ids order by millisecond; within one, not by arrival.
    let formula = records.iter().filter(|r| r["data"]["name"] == "=SUM(A1:A9)").count();
    assert_eq!(formula, 1, "JSON Lines keep the value as it is");

    let other = sign_in(&server.url(""), "deputy", &["admin"], None).await;
    let theirs = client.get(server.url(&url)).header("authorization", other.bearer()).send().await.unwrap();
    assert_error(theirs, 404, "export_not_found").await;
    let user = sign_in(&server.url(""), "ada", &[], None).await;
    let refused = client
        .post(server.url("/v1/forms/contact/exports"))
        .header("authorization", user.bearer())
        .json(&json!({ "format": "csv" }))
        .send()
        .await
        .unwrap();
    assert_error(refused, 403, "forbidden").await;
    // The daily quota (1,300 here) holds: 100 more are taken, the next is not.
    for _ in ROWS..1_300 {
        let body = json!({ "token": token, "data": contact() });
        let response = client.post(server.url("/v1/forms/contact/submissions")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 202);
    }
    let body = json!({ "token": token, "data": contact() });
    let over = client.post(server.url("/v1/forms/contact/submissions")).json(&body).send().await.unwrap();
    assert!(over.headers().contains_key("retry-after"));
    assert_error(over, 429, "form_quota_exceeded").await;
    let deleted = client.delete(server.url(&url)).header("authorization", admin.bearer()).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone =
        client.get(server.url(&format!("{url}/file"))).header("authorization", admin.bearer()).send().await.unwrap();
    assert_error(gone, 404, "export_not_found").await;
    server.stop().await;
}

/// 100,000 submissions of the contact form as the plugin stores them,
/// written straight into its namespace (posting them would take minutes).
async fn seed_submissions(server: &TestServer, rows: usize) {
    let deployment = server.app.deployment.load();
    let forms = deployment.plugins.iter().find(|p| p.config.name == "forms").unwrap();
    let namespace = forms.plugin.namespace();
    for batch in 0..rows / 1_000 {
        let ops = (0..1_000)
            .map(|i| {
                let n = batch * 1_000 + i;
                let id = format!("{:013}-{n:022}", 1_795_000_000_000u64 + n as u64);
                let record = json!({
                    "id": id, "form": "contact", "version": 1, "submitted_at": 1_795_000_000u64 + n as u64,
                    "submitter": null, "locale": "pl",
                    "data": { "name": format!("Zażółć gęślą jaźń {n}"), "email": format!("person{n}@example.com"),
                              "topic": "question", "message": "Dzień dobry, mam pytanie o zamówienie.",
                              "copies": 1, "consent": true },
                });
                plinth::storage::Op::Set(format!("sub/contact/{id}"), serde_json::to_vec(&record).unwrap())
            })
            .collect();
        namespace.batch(ops).await.unwrap();
    }
}

#[tokio::test]
async fn a_hundred_thousand_submissions_export_within_the_workers_memory_cap() {
    const ROWS: usize = 100_000;
    let (deployment, _dir) = deployment(LOOSE_FORM_SUBMIT);
    let config = std::fs::read_to_string(deployment.config_path()).unwrap();
    // The worker's memory is capped at 4 MiB while the file it writes is
    // over 16 MiB: it cannot hold the rows, only stream them.
    let capped = config.replace(
        "limits = { memory = \"32MiB\", timeout_ms = 300000, concurrency = 1 }",
        "limits = { memory = \"4MiB\", timeout_ms = 300000, concurrency = 1 }",
    );
    assert_ne!(capped, config, "the example's exports worker limits");
    std::fs::write(deployment.config_path(), capped).unwrap();
    let server = TestServer::start(&deployment).await;
    seed_submissions(&server, ROWS).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let client = reqwest::Client::new();
    let (url, done) = export(&server, &admin, "csv").await;
    assert_eq!(done["rows"], ROWS, "{done}");
    let file =
        client.get(server.url(&format!("{url}/file"))).header("authorization", admin.bearer()).send().await.unwrap();
    let csv = file.bytes().await.unwrap();
    assert!(csv.len() > 16 << 20, "{} bytes", csv.len());
    assert_eq!(done["bytes"], csv.len());
    let text = std::str::from_utf8(&csv).unwrap();
    assert_eq!(text.split_terminator("\r\n").count(), ROWS + 1);
    assert!(text.contains(",Zażółć gęślą jaźń 99999,person99999@example.com,question,,"), "the last row is whole");
    server.stop().await;
}

/// Solves an ALTCHA challenge as the widget does: its payload.
fn solve(challenge: &Value) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let salt = challenge["salt"].as_str().unwrap();
    let target = challenge["challenge"].as_str().unwrap();
    let number = (0..=challenge["maxnumber"].as_u64().unwrap())
        .find(|n| hex::encode(Sha256::digest(format!("{salt}{n}").as_bytes())) == target)
        .expect("the number is in range");
    let answer = json!({ "algorithm": "SHA-256", "challenge": target, "number": number, "salt": salt,
                         "signature": challenge["signature"] });
    base64::engine::general_purpose::STANDARD.encode(answer.to_string())
}

#[tokio::test]
async fn a_proof_of_work_is_solved_once_and_a_replay_is_refused() {
    let (deployment, dir) = deployment(LOOSE_FORM_SUBMIT);
    let file = dir.join("forms/contact.form.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let text =
        text.replace("\"max_per_day\": 1300", "\"max_per_day\": 1300, \"proof_of_work\": { \"max_number\": 5000 }");
    std::fs::write(&file, text).unwrap();
    let server = TestServer::start(&deployment).await;
    let shown = show(&server, "contact", "en").await;
    let (token, challenge) = (shown["token"].as_str().unwrap().to_owned(), shown["proof_of_work"].clone());
    wait_fill_time().await;
    let path = "/v1/forms/contact/submissions";
    let without = post(&server, path, &json!({ "token": token, "data": contact() }), &[]).await;
    assert_error(without, 403, "proof_of_work_required").await;
    let proof = solve(&challenge);
    let solved = post(&server, path, &json!({ "token": token, "data": contact(), "proof": proof }), &[]).await;
    assert_eq!(solved.status(), 202);
    let replayed = post(&server, path, &json!({ "token": token, "data": contact(), "proof": proof }), &[]).await;
    assert_error(replayed, 403, "proof_of_work_replayed").await;
    let fresh: Value = reqwest::get(server.url("/v1/forms/contact/challenge")).await.unwrap().json().await.unwrap();
    let mut forged: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, solve(&fresh)).unwrap(),
    )
    .unwrap();
    forged["signature"] = challenge["signature"].clone();
    let forged = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, forged.to_string());
    let mismatched = post(&server, path, &json!({ "token": token, "data": contact(), "proof": forged }), &[]).await;
    assert_error(mismatched, 403, "invalid_proof_of_work").await;
    let second = post(&server, path, &json!({ "token": token, "data": contact(), "proof": solve(&fresh) }), &[]).await;
    assert_eq!(second.status(), 202);
    server.stop().await;
}
