//! HTTP/2 protocol abuse against the real server, frame by frame over h2c:
//! each attack ends with the abusive connection cut off (or its stream
//! refused) while another client is still served.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Deployment, TestServer, client_from, hello_plugin};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame: 9-byte header and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal, not Huffman-coded (lengths below 127).
fn literal(text: &[u8]) -> Vec<u8> {
    assert!(text.len() < 127);
    [&[text.len() as u8][..], text].concat()
}

/// HPACK block of `GET path` (static-table :method GET, :scheme http;
/// :path and :authority as literals with indexed names).
fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04];
    block.extend(literal(path.as_bytes()));
    block.push(0x01);
    block.extend(literal(b"localhost"));
    block
}

/// A connection that has sent the preface and its SETTINGS.
async fn open(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat()).await.unwrap();
    stream
}

/// Reads frames until the server closes the connection (true, with the
/// GOAWAY error code if one came) or `within` passes (false).
async fn cut_off(stream: &mut TcpStream, within: Duration) -> (bool, Option<u32>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut goaway = None;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return (false, goaway),
            Ok(Ok(0) | Err(_)) => return (true, goaway),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == GOAWAY && len >= 8 {
                goaway = Some(u32::from_be_bytes(buf[13..17].try_into().unwrap()));
            }
            buf.drain(..9 + len);
        }
    }
}

/// Opens a connection, sends `attack` (as much as the server reads), and
/// reports how the server ended it, as [`cut_off`] does.
async fn attack(server: &TestServer, attack: &[u8]) -> (bool, Option<u32>) {
    let mut attacker = open(server).await;
    // The server may stop reading once it has had enough.
    let _ = tokio::time::timeout(Duration::from_secs(10), attacker.write_all(attack)).await;
    cut_off(&mut attacker, Duration::from_secs(10)).await
}

async fn still_served(server: &TestServer) {
    let answer = client_from("127.0.0.2").get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

async fn server() -> (Deployment, TestServer) {
    let deployment = Deployment::new(&hello_plugin());
    let server = TestServer::start(&deployment).await;
    (deployment, server)
}

#[tokio::test]
async fn rapid_reset_is_cut_off() {
    let (_d, server) = server().await;
    let mut burst = Vec::new();
    for i in 0..20_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &get_block("/healthz")));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let (closed, goaway) = attack(&server, &burst).await;
    assert!(closed, "a connection resetting every stream it opens is closed");
    assert!(goaway.is_some(), "with a GOAWAY");
    still_served(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    let (_d, server) = server().await;
    let mut flood = frame(HEADERS, 0, 1, &get_block("/healthz"));
    // Literal header `x-a: <100 bytes>`, new name, without indexing.
    let header = [&[0x00][..], &literal(b"x-a"), &literal(&[b'a'; 100])].concat();
    for _ in 0..20_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &header));
    }
    let (closed, _) = attack(&server, &flood).await;
    assert!(closed, "a header block that never ends is cut off");
    still_served(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_header_list_is_refused() {
    let (_d, server) = server().await;
    let mut attacker = open(&server).await;
    // An HPACK bomb: one 100-byte header put in the dynamic table, then
    // referenced 4,000 times (one byte each, 400 KB decoded).
    let mut block = get_block("/healthz");
    block.extend([&[0x40][..], &literal(b"x-bomb"), &literal(&[b'b'; 100])].concat());
    block.extend(std::iter::repeat_n(0xbe, 4_000));
    attacker.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).await.unwrap();
    let mut answer = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = attacker.read(&mut answer).await.unwrap_or(0);
            if n == 0 {
                return true;
            }
            seen.extend_from_slice(&answer[..n]);
            // A RST_STREAM, a GOAWAY, or a 431 (`:status` 431 is not in the
            // static table, so its digits appear as a literal).
            let frames = frame_types(&seen);
            if frames.contains(&RST_STREAM) || frames.contains(&GOAWAY) || seen.windows(3).any(|w| w == b"431") {
                return true;
            }
        }
    })
    .await;
    assert_eq!(refused, Ok(true), "the stream is refused, not served: {:?}", frame_types(&seen));
    assert!(!seen.windows(15).any(|w| w == b"{\"status\":\"ok\"}"), "the request never ran");
    still_served(&server).await;
    server.stop().await;
}

/// Frame types in a buffer of whole frames.
fn frame_types(mut buf: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while buf.len() >= 9 {
        let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
        types.push(buf[3]);
        buf = &buf[(9 + len).min(buf.len())..];
    }
    types
}

/// Control frames are no request: a connection sending only them is idle,
/// and closed at its idle time however busy it keeps itself.
#[tokio::test]
async fn ping_and_settings_floods_are_cut_off() {
    let deployment =
        Deployment::new(&format!("[server]\nheader_timeout_ms = 1000\nidle_timeout_ms = 1000\n\n{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    for kind in [PING, SETTINGS] {
        let payload: &[u8] = if kind == PING { &[0; 8] } else { &[] };
        let flood: Vec<u8> = (0..200_000).flat_map(|_| frame(kind, 0, 0, payload)).collect();
        let (closed, _) = attack(&server, &flood).await;
        assert!(closed, "a connection flooding {kind:#x} frames is closed");
        still_served(&server).await;
    }
    // A DATA frame on a stream never opened is a connection error, too.
    let mut confused = open(&server).await;
    confused.write_all(&frame(DATA, END_STREAM, 7, b"x")).await.unwrap();
    assert!(cut_off(&mut confused, Duration::from_secs(5)).await.0);
    server.stop().await;
}
