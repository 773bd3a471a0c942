//! HTTPS over rustls with ALPN, and plain HTTP/1.1 and h2c without TLS.

use reqwest::Version;

use crate::support::{Deployment, ISSUER_POLICY, OPEN_POLICY, TEST_SERVER, TestServer, hello_plugin, issuer_plugin};

/// A deployment serving HTTPS with a fresh self-signed certificate for
/// `localhost`; `rest` follows the `[server]` table, whose `tls` it adds.
fn over_tls(rest: &str, policy: &str) -> (Deployment, rcgen::CertifiedKey) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let toml = format!("{}\ntls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\n{rest}", TEST_SERVER.trim_end());
    let deployment = Deployment::with_policy(&toml, policy);
    std::fs::write(deployment.dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(deployment.dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    (deployment, cert)
}

#[tokio::test]
async fn https_negotiates_h2_and_http1() {
    let (deployment, cert) = over_tls(&hello_plugin(), OPEN_POLICY);
    let server = TestServer::start(&deployment).await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/v1/hello", server.addr.port());

    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let response = h2.get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, Version::HTTP_2));
    assert_eq!(response.headers()["strict-transport-security"], plinth::edge::headers::HSTS);

    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", server.addr)
        .http1_only()
        .build()
        .unwrap();
    let response = h1.get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, Version::HTTP_11));

    // Plain HTTP on a TLS port gets nowhere.
    assert!(reqwest::get(format!("http://{}/v1/hello", server.addr)).await.is_err());
    server.stop().await;
}

/// Under TLS a client speaks the version ALPN agreed: the server reads
/// nothing to find out (an HTTP/1 request where h2 was agreed gets no
/// HTTP/1 answer), and one that named no protocol is detected.
#[tokio::test]
async fn a_tls_client_speaks_the_version_alpn_agreed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (deployment, cert) = over_tls(&hello_plugin(), OPEN_POLICY);
    let server = TestServer::start(&deployment).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let http1_answer = |alpn: Option<&'static [u8]>| {
        let roots = roots.clone();
        async move {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            tls.write_all(b"GET /v1/hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
            assert!(read.is_ok(), "the server ends the connection");
            String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200")
        }
    };
    assert!(http1_answer(Some(b"http/1.1")).await);
    assert!(http1_answer(None).await, "no protocol named: detected from the bytes");
    assert!(!http1_answer(Some(b"h2")).await, "h2 was agreed: HTTP/1 bytes are not served");
    server.stop().await;
}

#[tokio::test]
async fn plain_http1_and_h2c() {
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let response = reqwest::get(server.url("/v1/hello")).await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, Version::HTTP_11));
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2c.get(server.url("/v1/hello")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, Version::HTTP_2));
    server.stop().await;
}

/// `dev_insecure_cookies` is for plain-HTTP localhost: over TLS the cookie
/// keeps `Secure` and `__Host-` (finding 11).
#[tokio::test]
async fn the_development_cookie_setting_never_weakens_tls() {
    let (deployment, cert) =
        over_tls(&format!("[sessions]\ndev_insecure_cookies = true\n\n{}", issuer_plugin()), ISSUER_POLICY);
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let login = client.post(format!("https://localhost:{}/v1/test/login", server.addr.port())).body("ann").send();
    let login = login.await.unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-plinth_session=") && cookie.contains("; Secure"), "{cookie}");
    server.stop().await;
}
