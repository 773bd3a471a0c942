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
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    server.stop().await;
}
