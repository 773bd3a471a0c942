//! SIGTERM drains: a request in flight completes, new connections are refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Deployment, ServerProcess, TEST_SERVER, hello_plugin};

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let mut server = ServerProcess::start(&deployment);
    // A slow upload: headers and half the body, then the signal.
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"POST /v1/hello/count HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(TcpStream::connect(server.addr).is_err(), "a new connection was accepted after SIGTERM");
    stream.write_all(b"67890").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("{\"count\":1}"), "{response}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}
