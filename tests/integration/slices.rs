//! What the feature slices' tests share (examples/feedback-desk and
//! examples/shared-checklist): a slice's deployment with the components
//! built for tests, accounts made as its README makes them, and its README
//! run as written.

use std::path::Path;

use serde_json::{Value, json};

use crate::slice_config;
use crate::support::{Deployment, TestServer, plinth_cli, sh_blocks};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The password every slice test account has.
pub const PASSWORD: &str = "velvet lantern orchard";

/// examples/{slice}/plinth.toml and its policies, with the components built
/// for tests and absolute paths to the slice's files; `own` is the slice's
/// own plugin and its component.
pub fn deployment(slice: &str, own: (&str, &str)) -> Deployment {
    let config = slice_config::config(slice, own, "policies/routes.toml");
    let policy = std::fs::read_to_string(slice_config::policies_path(slice)).unwrap();
    Deployment::with_policy(&config, &policy)
}

/// Invites `email` with `roles` from the command line (the server
/// stopped), as a README does; the invitation's token.
pub fn invite(deployment: &Deployment, email: &str, roles: &str) -> String {
    let config = deployment.config_path();
    let mut args = vec!["admin", "invite", "--config", config.to_str().unwrap(), "--email", email];
    if !roles.is_empty() {
        args.extend(["--roles", roles]);
    }
    let (ok, stdout, stderr) = plinth_cli(&args);
    assert!(ok, "{stderr}");
    let start = stdout.find("token=").expect("the invitation carries its link") + "token=".len();
    stdout[start..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// Accepts an invitation with [`PASSWORD`].
pub async fn accept(server: &TestServer, token: &str, name: &str) {
    let accepted = reqwest::Client::new()
        .post(server.url("/v1/accounts/accept-invite"))
        .json(&json!({ "token": token, "password": PASSWORD, "display_name": name }))
        .send()
        .await
        .unwrap();
    assert!(accepted.status().is_success(), "{}", accepted.text().await.unwrap());
}

/// `Bearer …` for `email`, signed in through the accounts plugin.
pub async fn bearer(server: &TestServer, email: &str) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/v1/sessions/token"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    format!("Bearer {}", response.json::<Value>().await.unwrap()["token"].as_str().unwrap())
}

/// Runs every `sh` block of examples/{slice}/README.md, in order, from the
/// repository root, with `data/{slice}` moved to a fresh directory; kills
/// what it left running; its standard output, or a panic with everything
/// that tells why it failed.
pub fn run_readme(slice: &str) -> String {
    use std::os::unix::process::CommandExt;
    // One README at a time: each runs `make build` and serves on its port.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let readme = std::fs::read_to_string(format!("{ROOT}/examples/{slice}/README.md")).unwrap();
    let script = sh_blocks(&readme);
    assert!(script.contains(&format!("make {slice}")), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(format!("data/{slice}"));
    let script = script.replace(&format!("data/{slice}"), data.to_str().unwrap());
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let plinth = Path::new(env!("CARGO_BIN_EXE_plinth"));
    let path = format!("{}:{}", plinth.parent().unwrap().display(), std::env::var("PATH").unwrap());
    // Output goes to files: what the README starts in the background holds
    // whatever the script's output was.
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = std::process::Command::new("timeout")
        .args(["900", "bash", "-c", &script])
        .current_dir(ROOT)
        .env("PATH", path)
        .process_group(0)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let group = child.id().to_string();
    let status = child.wait().unwrap();
    let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).status();
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let log = std::fs::read_to_string(dir.path().join(format!("data/{slice}.log"))).unwrap_or_default();
    assert!(
        status.success(),
        "the README failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{log}"
    );
    stdout
}
