//! 429s with Retry-After and RateLimit headers; forwarded addresses count
//! only from trusted proxies.

use crate::support::{Deployment, TEST_SERVER, TestServer, assert_error, hello_plugin};

const TIGHT: &str = "[rate_limits.classes.default]\nper_address = \"3/min\"\n\n";

async fn get(server: &TestServer, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(server.url("/v1/hello"));
    if let Some(xff) = forwarded_for {
        request = request.header("x-forwarded-for", xff);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn over_the_limit_is_429_and_spoofed_forwarding_changes_nothing() {
    let deployment = Deployment::new(&format!("{TIGHT}{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    // `t`: seconds until the quota is whole again, one request's worth
    // coming back every 20 s.
    for (remaining, whole_in) in [(2, 20), (1, 40), (0, 60)] {
        let ok = get(&server, None).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["ratelimit-policy"], "\"address\";q=3;w=60");
        assert_eq!(ok.headers()["ratelimit"], format!("\"address\";r={remaining};t={whole_in}").as_str());
    }
    let limited = get(&server, None).await;
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["ratelimit"], format!("\"address\";r=0;t={retry_after}").as_str());
    assert_error(limited, 429, "rate_limited").await;
    // The peer is not a trusted proxy: a forged X-Forwarded-For is ignored.
    assert_eq!(get(&server, Some("198.51.100.1")).await.status(), 429);
    server.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_address() {
    let deployment =
        Deployment::new(&format!("{TIGHT}[proxies]\ntrusted = [\"127.0.0.1/32\"]\n\n{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    for _ in 0..3 {
        assert_eq!(get(&server, Some("198.51.100.1")).await.status(), 200);
    }
    assert_eq!(get(&server, Some("198.51.100.1")).await.status(), 429);
    assert_eq!(get(&server, Some("198.51.100.2")).await.status(), 200, "another client has its own budget");
    server.stop().await;
}

/// On a dual-stack listener an IPv4 proxy arrives as `::ffff:127.0.0.1`;
/// it is still the trusted `127.0.0.1` (attack review: every forwarded
/// client had counted as the proxy itself).
#[tokio::test]
async fn an_ipv4_proxy_on_a_dual_stack_listener_is_trusted() {
    let deployment =
        Deployment::new(&format!("{TIGHT}[proxies]\ntrusted = [\"127.0.0.1/32\"]\n\n{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start_dual_stack(&deployment).await;
    assert!(server.addr.ip().is_unspecified());
    let url = format!("http://127.0.0.1:{}/v1/hello", server.addr.port());
    let get = async |client: &str| {
        reqwest::Client::new().get(&url).header("x-forwarded-for", client).send().await.unwrap().status()
    };
    for _ in 0..3 {
        assert_eq!(get("198.51.100.1").await, 200);
    }
    assert_eq!(get("198.51.100.1").await, 429);
    assert_eq!(get("198.51.100.2").await, 200, "another client has its own budget");
    server.stop().await;
}

/// Behind a proxy that sets `Forwarded`, a client's own X-Forwarded-For
/// chooses nothing (finding 13).
#[tokio::test]
async fn only_the_header_the_proxy_sets_is_believed() {
    let deployment = Deployment::new(&format!(
        "{TIGHT}[proxies]\ntrusted = [\"127.0.0.1/32\"]\nheader = \"forwarded\"\n\n{TEST_SERVER}{}",
        hello_plugin()
    ));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    for spoof in ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"] {
        let answer = client
            .get(server.url("/v1/hello"))
            .header("forwarded", "for=203.0.113.5")
            .header("x-forwarded-for", spoof)
            .send()
            .await
            .unwrap();
        let expected = if spoof.ends_with('4') { 429 } else { 200 };
        assert_eq!(answer.status(), expected, "one client, however many addresses it claims");
    }
    server.stop().await;
}
