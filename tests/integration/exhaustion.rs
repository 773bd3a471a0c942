//! One client cannot take the server from the others: silent connections,
//! slow bodies, and HTTP/2 streams left open are bounded per client and in
//! time (THREATS.md, findings 2 and 3).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Deployment, TestServer, assert_error, client_from, hello_plugin};

/// A TCP connection to `server` from the loopback address `source`.
async fn connect_from(source: &str, server: &TestServer) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket.connect(server.addr).await
}

/// `GET /healthz` and `GET /v1/hello` from another client both answer 200
/// within the request timeout.
async fn another_client_is_served(server: &TestServer, source: &str) {
    let client = client_from(source);
    for path in ["/healthz", "/v1/hello"] {
        let answer = tokio::time::timeout(Duration::from_secs(30), client.get(server.url(path)).send())
            .await
            .unwrap_or_else(|_| panic!("{path} did not answer within the request timeout"))
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
}

/// Reads until the server closes the connection; true if it did within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_connections_and_slow_bodies_from_one_address_leave_others_served() {
    let deployment = Deployment::new(&hello_plugin());
    let server = TestServer::start(&deployment).await;
    let mut held = Vec::new();
    for _ in 0..1500 {
        if let Ok(stream) = connect_from("127.0.0.1", &server).await {
            held.push(stream);
        }
    }
    for _ in 0..300 {
        if let Ok(mut stream) = connect_from("127.0.0.1", &server).await {
            let head = "POST /v1/hello/count HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nx";
            let _ = stream.write_all(head.as_bytes()).await;
            held.push(stream);
        }
    }
    another_client_is_served(&server, "127.0.0.2").await;
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_sheds_its_longest_idle_connection_for_a_newcomer() {
    let deployment = Deployment::new(&format!(
        "[server]\nmax_connections = 64\nmax_connections_per_client = 64\n\n{}",
        hello_plugin()
    ));
    let server = TestServer::start(&deployment).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(connect_from("127.0.0.1", &server).await.unwrap());
    }
    another_client_is_served(&server, "127.0.0.2").await;
    assert!(closed_by_server(&mut silent[0], Duration::from_secs(5)).await, "the oldest idle one was shed");
    server.stop().await;
}

#[tokio::test]
async fn silent_idle_and_half_open_connections_are_closed_in_time() {
    let deployment =
        Deployment::new(&format!("[server]\nheader_timeout_ms = 300\nidle_timeout_ms = 600\n\n{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let mut silent = connect_from("127.0.0.1", &server).await.unwrap();
    let mut half_preface = connect_from("127.0.0.1", &server).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut partial_head = connect_from("127.0.0.1", &server).await.unwrap();
    partial_head.write_all(b"GET /v1/hello HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    for (name, stream) in
        [("silent", &mut silent), ("half preface", &mut half_preface), ("partial head", &mut partial_head)]
    {
        assert!(closed_by_server(stream, Duration::from_secs(5)).await, "{name} connection left open");
    }
    // Keep-alive: served once, then idle past idle_timeout_ms.
    let mut kept = connect_from("127.0.0.1", &server).await.unwrap();
    kept.write_all(b"GET /v1/hello HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    assert!(closed_by_server(&mut kept, Duration::from_secs(5)).await, "idle keep-alive connection left open");
    assert!(started.elapsed() >= Duration::from_millis(300), "not closed before its idle time");
    server.stop().await;
}

/// Opens as many `POST /v1/hello/count` streams on one HTTP/2 connection as
/// the server allows at once (each announcing a body it never sends);
/// returns what keeps them open and the server's stream limit.
async fn hold_streams(
    server: &TestServer,
) -> (h2::client::SendRequest<bytes::Bytes>, Vec<h2::SendStream<bytes::Bytes>>, usize) {
    let tcp = connect_from("127.0.0.1", server).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    // One exchange first, so the server's SETTINGS (its stream limit) are in.
    let (probe, _) = client
        .send_request(http::Request::get(format!("http://{}/healthz", server.addr)).body(()).unwrap(), true)
        .unwrap();
    assert_eq!(probe.await.unwrap().status(), 200);
    let limit = client.current_max_send_streams();
    let mut streams = Vec::new();
    for _ in 0..limit {
        let request = http::Request::post(format!("http://{}/v1/hello/count", server.addr))
            .header("content-length", "100")
            .body(())
            .unwrap();
        let (_response, stream) = client.send_request(request, false).unwrap();
        streams.push(stream);
    }
    (client, streams, limit)
}

#[tokio::test]
async fn one_http2_connection_holding_every_stream_takes_only_its_share() {
    let deployment = Deployment::new(&hello_plugin());
    let server = TestServer::start(&deployment).await;
    let (_client, _streams, limit) = hold_streams(&server).await;
    assert_eq!(limit, 32, "the stream limit is the per-client share, well below max_in_flight");
    // Let the streams reach the edge and take their shares.
    tokio::time::sleep(Duration::from_millis(300)).await;
    another_client_is_served(&server, "127.0.0.2").await;
    // The same address on another connection has used up its share.
    let same = client_from("127.0.0.1").get(server.url("/v1/hello")).send().await.unwrap();
    assert_error(same, 429, "too_many_in_flight").await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_cut_off() {
    let deployment = Deployment::new(&format!("[server]\nmin_body_rate = \"1KiB\"\n\n{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let mut stream = connect_from("127.0.0.1", &server).await.unwrap();
    let head = "POST /v1/hello/count HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // A byte every 200 ms: alive, but far below 1 KiB/s.
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b"x").await.is_err() {
                    break;
                }
            }
        }
        if started.elapsed() > Duration::from_secs(25) {
            panic!("still reading the body after 25 s");
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_too_slow\""), "{answer}");
    server.stop().await;
}

/// Started under a low soft limit on open files, the server raises it to
/// what `max_connections` needs, so `accept` does not fail before
/// admission can shed (second attack round, finding 6).
#[test]
fn the_open_file_limit_is_raised_to_what_the_connections_need() {
    let deployment = Deployment::new(&hello_plugin());
    let server = crate::support::ServerProcess::start_with_open_files(&deployment, 300);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3].parse::<u64>().unwrap(), fields[4].parse::<u64>().unwrap_or(u64::MAX));
    assert_eq!(soft, hard.min(1024 + 256), "{line}");
}
