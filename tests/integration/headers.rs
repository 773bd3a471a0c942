//! Security headers on every kind of response.

use crate::support::{
    Deployment, ISSUER_POLICY, TEST_SERVER, TestServer, hello_plugin, issuer_plugin, plugin, sign_in,
};

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    for (name, value) in plinth::edge::headers::DEFAULTS {
        assert_eq!(headers.get(name).map(|v| v.to_str().unwrap()), Some(value), "{name} on {what}");
    }
    assert!(headers.get("server").is_none() && headers.get("x-powered-by").is_none(), "banner on {what}");
    assert!(headers.get("strict-transport-security").is_none(), "HSTS only over TLS ({what})");
}

#[tokio::test]
async fn present_on_404_413_429_500_and_200() {
    let deployment = Deployment::new(&format!(
        "[rate_limits.classes.default]\nper_address = \"6/min\"\n\n{TEST_SERVER}{}{}",
        hello_plugin(),
        plugin("trap", plinth_test_guests::TRAP, &["GET /v1/trap"], &[], "")
    ));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let cases = [
        ("200", client.get(server.url("/v1/hello")), 200),
        ("404", client.get(server.url("/nothing")), 404),
        ("413", client.post(server.url("/v1/hello/count")).body(vec![0u8; 4096]), 413),
        ("500", client.get(server.url("/v1/trap")), 500),
    ];
    for (what, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_security_headers(&response, what);
    }
    let mut last = client.get(server.url("/v1/hello")).send().await.unwrap();
    while last.status() != 429 {
        last = client.get(server.url("/v1/hello")).send().await.unwrap();
    }
    assert_security_headers(&last, "429");
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_cannot_set_or_weaken_host_headers() {
    let deployment = Deployment::with_policy(&format!("{TEST_SERVER}{}", issuer_plugin()), ISSUER_POLICY);
    let server = TestServer::start(&deployment).await;
    let lee = sign_in(&server.url(""), "lee", &[], None).await;
    let response = reqwest::Client::new()
        .get(server.url("/v1/test/headers"))
        .header("authorization", lee.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-plugin"], "yes", "plugins may add their own headers");
    assert!(response.headers().get("set-cookie").is_none());
    assert_security_headers(&response, "plugin output");
    assert_eq!(response.text().await.unwrap(), "content-security-policy,set-cookie,server");
    server.stop().await;
}

/// Requests hyper refuses before the edge sees them (too many or too large
/// headers, bytes that are not HTTP) still get the edge's answer: JSON
/// error, trace id, every security header (finding 10).
#[tokio::test]
async fn hypers_own_refusals_carry_security_headers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x: {}\r\n", "a".repeat(40_000));
    for (what, request, status, code) in [
        ("too many headers", format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n"), 431, "headers_too_large"),
        ("too large headers", format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{huge}\r\n"), 431, "headers_too_large"),
        ("not HTTP", "GET /he\u{1}lthz HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(), 400, "malformed_request"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(answer.starts_with(&format!("http/1.1 {status}")), "{what}: {answer}");
        for (name, value) in plinth::edge::headers::DEFAULTS {
            assert!(
                answer.contains(&format!("\r\n{name}: {}\r\n", value.to_lowercase())),
                "{name} on {what}: {answer}"
            );
        }
        assert!(
            answer.contains("\r\nx-trace-id: ") && answer.contains(&format!("\"code\":\"{code}\"")),
            "{what}: {answer}"
        );
    }
    server.stop().await;
}
