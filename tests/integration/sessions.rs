//! Host-owned sessions: cookie attributes, bearer use, fixation, revocation,
//! expiry, suspension, and CSRF.

use std::time::Duration;

use crate::support::{
    Deployment, ISSUER_POLICY, LOOSE_LIMITS, TEST_SERVER, TestServer, assert_error, issuer_plugin, sign_in,
};

async fn server(extra: &str) -> (Deployment, TestServer) {
    let deployment =
        Deployment::with_policy(&format!("{LOOSE_LIMITS}{extra}{TEST_SERVER}{}", issuer_plugin()), ISSUER_POLICY);
    let server = TestServer::start(&deployment).await;
    (deployment, server)
}

async fn whoami(server: &TestServer, header: (&str, String)) -> reqwest::Response {
    reqwest::Client::new().get(server.url("/v1/test/whoami")).header(header.0, header.1).send().await.unwrap()
}

#[tokio::test]
async fn cookie_attributes_bearer_and_no_store() {
    let (_d, server) = server("").await;
    let ann = sign_in(&server.url(""), "ann", &["user"], None).await;
    assert_eq!(ann.cookie_name, "__Host-plinth_session");
    let attributes: Vec<&str> = ann.set_cookie.split("; ").skip(1).collect();
    assert_eq!(attributes, ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=43200"]);
    assert_eq!(ann.token.len(), 64, "256 random bits, hex");
    for header in [("cookie", ann.cookie()), ("authorization", ann.bearer())] {
        let response = whoami(&server, header).await;
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.text().await.unwrap(), format!("ann user {}", ann.session_id));
    }
    let anonymous = whoami(&server, ("x-nothing", String::new())).await;
    assert_error(anonymous, 401, "unauthenticated").await;
    server.stop().await;
}

#[tokio::test]
async fn a_login_replaces_the_session_it_came_with() {
    let (_d, server) = server("").await;
    let before = sign_in(&server.url(""), "fay", &[], None).await;
    let after = sign_in(&server.url(""), "fay", &[], Some(&before)).await;
    assert_ne!(before.token, after.token);
    assert_eq!(whoami(&server, ("cookie", before.cookie())).await.status(), 401);
    assert_eq!(whoami(&server, ("cookie", after.cookie())).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let (_d, server) = server("").await;
    let base = server.url("");
    let phone = sign_in(&base, "gil", &[], None).await;
    let laptop = sign_in(&base, "gil", &[], None).await;
    let client = reqwest::Client::new();
    let listed =
        client.get(server.url("/v1/test/sessions")).header("authorization", laptop.bearer()).send().await.unwrap();
    let mut ids: Vec<String> = listed.text().await.unwrap().lines().map(str::to_owned).collect();
    ids.sort();
    let mut expected = vec![phone.session_id.clone(), laptop.session_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let revoke = client
        .delete(server.url(&format!("/v1/test/sessions/{}", phone.session_id)))
        .header("authorization", laptop.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    assert_eq!(whoami(&server, ("authorization", phone.bearer())).await.status(), 401);

    let logout = client
        .post(server.url("/v1/test/logout"))
        .header("cookie", laptop.cookie())
        .header("x-csrf-token", &laptop.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(logout.headers()["clear-site-data"], "\"cookies\"");
    assert_eq!(whoami(&server, ("cookie", laptop.cookie())).await.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn idle_sessions_expire() {
    let (_d, server) = server("[sessions]\nidle_timeout = \"2s\"\nabsolute_timeout = \"1h\"\n\n").await;
    let hal = sign_in(&server.url(""), "hal", &[], None).await;
    assert_eq!(whoami(&server, ("authorization", hal.bearer())).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(whoami(&server, ("authorization", hal.bearer())).await.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn suspension_kills_live_sessions_at_once() {
    let (_d, server) = server("").await;
    let ivy = sign_in(&server.url(""), "ivy", &["user"], None).await;
    assert_eq!(whoami(&server, ("authorization", ivy.bearer())).await.status(), 200);
    let suspend = reqwest::Client::new().post(server.url("/v1/test/status/ivy/suspended")).send().await.unwrap();
    assert_eq!(suspend.status(), 204);
    assert_eq!(whoami(&server, ("authorization", ivy.bearer())).await.status(), 401);
    server.stop().await;
}

/// However many times an account signs in, a suspension ends every one
/// of its sessions, and a reactivation brings none back (finding 5).
#[tokio::test]
async fn no_session_outlives_a_suspension_however_many_there_are() {
    let (_d, server) = server("").await;
    let mut sessions = Vec::new();
    for _ in 0..110 {
        sessions.push(sign_in(&server.url(""), "kit", &[], None).await);
    }
    let client = reqwest::Client::new();
    let listed = client.get(server.url("/v1/test/sessions")).header("authorization", sessions[109].bearer());
    let listed = listed.send().await.unwrap().text().await.unwrap();
    assert_eq!(listed.lines().count(), 100, "an account holds at most 100 sessions; the oldest made room");
    for status in ["suspended", "active"] {
        let changed = client.post(server.url(&format!("/v1/test/status/kit/{status}"))).send().await.unwrap();
        assert_eq!(changed.status(), 204);
    }
    for session in &sessions {
        assert_eq!(whoami(&server, ("authorization", session.bearer())).await.status(), 401);
    }
    server.stop().await;
}

#[tokio::test]
async fn csrf_missing_wrong_and_cross_site_are_refused() {
    let (_d, server) = server("").await;
    let jo = sign_in(&server.url(""), "jo", &[], None).await;
    let client = reqwest::Client::new();
    let echo = |extra: &[(&str, &str)]| {
        let mut request = client.post(server.url("/v1/test/echo")).header("cookie", jo.cookie());
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        request.send()
    };
    assert_error(echo(&[]).await.unwrap(), 403, "csrf_token_invalid").await;
    assert_error(echo(&[("x-csrf-token", "0000")]).await.unwrap(), 403, "csrf_token_invalid").await;
    let cross = echo(&[("x-csrf-token", &jo.csrf), ("sec-fetch-site", "cross-site")]).await.unwrap();
    assert_error(cross, 403, "csrf_cross_site").await;
    let same = echo(&[("x-csrf-token", &jo.csrf), ("sec-fetch-site", "same-origin")]).await.unwrap();
    assert_eq!(same.status(), 200);
    let bearer = client.post(server.url("/v1/test/echo")).header("authorization", jo.bearer()).send().await.unwrap();
    assert_eq!(bearer.status(), 200, "bearer clients are exempt");
    server.stop().await;
}

/// Credentials stay with the host: a plugin never sees `Cookie`,
/// `Authorization` or `Proxy-Authorization`, only who the host says is
/// signed in (THREATS.md A26).
#[tokio::test]
async fn credentials_never_reach_a_plugin() {
    let (_d, server) = server("").await;
    let ann = sign_in(&server.url(""), "ann", &[], None).await;
    let seen = reqwest::Client::new()
        .get(server.url("/v1/test/seen"))
        .header("cookie", ann.cookie())
        .header("authorization", ann.bearer())
        .header("proxy-authorization", "Basic YTpi")
        .header("x-visible", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), 200, "signed in by the host");
    let seen = seen.text().await.unwrap();
    let names: Vec<&str> = seen.lines().collect();
    assert!(names.contains(&"x-visible"), "{seen}");
    for withheld in ["cookie", "authorization", "proxy-authorization"] {
        assert!(!names.contains(&withheld), "{withheld} reached the plugin: {seen}");
    }
    assert!(!seen.contains(&ann.token), "{seen}");
    server.stop().await;
}
