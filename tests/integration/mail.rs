//! E-mail delivery over SMTP to a real SMTP server (aiosmtpd), with retries
//! while the server is down and failures parked for admins.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestServer, eventually, example_deployment, get_json, sign_in};

/// aiosmtpd writing what it receives into a maildir.
struct SmtpServer(Child);

impl SmtpServer {
    fn start(port: u16, maildir: &std::path::Path) -> Self {
        let mut server = Self(
            Command::new("python3")
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 with aiosmtpd (make test installs it)"),
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = server.0.kill();
        panic!("aiosmtpd did not start on port {port}");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Messages in the maildir, raw.
fn delivered(maildir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    entries.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect()
}

async fn outbox(server: &TestServer, bearer: &str, state: &str) -> Vec<Value> {
    let body: Value = get_json(server, &format!("/admin/outbox?state={state}"), bearer).await;
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn mail_is_retried_until_the_smtp_server_takes_it_and_parked_when_it_never_does() {
    let port = free_port();
    let deployment = example_deployment("");
    let config_path = deployment.config_path();
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        "\n[mail]\nmax_attempts = 3\nretry_base = \"300ms\"\n\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"plinth <noreply@example.com>\"\n"
    ));
    std::fs::write(&config_path, config).unwrap();
    let server = TestServer::start(&deployment).await;
    let ops = sign_in(&server.url(""), "ops", &["admin"], None).await.bearer();
    let client = reqwest::Client::new();
    let signup = |email: &'static str| {
        client
            .post(server.url("/v1/accounts/signup"))
            .json(&json!({ "email": email, "password": "correct horse battery staple", "display_name": "S" }))
            .send()
    };
    assert_eq!(signup("smtp@example.com").await.unwrap().status(), 202);

    // Nobody listens yet: the first attempt fails and the message waits.
    let waiting = eventually("a failed first attempt", async || {
        outbox(&server, &ops, "queued").await.into_iter().find(|m| m["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert!(waiting["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{waiting}");

    let maildir = deployment.dir.path().join("maildir");
    let smtp = SmtpServer::start(port, &maildir);
    let raw = eventually("delivery over SMTP", async || {
        delivered(&maildir).into_iter().find(|m| m.contains("smtp@example.com"))
    })
    .await;
    assert!(raw.contains("From: plinth <noreply@example.com>"), "{raw}");
    assert!(raw.contains("Subject: Confirm your e-mail address"), "{raw}");
    // Undo quoted-printable: soft line breaks and the escaped `=`.
    let raw = raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let at = raw.find("token=").unwrap_or_else(|| panic!("no verify link in {raw}")) + 6;
    let token: String = raw[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    let verified = client
        .post(server.url("/v1/accounts/verify"))
        .json(&json!({ "token": token, "password": "correct horse battery staple" }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 204, "the token that travelled by SMTP works");
    let sent = outbox(&server, &ops, "sent").await;
    let delivered_message = sent.iter().find(|m| m["to"] == "smtp@example.com").expect("listed as sent");
    // Its live link is not kept: no admin (and no copy of the database) can use it.
    assert!(delivered_message.get("body").is_none(), "{delivered_message}");
    assert!(!sent.iter().any(|m| m.to_string().contains("token=")), "{sent:?}");

    // The server goes away for good: after max_attempts the message is parked.
    drop(smtp);
    assert_eq!(signup("lost@example.com").await.unwrap().status(), 202);
    let failed = eventually("a parked message", async || {
        outbox(&server, &ops, "failed").await.into_iter().find(|m| m["to"] == "lost@example.com")
    })
    .await;
    assert_eq!(failed["attempts"], 3);
    assert!(failed.get("body").is_none(), "a parked message keeps no link: {failed}");
    assert!(failed["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    server.stop().await;
}
