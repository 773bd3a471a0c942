//! Log lines carry the trace id, and guest output reaches the host log
//! tagged with the plugin.

use crate::support::{Deployment, ServerProcess, TEST_SERVER, plugin};

/// A deployment of the trap plugin, a server started on it by `start`, and
/// the trace id of one request to the plugin (which fails).
async fn trap_served(start: fn(&Deployment) -> ServerProcess) -> (Deployment, ServerProcess, String) {
    let deployment = Deployment::new(&format!(
        "{TEST_SERVER}{}",
        plugin("trap", plinth_test_guests::TRAP, &["GET /v1/trap/**"], &[], "")
    ));
    let server = start(&deployment);
    let response = reqwest::get(server.url("/v1/trap")).await.unwrap();
    assert_eq!(response.status(), 500);
    let trace_id = response.headers()["x-trace-id"].to_str().unwrap().to_owned();
    (deployment, server, trace_id)
}

/// Stops the server with SIGTERM and reads its log: log lines are written
/// in the background, and a clean exit flushes them.
fn stopped_log(deployment: &Deployment, mut server: ServerProcess) -> String {
    server.signal("TERM");
    let status = server.child.wait().unwrap();
    drop(server);
    let log = std::fs::read_to_string(deployment.log_path()).unwrap();
    assert!(status.success(), "the server exited with {status}; its log:\n{log}");
    log
}

#[tokio::test]
async fn guest_stderr_is_logged_with_plugin_and_trace_id() {
    let (deployment, server, trace_id) = trap_served(ServerProcess::start).await;
    // A token in a path (a state link, a view) is a key: not for the log.
    let linked = reqwest::get(server.url("/v1/state/links/v1.1.eyJrIjoieCJ9.c2VjcmV0dGFn")).await.unwrap();
    let linked_trace = linked.headers()["x-trace-id"].to_str().unwrap().to_owned();
    // Pasted with a trailing character, or with its dots encoded.
    for spelling in
        ["v1.1.eyJrIjoieCJ9.c2VjcmV0dGFn.", "v1.1.eyJrIjoieCJ9.c2VjcmV0dGFn)", "v1%2E1%2EeyJrIjoieCJ9.c2VjcmV0dGFn"]
    {
        reqwest::get(server.url(&format!("/v1/state/links/{spelling}"))).await.unwrap();
    }
    let log = stopped_log(&deployment, server);
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let request_lines: Vec<_> = lines.iter().filter(|l| l["span"]["trace_id"] == trace_id.as_str()).collect();
    let guest = request_lines
        .iter()
        .find(|l| l["message"] == "about to fail on /v1/trap")
        .unwrap_or_else(|| panic!("no guest line for trace {trace_id} in:\n{log}"));
    assert_eq!((guest["plugin"].as_str(), guest["stream"].as_str()), (Some("trap"), Some("stderr")));
    assert!(
        request_lines.iter().any(|l| l["message"] == "plugin request failed" && l["plugin"] == "trap"),
        "the failure is logged with the plugin name and trace id:\n{log}"
    );
    let paths: Vec<&str> = lines
        .iter()
        .filter(|l| l["span"]["trace_id"] == linked_trace.as_str())
        .filter_map(|l| l["span"]["path"].as_str())
        .collect();
    assert!(paths.contains(&"/v1/state/links/v1.…"), "the request is logged, its token cut: {paths:?}\n{log}");
    assert!(!log.contains("c2VjcmV0dGFn"), "no token in the log:\n{log}");
}

#[tokio::test]
async fn text_lines_in_a_file_carry_no_terminal_escape_codes() {
    let (deployment, server, trace_id) = trap_served(ServerProcess::start_with_text_log).await;
    let log = stopped_log(&deployment, server);
    assert!(!log.contains('\u{1b}'), "no escape codes in a log file:\n{log}");
    let served = log
        .lines()
        .find(|l| l.contains(&format!("trace_id={trace_id}")) && l.contains("served"))
        .unwrap_or_else(|| panic!("no line for the request with its trace id:\n{log}"));
    assert!(served.contains("status=500") && served.contains("path=/v1/trap"), "{served}");
}

#[tokio::test]
async fn control_and_bidi_characters_from_a_client_or_a_plugin_are_logged_escaped() {
    use std::io::{Read, Write};
    let (deployment, server, _) = trap_served(ServerProcess::start_with_text_log).await;
    // hyper takes any byte at or above 0x80 in a request target: a C1 CSI
    // (U+009B), a next-line (U+0085) and a right-to-left override (U+202E).
    for target in [&b"/v1/a\xc2\x9b31mred"[..], b"/v1/b\xc2\x85fake", b"/v1/c\xe2\x80\xaeevil"] {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        let request = [&b"GET "[..], target, b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"].concat();
        stream.write_all(&request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 4"), "refused, not served: {response}");
    }
    // A bidi override survives canonicalization (it is no control), so it
    // reaches the plugin, which writes it to stderr.
    let reached = reqwest::get(server.url("/v1/trap/d%E2%80%AEevil")).await.unwrap();
    assert_eq!(reached.status(), 500);
    let log = stopped_log(&deployment, server);
    for raw in ['\u{9b}', '\u{85}', '\u{202e}'] {
        assert!(!log.contains(raw), "{raw:?} written raw:\n{log}");
    }
    for escaped in [
        "path=/v1/a\\u{9b}31mred",
        "path=/v1/b\\u{85}fake",
        "path=/v1/c\\u{202e}evil",
        "about to fail on /v1/trap/d\\u{202e}evil",
    ] {
        assert!(log.contains(escaped), "no line with {escaped}:\n{log}");
    }
}

/// A plugin calling `log` in a loop, with a pile of fields each time, cannot
/// flood the host's log: a request writes a bounded number of lines, each
/// of bounded length, and one warning says the rest were dropped.
#[tokio::test]
async fn a_plugin_cannot_flood_the_log() {
    let (deployment, server, _) = trap_served(ServerProcess::start).await;
    let flood = reqwest::get(server.url("/v1/trap/flood")).await.unwrap();
    assert_eq!(flood.status(), 500);
    let trace_id = flood.headers()["x-trace-id"].to_str().unwrap().to_owned();
    let log = stopped_log(&deployment, server);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&trace_id)).collect();
    let floods = lines.iter().filter(|l| l.contains("flood line")).count();
    assert!((1..=plinth::runtime::host::log::MAX_LINES_PER_REQUEST as usize).contains(&floods), "{floods} lines");
    assert!(lines.iter().all(|l| l.len() < 16 * 1024), "a line is bounded");
    assert!(lines.iter().any(|l| l.contains("the rest are dropped")), "the cut is said");
    assert!(log.len() < 4 * 1024 * 1024, "the whole log stays small: {} bytes", log.len());
}
