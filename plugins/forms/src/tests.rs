use plinth_kit::testing::{TestHost, TestRequest};
use serde_json::{Value, json};

use crate::render::RenderToken;

const CONTACT: &str = include_str!("../../../examples/forms/contact.form.json");

fn host() -> TestHost {
    let mut host = TestHost::new(crate::router()).locales(&["en", "pl"]).asset("contact.form.json", CONTACT);
    for (locale, file) in
        [("en", include_str!("../locales/en/forms.ftl")), ("pl", include_str!("../locales/pl/forms.ftl"))]
    {
        // The in-memory host fills `{ $name }` only; one-line messages suffice here.
        for line in file.lines().filter(|l| l.starts_with("form-error-")) {
            if let Some((key, text)) = line.split_once(" = ") {
                host = host.message(locale, key, text);
            }
        }
    }
    host.message("en", "contact-name", "Your name").message("pl", "contact-name", "Imię i nazwisko")
}

/// A render token for `form` version `version`, shown `age` seconds ago
/// in showing `s`.
fn token(form: &str, version: u32, age: u64) -> String {
    token_in(form, version, age, "s")
}

fn token_in(form: &str, version: u32, age: u64, showing: &str) -> String {
    let issued_at = crate::store::now() - age;
    let payload = RenderToken { form: form.into(), version, issued_at, showing: showing.into() };
    plinth_kit::signing::sign("forms.render", &serde_json::to_vec(&payload).unwrap(), Some(issued_at + 3600)).unwrap()
}

fn valid() -> Value {
    json!({ "name": "Ada", "email": "ada@example.com", "topic": "question", "message": "Hello", "consent": true })
}

fn submit(host: &TestHost, token: &str, data: Value) -> plinth_kit::Response {
    host.send(TestRequest::post("/v1/forms/contact/submissions").json(&json!({ "token": token, "data": data })))
}

#[test]
fn a_shown_form_carries_its_schema_texts_worded_errors_and_a_token() {
    let host = host();
    let shown = host.send(TestRequest::get("/v1/forms/contact").locale("pl"));
    assert_eq!(shown.status, 200);
    let body: Value = shown.body_json();
    assert_eq!(
        (body["version"].clone(), body["locale"].clone(), body["dir"].clone()),
        (json!(1), json!("pl"), json!("ltr"))
    );
    assert_eq!(body["texts"]["contact-name"], "Imię i nazwisko");
    assert_eq!(body["schema"]["properties"]["name"]["maxLength"], 80);
    assert_eq!(body["errors"]["/name"]["required"], "Pole „Imię i nazwisko” jest wymagane.");
    assert!(body["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(shown.header_value("cache-control"), Some("no-store"));
}

#[test]
fn a_valid_submission_is_stored_with_its_version_and_read_back_by_readers() {
    let host = host();
    let accepted = submit(&host, &token("contact", 1, 10), valid());
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    let id = accepted.body_json::<Value>()["id"].as_str().unwrap().to_owned();
    let list = host.send(TestRequest::get("/v1/forms/contact/submissions").signed_in("boss", &["admin"]));
    let items = list.body_json::<Value>()["items"].clone();
    assert_eq!((items[0]["id"].as_str(), items[0]["version"].clone()), (Some(id.as_str()), json!(1)));
    assert_eq!(items[0]["data"], valid());
    let other = host.send(TestRequest::get("/v1/forms/contact/submissions").signed_in("ada", &[]));
    assert_eq!(other.status, 403);
    let erased =
        host.send(TestRequest::delete(&format!("/v1/forms/contact/submissions/{id}")).signed_in("boss", &["admin"]));
    assert_eq!(erased.status, 204);
    assert!(host.audit_events().iter().any(|e| e.action == "form.submission_erased"));
}

#[test]
fn readers_filter_submissions_by_a_field_and_by_text_a_page_at_a_time() {
    let host = host();
    for (i, topic) in ["bug", "question", "bug", "bug", "question", "bug"].iter().enumerate() {
        let mut data = valid();
        data["topic"] = json!(topic);
        data["message"] = json!(if i == 4 { "The button is BROKEN" } else { "Hello" });
        assert_eq!(submit(&host, &token("contact", 1, 10), data).status, 202);
    }
    let list = |query: &str| {
        let listed = host
            .send(TestRequest::get(&format!("/v1/forms/contact/submissions?{query}")).signed_in("boss", &["admin"]));
        (listed.status, listed.body_json::<Value>())
    };
    let topics = |body: &Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().map(|i| i["data"]["topic"].as_str().unwrap().to_owned()).collect()
    };
    let (_, all) = list("");
    assert_eq!(all["items"].as_array().unwrap().len(), 6);
    let (status, first) = list("field.topic=bug&limit=3");
    assert_eq!((status, topics(&first)), (200, vec!["bug".to_owned(); 3]));
    let next = first["next"].as_str().expect("more bugs follow");
    assert_eq!(next, all["items"][3]["id"].as_str().unwrap(), "the page goes on after its last match");
    let (_, rest) = list(&format!("field.topic=bug&limit=3&after={next}"));
    assert_eq!((topics(&rest), rest["next"].clone()), (vec!["bug".to_owned()], Value::Null));
    let (_, found) = list("q=broken");
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "text matches ignoring case");
    assert_eq!(topics(&list("q=broken&field.topic=bug").1), Vec::<String>::new(), "filters combine");
    for (query, at) in [
        ("field.nope=x", "field.nope"),
        ("field.attachment=x", "field.attachment"),
        ("field.topic=a&field.topic=b", "field.topic"),
        ("sort=new", "sort"),
        ("q=", "q"),
        ("limit=0", "limit"),
    ] {
        let (status, body) = list(query);
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(at)), "{query}");
    }
}

#[test]
fn invalid_data_gets_every_error_in_one_shape_in_the_request_locale() {
    let host = host();
    let mut data = valid();
    data["name"] = json!("");
    data["surprise"] = json!(1);
    let request = TestRequest::post("/v1/forms/contact/submissions")
        .locale("pl")
        .json(&json!({ "token": token("contact", 1, 10), "data": data }));
    let refused = host.send(request);
    assert_eq!(refused.status, 422);
    let error = refused.body_json::<Value>()["error"].clone();
    assert_eq!(error["code"], "validation_failed");
    let fields = error["fields"].as_array().unwrap();
    let name = fields.iter().find(|f| f["path"] == "/name").unwrap();
    assert_eq!(
        (name["code"].clone(), name["message"].clone()),
        (json!("required"), json!("Pole „Imię i nazwisko” jest wymagane."))
    );
    assert!(fields.iter().any(|f| f["path"] == "/surprise" && f["code"] == "additionalProperties"));
    assert!(host.kv_keys().iter().all(|k| !k.starts_with("sub/")), "nothing stored");
}

#[test]
fn spam_is_answered_like_a_success_audited_and_dropped() {
    let host = host();
    let mut filled = valid();
    filled["website"] = json!("http://spam.example");
    let honeypot = submit(&host, &token("contact", 1, 10), filled);
    assert_eq!(honeypot.status, 202);
    let too_fast = submit(&host, &token("contact", 1, 0), valid());
    assert_eq!(too_fast.status, 202);
    let reasons: Vec<Option<String>> =
        host.audit_events().iter().filter(|e| e.action == "form.spam").map(|e| e.reason.clone()).collect();
    assert_eq!(reasons, [Some("honeypot".into()), Some("too_fast".into())]);
    assert!(host.kv_keys().iter().all(|k| !k.starts_with("sub/")), "nothing stored");
    let mut empty_honeypot = valid();
    empty_honeypot["website"] = json!("");
    assert_eq!(submit(&host, &token("contact", 1, 10), empty_honeypot).status, 202);
    assert_eq!(host.kv_keys().iter().filter(|k| k.starts_with("sub/")).count(), 1, "an empty honeypot is fine");
}

#[test]
fn tokens_of_other_forms_tampered_or_missing_are_refused() {
    let host = host();
    let other = submit(&host, &token("feedback", 1, 10), valid());
    assert_eq!(
        (other.status, other.body_json::<Value>()["error"]["code"].clone()),
        (403, json!("render_token_mismatch"))
    );
    let mut tampered = token("contact", 1, 10);
    tampered.push('0');
    assert_eq!(submit(&host, &tampered, valid()).body_json::<Value>()["error"]["code"], "invalid_render_token");
    let missing = host.send(TestRequest::post("/v1/forms/contact/submissions").json(&json!({ "data": valid() })));
    assert_eq!(missing.status, 422);
}

#[test]
fn an_idempotency_key_replays_the_first_submission() {
    let host = host();
    let token = token("contact", 1, 10);
    let send = |data: Value| {
        host.send(
            TestRequest::post("/v1/forms/contact/submissions")
                .header("idempotency-key", "k-1")
                .json(&json!({ "token": token, "data": data })),
        )
    };
    let first = send(valid());
    let again = send(valid());
    assert_eq!(first.body_json::<Value>()["id"], again.body_json::<Value>()["id"]);
    assert_eq!(again.header_value("idempotent-replayed"), Some("true"));
    assert_eq!(host.kv_keys().iter().filter(|k| k.starts_with("sub/")).count(), 1);
    let mut changed = valid();
    changed["message"] = json!("Something else");
    assert_eq!(send(changed).body_json::<Value>()["error"]["code"], "idempotency_key_reused");
}

#[test]
fn shipped_forms_are_read_only_through_the_api() {
    let host = host();
    let definition: Value = serde_json::from_str(CONTACT).unwrap();
    let put = host.send(
        TestRequest::put("/v1/admin/forms/contact")
            .signed_in("boss", &["admin"])
            .header("if-none-match", "*")
            .json(&definition),
    );
    assert_eq!((put.status, put.body_json::<Value>()["error"]["code"].clone()), (409, json!("form_defined_in_config")));
}

fn poll(question: &str, window: u64) -> Value {
    json!({ "id": "poll", "title": "poll-title",
            "fields": [ { "name": "answer", "type": "text", "label": question, "required": true } ],
            "settings": { "accept_previous_seconds": window } })
}

fn publish(host: &TestHost, definition: &Value, precondition: (&str, &str)) -> plinth_kit::Response {
    host.send(
        TestRequest::put("/v1/admin/forms/poll")
            .signed_in("boss", &["admin"])
            .header(precondition.0, precondition.1)
            .json(definition),
    )
}

#[test]
fn publishing_checks_messages_numbers_versions_and_keeps_the_old_one_for_its_window() {
    let host = host();
    let missing = publish(&host, &poll("poll-q1", 3600), ("if-none-match", "*"));
    let error = missing.body_json::<Value>()["error"].clone();
    assert_eq!((missing.status, error["code"].clone()), (422, json!("messages_missing")));
    assert!(
        error["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["message"] == "message `poll-title` is missing in locale `pl`")
    );
    let host = ["poll-title", "poll-q1", "poll-q2"]
        .iter()
        .fold(host, |h, key| h.message("en", key, key).message("pl", key, key));
    assert_eq!(publish(&host, &poll("poll-q1", 3600), ("if-none-match", "*")).status, 201);
    let v1 = token("poll", 1, 10);
    assert_eq!(publish(&host, &poll("poll-q2", 3600), ("if-none-match", "*")).status, 412, "exists");
    assert_eq!(publish(&host, &poll("poll-q2", 3600), ("if-match", "\"7\"")).status, 412, "stale");
    let unconditional =
        host.send(TestRequest::put("/v1/admin/forms/poll").signed_in("boss", &["admin"]).json(&poll("x", 0)));
    assert_eq!(unconditional.status, 428);
    let v2 = publish(&host, &poll("poll-q2", 3600), ("if-match", "\"1\""));
    assert_eq!((v2.status, v2.header_value("etag")), (200, Some("\"2\"")));
    let answer = |token: &str| {
        host.send(
            TestRequest::post("/v1/forms/poll/submissions")
                .json(&json!({ "token": token, "data": { "answer": "yes" } })),
        )
    };
    let late = answer(&v1);
    assert_eq!((late.status, late.body_json::<Value>()["version"].clone()), (202, json!(1)), "within the window");
    assert_eq!(publish(&host, &poll("poll-q1", 0), ("if-match", "\"2\"")).status, 200);
    let v2_token = token("poll", 2, 10);
    let retired = answer(&v2_token);
    assert_eq!(
        (retired.status, retired.body_json::<Value>()["error"]["code"].clone()),
        (409, json!("form_version_retired"))
    );
}

/// Solves an ALTCHA challenge as the widget does, into its payload.
fn solve(challenge: &Value) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let salt = challenge["salt"].as_str().unwrap();
    let target = challenge["challenge"].as_str().unwrap();
    let number = (0..=challenge["maxnumber"].as_u64().unwrap())
        .find(|n| {
            let digest = Sha256::digest(format!("{salt}{n}").as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect::<String>() == target
        })
        .expect("the number is in range");
    let answer = json!({ "algorithm": "SHA-256", "challenge": target, "number": number, "salt": salt,
                         "signature": challenge["signature"] });
    base64::engine::general_purpose::STANDARD.encode(answer.to_string())
}

#[test]
fn a_proof_of_work_is_required_checked_and_taken_once() {
    let mut contact: Value = serde_json::from_str(CONTACT).unwrap();
    contact["settings"]["proof_of_work"] = json!({ "max_number": 2000 });
    let host = host().asset("contact.form.json", contact.to_string());
    let shown: Value = host.send(TestRequest::get("/v1/forms/contact")).body_json();
    let challenge = shown["proof_of_work"].clone();
    assert_eq!((challenge["algorithm"].clone(), challenge["maxnumber"].clone()), (json!("SHA-256"), json!(2000)));
    let token = token("contact", 1, 10);
    let send = |proof: Option<String>| {
        let mut body = json!({ "token": token, "data": valid() });
        if let Some(proof) = proof {
            body["proof"] = json!(proof);
        }
        host.send(TestRequest::post("/v1/forms/contact/submissions").json(&body))
    };
    let code =
        |response: plinth_kit::Response| (response.status, response.body_json::<Value>()["error"]["code"].clone());
    assert_eq!(code(send(None)), (403, json!("proof_of_work_required")));
    let solved = solve(&challenge);
    let mut wrong: Value =
        serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &solved).unwrap())
            .unwrap();
    wrong["number"] = json!(wrong["number"].as_u64().unwrap() + 1);
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, wrong.to_string());
    assert_eq!(code(send(Some(wrong))), (403, json!("invalid_proof_of_work")));
    assert_eq!(send(Some(solved.clone())).status, 202);
    assert_eq!(code(send(Some(solved.clone()))), (403, json!("proof_of_work_replayed")));
    // The same hashed string split elsewhere (digits of the salt's expiry
    // moved into the number) is no answer: the salt is signed.
    let mut moved: Value =
        serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &solved).unwrap())
            .unwrap();
    let salt = moved["salt"].as_str().unwrap().to_owned();
    let (short, digits) = salt.split_at(salt.len() - 9);
    moved["number"] = json!(format!("{digits}{}", moved["number"]).parse::<u64>().unwrap());
    moved["salt"] = json!(short);
    let moved = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, moved.to_string());
    assert_eq!(code(send(Some(moved))), (403, json!("invalid_proof_of_work")));
    let fresh: Value = host.send(TestRequest::get("/v1/forms/contact/challenge")).body_json();
    assert_ne!(fresh["challenge"], challenge["challenge"]);
    assert_eq!(send(Some(solve(&fresh))).status, 202);
    let plain = TestHost::new(crate::router()).asset("contact.form.json", CONTACT);
    assert_eq!(plain.send(TestRequest::get("/v1/forms/contact/challenge")).status, 404);
}

#[test]
fn a_submission_notifies_the_forms_webhooks_and_a_switched_off_one_costs_nothing() {
    let mut contact: Value = serde_json::from_str(CONTACT).unwrap();
    contact["settings"]["webhooks"] = json!([{ "url": "https://hooks.example.com/in" }]);
    let host = host().asset("contact.form.json", contact.to_string());
    let accepted = submit(&host, &token("contact", 1, 10), valid());
    let id = accepted.body_json::<Value>()["id"].clone();
    let sent = host.webhooks();
    assert_eq!(sent.len(), 1);
    let (url, event, payload) = &sent[0];
    let payload: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!((url.as_str(), event.as_str()), ("https://hooks.example.com/in", "form.submitted"));
    assert_eq!((payload["data"]["id"].clone(), payload["data"]["data"].clone()), (id, valid()));
    let mut spam = valid();
    spam["website"] = json!("x");
    submit(&host, &token("contact", 1, 10), spam);
    assert_eq!(host.webhooks().len(), 1, "spam tells nobody");
    host.disable_webhook("https://hooks.example.com/in");
    assert_eq!(submit(&host, &token("contact", 1, 10), valid()).status, 202, "stored all the same");
    let listed: Value =
        host.send(TestRequest::get("/v1/admin/forms/contact/webhooks").signed_in("boss", &["admin"])).body_json();
    assert_eq!(listed["items"][0]["enabled"], false);
    let endpoint = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let enabled = host.send(
        TestRequest::post(&format!("/v1/admin/forms/contact/webhooks/{endpoint}/enable")).signed_in("boss", &["admin"]),
    );
    assert_eq!(enabled.body_json::<Value>()["enabled"], true);
    let other =
        host.send(TestRequest::post("/v1/admin/forms/contact/webhooks/ep_nope/enable").signed_in("boss", &["admin"]));
    assert_eq!(other.status, 404);
}

fn form_post(host: &TestHost, target: &str, pairs: &[(&str, &str)]) -> plinth_kit::Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    host.send(TestRequest::post(target).header("content-type", "application/x-www-form-urlencoded").body(body))
}

#[test]
fn the_page_posts_without_javascript_keeps_values_and_shows_errors_by_their_fields() {
    let host = host().locales(&["en", "pl", "ar"]);
    let page = host.send(TestRequest::get("/forms/contact").locale("ar"));
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains(r#"<html lang="ar" dir="rtl">"#), "{html}");
    assert!(html.contains(r#"name="_token""#) && html.contains(r#"<div hidden>"#), "token and hidden honeypot");
    assert!(!html.contains(r#"name="_csrf""#), "signed out: no session token");
    let token = token("contact", 1, 10);
    let refused = form_post(
        &host,
        "/forms/contact",
        &[
            ("_token", &token),
            ("name", "<b>Ada</b>"),
            ("email", "ada@"),
            ("topic", "question"),
            ("message", "Hi"),
            ("website", ""),
        ],
    );
    assert_eq!(refused.status, 422);
    let html = String::from_utf8(refused.body.clone()).unwrap();
    assert!(html.contains("value=\"&lt;b&gt;Ada&lt;/b&gt;\""), "values kept, escaped: {html}");
    assert!(html.contains(r#"id="f-email-error""#) && html.contains(r#"aria-invalid="true""#), "{html}");
    assert!(html.contains(r##"href="#f-consent""##), "the unchecked consent is listed: {html}");
    let sent = form_post(
        &host,
        "/forms/contact?locale=pl",
        &[
            ("_token", &token),
            ("name", "Ada"),
            ("email", "ada@example.com"),
            ("topic", "question"),
            ("message", "Hi\r\nthere"),
            ("consent", "on"),
        ],
    );
    assert_eq!((sent.status, sent.header_value("location")), (303, Some("/forms/contact/sent?locale=en")));
    let stored: Vec<Value> =
        host.kv_keys().iter().filter(|k| k.starts_with("sub/")).map(|k| host.kv_json(k).unwrap()).collect();
    assert_eq!(stored[0]["data"]["message"], "Hi\nthere");
    let stale = form_post(&host, "/forms/contact", &[("_token", "forged"), ("name", "Ada")]);
    let html = String::from_utf8(stale.body.clone()).unwrap();
    assert_eq!(stale.status, 409);
    assert!(html.contains("value=\"Ada\"") && html.contains(r#"role="status""#), "shown again, values kept: {html}");
    let signed_in = host.send(TestRequest::get("/forms/contact").signed_in("ada", &[]));
    assert!(String::from_utf8(signed_in.body.clone()).unwrap().contains(r#"name="_csrf" value="csrf-of-ada""#));
}

/// Uploads `bytes` for the contact form's file field in the showing of
/// `token` (showing `s`); the upload's id.
fn upload(host: &TestHost, token: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let created = host.send(
        TestRequest::post("/v1/forms/contact/uploads")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", &bytes.len().to_string())
            .header("upload-metadata", &format!("token {},field {}", b64(token), b64("attachment"))),
    );
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let location = created.header_value("location").unwrap().to_owned();
    let done = host.send(
        TestRequest::patch(&location)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(bytes.to_vec()),
    );
    assert_eq!(done.status, 204, "{}", String::from_utf8_lossy(&done.body));
    location.rsplit('/').next().unwrap().to_owned()
}

fn with_files(ids: &[&str]) -> Value {
    let mut data = valid();
    data["attachment"] = json!(ids);
    data
}

#[test]
fn a_showing_already_claimed_or_missing_a_removed_file_sends_nothing() {
    let host = host();
    let token = token("contact", 1, 10);
    let id = upload(&host, &token, b"plain words");
    // As if a concurrent submission had claimed the showing between this
    // one's checks and its claim.
    let showing: Value = host.kv_json("showing/contact/s").unwrap();
    assert_eq!(showing["uploads"], json!([id]));
    host.put_kv_json("showing/contact/s", &json!({ "uploads": [id], "submission": "another" }));
    let refused = submit(&host, &token, with_files(&[&id]));
    assert_eq!(refused.status, 409, "{}", String::from_utf8_lossy(&refused.body));
    // As if the file had been removed meanwhile.
    host.put_kv_json("showing/contact/s", &json!({ "uploads": [], "submission": null }));
    assert_eq!(submit(&host, &token, with_files(&[&id])).status, 409);
    host.put_kv_json("showing/contact/s", &showing);
    let accepted = submit(&host, &token, with_files(&[&id]));
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    let claimed: Value = host.kv_json("showing/contact/s").unwrap();
    assert_eq!(claimed["submission"], accepted.body_json::<Value>()["id"]);
}

#[test]
fn unsent_files_go_when_their_wait_or_their_showing_ends_and_sent_ones_with_their_expired_submission() {
    let host = host();
    let token = token("contact", 1, 10);
    let blob = |id: &str| -> String {
        host.kv_json::<Value>(&format!("upload/contact/{id}")).unwrap()["file"]["blob"].as_str().unwrap().to_owned()
    };
    let (late, kept) = (upload(&host, &token, b"waited too long"), upload(&host, &token, b"still waiting"));
    let (late_blob, kept_blob) = (blob(&late), blob(&kept));
    // As if `late` had waited past its time: the next upload clears it alone.
    host.put_kv_json(&format!("upload-expiry/contact/0000000000000001/{late}"), &json!(null));
    let third = upload(&host, &token, b"a third one");
    assert!(host.blob(&late_blob).is_none(), "the file that waited too long is removed");
    assert!(host.kv(&format!("upload/contact/{late}")).is_none());
    assert!(host.blob(&kept_blob).is_some(), "one still within its wait stays");
    let showing: Value = host.kv_json("showing/contact/s").unwrap();
    assert_eq!(showing["uploads"], json!([kept, third]));

    // As if the showing's token had expired long ago: its unsent files go.
    host.put_kv_json("showing-expiry/contact/0000000000000001/s", &json!(null));
    let next = upload(&host, &token, b"a new one");
    assert!(host.blob(&kept_blob).is_none(), "the expired showing's file is removed");
    assert!(host.kv(&format!("upload/contact/{third}")).is_none());
    assert!(host.kv("showing-expiry/contact/0000000000000001/s").is_none());
    assert!(host.kv(&format!("upload/contact/{next}")).is_some(), "a live upload stays");

    // A submission past the form's retention goes with its files.
    let old_file = host.store_blob("ada", b"old file");
    let old = json!({ "id": "0000000000001-old", "form": "contact", "version": 1, "submitted_at": 1,
                      "submitter": null, "locale": "en", "data": with_files(&["0".repeat(32).as_str()]),
                      "attachments": [{ "id": "0".repeat(32), "field": "attachment", "media_type": "text/plain",
                                        "size": 8, "blob": old_file }] });
    host.put_kv_json("sub/contact/0000000000001-old", &old);
    assert_eq!(submit(&host, &token, with_files(&[&next])).status, 202);
    assert!(host.kv("sub/contact/0000000000001-old").is_none());
    assert!(host.blob(&old_file).is_none(), "the expired submission's file is removed");
    assert!(host.blob(blob_of_submitted(&host).as_str()).is_some(), "the new submission's file stays");
    // A sent file is not the uploader's to remove, nor the sweep's.
    host.put_kv_json(&format!("upload-expiry/contact/0000000000000001/{next}"), &json!(null));
    upload(&host, &token_in("contact", 1, 10, "t"), b"another showing");
    assert!(host.blob(blob_of_submitted(&host).as_str()).is_some());
}

/// The blob of the one stored submission's file.
fn blob_of_submitted(host: &TestHost) -> String {
    let key = host.kv_keys().into_iter().find(|k| k.starts_with("sub/contact/")).unwrap();
    host.kv_json::<Value>(&key).unwrap()["attachments"][0]["blob"].as_str().unwrap().to_owned()
}

#[test]
fn an_upload_a_slow_patch_holds_delays_its_own_removal_only() {
    use base64::Engine as _;
    let host = host();
    let token = token("contact", 1, 10);
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let created = host.send(
        TestRequest::post("/v1/forms/contact/uploads")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "100")
            .header("upload-metadata", &format!("token {},field {}", b64(&token), b64("attachment"))),
    );
    let location = created.header_value("location").unwrap().to_owned();
    let held = location.rsplit('/').next().unwrap().to_owned();
    host.hold_upload(&held, true);
    let delete = TestRequest::delete(&location).header("tus-resumable", "1.0.0");
    assert_eq!(host.send(delete.clone()).status, 423, "removing it waits for the PATCH");
    let showing: Value = host.kv_json("showing/contact/s").unwrap();
    assert_eq!(showing["uploads"], json!([held]), "and leaves it in its showing");

    // Due for removal while held: other uploads go on, it is tried later.
    host.put_kv_json(&format!("upload-expiry/contact/0000000000000001/{held}"), &json!(null));
    upload(&host, &token, b"another file");
    assert!(host.kv(&format!("upload/contact/{held}")).is_some());
    let later: Vec<String> =
        host.kv_keys().into_iter().filter(|k| k.starts_with("upload-expiry/") && k.ends_with(&held)).collect();
    assert_eq!(later.len(), 2, "its own entry, and the retry: {later:?}");
    assert!(!later.iter().any(|k| k.contains("/0000000000000001/")), "the due entry was moved on");

    host.hold_upload(&held, false);
    host.put_kv_json(&format!("upload-expiry/contact/0000000000000001/{held}"), &json!(null));
    upload(&host, &token, b"a third file");
    assert!(host.kv(&format!("upload/contact/{held}")).is_none(), "removed once free");
    assert_eq!(host.send(delete).status, 404);
}

#[test]
fn one_client_starts_a_bounded_number_of_bytes_of_files_every_two_hours() {
    use base64::Engine as _;
    let host = host().setting("upload_bytes_per_client", "30");
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let start = |length: usize, address: &str, who: Option<&str>| {
        let request = TestRequest::post("/v1/forms/contact/uploads")
            .from_address(address)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", &length.to_string())
            .header("upload-metadata", &format!("token {},field {}", b64(&token("contact", 1, 10)), b64("attachment")));
        host.send(match who {
            Some(who) => request.signed_in(who, &[]),
            None => request,
        })
    };
    assert_eq!(start(20, "192.0.2.1", None).status, 201);
    let over = start(20, "192.0.2.1", None);
    assert_eq!(over.status, 429, "{}", String::from_utf8_lossy(&over.body));
    assert_eq!(over.body_json::<Value>()["error"]["code"], "upload_budget_exceeded");
    assert!(over.header_value("retry-after").is_some());
    assert_eq!(start(10, "192.0.2.1", None).status, 201, "what is left of the budget");
    assert_eq!(start(5, "192.0.2.1", Some("ada")).status, 429, "signing in does not add to an address's budget");
    assert_eq!(start(20, "192.0.2.2", Some("ada")).status, 201, "another address");
    assert_eq!(start(20, "192.0.2.3", Some("ada")).status, 429, "an account's own budget, whatever its address");
    // An IPv6 client is its /64; an IPv4-mapped one is its IPv4 address.
    assert_eq!(start(20, "2001:db8:1:2::1", None).status, 201);
    assert_eq!(start(20, "2001:db8:1:2:ffff::9", None).status, 429, "the same /64");
    assert_eq!(start(20, "2001:db8:1:3::1", None).status, 201, "another /64");
    assert_eq!(start(20, "::ffff:192.0.2.1", None).status, 429, "192.0.2.1 again");
    let reserved = host.kv_keys().into_iter().filter(|k| k.starts_with("upload/contact/")).count();
    assert_eq!(reserved, 5, "refused uploads keep nothing");
}

#[test]
fn images_of_a_file_field_with_variants_get_a_job_whose_variants_readers_fetch_and_erasure_forgets() {
    let host = host();
    let token = token("contact", 1, 10);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR picture";
    let (picture, text) = (upload(&host, &token, png), upload(&host, &token, b"plain words"));
    let [job] = host.jobs().try_into().expect("one job, for the image only");
    assert_eq!((job.worker.as_str(), job.owner.as_str()), ("images", "showing:s"));
    let (_, params) = host.job_request(&job.id).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&params).unwrap(), json!({ "sizes": { "thumb": 320 } }));
    let accepted = submit(&host, &token, with_files(&[&picture, &text]));
    assert_eq!(accepted.status, 202, "{}", String::from_utf8_lossy(&accepted.body));
    let id = accepted.body_json::<Value>()["id"].as_str().unwrap().to_owned();
    let variant = |file: &str, name: &str| {
        let path = format!("/v1/forms/contact/submissions/{id}/files/{file}/variants/{name}");
        host.send(TestRequest::get(&path).signed_in("boss", &["admin"]))
    };
    assert_eq!(variant(&picture, "thumb").status, 503, "pending");
    let made = host.store_blob("showing:s", b"thumb bytes");
    let answer = json!({ "width": 10, "height": 20, "variants": {
        "thumb": { "blob": made, "type": "image/jpeg", "width": 5, "height": 10, "size": 11 } } });
    host.finish_job(&job.id, Ok(&answer.to_string()), std::slice::from_ref(&made));
    let thumb = variant(&picture, "thumb");
    assert_eq!((thumb.status, thumb.served_blob()), (200, Some(made.as_str())));
    assert_eq!(thumb.header_value("content-type"), Some("image/jpeg"));
    assert_eq!(variant(&picture, "huge").status, 404);
    assert_eq!(variant(&text, "thumb").status, 404, "text gets no variants");
    let nosy = host.send(
        TestRequest::get(&format!("/v1/forms/contact/submissions/{id}/files/{picture}/variants/thumb"))
            .signed_in("ada", &[]),
    );
    assert_eq!(nosy.status, 403);
    let erased =
        host.send(TestRequest::delete(&format!("/v1/forms/contact/submissions/{id}")).signed_in("boss", &["admin"]));
    assert_eq!(erased.status, 204);
    assert!(host.jobs().is_empty(), "erasing the submission forgets its job");
    assert_eq!(host.blob(&made), None, "and the variants go with it");
}

#[test]
fn a_definition_that_takes_no_submissions_still_shows_and_validates() {
    let item = json!({ "id": "item", "version": 1, "title": "contact-name", "fields": [
        { "name": "text", "type": "text", "label": "contact-name", "required": true, "max_length": 20 }
    ], "settings": { "submit": "authenticated", "submissions": false } });
    let host = host().asset("item.form.json", item.to_string());
    let shown = host.send(TestRequest::get("/v1/forms/item").signed_in("ada", &[]));
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body_json::<Value>()["definition"]["settings"]["submissions"], false);
    let validate = |data: Value| {
        host.send(TestRequest::post("/v1/forms/item/validate").signed_in("ada", &[]).json(&json!({ "data": data })))
    };
    assert_eq!(validate(json!({ "text": "Milk" })).status, 200);
    assert_eq!(validate(json!({ "text": "" })).status, 422);
    let token = token("item", 1, 10);
    let sent = host.send(
        TestRequest::post("/v1/forms/item/submissions")
            .signed_in("ada", &[])
            .json(&json!({ "token": token, "data": { "text": "Milk" } })),
    );
    assert_eq!((sent.status, sent.body_json::<Value>()["error"]["code"].as_str()), (409, Some("submissions_closed")));
    let listed = host.send(TestRequest::get("/v1/forms/item/submissions").signed_in("boss", &["admin"]));
    assert_eq!(listed.body_json::<Value>()["items"], json!([]), "nothing was stored");
}

#[test]
fn a_page_shown_again_keeps_only_its_own_showings_files() {
    let host = host();
    let mine = token_in("contact", 1, 10, "mine");
    let theirs = token_in("contact", 1, 10, "theirs");
    let my_file = upload(&host, &mine, b"%PDF-1.4 mine");
    let their_file = upload(&host, &theirs, b"%PDF-1.4 theirs");
    let refused = form_post(
        &host,
        "/forms/contact",
        &[("_token", &mine), ("name", "Ada"), ("attachment", &my_file), ("attachment", &their_file)],
    );
    assert_eq!(refused.status, 422, "the message is missing");
    let html = String::from_utf8(refused.body).unwrap();
    assert!(html.contains(&format!(r#"value="{my_file}""#)), "this showing's file is kept: {html}");
    assert!(!html.contains(&their_file), "another showing's upload is neither kept nor named: {html}");
}
