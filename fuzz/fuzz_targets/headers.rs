//! The headers the edge reads before anything else: the session token
//! (cookie or bearer), the forwarded client address, and `Origin`.
#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use plinth::config::ForwardedHeader;
use plinth::edge::auth::{CookiePolicy, Origins, Presented, check_csrf};
use plinth::edge::client::client_address;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    for insecure in [false, true] {
        match (CookiePolicy { insecure }).token(&headers) {
            Some((token, Presented::Cookie)) => {
                assert!(!token.contains(';'), "a cookie value never runs into the next one: {token:?}")
            }
            Some((token, Presented::Bearer)) => assert_eq!(token.trim(), token, "a bearer token is trimmed"),
            None => {}
        }
    }
    let trusted = ["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net: &ipnet::IpNet| net.contains(ip));
    for peer in ["10.1.2.3".parse().unwrap(), "203.0.113.9".parse().unwrap()] {
        for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
            let client = client_address(peer, &headers, &trusted, header);
            assert!(client == peer || (is_trusted(&peer) && !is_trusted(&client)), "{peer} → {client}");
        }
    }
    let allowed = ["https://app.example".to_owned()];
    let origins = Origins { host: Some("api.example"), allowed: &allowed };
    let _ = check_csrf(&Method::POST, &headers, origins, None, None);
});
