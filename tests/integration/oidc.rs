//! Sign-in through an external OpenID Connect provider, against a real one:
//! the `oidc-provider` package from the npm registry (tests/oidc), run on
//! loopback by Node, with its test-only controls. The example deployment
//! with the accounts plugin decides who gets in.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, api_sign_in};
use crate::support::{Deployment, TestServer, example_deployment, get_json, sign_in};

const PROVIDER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/oidc");
const SECRET: &str = "a test client secret";

/// `npm ci` once, when the provider's packages are not installed yet.
fn install() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap();
    if *installed || std::path::Path::new(PROVIDER_DIR).join("node_modules/oidc-provider").is_dir() {
        *installed = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(PROVIDER_DIR)
        .status()
        .expect("npm (Node's package manager) runs");
    assert!(status.success(), "npm ci in tests/oidc failed");
    *installed = true;
}

/// The provider, running until dropped.
pub struct OidcProvider {
    child: Child,
    /// Its issuer, `http://127.0.0.1:PORT`.
    pub issuer: String,
}

impl OidcProvider {
    /// Starts one that sends browsers back to `redirect_uri`.
    pub fn start(redirect_uri: &str) -> Self {
        install();
        let mut child = Command::new("node")
            .args(["provider.mjs", "--redirect-uri", redirect_uri, "--client-secret", SECRET])
            .current_dir(PROVIDER_DIR)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let issuer =
            line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("provider said {line:?}")).to_owned();
        // Whatever it prints later is drained: a closed pipe would kill it.
        std::thread::spawn(move || out.lines().for_each(drop));
        Self { child, issuer }
    }

    /// Calls a test-only control (`login`, `rotate`, `alg`, `discovery`, `fail`, `clock`).
    pub async fn control(&self, name: &str, body: Value) {
        let response = Client::new().post(format!("{}/_test/{name}", self.issuer)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "control {name}");
    }

    /// The next sign-in finishes as this person.
    pub async fn next(&self, sub: &str, email: &str, verified: bool) {
        let person = json!({ "sub": sub, "email": email, "email_verified": verified, "name": "Ada Lovelace" });
        self.control("login", person).await;
    }

    /// Requests the provider served at `path` so far.
    pub async fn requests(&self, path: &str) -> u64 {
        let counts: Value =
            Client::new().get(format!("{}/_test/requests", self.issuer)).send().await.unwrap().json().await.unwrap();
        counts[path].as_u64().unwrap_or(0)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example deployment signing people in through the provider `test`.
fn deployment(issuer: &str, port: u16, extra: &str) -> Deployment {
    deployment_with(issuer, port, "", extra)
}

/// Like [`deployment`], with `auth_keys` in `[auth]` and `extra` after the
/// provider's keys (its own or further tables).
fn deployment_with(issuer: &str, port: u16, auth_keys: &str, extra: &str) -> Deployment {
    let deployment = example_deployment("");
    let dir = deployment.config_path().parent().unwrap().to_owned();
    std::fs::write(dir.join("oidc-secret"), format!("{SECRET}\n")).unwrap();
    let config = std::fs::read_to_string(deployment.config_path())
        .unwrap()
        .replace("dev_insecure_cookies = false", "dev_insecure_cookies = true")
        + &format!(
            "\n[auth]\n{auth_keys}public_base_url = \"http://127.0.0.1:{port}\"\n\n[auth.providers.test]\nissuer = \"{issuer}\"\n\
         client_id = \"plinth\"\nclient_secret_file = \"oidc-secret\"\n{extra}"
        );
    std::fs::write(deployment.config_path(), config).unwrap();
    deployment
}

/// A provider and the server signing people in through it.
struct Setup {
    provider: OidcProvider,
    server: TestServer,
    _deployment: Deployment,
}

async fn setup(extra: &str) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = OidcProvider::start(&format!("http://127.0.0.1:{port}/v1/auth/oidc/test/callback"));
    let deployment = deployment(&provider.issuer, port, extra);
    let server = TestServer::start_on(&deployment, listener).await;
    // The drift monitor's first probe runs at start; counts begin after it.
    for _ in 0..200 {
        if !status(&server).await["last_probe"].is_null() {
            return Setup { provider, server, _deployment: deployment };
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the first probe did not run");
}

async fn admin(server: &TestServer) -> String {
    sign_in(&server.url(""), "ops", &["admin"], None).await.bearer()
}

/// `GET /admin/auth/providers`, the provider `test`.
async fn status(server: &TestServer) -> Value {
    get_json(server, "/admin/auth/providers", &admin(server).await).await["providers"][0].clone()
}

/// `POST /admin/auth/providers/test/{action}`.
async fn provider_action(server: &TestServer, action: &str) -> Value {
    let response = Client::new()
        .post(server.url(&format!("/admin/auth/providers/test/{action}")))
        .header("authorization", admin(server).await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn state_metric(server: &TestServer) -> Option<f64> {
    let line = "plinth_auth_provider_state{provider=\"test\"}";
    crate::support::metric(&server.url(""), &admin(server).await, line).await
}

/// A browser: a cookie jar, redirects followed by hand.
fn browser() -> Client {
    Client::builder()
        .cookie_provider(Arc::new(reqwest::cookie::Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a sign-in and follows it through the provider; the callback URL
/// the provider sends the browser back to.
async fn to_callback(browser: &Client, server: &TestServer) -> String {
    let mut url = server.url("/v1/auth/oidc/test");
    for _ in 0..10 {
        let response = browser.get(&url).send().await.unwrap();
        let status = response.status();
        let Some(location) = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()) else {
            panic!("{url}: {status} {}", response.text().await.unwrap());
        };
        let next = reqwest::Url::parse(&url).unwrap().join(&location).unwrap();
        if next.path() == "/v1/auth/oidc/test/callback" {
            return next.into();
        }
        url = next.into();
    }
    panic!("the sign-in never came back");
}

/// The callback's answer, not followed.
async fn callback(browser: &Client, url: &str) -> reqwest::Response {
    browser.get(url).send().await.unwrap()
}

/// Signs in through the provider as whoever it finishes as; the profile.
async fn signed_in(browser: &Client, server: &TestServer) -> Value {
    let url = to_callback(browser, server).await;
    let response = callback(browser, &url).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["location"], "/");
    let cookies: Vec<&str> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("plinth_session=") && c.contains("HttpOnly")), "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("plinth_oidc=;")), "the binding is cleared: {cookies:?}");
    let me = browser.get(server.url("/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    // The page learns its CSRF token from the status, and can then change things.
    let status: Value = browser.get(server.url("/v1/auth/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["session"]["account_id"], me["id"]);
    let csrf = status["session"]["csrf_token"].as_str().unwrap();
    let renamed = browser
        .patch(server.url("/v1/me"))
        .header("x-csrf-token", csrf)
        .header("if-match", format!("\"v{}\"", 1))
        .json(&json!({ "display_name": me["display_name"] }))
        .send()
        .await
        .unwrap();
    assert_ne!(renamed.status(), StatusCode::FORBIDDEN, "the CSRF token works: {}", renamed.text().await.unwrap());
    me
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

/// The host's `auth.oidc` audit records.
async fn audit(server: &TestServer) -> Vec<Value> {
    audit_of(server, "auth.oidc").await
}

async fn audit_of(server: &TestServer, action: &str) -> Vec<Value> {
    let page = get_json(server, "/admin/audit?limit=1000", &admin(server).await).await;
    page["records"].as_array().unwrap().iter().filter(|r| r["action"] == action).cloned().collect()
}

#[tokio::test]
async fn a_person_signs_in_through_the_provider_once_per_state_and_keeps_one_account() {
    let s = setup("").await;
    s.provider.next("ada-1", "Ada@Example.com", true).await;
    let ada = browser();
    let profile = signed_in(&ada, &s.server).await;
    assert_eq!((profile["email"].as_str(), profile["state"].as_str()), (Some("ada@example.com"), Some("active")));
    assert_eq!(profile["display_name"], "Ada Lovelace");
    assert!(profile["verified_at"].is_u64(), "{profile}");

    // Again, from another browser: the same account.
    let again = signed_in(&browser(), &s.server).await;
    assert_eq!(again["id"], profile["id"]);

    // A callback works once, and only in the browser that started it.
    let url = to_callback(&ada, &s.server).await;
    assert_eq!(callback(&ada, &url).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(error_code(callback(&ada, &url).await).await, (StatusCode::BAD_REQUEST, "oidc_state_invalid".into()));
    let url = to_callback(&ada, &s.server).await;
    let elsewhere = browser().get(&url).send().await.unwrap();
    assert_eq!(error_code(elsewhere).await, (StatusCode::BAD_REQUEST, "oidc_state_invalid".into()));
    let records = audit(&s.server).await;
    assert!(records.iter().any(|r| r["outcome"] == "success" && r["target"] == profile["id"]), "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r["outcome"] == "denied" && r["reason"].as_str().unwrap().starts_with("oidc_state_invalid"))
    );

    // An account made this way has no password.
    let password = api_sign_in(&s.server, "ada@example.com", PASSWORD).await;
    assert_eq!(error_code(password).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));
    s.server.stop().await;
}

#[tokio::test]
async fn an_address_links_an_account_only_when_the_provider_verified_it() {
    let s = setup("").await;
    let base = s.server.url("");
    let signup = json!({ "email": "bo@example.com", "password": PASSWORD, "display_name": "Bo" });
    let client = Client::new();
    assert_eq!(client.post(format!("{base}/v1/accounts/signup")).json(&signup).send().await.unwrap().status(), 202);

    // Someone signed up with Bo's address (pending); a provider that has not
    // verified the address gets no link, and no account.
    s.provider.next("bo-at-provider", "bo@example.com", false).await;
    let bo = browser();
    let url = to_callback(&bo, &s.server).await;
    assert_eq!(error_code(callback(&bo, &url).await).await, (StatusCode::FORBIDDEN, "email_unverified".into()));

    // Verified: the unverified signup is taken over, and loses its password.
    s.provider.next("bo-at-provider", "bo@example.com", true).await;
    let profile = signed_in(&bo, &s.server).await;
    assert_eq!((profile["email"].as_str(), profile["state"].as_str()), (Some("bo@example.com"), Some("active")));
    let squatter = api_sign_in(&s.server, "bo@example.com", PASSWORD).await;
    assert_eq!(error_code(squatter).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".into()));

    // Another subject with the same proven address reaches the same account.
    s.provider.next("bo-second-subject", "bo@example.com", true).await;
    let linked = signed_in(&browser(), &s.server).await;
    assert_eq!(linked["id"], profile["id"]);

    // No address at all: refused.
    s.provider.control("login", json!({ "sub": "nobody", "email_verified": false })).await;
    let anonymous = browser();
    let url = to_callback(&anonymous, &s.server).await;
    assert_eq!(error_code(callback(&anonymous, &url).await).await, (StatusCode::FORBIDDEN, "email_required".into()));
    s.server.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_a_token_naming_an_unknown_key_within_the_cooldown_is_refused() {
    let s = setup("key_refetch_cooldown = \"5s\"\n").await;
    s.provider.next("cy", "cy@example.com", true).await;
    signed_in(&browser(), &s.server).await;
    signed_in(&browser(), &s.server).await;
    assert_eq!(s.provider.requests("/jwks").await, 1, "keys fetched once for two sign-ins");

    // The provider rotates its key: once the cooldown since the last fetch
    // is over, one refetch finds the new one.
    s.provider.control("rotate", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(5100)).await;
    signed_in(&browser(), &s.server).await;
    signed_in(&browser(), &s.server).await;
    assert_eq!(s.provider.requests("/jwks").await, 2, "exactly one refetch after the rotation");

    // Rotated again within the cooldown: refused, and no refetch.
    s.provider.control("rotate", json!({})).await;
    for _ in 0..3 {
        let cy = browser();
        let url = to_callback(&cy, &s.server).await;
        let (status, code) = error_code(callback(&cy, &url).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "oidc_token_invalid"));
    }
    assert_eq!(s.provider.requests("/jwks").await, 2, "no refetch within the cooldown");
    s.server.stop().await;
}

#[tokio::test]
async fn a_token_signed_with_an_algorithm_not_allowed_is_refused_and_recorded() {
    let s = setup("algorithms = [\"ES256\"]\n").await;
    // It holds an ES256 key, but signs this client's tokens with RS256.
    s.provider.control("alg", json!({ "alg": "ES256" })).await;
    s.provider.control("alg", json!({ "alg": "RS256" })).await;
    provider_action(&s.server, "probe").await;
    s.provider.next("di", "di@example.com", true).await;
    let di = browser();
    let url = to_callback(&di, &s.server).await;
    let response = callback(&di, &url).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "oidc_token_invalid");
    assert!(body["error"]["message"].as_str().unwrap().contains("signed with RS256"), "{body}");
    // Switched to an allowed one, it works; a shared-secret one does not.
    s.provider.control("alg", json!({ "alg": "ES256" })).await;
    signed_in(&browser(), &s.server).await;
    s.provider.control("alg", json!({ "alg": "HS256" })).await;
    let url = to_callback(&di, &s.server).await;
    let (status, code) = error_code(callback(&di, &url).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "oidc_token_invalid"));
    // Recorded (sampled per client: the second refusal within the minute is
    // counted into the next record, not written).
    let records = audit(&s.server).await;
    let refusal = records.iter().find(|r| r["outcome"] == "denied").expect("a refusal is recorded");
    assert!(refusal["reason"].as_str().unwrap().contains("signed with RS256"), "{records:?}");
    s.server.stop().await;
}

#[tokio::test]
async fn a_response_naming_another_issuer_is_refused_as_a_mix_up() {
    let s = setup("").await;
    s.provider.next("ed", "ed@example.com", true).await;
    let ed = browser();
    let url = to_callback(&ed, &s.server).await;
    let forged = url.replace(&format!("iss={}", urlencode(&s.provider.issuer)), "iss=https%3A%2F%2Fattacker.example");
    assert_ne!(forged, url);
    let (status, code) = error_code(callback(&ed, &forged).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "oidc_issuer_mismatch"));
    let dropped = to_callback(&ed, &s.server).await;
    let without = dropped.replace(&format!("&iss={}", urlencode(&s.provider.issuer)), "");
    let (status, code) = error_code(callback(&ed, &without).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "oidc_issuer_mismatch"), "it always sends iss");
    s.server.stop().await;
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_provider_down_at_start_costs_only_its_sign_ins_and_is_used_once_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = OidcProvider::start(&format!("http://127.0.0.1:{port}/v1/auth/oidc/test/callback"));
    provider.control("fail", json!({ "path": "*", "status": 503 })).await;
    let deployment = deployment(&provider.issuer, port, "");
    let server = TestServer::start_on(&deployment, listener).await;
    let down = browser().get(server.url("/v1/auth/oidc/test")).send().await.unwrap();
    assert_eq!(error_code(down).await, (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable".into()));
    let health = Client::new().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    provider.control("fail", json!({ "path": "*" })).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    provider.next("fay", "fay@example.com", true).await;
    signed_in(&browser(), &server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_or_dropping_s256_fails_closed() {
    for (patch, why) in [
        (json!({ "issuer": "https://elsewhere.example" }), "names issuer `https://elsewhere.example`"),
        (json!({ "code_challenge_methods_supported": ["plain"] }), "no longer offers PKCE with S256"),
    ] {
        let s = setup("").await;
        s.provider.control("discovery", patch).await;
        provider_action(&s.server, "probe").await;
        let refused = browser().get(s.server.url("/v1/auth/oidc/test")).send().await.unwrap();
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "provider_unavailable");
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{body}");
        s.server.stop().await;
    }
}

#[tokio::test]
async fn a_token_from_a_clock_far_ahead_is_refused() {
    let s = setup("clock_skew = \"60s\"\n").await;
    s.provider.next("gus", "gus@example.com", true).await;
    s.provider.control("clock", json!({ "offset": 3600 })).await;
    let gus = browser();
    let url = to_callback(&gus, &s.server).await;
    let response = callback(&gus, &url).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "oidc_token_invalid", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("in the future"), "{body}");
    s.server.stop().await;
}

#[tokio::test]
async fn a_subject_in_a_new_shape_is_refused_and_reported_until_an_operator_accepts_it() {
    let s = setup("").await;
    s.provider.next("248289761001", "hal@example.com", true).await;
    signed_in(&browser(), &s.server).await;
    assert_eq!(status(&s.server).await["state"], "degraded", "no baseline yet");
    let accepted = provider_action(&s.server, "baseline").await;
    assert_eq!(accepted["state"], "healthy", "{accepted}");
    assert_eq!(accepted["baseline"]["observation"]["subject_formats"], json!(["numeric/short"]));
    assert_eq!(state_metric(&s.server).await, Some(0.0));
    assert_eq!(audit_of(&s.server, "auth.baseline_accepted").await.len(), 1);

    // The provider names someone with a UUID: that sign-in is refused (no
    // person is mapped to a new account) and reported; the others go on.
    s.provider.next("8c3e6a0e-3b1f-4f5a-9d1e-2b7c4a6f0e11", "ivy@example.com", true).await;
    let ivy = browser();
    let url = to_callback(&ivy, &s.server).await;
    let body: Value = callback(&ivy, &url).await.json().await.unwrap();
    assert_eq!(body["error"]["code"], "oidc_subject_format_changed", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("shaped `uuid/medium`"), "{body}");
    let now = status(&s.server).await;
    assert_eq!((now["state"].as_str(), now["drift"][0]["field"].as_str()), (Some("degraded"), Some("subject_formats")));
    assert_eq!(now["drift"][0]["severity"], "warning");
    assert_eq!(state_metric(&s.server).await, Some(1.0));
    let recorded = audit_of(&s.server, "auth.drift").await;
    assert!(recorded.iter().any(|r| r["reason"].as_str().unwrap().contains("subject_formats")), "{recorded:?}");
    let drift = get_json(&s.server, "/admin/auth/drift", &admin(&s.server).await).await;
    assert_eq!(drift["providers"][0]["drift"][0]["field"], "subject_formats");
    s.provider.next("248289761001", "hal@example.com", true).await;
    signed_in(&browser(), &s.server).await;

    provider_action(&s.server, "baseline").await;
    s.provider.next("8c3e6a0e-3b1f-4f5a-9d1e-2b7c4a6f0e11", "ivy@example.com", true).await;
    let profile = signed_in(&browser(), &s.server).await;
    assert_eq!(profile["email"], "ivy@example.com");
    s.server.stop().await;
}

#[tokio::test]
async fn the_monitor_finds_s256_gone_and_email_verified_dropped_and_fails_closed() {
    let s = setup("").await;
    s.provider.next("jo", "jo@example.com", true).await;
    signed_in(&browser(), &s.server).await;
    provider_action(&s.server, "baseline").await;

    // email_verified no longer sent: nothing links by address any more, and
    // once three people's tokens lack it (one person's cannot do it), the
    // provider fails closed.
    let mut answers = Vec::new();
    for sub in ["jo", "kai", "lia"] {
        s.provider.control("login", json!({ "sub": sub, "email": format!("{sub}@example.com") })).await;
        let person = browser();
        let url = to_callback(&person, &s.server).await;
        let response = callback(&person, &url).await;
        let status = response.status();
        answers.push((status, response.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, StatusCode::SEE_OTHER, "jo's link is by subject: {answers:?}");
    assert!(answers[1].1.contains("email_unverified"), "{answers:?}");
    assert_eq!(answers[2].0, StatusCode::SERVICE_UNAVAILABLE, "{answers:?}");
    assert!(answers[2].1.contains("email_verified_claim was `true`"), "{answers:?}");
    provider_action(&s.server, "baseline").await;

    // S256 dropped from discovery: the next probe finds it.
    s.provider.control("discovery", json!({ "code_challenge_methods_supported": ["plain"] })).await;
    let probed = provider_action(&s.server, "probe").await;
    assert_eq!(probed["state"], "down", "{probed}");
    assert!(probed["drift"].as_array().unwrap().iter().any(|d| d["field"] == "s256" && d["severity"] == "breaking"));
    let start = browser().get(s.server.url("/v1/auth/oidc/test")).send().await.unwrap();
    assert_eq!(error_code(start).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Restored: the next probe finds nothing amiss.
    s.provider.control("discovery", json!({})).await;
    assert_eq!(provider_action(&s.server, "probe").await["state"], "healthy");
    s.server.stop().await;
}

#[tokio::test]
async fn an_operator_accepts_a_baseline_from_the_command_line_with_the_server_stopped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = OidcProvider::start(&format!("http://127.0.0.1:{port}/v1/auth/oidc/test/callback"));
    let deployment = deployment(&provider.issuer, port, "");
    let (config, data) = (deployment.config_path(), deployment.data_path());
    let args = ["auth", "baseline", "accept", "--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let (ok, stdout, stderr) = crate::support::plinth_cli(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok: provider `test`: baseline accepted"), "{stdout}");
    let (ok, _, stderr) = crate::support::plinth_cli(&[&args[..5], &["--provider", "nope"]].concat());
    assert!(!ok && stderr.contains("no provider `nope`"), "{stderr}");

    // With no admin able to sign in, emergency mode is switched from the
    // command line too.
    let emergency = ["auth", "emergency", "on", "--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let (ok, _, stderr) = crate::support::plinth_cli(&emergency);
    assert!(!ok && stderr.contains("--reason says why"), "{stderr}");
    let (ok, stdout, stderr) =
        crate::support::plinth_cli(&[&emergency[..], &["--reason", "provider outage", "--duration", "1h"]].concat());
    assert!(ok && stdout.starts_with("ok: emergency mode is on until"), "{stdout}{stderr}");

    let server = TestServer::start_on(&deployment, listener).await;
    let status = status(&server).await;
    assert_eq!(status["baseline"]["accepted_by"], "cli", "{status}");
    assert_eq!(status["baseline"]["observation"]["issuer"], provider.issuer.as_str());
    let mode = get_json(&server, "/admin/auth/emergency", &admin(&server).await).await;
    assert_eq!((mode["on"].as_bool(), &mode["by"]), (Some(true), &json!(["cli"])), "{mode}");
    server.stop().await;
    let off = ["auth", "emergency", "off", "--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let (ok, stdout, stderr) = crate::support::plinth_cli(&off);
    assert!(ok && stdout.starts_with("ok: emergency mode is off"), "{stdout}{stderr}");
}

/// Signs in through the provider as `sub` with a verified `email` in a new
/// browser; `Bearer …` with the session's token.
async fn provider_bearer(s: &Setup, sub: &str, email: &str) -> String {
    s.provider.next(sub, email, true).await;
    let browser = browser();
    let url = to_callback(&browser, &s.server).await;
    let response = callback(&browser, &url).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{}", response.text().await.unwrap());
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find_map(|c| c.strip_prefix("plinth_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    format!("Bearer {cookie}")
}

/// `METHOD path` as `bearer`; the status and JSON body.
async fn call(server: &TestServer, method: reqwest::Method, path: &str, bearer: &str) -> (StatusCode, Value) {
    let response =
        Client::new().request(method, server.url(path)).header("authorization", bearer).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn emergency_mode_needs_two_admins_lets_break_glass_passwords_and_links_in_and_its_end_revokes_them() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let provider = OidcProvider::start(&format!("http://127.0.0.1:{port}/v1/auth/oidc/test/callback"));
    let deployment = deployment_with(
        &provider.issuer,
        port,
        "password_sign_in = \"emergency_only\"\n",
        "\n[auth.emergency]\napprovals = 2\nsession_ttl = \"30m\"\n",
    );
    let invitations: Vec<String> = [
        ("one@example.com", "admin"),
        ("two@example.com", "admin"),
        ("glass@example.com", "break-glass"),
        ("pat@example.com", ""),
    ]
    .iter()
    .map(|(email, roles)| crate::slices::invite(&deployment, email, roles))
    .collect();
    let server = TestServer::start_on(&deployment, listener).await;
    for token in &invitations {
        crate::slices::accept(&server, token, "Invited").await;
    }
    let s = Setup { provider, server, _deployment: deployment };
    let password = |email: &'static str| {
        let server = &s.server;
        async move { api_sign_in(server, email, crate::slices::PASSWORD).await }
    };
    let status = |s: &Setup| {
        let url = s.server.url("/v1/auth/status");
        async move { Client::new().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(status(&s).await["password"], "off");
    assert_eq!(error_code(password("glass@example.com").await).await.1, "password_sign_in_disabled");

    // Admins sign in through the provider (their addresses link their accounts).
    let one = provider_bearer(&s, "one", "one@example.com").await;
    let two = provider_bearer(&s, "two", "two@example.com").await;
    let ann = provider_bearer(&s, "ann", "ann@example.com").await;
    let ann_id = call(&s.server, reqwest::Method::GET, "/v1/me", &ann).await.1["id"].as_str().unwrap().to_owned();

    // The provider goes down: after three failed probes, sign-ins through it
    // are refused at once.
    s.provider.control("fail", json!({ "path": "*", "status": 503 })).await;
    for _ in 0..3 {
        call(&s.server, reqwest::Method::POST, "/admin/auth/providers/test/probe", &one).await;
    }
    let start = browser().get(s.server.url("/v1/auth/oidc/test")).send().await.unwrap();
    assert_eq!(error_code(start).await, (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable".into()));
    assert_eq!(status(&s).await["providers"][0]["available"], false);
    let on = "/admin/auth/emergency?reason=provider%20outage";
    let (code, pending) = call(&s.server, reqwest::Method::POST, on, &one).await;
    assert_eq!((code, pending["on"].as_bool()), (StatusCode::ACCEPTED, Some(false)), "{pending}");
    let (code, again) = call(&s.server, reqwest::Method::POST, on, &one).await;
    assert_eq!((code, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("second_admin_needed")));
    let (code, switched) = call(&s.server, reqwest::Method::POST, on, &two).await;
    assert_eq!((code, switched["on"].as_bool()), (StatusCode::OK, Some(true)), "{switched}");
    assert_eq!(switched["by"].as_array().unwrap().len(), 2);
    let now = status(&s).await;
    assert_eq!((now["password"].as_str(), now["emergency"]["on"].as_bool()), (Some("break_glass_only"), Some(true)));

    // Break-glass passwords work, with short sessions; others still do not.
    let glass = password("glass@example.com").await;
    assert_eq!(glass.status(), StatusCode::OK);
    let glass: Value = glass.json().await.unwrap();
    let ttl = glass["expires_at"].as_u64().unwrap()
        - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(ttl <= 1800, "an emergency session lasts at most session_ttl: {ttl}");
    let glass = format!("Bearer {}", glass["token"].as_str().unwrap());
    // Others are told what a wrong password is told: the answer says nothing
    // of the password, nor of who holds the role.
    assert_eq!(error_code(password("pat@example.com").await).await.1, "invalid_credentials");

    // A single-use link for a provider-only account.
    let (code, link) =
        call(&s.server, reqwest::Method::POST, &format!("/admin/auth/emergency/links?account={ann_id}"), &one).await;
    assert_eq!(code, StatusCode::CREATED, "{link}");
    let url = link["url"].as_str().unwrap().to_owned();
    let ann_browser = browser();
    // Following the link shows a page (a mail scanner uses nothing up); its
    // button signs in.
    let page = ann_browser.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("name=\"confirm\" value=\"yes\""));
    let url = format!("{url}?confirm=yes");
    let from_elsewhere = ann_browser.get(&url).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(from_elsewhere.status(), StatusCode::OK, "another site's navigation only shows the page");
    let followed = ann_browser.get(&url).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(followed.status(), StatusCode::SEE_OTHER);
    let me = ann_browser.get(s.server.url("/v1/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let again = browser().get(&url).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(error_code(again).await.1, "link_invalid", "used once");

    // The provider is back: no new account through it while the mode is
    // on; linked people sign in.
    s.provider.control("fail", json!({ "path": "*" })).await;
    let (_, probed) = call(&s.server, reqwest::Method::POST, "/admin/auth/providers/test/probe", &one).await;
    assert_ne!(probed["state"], "down", "{probed}");
    s.provider.next("newcomer", "new@example.com", true).await;
    let newcomer = browser();
    let to = to_callback(&newcomer, &s.server).await;
    assert_eq!(
        error_code(callback(&newcomer, &to).await).await,
        (StatusCode::FORBIDDEN, "account_creation_paused".into())
    );

    // Ended: the emergency sessions go, the others stay.
    let (code, ended) = call(&s.server, reqwest::Method::DELETE, "/admin/auth/emergency", &one).await;
    assert_eq!((code, ended["sessions_revoked"].as_u64()), (StatusCode::OK, Some(2)), "{ended}");
    assert_eq!(call(&s.server, reqwest::Method::GET, "/v1/me", &glass).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(ann_browser.get(s.server.url("/v1/me")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s.server, reqwest::Method::GET, "/v1/me", &ann).await.0, StatusCode::OK);

    // On again for two seconds: it ends by itself, and so do its sessions.
    let brief = "/admin/auth/emergency?reason=drill&seconds=2";
    assert_eq!(call(&s.server, reqwest::Method::POST, brief, &two).await.0, StatusCode::ACCEPTED);
    assert_eq!(call(&s.server, reqwest::Method::POST, brief, &one).await.0, StatusCode::OK);
    let glass = password("glass@example.com").await.json::<Value>().await.unwrap();
    let glass = format!("Bearer {}", glass["token"].as_str().unwrap());
    assert_eq!(call(&s.server, reqwest::Method::GET, "/v1/me", &glass).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert_eq!(call(&s.server, reqwest::Method::GET, "/v1/me", &glass).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&s).await["emergency"]["on"], false);

    let admin = one.clone();
    let audit = call(&s.server, reqwest::Method::GET, "/admin/audit?limit=1000", &admin).await.1;
    let actions: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in [
        "auth.emergency_requested",
        "auth.emergency_on",
        "auth.emergency_link",
        "auth.emergency_off",
        "session.revoked_emergency",
        "auth.emergency_sign_in",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    s.server.stop().await;
}

#[tokio::test]
async fn a_provider_going_down_switches_emergency_mode_on_when_so_configured() {
    let s = setup("\n[auth.emergency]\non_provider_down = true\nmax_duration = \"2h\"\n").await;
    s.provider.next("kim", "kim@example.com", true).await;
    signed_in(&browser(), &s.server).await;
    provider_action(&s.server, "baseline").await;
    let admin = admin(&s.server).await;
    assert_eq!(get_json(&s.server, "/admin/auth/emergency", &admin).await["on"], false);
    s.provider.control("discovery", json!({ "code_challenge_methods_supported": ["plain"] })).await;
    assert_eq!(provider_action(&s.server, "probe").await["state"], "down");
    let mode = get_json(&s.server, "/admin/auth/emergency", &admin).await;
    assert_eq!((mode["on"].as_bool(), &mode["by"]), (Some(true), &json!(["system"])), "{mode}");
    assert!(mode["reason"].as_str().unwrap().contains("s256"), "{mode}");
    let status: Value = Client::new().get(s.server.url("/v1/auth/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["providers"][0]["available"], false);
    assert_eq!(status["emergency"]["on"], true);
    s.server.stop().await;
}

#[tokio::test]
async fn a_code_the_provider_refuses_is_oidc_code_invalid() {
    let s = setup("").await;
    s.provider.next("lu", "lu@example.com", true).await;
    let lu = browser();
    let url = to_callback(&lu, &s.server).await;
    s.provider.control("fail", json!({ "path": "/token", "status": 400, "error": "invalid_grant" })).await;
    assert_eq!(error_code(callback(&lu, &url).await).await, (StatusCode::BAD_REQUEST, "oidc_code_invalid".into()));
    s.server.stop().await;
}
