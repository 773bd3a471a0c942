//! `GET /metrics`: admins only, Prometheus text with the host's counters.

use crate::support::{
    Deployment, ISSUER_POLICY, LOOSE_LIMITS, TEST_SERVER, TestServer, get_as, hello_plugin, issuer_plugin, plugin,
    sign_in,
};

#[tokio::test]
async fn admins_read_request_plugin_session_and_audit_metrics() {
    let deployment = Deployment::with_policy(
        &format!(
            "{LOOSE_LIMITS}{TEST_SERVER}{}{}{}",
            hello_plugin(),
            plugin("trap", plinth_test_guests::TRAP, &["GET /v1/trap"], &[], ""),
            issuer_plugin()
        ),
        &format!(
            "[[route]]\nroute = \"/v1/hello/**\"\nallow = \"public\"\n[[route]]\nroute = \"GET /v1/trap\"\nallow = \"public\"\n{ISSUER_POLICY}"
        ),
    );
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    for path in ["/v1/hello", "/v1/hello", "/v1/trap", "/nowhere"] {
        client.get(server.url(path)).send().await.unwrap();
    }
    for n in 0..3 {
        let method = reqwest::Method::from_bytes(format!("XM{n:05}").as_bytes()).unwrap();
        client.request(method, server.url("/nowhere")).send().await.unwrap();
    }
    assert_eq!(client.get(server.url("/metrics")).send().await.unwrap().status(), 401);
    let user = sign_in(&server.url(""), "user", &[], None).await;
    let forbidden = client.get(server.url("/metrics")).header("authorization", user.bearer()).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await;
    let text = get_as(&server, "/metrics", &admin.bearer()).await.text().await.unwrap();
    for expected in [
        "plinth_requests_total{route=\"GET /v1/hello\",method=\"GET\",status=\"200\"} 2",
        "plinth_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "plinth_plugin_failures_total{plugin=\"trap\",version=\"",
        "plinth_plugin_instantiate_seconds_count{plugin=\"hello\",version=\"",
        "plinth_plugin_call_seconds_bucket{",
        "plinth_request_duration_seconds_bucket{le=",
        "plinth_sessions_total{name=\"issued\"} 2",
        "plinth_audit_records_total ",
        "method=\"other\"",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("XM0000"), "a client's method names no series: {text}");
    server.stop().await;
}

#[tokio::test]
async fn burn_rates_follow_failures_and_slow_answers_per_route_class() {
    let deployment = Deployment::with_policy(
        &format!(
            "{LOOSE_LIMITS}{TEST_SERVER}{}{}{}[rate_limits.classes.flaky]\nper_address = \"1000/min\"\n\n\
             [slo.classes.flaky]\navailability = 90.0\nlatency_ms = 60000\nlatency_target = 50.0\n",
            hello_plugin(),
            plugin("trap", plinth_test_guests::TRAP, &["GET /v1/trap"], &[], ""),
            issuer_plugin()
        ),
        &format!(
            "[[route]]\nroute = \"/v1/hello/**\"\nallow = \"public\"\n[[route]]\nroute = \"GET /v1/trap\"\nallow = \"public\"\n\
             class = \"flaky\"\n{ISSUER_POLICY}"
        ),
    );
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    for path in ["/v1/hello", "/v1/hello", "/v1/trap"] {
        client.get(server.url(path)).send().await.unwrap();
    }
    let admin = sign_in(&server.url(""), "ops", &["admin"], None).await;
    let text = get_as(&server, "/metrics", &admin.bearer()).await.text().await.unwrap();
    let burn = |class: &str, objective: &str, window: &str| -> f64 {
        let name = format!("plinth_slo_burn_rate{{class=\"{class}\",objective=\"{objective}\",window=\"{window}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&name)).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        line[name.len()..].parse().unwrap()
    };
    // The one request of class `flaky` failed: 100 % bad where 10 % is allowed.
    assert!((burn("flaky", "availability", "5m") - 10.0).abs() < 1e-9);
    assert!((burn("flaky", "availability", "6h") - 10.0).abs() < 1e-9);
    assert_eq!(burn("flaky", "latency", "5m"), 0.0);
    assert_eq!(burn("default", "availability", "1h"), 0.0, "the hello requests all succeeded");
    server.stop().await;
}
