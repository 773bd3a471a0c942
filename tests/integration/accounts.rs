//! The accounts plugin end to end: a browser-like client with a cookie jar,
//! tokens read from the outbox as a user reads e-mail.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Deployment, TestServer, assert_error, example_deployment, plinth_cli};

/// The addresses' mail, as the file sink wrote it.
pub fn mailbox(deployment: &Deployment) -> Vec<Value> {
    let path = deployment.data_path().join("outbox.jsonl");
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Waits for the `n`th (from 1) message of `kind` to `to`, and returns it.
pub async fn mail(deployment: &Deployment, to: &str, kind: &str, n: usize) -> Value {
    for _ in 0..100 {
        let matching: Vec<Value> =
            mailbox(deployment).into_iter().filter(|m| m["to"] == to && m["kind"] == kind).collect();
        if matching.len() >= n {
            return matching[n - 1].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} mail #{n} to {to}; mailbox: {:?}", mailbox(deployment));
}

/// The token in a message's link.
pub fn token_in(message: &Value) -> String {
    let body = message["body"].as_str().unwrap();
    let at = body.find("token=").expect("a link with a token") + "token=".len();
    body[at..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// A client that keeps the session cookie and CSRF token like a browser app.
#[derive(Clone)]
pub struct Browser {
    base: String,
    http: reqwest::Client,
    /// The session cookie, as the browser would send it.
    pub cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    pub fn new(server: &TestServer) -> Self {
        Self { base: server.url(""), http: reqwest::Client::new(), cookie: None, csrf: None }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(csrf) = &self.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        if let Some(set) = response.headers().get("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            self.cookie = if set.contains("Max-Age=0") { None } else { Some(pair.to_owned()) };
        }
        response
    }

    pub async fn post(&mut self, path: &str, body: Value) -> reqwest::Response {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> reqwest::Response {
        let response = self.post("/v1/sessions", json!({ "email": email, "password": password })).await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            self.csrf = Some(body["csrf_token"].as_str().unwrap().to_owned());
            return self.get("/v1/me").await;
        }
        response
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// An API client's sign-in: `POST /v1/sessions/token`, no cookie jar.
pub async fn api_sign_in(server: &TestServer, email: &str, password: &str) -> reqwest::Response {
    let body = json!({ "email": email, "password": password });
    reqwest::Client::new().post(server.url("/v1/sessions/token")).json(&body).send().await.unwrap()
}

/// `plinth admin invite` for an admin on the deployment's data directory.
fn invite_admin(deployment: &Deployment, email: &str) -> (bool, String, String) {
    let (config, data) = (deployment.config_path(), deployment.data_path());
    let (config, data) = (config.to_str().unwrap(), data.to_str().unwrap());
    plinth_cli(&["admin", "invite", "--config", config, "--data", data, "--email", email, "--roles", "admin"])
}

/// Bootstraps the first admin with the CLI (server stopped), starts the
/// server, and signs the admin in.
pub async fn with_admin(settings: &str) -> (Deployment, TestServer, Browser) {
    let deployment = example_deployment(settings);
    let (ok, stdout, stderr) = invite_admin(&deployment, "Root@Example.com");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("invited Root@Example.com with roles [admin]"), "{stdout}");
    let token: String =
        stdout[stdout.find("token=").unwrap() + 6..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(token.len(), 64, "{stdout}");
    let server = TestServer::start(&deployment).await;
    let mut admin = Browser::new(&server);
    let accepted = admin
        .post("/v1/accounts/accept-invite", json!({ "token": token, "password": PASSWORD, "display_name": "Root" }))
        .await;
    assert_eq!(accepted.status(), 201);
    assert_eq!(admin.sign_in("root@example.com", PASSWORD).await.status(), 200);
    (deployment, server, admin)
}

/// Signs up and verifies `email`, returning a signed-in browser.
pub async fn new_user(deployment: &Deployment, server: &TestServer, email: &str) -> Browser {
    let mut user = Browser::new(server);
    let signup =
        user.post("/v1/accounts/signup", json!({ "email": email, "password": PASSWORD, "display_name": "Uma" })).await;
    assert_eq!(signup.status(), 202);
    let pending = user.sign_in(email, PASSWORD).await;
    assert_error(pending, 401, "invalid_credentials").await;
    let token = token_in(&mail(deployment, email, "verify", 1).await);
    assert_eq!(user.post("/v1/accounts/verify", json!({ "token": token, "password": PASSWORD })).await.status(), 204);
    assert_eq!(user.sign_in(email, PASSWORD).await.status(), 200);
    user
}

#[tokio::test]
async fn the_whole_lifecycle() {
    let (deployment, server, mut admin) = with_admin("").await;
    let mut uma = new_user(&deployment, &server, "uma@example.com").await;

    // Profile with ETag / If-Match.
    let me = uma.get("/v1/me").await;
    let etag = me.headers()["etag"].to_str().unwrap().to_owned();
    let profile: Value = me.json().await.unwrap();
    assert_eq!((profile["email"].as_str(), profile["state"].as_str()), (Some("uma@example.com"), Some("active")));
    let stale =
        uma.send(Method::PATCH, "/v1/me", Some(json!({ "display_name": "U" })), &[("if-match", "\"v999\"")]).await;
    assert_error(stale, 412, "precondition_failed").await;
    let patched = uma
        .send(
            Method::PATCH,
            "/v1/me",
            Some(json!({ "display_name": "Uma B", "locale": "pt-BR" })),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(patched.status(), 200);
    assert_ne!(patched.headers()["etag"].to_str().unwrap(), etag);
    let unknown = uma.send(Method::PATCH, "/v1/me", Some(json!({ "nickname": "x" })), &[]).await;
    assert_error(unknown, 422, "invalid_body").await;

    // Two sessions; a password change keeps this one and ends the other.
    let mut phone = Browser::new(&server);
    assert_eq!(phone.sign_in("uma@example.com", PASSWORD).await.status(), 200);
    let sessions: Value = uma.get("/v1/sessions").await.json().await.unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2);
    let new_password = "velvet lantern orchard";
    let weak = uma.post("/v1/me/password", json!({ "current_password": PASSWORD, "password": "password1" })).await;
    assert_error(weak, 422, "weak_password").await;
    let wrong = uma.post("/v1/me/password", json!({ "current_password": "nope nope", "password": new_password })).await;
    assert_error(wrong, 403, "wrong_password").await;
    let changed = uma.post("/v1/me/password", json!({ "current_password": PASSWORD, "password": new_password })).await;
    assert_eq!(changed.status(), 204);
    assert_eq!(uma.get("/v1/me").await.status(), 200);
    assert_eq!(phone.get("/v1/me").await.status(), 401, "the other session ended");
    mail(&deployment, "uma@example.com", "notice", 1).await;

    // E-mail change: confirmation to the new address, notice to the old.
    let change =
        uma.post("/v1/me/email", json!({ "current_password": new_password, "email": "uma@new.example" })).await;
    assert_eq!(change.status(), 202);
    let confirm = token_in(&mail(&deployment, "uma@new.example", "email_change", 1).await);
    mail(&deployment, "uma@example.com", "notice", 2).await;
    let still_old: Value = uma.get("/v1/me").await.json().await.unwrap();
    assert_eq!(still_old["email"], "uma@example.com", "nothing changes before confirmation");
    assert_eq!(uma.post("/v1/accounts/confirm-email", json!({ "token": confirm })).await.status(), 204);
    let moved: Value = uma.get("/v1/me").await.json().await.unwrap();
    assert_eq!(moved["email"], "uma@new.example");

    // Logout clears the cookie; the old cookie is dead.
    let old_cookie = uma.cookie.clone();
    let logout = uma.send(Method::DELETE, "/v1/sessions/current", None, &[]).await;
    assert_eq!(logout.status(), 204);
    assert!(uma.cookie.is_none());
    uma.cookie = old_cookie;
    assert_eq!(uma.get("/v1/me").await.status(), 401);

    // Reset: every session ends, no auto-login, the new password works.
    let mut laptop = Browser::new(&server);
    assert_eq!(laptop.sign_in("uma@new.example", new_password).await.status(), 200);
    let mut anon = Browser::new(&server);
    let requested = anon
        .send(
            Method::POST,
            "/v1/accounts/password-reset",
            Some(json!({ "email": "uma@new.example" })),
            &[("host", "evil.example")],
        )
        .await;
    assert_eq!(requested.status(), 202);
    let reset_mail = mail(&deployment, "uma@new.example", "reset", 1).await;
    assert!(
        reset_mail["body"].as_str().unwrap().contains("http://127.0.0.1:8080/reset-password?token="),
        "{reset_mail}"
    );
    let reset = anon
        .post(
            "/v1/accounts/password-reset/confirm",
            json!({ "token": token_in(&reset_mail), "password": "quartz meadow bicycle" }),
        )
        .await;
    assert_eq!(reset.status(), 204);
    assert!(reset.headers().get("set-cookie").is_none(), "no auto-login");
    assert_eq!(laptop.get("/v1/me").await.status(), 401);
    assert_eq!(anon.sign_in("uma@new.example", "quartz meadow bicycle").await.status(), 200);

    // Admin: list and filter, suspend (kills the live session), reactivate, deactivate.
    let id = moved["id"].as_str().unwrap().to_owned();
    let listed: Value = admin.get("/v1/admin/accounts?state=active").await.json().await.unwrap();
    let states: Vec<&str> =
        listed["accounts"].as_array().unwrap().iter().map(|a| a["state"].as_str().unwrap()).collect();
    assert!(states.len() >= 2 && states.iter().all(|s| *s == "active"), "{listed}");
    let suspended = admin.post(&format!("/v1/admin/accounts/{id}/suspend"), json!({})).await;
    assert_eq!(suspended.status(), 200);
    assert_eq!(anon.get("/v1/me").await.status(), 401, "a suspended user's live session fails at once");
    mail(&deployment, "uma@new.example", "notice", 2).await;
    let refused = anon.sign_in("uma@new.example", "quartz meadow bicycle").await;
    assert_error(refused, 401, "invalid_credentials").await;
    assert_eq!(admin.post(&format!("/v1/admin/accounts/{id}/reactivate"), json!({})).await.status(), 200);
    assert_eq!(anon.sign_in("uma@new.example", "quartz meadow bicycle").await.status(), 200);
    let deactivated = admin.post(&format!("/v1/admin/accounts/{id}/deactivate"), json!({})).await;
    assert_eq!(deactivated.status(), 200);
    let again = admin.post(&format!("/v1/admin/accounts/{id}/reactivate"), json!({})).await;
    let body = assert_error(again, 409, "invalid_transition").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`deactivated`") && message.contains("`active`"), "{message}");

    // Every step left an audit record.
    let audit = admin.get("/admin/audit?limit=1000").await.text().await.unwrap();
    for action in [
        "account.signup",
        "account.verified",
        "session.login",
        "account.password_changed",
        "account.email_changed",
        "account.password_reset",
        "account.suspended",
        "account.deactivated",
        "account.invited",
    ] {
        assert!(audit.contains(&format!("\"action\":\"{action}\"")), "no {action} in the audit log");
    }
    assert!(audit.contains("\"actor\":\"cli\""), "the bootstrap invite is by the cli actor");
    server.stop().await;
}

#[tokio::test]
async fn invalid_transitions_are_409s_naming_both_states() {
    let (deployment, server, mut admin) = with_admin("").await;
    let mut pending = Browser::new(&server);
    let signup = pending
        .post("/v1/accounts/signup", json!({ "email": "pat@example.com", "password": PASSWORD, "display_name": "Pat" }))
        .await;
    assert_eq!(signup.status(), 202);
    mail(&deployment, "pat@example.com", "verify", 1).await;
    let accounts: Value = admin.get("/v1/admin/accounts?state=pending").await.json().await.unwrap();
    let id = accounts["accounts"][0]["id"].as_str().unwrap().to_owned();
    for (action, from, to) in [
        ("suspend", "pending", "suspended"),
        ("reactivate", "pending", "active"),
        ("deactivate", "pending", "deactivated"),
    ] {
        let response = admin.post(&format!("/v1/admin/accounts/{id}/{action}"), json!({})).await;
        let body = assert_error(response, 409, "invalid_transition").await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{from}`")) && message.contains(&format!("`{to}`")), "{message}");
    }
    let me: Value = admin.get("/v1/me").await.json().await.unwrap();
    let own = me["id"].as_str().unwrap();
    let reactivate_active = admin.post(&format!("/v1/admin/accounts/{own}/reactivate"), json!({})).await;
    assert_error(reactivate_active, 409, "invalid_transition").await;
    assert_error(admin.post("/v1/admin/accounts/nobody/suspend", json!({})).await, 404, "not_found").await;
    server.stop().await;
}

#[tokio::test]
async fn a_token_is_redeemed_once_under_concurrency() {
    let (deployment, server, _admin) = with_admin("").await;
    let mut user = Browser::new(&server);
    user.post(
        "/v1/accounts/signup",
        json!({ "email": "con@example.com", "password": PASSWORD, "display_name": "Con" }),
    )
    .await;
    let token = token_in(&mail(&deployment, "con@example.com", "verify", 1).await);
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut browser = Browser::new(&server);
        let token = token.clone();
        attempts.spawn(async move {
            browser.post("/v1/accounts/verify", json!({ "token": token, "password": PASSWORD })).await.status().as_u16()
        });
    }
    let mut statuses = attempts.join_all().await;
    statuses.sort();
    assert_eq!(statuses, [204, 400, 400, 400, 400, 400, 400, 400]);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_updates_without_if_match_all_apply_and_are_audited_once_each() {
    let (deployment, server, mut admin) = with_admin("").await;
    let mut uma = new_user(&deployment, &server, "many@example.com").await;
    let version = |etag: &str| etag.trim_matches(['"', 'v']).parse::<u64>().unwrap();
    let before = version(uma.get("/v1/me").await.headers()["etag"].to_str().unwrap());
    let mut updates = tokio::task::JoinSet::new();
    for i in 0..12 {
        let mut tab = uma.clone();
        updates.spawn(async move {
            let body = json!({ "display_name": format!("Tab {i}") });
            tab.send(Method::PATCH, "/v1/me", Some(body), &[]).await.status().as_u16()
        });
    }
    assert_eq!(updates.join_all().await, [200; 12], "no update is lost to another's write");
    let after = version(uma.get("/v1/me").await.headers()["etag"].to_str().unwrap());
    assert_eq!(after, before + 12, "every update made a version");
    let audit = admin.get("/admin/audit?limit=1000").await.text().await.unwrap();
    assert_eq!(audit.matches("account.profile_updated").count(), 12, "one record per applied write");
    server.stop().await;
}

#[tokio::test]
async fn answers_do_not_tell_whether_an_account_exists() {
    let (deployment, server, mut admin) = with_admin("").await;
    let _known = new_user(&deployment, &server, "known@example.com").await;
    let mut anon = Browser::new(&server);
    let mut pair = Vec::new();
    for email in ["known@example.com", "unknown@example.com"] {
        let response = anon
            .post("/v1/accounts/signup", json!({ "email": email, "password": PASSWORD, "display_name": "X" }))
            .await;
        pair.push((response.status(), response.text().await.unwrap()));
    }
    assert_eq!(pair[0], pair[1], "signup");
    pair.clear();
    for email in ["known@example.com", "unknown@example.com"] {
        let response = anon.post("/v1/accounts/password-reset", json!({ "email": email })).await;
        pair.push((response.status(), response.text().await.unwrap()));
    }
    assert_eq!(pair[0], pair[1], "password reset");
    // Unknown address, wrong password, pending account: one answer.
    anon.post(
        "/v1/accounts/signup",
        json!({ "email": "pending@example.com", "password": PASSWORD, "display_name": "P" }),
    )
    .await;
    let mut answers = Vec::new();
    for (email, password) in [
        ("unknown@example.com", PASSWORD),
        ("known@example.com", "wrong wrong wrong"),
        ("pending@example.com", PASSWORD),
    ] {
        let hashes_before = password_hashes(&mut admin).await;
        let response = anon.post("/v1/sessions", json!({ "email": email, "password": password })).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        // Comparable timing: each sign-in costs exactly one argon2 run, the
        // unknown address (checked against the dummy hash) included.
        let hashed = password_hashes(&mut admin).await - hashes_before;
        answers.push((status, body["error"]["code"].clone(), body["error"]["message"].clone(), hashed));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!((answers[0].0, answers[0].3), (reqwest::StatusCode::UNAUTHORIZED, 1));
    server.stop().await;
}

/// argon2 runs so far, from the admin's `GET /metrics`.
async fn password_hashes(admin: &mut Browser) -> u64 {
    let metrics = admin.get("/metrics").await.text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("plinth_password_hashes_total ")).expect("the hash counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_but_reset_still_works() {
    let settings = "public_base_url = \"http://127.0.0.1:8080\", max_failed_logins_per_hour = \"3\"";
    let (deployment, server, _admin) = with_admin(settings).await;
    let _victim = new_user(&deployment, &server, "vic@example.com").await;
    let mut attacker = Browser::new(&server);
    for _ in 0..3 {
        let response =
            attacker.post("/v1/sessions", json!({ "email": "vic@example.com", "password": "guess guess guess" })).await;
        assert_eq!(response.status(), 401);
    }
    let locked = attacker.post("/v1/sessions", json!({ "email": "vic@example.com", "password": PASSWORD })).await;
    let retry: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry));
    assert_error(locked, 429, "too_many_failed_logins").await;
    let reset = attacker.post("/v1/accounts/password-reset", json!({ "email": "vic@example.com" })).await;
    assert_eq!(reset.status(), 202, "a lockout never blocks password reset");
    mail(&deployment, "vic@example.com", "reset", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn weak_and_malformed_input_get_clear_422s() {
    let (_deployment, server, _admin) = with_admin("").await;
    let mut anon = Browser::new(&server);
    let cases = [
        (json!({ "email": "a@example.com", "password": "short", "display_name": "A" }), "weak_password", "characters"),
        (json!({ "email": "a@example.com", "password": "password123", "display_name": "A" }), "weak_password", "guess"),
        (json!({ "email": "not-an-address", "password": PASSWORD, "display_name": "A" }), "invalid_field", "`email`"),
        (
            json!({ "email": "a@example.com", "password": PASSWORD, "display_name": "" }),
            "invalid_field",
            "`display_name`",
        ),
        (json!({ "email": "a@example.com", "password": PASSWORD }), "invalid_body", "display_name"),
    ];
    for (body, code, mention) in cases {
        let response = anon.post("/v1/accounts/signup", body.clone()).await;
        let error = assert_error(response, 422, code).await;
        assert!(error["error"]["message"].as_str().unwrap().contains(mention), "{body} -> {error}");
    }
    server.stop().await;
}

#[tokio::test]
async fn owners_can_deactivate_themselves_for_good() {
    let (deployment, server, _admin) = with_admin("").await;
    let mut dee = new_user(&deployment, &server, "dee@example.com").await;
    let mut other_device = Browser::new(&server);
    assert_eq!(other_device.sign_in("dee@example.com", PASSWORD).await.status(), 200);
    let gone = dee.send(Method::DELETE, "/v1/me", None, &[]).await;
    assert_eq!(gone.status(), 204);
    assert!(dee.cookie.is_none(), "the cookie is cleared");
    assert_eq!(other_device.get("/v1/me").await.status(), 401, "every session ends");
    assert_error(dee.sign_in("dee@example.com", PASSWORD).await, 401, "invalid_credentials").await;
    mail(&deployment, "dee@example.com", "notice", 1).await;
    server.stop().await;
}

#[tokio::test]
async fn expired_links_are_refused() {
    let settings = "public_base_url = \"http://127.0.0.1:8080\", verify_ttl = \"1s\"";
    let (deployment, server, _admin) = with_admin(settings).await;
    let mut late = Browser::new(&server);
    late.post("/v1/accounts/signup", json!({ "email": "late@example.com", "password": PASSWORD, "display_name": "L" }))
        .await;
    let token = token_in(&mail(&deployment, "late@example.com", "verify", 1).await);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(
        late.post("/v1/accounts/verify", json!({ "token": token, "password": PASSWORD })).await,
        400,
        "invalid_token",
    )
    .await;
    server.stop().await;
}

#[test]
fn the_bootstrap_says_so_when_the_server_holds_the_database() {
    let deployment = example_deployment("");
    let _server = crate::support::ServerProcess::start(&deployment);
    let (ok, _, stderr) = invite_admin(&deployment, "a@example.com");
    assert!(!ok);
    assert!(stderr.contains("stop the server first"), "{stderr}");
}
