//! Request bounds and error shapes at the edge.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Deployment, TEST_SERVER, TestServer, assert_error, client_from, hello_plugin};

async fn server() -> (Deployment, TestServer) {
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    (deployment, server)
}

#[tokio::test]
async fn unknown_route_is_a_json_404_with_a_trace_id() {
    let (_d, server) = server().await;
    let response = reqwest::get(server.url("/v1/nothing-here")).await.unwrap();
    let body = assert_error(response, 404, "not_found").await;
    assert_eq!(body["error"]["trace_id"].as_str().unwrap().len(), 32);
    server.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let (_d, server) = server().await;
    let response = reqwest::Client::new().delete(server.url("/v1/hello")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD, OPTIONS");
    assert_error(response, 405, "method_not_allowed").await;
    server.stop().await;
}

#[tokio::test]
async fn a_valid_traceparent_sets_the_trace_id() {
    let (_d, server) = server().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .get(server.url("/v1/hello"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-trace-id"], trace);
    let invalid = reqwest::Client::new()
        .get(server.url("/v1/hello"))
        .header("traceparent", format!("00-{trace}-0000000000000000-01"))
        .send()
        .await
        .unwrap();
    assert_ne!(invalid.headers()["x-trace-id"], trace);
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (_d, server) = server().await;
    let response =
        reqwest::Client::new().post(server.url("/v1/hello/count")).body(vec![b'x'; 1025]).send().await.unwrap();
    assert_error(response, 413, "body_too_large").await;
    // At the limit is fine.
    let ok = reqwest::Client::new().post(server.url("/v1/hello/count")).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

/// A chunked body declares no length; the limit must still hold.
#[tokio::test]
async fn oversized_chunked_body_is_413() {
    let (_d, server) = server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut request =
        b"POST /v1/hello/count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'y'; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"body_too_large\""), "{response}");
    server.stop().await;
}

#[tokio::test]
async fn too_many_headers_is_431() {
    let (_d, server) = server().await;
    let mut request = reqwest::Client::new().get(server.url("/v1/hello"));
    for i in 0..21 {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    assert_error(request.send().await.unwrap(), 431, "too_many_headers").await;
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let (_d, server) = server().await;
    let health: serde_json::Value = reqwest::get(server.url("/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready: serde_json::Value = reqwest::get(server.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!((ready["status"].as_str(), ready["plugins"].as_u64()), (Some("ready"), Some(1)));
    server.stop().await;
}

#[tokio::test]
async fn requests_beyond_max_in_flight_get_503() {
    let deployment = Deployment::new(&format!(
        "[server]\nmax_in_flight = 1\n\n{}",
        crate::support::plugin("spin", plinth_test_guests::SPIN, &["GET /v1/spin/**"], &[], "timeout_ms = 1000")
    ));
    let server = TestServer::start(&deployment).await;
    let spinning = tokio::spawn(reqwest::get(server.url("/v1/spin")));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Another client: the same one would be over its own share first.
    let refused = client_from("127.0.0.2").get(server.url("/v1/spin/ok")).send().await.unwrap();
    assert_error(refused, 503, "overloaded").await;
    assert_error(spinning.await.unwrap().unwrap(), 503, "plugin_timeout").await;
    // The permit is back.
    assert_eq!(reqwest::get(server.url("/v1/spin/ok")).await.unwrap().status(), 204);
    server.stop().await;
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_gets_503() {
    let deployment = Deployment::new(&format!("[server]\nrequest_timeout_ms = 300\n\n{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/hello/count HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n123")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"request_timeout\""), "{response}");
    server.stop().await;
}

/// With one connection allowed: an idle one is closed to make room for a
/// newcomer, a busy one is not (the newcomer is refused at once, never left
/// waiting in the backlog).
#[tokio::test]
async fn at_the_connection_bound_idle_connections_make_room_and_busy_ones_do_not() {
    let deployment = Deployment::new(&format!(
        "[server]\nmax_connections = 1\n\n{}",
        crate::support::plugin("spin", plinth_test_guests::SPIN, &["GET /v1/spin/**"], &[], "timeout_ms = 1000")
    ));
    let server = TestServer::start(&deployment).await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 12];
    idle.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    // Newcomers from other addresses: one address holds at most its share
    // (here the one connection) whatever the total.
    let spinning = tokio::spawn(client_from("127.0.0.2").get(server.url("/v1/spin")).send());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(2), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok_and(|read| read.is_ok()), "the idle connection was closed for the newcomer");
    let refused = client_from("127.0.0.3").get(server.url("/healthz")).send().await;
    assert!(refused.is_err(), "no room beside a busy connection: {refused:?}");
    assert_error(spinning.await.unwrap().unwrap(), 503, "plugin_timeout").await;
    assert_eq!(reqwest::get(server.url("/healthz")).await.unwrap().status(), 200);
    server.stop().await;
}
