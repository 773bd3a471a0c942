//! Plugins in JavaScript (componentize-js) and Python (componentize-py),
//! built from source against plinth's WIT, served beside a Rust plugin and
//! a standard wasi:http component in one deployment; and probes in both
//! languages showing their sandbox and what a thrown exception becomes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Deployment, ISSUER_POLICY, SignedIn, TEST_SERVER, TestServer, assert_error, hello_plugin, issuer_plugin, plugin,
    sign_in,
};

/// The counters plugins, the Rust hello and the wasmtime serve hello, each
/// with its own rate-limit class.
fn side_by_side() -> Deployment {
    let config = format!(
        "{TEST_SERVER}{}{}{}{}{}strip_prefix = \"/wasi\"\n\n\
         [rate_limits.classes.js]\nper_address = \"1000/min\"\nper_principal = \"60/min\"\n\n\
         [rate_limits.classes.py]\nper_address = \"1000/min\"\nper_principal = \"60/min\"\n",
        hello_plugin(),
        issuer_plugin(),
        plugin("counters-js", plinth_test_guests::COUNTERS_JS, &["/v1/js/**"], &["kv"], "memory = \"64MiB\""),
        plugin("counters-py", plinth_test_guests::COUNTERS_PY, &["/v1/py/**"], &["kv"], "memory = \"128MiB\""),
        plugin("wasi-hello", plinth_test_guests::WASI_HELLO, &["GET /wasi/v1/hello"], &[], ""),
    );
    let policy = format!(
        "{ISSUER_POLICY}\n\
         [[route]]\nroute = \"/v1/hello/**\"\nallow = \"public\"\n\n\
         [[route]]\nroute = \"/wasi/**\"\nallow = \"public\"\n\n\
         [[route]]\nroute = \"/v1/js/**\"\nallow = \"authenticated\"\nclass = \"js\"\n\n\
         [[route]]\nroute = \"/v1/py/**\"\nallow = \"authenticated\"\nclass = \"py\"\n"
    );
    Deployment::with_policy(&config, &policy)
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    who: &SignedIn,
    body: Option<(&str, &str)>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, server.url(path)).header("authorization", who.bearer());
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body.to_owned());
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// The counters contract, as both languages implement it under `base`.
async fn counters_work(server: &TestServer, base: &str, ada: &SignedIn, grace: &SignedIn) {
    let anonymous = reqwest::get(server.url(&format!("{base}/visits"))).await.unwrap();
    assert_error(anonymous, 401, "unauthenticated").await;

    let counted = json_of(call(server, "POST", &format!("{base}/visits"), ada, None).await, 200).await;
    assert_eq!(counted, json!({ "name": "visits", "value": 1 }), "{base}");
    let by = Some(("application/json", r#"{"by": 5}"#));
    let counted = json_of(call(server, "POST", &format!("{base}/visits"), ada, by).await, 200).await;
    assert_eq!(counted["value"], 6);
    let theirs = json_of(call(server, "GET", &format!("{base}/visits"), grace, None).await, 200).await;
    assert_eq!(theirs["value"], 0, "{base}: counters are per account");

    // Increments at once all count: the compare-and-swap retries.
    let together: Vec<_> = (0..8)
        .map(|_| {
            let (url, bearer) = (server.url(&format!("{base}/clicks")), ada.bearer());
            tokio::spawn(async move {
                reqwest::Client::new().post(url).header("authorization", bearer).send().await.unwrap().status()
            })
        })
        .collect();
    for request in together {
        assert_eq!(request.await.unwrap(), 200);
    }
    let listed = json_of(call(server, "GET", base, ada, None).await, 200).await;
    assert_eq!(
        listed,
        json!({ "counters": [{ "name": "clicks", "value": 8 }, { "name": "visits", "value": 6 }] }),
        "{base}"
    );

    // Bad input: the platform's error shape, with the field at fault.
    let path = format!("{base}/visits");
    for not_json in ["{nope", r#"{"by": NaN}"#, r#"{"by": Infinity}"#] {
        let refused = call(server, "POST", &path, ada, Some(("application/json", not_json))).await;
        assert_error(refused, 400, "invalid_json").await;
    }
    assert_error(call(server, "POST", &path, ada, Some(("text/plain", "2"))).await, 415, "unsupported_media_type")
        .await;
    let zero = call(server, "POST", &path, ada, Some(("application/json", r#"{"by": 0}"#))).await;
    assert_eq!(assert_error(zero, 422, "invalid_field").await["error"]["field"], "by");
    for bad in [r#"{"by": 1e400}"#, r#"{"by": null}"#, r#"{"by": "2"}"#, r#"{"by": true}"#, r#"{"by": 1.5}"#, "[1]"] {
        let refused = call(server, "POST", &path, ada, Some(("application/json", bad))).await;
        assert_error(refused, 422, "invalid_field").await;
    }
    let named = call(server, "GET", &format!("{base}/Not%20Ok"), ada, None).await;
    assert_eq!(assert_error(named, 400, "invalid_name").await["error"]["field"], "name");
    let unchanged = json_of(call(server, "GET", &path, ada, None).await, 200).await;
    assert_eq!(unchanged["value"], 6, "{base}: refused input changed nothing");
    // JSON has one kind of number: 2.0 is 2 in both languages.
    let two = call(server, "POST", &path, ada, Some(("application/json", r#"{"by": 2.0}"#))).await;
    assert_eq!(json_of(two, 200).await["value"], 8, "{base}");

    assert_eq!(call(server, "DELETE", &path, ada, None).await.status(), 204);
    assert_eq!(json_of(call(server, "GET", &path, ada, None).await, 200).await["value"], 0);
}

#[tokio::test]
async fn javascript_python_rust_and_wasi_http_plugins_serve_side_by_side() {
    let deployment = side_by_side();
    let server = TestServer::start(&deployment).await;
    let ada = sign_in(&server.url(""), "ada", &[], None).await;
    let grace = sign_in(&server.url(""), "grace", &[], None).await;
    counters_work(&server, "/v1/js/counters", &ada, &grace).await;
    counters_work(&server, "/v1/py/counters", &ada, &grace).await;
    // The two languages keep their own namespaces.
    call(&server, "POST", "/v1/js/counters/shared", &ada, None).await;
    let other = json_of(call(&server, "GET", "/v1/py/counters/shared", &ada, None).await, 200).await;
    assert_eq!(other["value"], 0);

    let native = reqwest::get(server.url("/v1/hello")).await.unwrap().text().await.unwrap();
    let wasi = reqwest::get(server.url("/wasi/v1/hello")).await.unwrap().text().await.unwrap();
    assert_eq!(native, wasi);

    // Each language's class limits its own routes: 60 a minute per person.
    for base in ["/v1/js/counters", "/v1/py/counters"] {
        let mut served = 0;
        let limited = loop {
            let response = call(&server, "GET", base, &grace, None).await;
            if response.status() != 200 {
                break response;
            }
            served += 1;
            assert!(served <= 60, "{base}: over its limit and still served");
        };
        assert_error(limited, 429, "rate_limited").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn javascript_and_python_plugins_are_sandboxed_and_a_throw_is_a_500() {
    assert!(std::env::vars_os().count() > 0, "the host has an environment a guest could inherit");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let probes = [
        ("jsprobe", plinth_test_guests::JSPROBE, "env=0\nargs=0\npreopens=0\ntcp_socket=false\nprocess=undefined\n"),
        (
            "pyprobe",
            plinth_test_guests::PYPROBE,
            "env=0\nargs=0\nread_root=False\ncreate_file=False\ntcp_connect=False\n",
        ),
    ];
    for (name, component, expected) in probes {
        let entry = plugin(name, component, &["GET /sandbox", "GET /throw"], &[], "memory = \"128MiB\"");
        let deployment = Deployment::new(&format!("{TEST_SERVER}{entry}"));
        let server = TestServer::start(&deployment).await;
        let report = reqwest::get(server.url(&format!("/sandbox?{address}"))).await.unwrap();
        assert_eq!(report.status(), 200, "{name}");
        assert_eq!(report.text().await.unwrap(), expected, "{name}");
        for _ in 0..3 {
            let thrown = reqwest::get(server.url("/throw")).await.unwrap();
            let body = assert_error(thrown, 500, "plugin_trap").await;
            assert!(!body.to_string().contains("asked to"), "{name}: no internals in the answer: {body}");
        }
        assert_eq!(reqwest::get(server.url("/sandbox")).await.unwrap().status(), 200, "{name} keeps serving");
        server.stop().await;
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "a probe opened a connection");
    assert!(!std::path::Path::new("probe.txt").exists(), "nothing was written beside the host");
}
