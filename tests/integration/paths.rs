//! One reading of a request: every spelling of a path other than the
//! canonical one is refused at the edge, so no route, policy rule or
//! rate-limit class can be chosen by writing a path differently (THREATS.md,
//! finding 1); and where a request comes from is judged before it changes
//! anything (finding 12).

use crate::support::{TestServer, assert_error, example_deployment, raw_http, sign_in};

/// Spellings of `POST /v1/accounts/invite` that once reached the plugin
/// under a laxer rule, or could in another parser.
const INVITE_SPELLINGS: &[&str] = &[
    "/v1/accounts/invite//",
    "/v1/accounts/invite/",
    "/v1/accounts//invite",
    "//v1/accounts/invite",
    "/v1/accounts/./invite",
    "/v1/accounts/x/../invite",
    "/v1/accounts/%2e/invite",
    "/v1/accounts/x/%2E%2E/invite",
    "/v1/accounts/invite%2f",
    "/v1/accounts%2finvite",
    "/v1/accounts/invite%00",
    "/v1/accounts/invite%23",
    "/v1/accounts/invite%2523",
    "/v1/accounts\\invite",
];

#[tokio::test]
async fn no_spelling_of_an_admin_route_lets_a_user_invite() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let mallory = sign_in(&server.url(""), "mallory", &[], None).await;
    let auth = mallory.bearer();
    let body = r#"{"email":"mallory2@example.com","roles":["admin"]}"#;
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    for target in INVITE_SPELLINGS {
        let answer = raw_http(server.addr, "POST", target, &headers, body).await;
        assert_eq!(answer.status, 400, "{target}: {answer:?}");
        assert!(answer.body.contains("\"non_canonical_path\""), "{target}: {answer:?}");
        assert!(answer.head.contains("content-security-policy"), "{target}: security headers on refusals");
    }
    // An absolute-form target is read the same way.
    let absolute = format!("http://{}/v1/accounts/invite//", server.addr);
    assert_eq!(raw_http(server.addr, "POST", &absolute, &headers, body).await.status, 400);
    // Encoded characters that need no encoding are decoded once, so the
    // request is judged as what it names: the admin rule, 403.
    for target in ["/v1/accounts/%69nvite", "/v1/accounts/invite?x=/..//", "/v1/%61ccounts/invite"] {
        let answer = raw_http(server.addr, "POST", target, &headers, body).await;
        assert_eq!(answer.status, 403, "{target}: {answer:?}");
        assert!(answer.body.contains("\"forbidden\""), "{target}: {answer:?}");
    }
    // Case is part of the path: another case is another (absent) resource.
    assert_eq!(raw_http(server.addr, "POST", "/V1/accounts/invite", &headers, body).await.status, 404);
    let outbox = std::fs::read_to_string(deployment.data_path().join("outbox.jsonl")).unwrap_or_default();
    assert!(!outbox.contains("mallory2@example.com"), "no invitation was sent: {outbox}");
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_classes_cannot_be_chosen_by_spelling() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let json = [("content-type", "application/json")];
    for (target, body) in [
        ("/v1/sessions//", r#"{"email":"a@example.com","password":"x"}"#),
        ("/v1/sessions/", r#"{"email":"a@example.com","password":"x"}"#),
        ("/v1/accounts/password-reset//", r#"{"email":"a@example.com"}"#),
        ("/v1/accounts/signup/.", r#"{"email":"a@example.com","password":"x","display_name":"A"}"#),
        ("/v1/me/email//", r#"{"email":"a@example.com","current_password":"x"}"#),
    ] {
        let answer = raw_http(server.addr, "POST", target, &json, body).await;
        assert_eq!(answer.status, 400, "{target}: {answer:?}");
        assert!(answer.body.contains("\"non_canonical_path\""), "{target}: {answer:?}");
    }
    let trailing = reqwest::Client::new().get(server.url("/v1/hello/")).send().await.unwrap();
    let body = assert_error(trailing, 400, "non_canonical_path").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("use `/v1/hello`"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_accounts_plugin_checks_the_admin_role_itself() {
    let deployment = example_deployment("");
    // An operator's mistake: the admin routes opened to any signed-in user.
    let policy_file = deployment.dir.path().join("policies/routes.toml");
    let policy = std::fs::read_to_string(&policy_file).unwrap();
    let loosened = policy
        .replace(
            "route = \"POST /v1/accounts/invite\"\nallow = [\"admin\"]",
            "route = \"POST /v1/accounts/invite\"\nallow = \"authenticated\"",
        )
        .replace(
            "route = \"/v1/admin/accounts/**\"\nallow = [\"admin\"]",
            "route = \"/v1/admin/accounts/**\"\nallow = \"authenticated\"",
        );
    assert_eq!(
        loosened.matches("allow = \"authenticated\"").count(),
        policy.matches("allow = \"authenticated\"").count() + 2
    );
    std::fs::write(&policy_file, loosened).unwrap();
    let server = TestServer::start(&deployment).await;
    let mallory = sign_in(&server.url(""), "mallory", &[], None).await;
    let http = reqwest::Client::new();
    let invite = http
        .post(server.url("/v1/accounts/invite"))
        .header("authorization", mallory.bearer())
        .json(&serde_json::json!({ "email": "mallory2@example.com", "roles": ["admin"] }))
        .send()
        .await
        .unwrap();
    assert_error(invite, 403, "forbidden").await;
    let list =
        http.get(server.url("/v1/admin/accounts")).header("authorization", mallory.bearer()).send().await.unwrap();
    assert_error(list, 403, "forbidden").await;
    let suspend = http
        .post(server.url("/v1/admin/accounts/someone/suspend"))
        .header("authorization", mallory.bearer())
        .send()
        .await
        .unwrap();
    assert_error(suspend, 403, "forbidden").await;
    // An admin still can.
    let admin = sign_in(&server.url(""), "root", &["admin"], None).await;
    let list = http.get(server.url("/v1/admin/accounts")).header("authorization", admin.bearer()).send().await.unwrap();
    assert_eq!(list.status(), 200);
    server.stop().await;
}

/// A sign-in form posted from another site (`text/plain` needs no CORS
/// preflight) gets no session (finding 12).
#[tokio::test]
async fn a_sign_in_posted_from_another_site_gets_no_session() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let body = r#"{"email":"a@example.com","password":"correct horse battery staple"}"#;
    let own = format!("http://{}", server.addr);
    for (headers, status, code) in [
        (vec![("origin", "https://evil.example"), ("content-type", "text/plain")], 403, "csrf_cross_origin"),
        (vec![("origin", "null"), ("content-type", "application/json")], 403, "csrf_cross_origin"),
        (vec![("sec-fetch-site", "cross-site"), ("content-type", "text/plain")], 403, "csrf_cross_site"),
        (vec![("origin", own.as_str()), ("content-type", "text/plain")], 415, "unsupported_media_type"),
        (vec![("content-type", "application/x-www-form-urlencoded")], 415, "unsupported_media_type"),
        (vec![("origin", own.as_str()), ("content-type", "application/json")], 401, "invalid_credentials"),
    ] {
        let answer = raw_http(server.addr, "POST", "/v1/sessions", &headers, body).await;
        assert_eq!(answer.status, status, "{headers:?}: {answer:?}");
        assert!(answer.body.contains(&format!("\"{code}\"")), "{headers:?}: {answer:?}");
        assert!(!answer.head.contains("set-cookie"), "{headers:?}");
    }
    server.stop().await;
}

/// A path that two routes' patterns both match is judged by the rule of the
/// route the router sends it to, never by a rule written for the other.
#[tokio::test]
async fn a_path_two_routes_match_is_judged_as_the_route_it_reaches() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    // `GET /v1/media/{id}/info` is public, but this path goes to
    // `GET /v1/media/uploads/{id}`, which is for signed-in callers: the
    // edge refuses it before the media plugin sees it (the plugin's own
    // refusal would carry `Tus-Resumable`).
    let upload =
        client.get(server.url("/v1/media/uploads/info")).header("tus-resumable", "1.0.0").send().await.unwrap();
    assert!(upload.headers().get("tus-resumable").is_none(), "the plugin answered: {:?}", upload.headers());
    assert_error(upload, 401, "unauthenticated").await;
    // The public rule still judges its own route: the plugin answers.
    let info = client.get(server.url("/v1/media/abc/info")).send().await.unwrap();
    assert_error(info, 404, "not_found").await;
    server.stop().await;
}
