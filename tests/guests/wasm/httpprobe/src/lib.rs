//! A standard `wasi:http` proxy component that reports what it was given
//! and what it can reach, one route each (under `/probe`, which its test
//! entries strip):
//!
//! - `/facts`: its method, path and every header it received whose name
//!   starts with `plinth` or names a forwarding;
//! - `/sandbox`: environment, arguments, files and a TCP connection to the
//!   address in its query, as `key=value` lines;
//! - `/fetch?URL`: an outgoing request, answered `ok STATUS` or `error CODE`;
//! - `/kv/{key}`: `plinth:platform/kv` (by grant) — PUT stores the body,
//!   GET reads it back;
//! - `/trap`: panics;
//! - `/flood`: writes its body for ever, ignoring that nobody reads it.

wit_bindgen::generate!({
    inline: "package probe:http; world probe { import plinth:platform/kv@0.1.0; }",
    path: "../../../../wit",
    generate_all,
});

use std::io::Read as _;

use plinth::platform::kv;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Probe;

impl Guest for Probe {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (status, body) = match (request.method(), path) {
            (method, "/facts") => (200, facts(&request, &method, &target)),
            (_, "/sandbox") => (200, sandbox(query)),
            (_, "/fetch") => (200, fetch(query)),
            (Method::Put, key) if key.starts_with("/kv/") => {
                let value = read_body(request);
                match kv::set(&key[4..], &value) {
                    Ok(()) => (204, String::new()),
                    Err(e) => (500, format!("{e:?}")),
                }
            }
            (Method::Get, key) if key.starts_with("/kv/") => match kv::get(&key[4..]) {
                Ok(Some(value)) => (200, String::from_utf8_lossy(&value).into_owned()),
                Ok(None) => (404, "absent".to_owned()),
                Err(e) => (500, format!("{e:?}")),
            },
            (_, "/trap") => panic!("the probe was asked to trap"),
            (_, "/flood") => flood(response_out),
            _ => (404, format!("no probe at {path}")),
        };
        respond(response_out, status, body.as_bytes());
    }
}

fn facts(request: &IncomingRequest, method: &Method, target: &str) -> String {
    let mut lines = vec![format!("method={method:?}"), format!("target={target}")];
    for (name, value) in request.headers().entries() {
        if name.starts_with("plinth") || name.contains("forwarded") {
            lines.push(format!("{name}={}", String::from_utf8_lossy(&value)));
        }
    }
    lines.sort();
    lines.join("\n")
}

fn sandbox(address: &str) -> String {
    let report = [
        ("env", std::env::vars_os().count().to_string()),
        ("args", std::env::args_os().count().to_string()),
        ("read_root", std::fs::read_dir("/").is_ok().to_string()),
        ("read_cwd", std::fs::read_dir(".").is_ok().to_string()),
        ("create_file", std::fs::File::create("probe.txt").is_ok().to_string()),
        ("tcp_connect", std::net::TcpStream::connect(address).is_ok().to_string()),
    ];
    report.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

include!("../../fetch.rs");

fn flood(response_out: ResponseOutparam) -> ! {
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing.write().expect("the stream is taken once");
    let chunk = vec![b'x'; 4096];
    loop {
        let _ = stream.blocking_write_and_flush(&chunk);
    }
}

fn read_body(request: IncomingRequest) -> Vec<u8> {
    let mut value = Vec::new();
    if let Ok(body) = request.consume()
        && let Ok(mut stream) = body.stream()
    {
        let _ = stream.read_to_end(&mut value);
    }
    value
}

fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())]).expect("an allowed header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let outgoing = response.body().expect("the body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = outgoing.write().expect("the stream is taken once");
    stream.blocking_write_and_flush(body).expect("the host reads the body");
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("no trailers to refuse");
}

wasip2::http::proxy::export!(Probe);
