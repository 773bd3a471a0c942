//! Standard `wasi:http` proxy components as plugins: the `wasmtime serve`
//! hello from `benches/` deployed unchanged behind the whole edge, and a
//! probe (`tests/guests/wasm/httpprobe`) showing what such a component is
//! told, what it can reach, and what its failures become.

use std::time::Duration;

use crate::support::{
    Deployment, ISSUER_POLICY, TEST_SERVER, TestServer, assert_error, hello_plugin, issuer_plugin, metric, plinth_cli,
    plugin, raw_http, sign_in,
};

/// The probe as a `[[plugins]]` entry under `/probe`, which it loses.
fn probe(grants: &[&str], extra: &str) -> String {
    let entry = plugin("probe", plinth_test_guests::HTTPPROBE, &["/probe/**"], grants, "");
    format!("{entry}strip_prefix = \"/probe\"\n{extra}\n")
}

/// Every route public, as the probe's tests are about the component.
const OPEN: &str = "[[route]]\nroute = \"/probe/**\"\nallow = \"public\"\n";

#[tokio::test]
async fn the_wasmtime_serve_hello_is_served_unchanged_behind_the_edge() {
    let hello = plugin("wasi-hello", plinth_test_guests::WASI_HELLO, &["GET /wasi/v1/hello"], &[], "");
    let config = format!(
        "{TEST_SERVER}{}{}{hello}strip_prefix = \"/wasi\"\n\n\
         [rate_limits.classes.wasi]\nper_address = \"3/min\"\n",
        hello_plugin(),
        issuer_plugin()
    );
    let policy = format!(
        "{ISSUER_POLICY}\n[[route]]\nroute = \"/v1/hello/**\"\nallow = \"public\"\n\n\
         [[route]]\nroute = \"/wasi/**\"\nallow = \"authenticated\"\nclass = \"wasi\"\n"
    );
    let deployment = Deployment::with_policy(&config, &policy);
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();

    // The policy judges it like any route: signed out, refused before it runs.
    let anonymous = client.get(server.url("/wasi/v1/hello")).send().await.unwrap();
    assert_error(anonymous, 401, "unauthenticated").await;

    let user = sign_in(&server.url(""), "ada", &[], None).await;
    let native = client.get(server.url("/v1/hello")).send().await.unwrap().text().await.unwrap();
    let response =
        client.get(server.url("/wasi/v1/hello")).header("authorization", user.bearer()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff", "the edge's headers are set");
    assert!(response.headers().get("x-trace-id").is_some());
    let body = response.text().await.unwrap();
    assert_eq!(body, native, "the same answer as the native hello");
    assert_eq!(body, r#"{"message":"hello, world"}"#);

    // Paths its entry does not list never reach it.
    let unlisted =
        client.get(server.url("/wasi/v1/other")).header("authorization", user.bearer()).send().await.unwrap();
    assert_error(unlisted, 404, "not_found").await;
    // Its class's limit (3 a minute from one address) holds it too.
    let mut served = 1;
    let limited = loop {
        let response =
            client.get(server.url("/wasi/v1/hello")).header("authorization", user.bearer()).send().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        served += 1;
    };
    assert!(served <= 3, "{served} requests served within a limit of 3 a minute");
    assert_error(limited, 429, "rate_limited").await;
    server.stop().await;
}

#[test]
fn inspect_names_a_wasi_http_component_and_a_component_of_neither_kind() {
    let (ok, stdout, stderr) = plinth_cli(&["plugin", "inspect", plinth_test_guests::WASI_HELLO]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("kind: a wasi:http proxy component"), "{stdout}");
    assert!(stdout.contains("grants needed: []"), "{stdout}");

    // A worker exports neither handler: as a plugin it is refused, naming both.
    let neither = Deployment::new(&plugin("worker", plinth_test_guests::JOBPROBE, &["/v1/w"], &[], ""));
    let (ok, _, stderr) = plinth_cli(&["check", "--config", neither.config_path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("exports neither `plinth:platform/handler@0.1.0`")
            && stderr.contains("wasi:http/incoming-handler@0.2.x"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_wasi_http_component_gets_the_principal_as_headers_clients_cannot_forge() {
    let config = format!(
        "{TEST_SERVER}{}{}",
        issuer_plugin(),
        probe(&["kv", "outgoing-http"], "outgoing_http = [\"api.example.com\"]")
    );
    let deployment = Deployment::with_policy(&config, &format!("{ISSUER_POLICY}\n{OPEN}"));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let forged = client
        .get(server.url("/probe/facts?x=%2F"))
        .header("plinth-account-id", "root")
        .header("plinth-roles", "admin")
        .header("plinth-route", "GET /admin/**")
        .header("plinth_account_id", "root")
        .header("x-forwarded-for", "10.9.8.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 200);
    let facts = forged.text().await.unwrap();
    assert!(facts.contains("target=/facts?x=%2F"), "the path less its prefix, the query as sent: {facts}");
    assert!(facts.contains("plinth-route=/probe/**"), "{facts}");
    assert!(facts.contains("plinth-client-address=127.0.0.1"), "{facts}");
    for forged in ["root", "admin", "/admin", "10.9.8.7", "plinth_"] {
        assert!(!facts.contains(forged), "a client's plinth-* header reached the component: {facts}");
    }

    let user = sign_in(&server.url(""), "grace", &["editor", "viewer"], None).await;
    let facts = client
        .get(server.url("/probe/facts"))
        .header("authorization", user.bearer())
        .header("plinth-account-id", "root")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |name: &str| facts.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(str::to_owned);
    assert_eq!(line("plinth-account-id").as_deref(), Some("grace"), "{facts}");
    assert_eq!(line("plinth-roles").as_deref(), Some("editor,viewer"));
    assert_eq!(line("plinth-session-id").as_deref(), Some(user.session_id.as_str()));
    assert_eq!(facts.matches("plinth-account-id=").count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_wasi_http_component_has_no_environment_files_or_sockets() {
    assert!(std::env::vars_os().count() > 0, "the host has an environment a guest could inherit");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let grants = probe(&["kv", "outgoing-http"], "outgoing_http = [\"api.example.com\"]");
    let deployment = Deployment::with_policy(&format!("{TEST_SERVER}{grants}"), OPEN);
    let server = TestServer::start(&deployment).await;
    let report = reqwest::get(server.url(&format!("/probe/sandbox?{address}"))).await.unwrap().text().await.unwrap();
    assert_eq!(report, "env=0\nargs=0\nread_root=false\nread_cwd=false\ncreate_file=false\ntcp_connect=false\n");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the component opened a connection");
    server.stop().await;
}

#[tokio::test]
async fn outgoing_http_goes_only_to_listed_hosts_and_never_to_internal_addresses() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    // Without the grant, a component that imports the outgoing handler is
    // not loaded, and the error names the grant.
    let ungranted = Deployment::with_policy(&format!("{TEST_SERVER}{}", probe(&["kv"], "")), OPEN);
    let (ok, _, stderr) = plinth_cli(&["check", "--config", ungranted.config_path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("wasi:http/outgoing-handler") && stderr.contains("grant `outgoing-http`"), "{stderr}");

    let config = format!(
        "{TEST_SERVER}{}{}",
        issuer_plugin(),
        probe(&["kv", "outgoing-http"], "outgoing_http = [\"api.example.com\", \"*.example.org\"]")
    );
    let deployment = Deployment::with_policy(&config, &format!("{ISSUER_POLICY}\n{OPEN}"));
    let server = TestServer::start(&deployment).await;
    let fetch = |url: String| {
        let url = server.url(&format!("/probe/fetch?{url}"));
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    // This machine in every spelling the URL parser reads, as well as
    // hosts that are not listed: refused before any connection.
    let targets = [
        "https://other.example.net/".to_owned(),
        "https://example.org/".to_owned(),
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://api.example.com@127.1:{port}/"),
    ];
    for target in &targets {
        assert_eq!(fetch(target.clone()).await, "error ErrorCode::HttpRequestDenied", "{target}");
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "an internal address was connected to");
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let denied =
        metric(&server.url(""), &admin, "plinth_plugin_outgoing_http_total{plugin=\"probe\",outcome=\"denied\"}").await;
    assert_eq!(denied, Some(targets.len() as f64));
    server.stop().await;
}

#[tokio::test]
async fn a_wasi_http_component_reaches_platform_interfaces_by_grant_and_traps_into_a_500() {
    let ungranted = Deployment::with_policy(
        &format!("{TEST_SERVER}{}", probe(&["outgoing-http"], "outgoing_http = [\"api.example.com\"]")),
        OPEN,
    );
    let (ok, _, stderr) = plinth_cli(&["check", "--config", ungranted.config_path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("plinth:platform/kv@0.1.0") && stderr.contains("grant `kv`"), "{stderr}");

    let config = probe(&["kv", "outgoing-http"], "outgoing_http = [\"api.example.com\"]");
    let deployment = Deployment::with_policy(&format!("{TEST_SERVER}{config}"), OPEN);
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let put = client.put(server.url("/probe/kv/colour")).body("teal").send().await.unwrap();
    assert_eq!(put.status(), 204);
    let got = client.get(server.url("/probe/kv/colour")).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "teal");
    for _ in 0..3 {
        let trapped = client.get(server.url("/probe/trap")).send().await.unwrap();
        let body = assert_error(trapped, 500, "plugin_trap").await;
        assert!(!body.to_string().contains("panicked"), "no internals in the answer: {body}");
    }
    let got = client.get(server.url("/probe/kv/colour")).send().await.unwrap();
    assert_eq!(got.text().await.unwrap(), "teal", "the host keeps serving it");
    // A route that names no method still never serves CONNECT (a 2xx would
    // make the connection a tunnel) or TRACE.
    for method in ["CONNECT", "TRACE"] {
        let refused = raw_http(server.addr, method, "/probe/facts", &[], "").await;
        assert_eq!(refused.status, 501, "{method}: {}", refused.head);
        assert!(refused.body.contains("method_not_implemented"), "{}", refused.body);
    }
    server.stop().await;
}

#[test]
fn outgoing_hosts_and_prefixes_are_checked_when_the_config_loads() {
    let load_error = |entry: &str| {
        let deployment = Deployment::new(entry);
        deployment.load().expect_err("the config should be refused")
    };
    let entry = |grants: &[&str], extra: &str| {
        let routes = ["GET /wasi/v1/hello"];
        format!("{}{extra}\n", plugin("w", plinth_test_guests::WASI_HELLO, &routes, grants, ""))
    };
    let err = load_error(&entry(&["outgoing-http"], ""));
    assert!(err.contains("plugins[0].outgoing_http") && err.contains("needs the hosts"), "{err}");
    let err = load_error(&entry(&[], "outgoing_http = [\"api.example.com\"]"));
    assert!(err.contains("plugins[0].grants") && err.contains("lacks grant `outgoing-http`"), "{err}");
    for bad in ["*", "https://api.example.com/v1", "ftp://api.example.com", "api.example.com:99999"] {
        let err = load_error(&entry(&["outgoing-http"], &format!("outgoing_http = [\"ok.example.com\", {bad:?}]")));
        assert!(err.contains("plugins[0].outgoing_http[1]") && err.contains(bad.split('/').next().unwrap()), "{err}");
    }
    // An internal address is never an entry, in any spelling.
    for internal in ["127.1:8080", "0x7f.1", "localhost", "http://[::ffff:7f00:1]", "169.254.169.254"] {
        let err = load_error(&entry(&["outgoing-http"], &format!("outgoing_http = [{internal:?}]")));
        assert!(err.contains("plugins[0].outgoing_http[0]") && err.contains("internal"), "{internal}: {err}");
    }
    for bad in ["wasi", "/wasi/", "/", "/w{x}"] {
        let err = load_error(&entry(&[], &format!("strip_prefix = {bad:?}")));
        assert!(err.contains("plugins[0].strip_prefix") && err.contains("not a path prefix"), "{bad}: {err}");
    }
    let err = load_error(&entry(&[], "strip_prefix = \"/was\""));
    assert!(err.contains("does not start with `/was`"), "a prefix ends at a segment: {err}");
}

#[tokio::test]
async fn a_plinth_plugin_makes_outgoing_requests_by_the_same_grant_and_rules() {
    let entry = |grants: &[&str], extra: &str| {
        let entry = plugin("fetcher", plinth_test_guests::FETCHER, &["GET /fetch"], grants, "");
        format!("{TEST_SERVER}{entry}{extra}\n")
    };
    let ungranted = Deployment::new(&entry(&[], ""));
    let (ok, _, stderr) = plinth_cli(&["check", "--config", ungranted.config_path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("wasi:http/outgoing-handler") && stderr.contains("grant `outgoing-http`"), "{stderr}");

    let deployment = Deployment::new(&entry(&["outgoing-http"], "outgoing_http = [\"api.example.com\"]"));
    let server = TestServer::start(&deployment).await;
    for target in ["http://127.0.0.1:9/", "https://other.example.net/"] {
        let answer = reqwest::get(server.url(&format!("/fetch?{target}"))).await.unwrap().text().await.unwrap();
        assert_eq!(answer, "error ErrorCode::HttpRequestDenied", "{target}");
    }
    server.stop().await;
}

#[test]
fn a_component_whose_routes_never_return_is_refused_within_its_deadline() {
    let deployment = Deployment::new(&plugin("sleeper", plinth_test_guests::SLEEPER, &["/v1/sleep/**"], &[], ""));
    let started = std::time::Instant::now();
    let (ok, _, stderr) = plinth_cli(&["check", "--config", deployment.config_path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("plugin `sleeper`") && stderr.contains("did not return within"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(50), "the load waited for the guest's sleep");
}

#[tokio::test]
async fn a_response_over_the_memory_cap_ends_the_request_at_once() {
    // The probe writes for ever and ignores that the host stopped reading:
    // the answer is a 500 when the cap is reached, not at the deadline.
    let entry = plugin(
        "probe",
        plinth_test_guests::HTTPPROBE,
        &["/probe/**"],
        &["kv", "outgoing-http"],
        "memory = \"16MiB\", timeout_ms = 20000",
    );
    let config = format!("{TEST_SERVER}{entry}strip_prefix = \"/probe\"\noutgoing_http = [\"api.example.com\"]\n");
    let deployment = Deployment::with_policy(&config, OPEN);
    let server = TestServer::start(&deployment).await;
    let started = std::time::Instant::now();
    let flooded = reqwest::get(server.url("/probe/flood")).await.unwrap();
    assert_error(flooded, 500, "plugin_trap").await;
    assert!(started.elapsed() < Duration::from_secs(10), "answered at the deadline, not at the cap");
    assert_eq!(reqwest::get(server.url("/probe/facts")).await.unwrap().status(), 200);
    server.stop().await;
}
