//! HTTPS over rustls with ALPN, and plain HTTP/1.1 and h2c without TLS.

use reqwest::Version;

use crate::support::{Deployment, ISSUER_POLICY, TEST_SERVER, TestServer, hello_plugin, issuer_plugin};

#[tokio::test]
async fn https_negotiates_h2_and_http1() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let deployment = Deployment::new(&format!(
        "{}\ntls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\n{}",
        TEST_SERVER.trim_end(),
        hello_plugin()
    ));
    std::fs::write(deployment.dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(deployment.dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
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
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let deployment = Deployment::with_policy(
        &format!(
            "{}\ntls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n\n[sessions]\ndev_insecure_cookies = true\n\n{}",
            TEST_SERVER.trim_end(),
            issuer_plugin()
        ),
        ISSUER_POLICY,
    );
    std::fs::write(deployment.dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(deployment.dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
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
