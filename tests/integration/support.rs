//! Test support: deployments written to a temp dir, the real server run
//! in-process on port 0, and the real binary run as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A temp directory holding a `plinth.toml` and its data directory.
pub struct Deployment {
    /// Deleted on drop.
    pub dir: tempfile::TempDir,
}

impl Deployment {
    /// Writes `toml` as `plinth.toml` with a policy that makes every route
    /// public; `[storage] path` defaults to `data`.
    pub fn new(toml: &str) -> Self {
        Self::with_policy(toml, OPEN_POLICY)
    }

    /// Writes `toml` as `plinth.toml` and `policy` as `policies/routes.toml`.
    pub fn with_policy(toml: &str, policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plinth.toml"), toml).unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/routes.toml"), policy).unwrap();
        Self { dir }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("plinth.toml")
    }

    /// The data directory the server uses.
    pub fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where a [`ServerProcess`] writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("plinth.log")
    }

    /// Loads the config, failing with the loader's message.
    pub fn load(&self) -> Result<plinth::Config, String> {
        plinth::Config::load(&self.config_path()).map_err(|e| e.to_string())
    }
}

/// A `[[plugins]]` table for a component.
pub fn plugin(name: &str, component: &str, routes: &[&str], grants: &[&str], limits: &str) -> String {
    let quote = |items: &[&str]| items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[[plugins]]\nname = {name:?}\ncomponent = {component:?}\nroutes = [{}]\ngrants = [{}]\nlimits = {{ {limits} }}\n\n",
        quote(routes),
        quote(grants)
    )
}

/// The hello plugin as `examples/plinth.toml` configures it.
pub fn hello_plugin() -> String {
    plugin(
        "hello",
        plinth_test_guests::HELLO,
        &["GET /v1/hello", "POST /v1/hello/count"],
        &["kv"],
        "memory = \"16MiB\", timeout_ms = 2000",
    )
}

/// A policy that lets anyone call anything: for tests about other things.
pub const OPEN_POLICY: &str = "[[route]]\nroute = \"/**\"\nallow = \"public\"\n";

/// The test-only issuer plugin (see `tests/guests/wasm/issuer`).
pub fn issuer_plugin() -> String {
    plugin("issuer", plinth_test_guests::ISSUER, &["/v1/test/**"], &["principals", "sessions"], "")
}

/// Policy rules for the issuer plugin.
pub const ISSUER_POLICY: &str = r#"
[[route]]
route = "/v1/test/**"
allow = "authenticated"

[[route]]
route = "POST /v1/test/login"
allow = "public"
class = "login"

[[route]]
route = "POST /v1/test/status/{id}/{status}"
allow = "public"
"#;

/// Rate limits loose enough that tests signing in often are not throttled.
pub const LOOSE_LIMITS: &str = "[rate_limits.classes.login]\nper_address = \"1000/min\"\n\n\
[rate_limits.classes.email]\nper_address = \"1000/min\"\nper_principal = \"1000/min\"\n\n\
[rate_limits.classes.password_reset]\nper_address = \"1000/min\"\n\n";

/// One compiled-component cache for every example deployment of a test
/// run, so the language plugins' large components compile once.
const SHARED_COMPILED: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/compiled");

/// The example deployment (examples/plinth.toml and policies/routes.toml)
/// with components built for tests, loose rate limits, the issuer plugin
/// added, and `extra` top-level settings spliced in.
pub fn example_deployment(accounts_settings: &str) -> Deployment {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let config = std::fs::read_to_string(format!("{root}/examples/plinth.toml")).unwrap();
    let mut config = config
        .replace("../target/plugins/hello.wasm", plinth_test_guests::HELLO)
        .replace("../target/plugins/counters-js.wasm", plinth_test_guests::COUNTERS_JS)
        .replace("../target/plugins/counters-py.wasm", plinth_test_guests::COUNTERS_PY)
        .replace("../target/plugins/wasi-hello.wasm", plinth_test_guests::WASI_HELLO)
        .replace("../target/plugins/accounts.wasm", plinth_test_guests::ACCOUNTS)
        .replace("../target/plugins/state.wasm", plinth_test_guests::STATE)
        .replace("../target/plugins/media.wasm", plinth_test_guests::MEDIA)
        .replace("../target/plugins/images.wasm", plinth_test_guests::IMAGES)
        .replace("../target/plugins/forms.wasm", plinth_test_guests::FORMS)
        .replace("../target/plugins/exports.wasm", plinth_test_guests::EXPORTS)
        .replace("\"../plugins/forms/locales\"", &format!("{:?}", format!("{root}/plugins/forms/locales")))
        .replace("\"../plugins/accounts/migrations\"", &format!("{:?}", format!("{root}/plugins/accounts/migrations")))
        .replace("\"forms/locales\"", &format!("{:?}", format!("{root}/examples/forms/locales")))
        .replace("assets = \"forms\"", &format!("assets = {:?}", format!("{root}/examples/forms")))
        .replace("policies = \"../policies/routes.toml\"", "policies = \"policies/routes.toml\"")
        .replace(
            "[storage]\npath = \"../data\"",
            &format!("[storage]\npath = \"data\"\ncompiled = {SHARED_COMPILED:?}"),
        )
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("dev_insecure_cookies = true", "dev_insecure_cookies = false");
    if !accounts_settings.is_empty() {
        let start = config.find("settings = {").expect("the accounts plugin has settings");
        let end = start + config[start..].find('\n').unwrap();
        config.replace_range(start..end, &format!("settings = {{ {accounts_settings} }}"));
    }
    let policy = std::fs::read_to_string(format!("{root}/policies/routes.toml")).unwrap();
    Deployment::with_policy(
        &format!("{config}\n{LOOSE_LIMITS}{}", issuer_plugin()),
        &format!("{policy}\n{ISSUER_POLICY}"),
    )
}

/// `config` without the `[[plugins]]` tables of the plugins `names`.
pub fn without_plugins(config: &str, names: &[&str]) -> String {
    let mut tables: Vec<String> = vec![String::new()];
    for line in config.lines() {
        if line.starts_with('[') {
            tables.push(String::new());
        }
        let table = tables.last_mut().unwrap();
        table.push_str(line);
        table.push('\n');
    }
    tables
        .into_iter()
        .filter(|t| !(t.starts_with("[[plugins]]") && names.iter().any(|n| t.contains(&format!("\nname = {n:?}\n")))))
        .collect()
}

/// The value of the first `/metrics` line starting with `line_start`, as
/// `authorization` (an admin) reads it.
pub async fn metric(base: &str, authorization: &str, line_start: &str) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().find(|l| l.starts_with(line_start))?.rsplit(' ').next()?.parse().ok()
}

/// A signed-in test principal.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session token (cookie value).
    pub token: String,
    /// The cookie's name (`__Host-plinth_session`, or the dev name).
    pub cookie_name: String,
    /// The full `Set-Cookie` header of the login.
    pub set_cookie: String,
    /// The session id.
    pub session_id: String,
    /// The CSRF token.
    pub csrf: String,
}

impl SignedIn {
    /// The `Cookie` header value carrying the session.
    pub fn cookie(&self) -> String {
        format!("{}={}", self.cookie_name, self.token)
    }

    /// The `Authorization` header value carrying the session.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// Signs in `id` with `roles` through the issuer plugin; `already` is a
/// session the browser already had (sent as a cookie, with its CSRF token).
pub async fn sign_in(base: &str, id: &str, roles: &[&str], already: Option<&SignedIn>) -> SignedIn {
    let mut request =
        reqwest::Client::new().post(format!("{base}/v1/test/login")).body(format!("{id} {}", roles.join(",")));
    if let Some(session) = already {
        request = request.header("cookie", session.cookie()).header("x-csrf-token", &session.csrf);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "sign-in of {id} failed");
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    let (cookie_name, rest) = set_cookie.split_once('=').expect("a cookie");
    let token = rest.split(';').next().unwrap().to_owned();
    let cookie_name = cookie_name.to_owned();
    let body = response.text().await.unwrap();
    let (session_id, csrf) = body.split_once(' ').unwrap();
    SignedIn { token, cookie_name, set_cookie, session_id: session_id.to_owned(), csrf: csrf.to_owned() }
}

/// Server bounds small enough for tests to reach.
pub const TEST_SERVER: &str = "[server]\nmax_in_flight = 32\nmax_body = \"1KiB\"\nmax_headers = 20\n\n";

/// The real server, in this process, on a free port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The app it serves, to read its deployment.
    pub app: Arc<plinth::App>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Builds the deployment's app and serves it; it reloads from the
    /// deployment's config file.
    pub async fn start(deployment: &Deployment) -> Self {
        let source = plinth::app::ConfigSource {
            file: deployment.config_path(),
            data: None,
            listen: Some("127.0.0.1:0".parse().unwrap()),
        };
        let config = source.load().expect("test config is valid");
        Self::serve(config, Some(source)).await
    }

    /// Like [`TestServer::start`], on a listener bound already (its
    /// address can be in the config, as a redirect URI's is).
    pub async fn start_on(deployment: &Deployment, listener: tokio::net::TcpListener) -> Self {
        let source = plinth::app::ConfigSource { file: deployment.config_path(), data: None, listen: None };
        let config = source.load().expect("test config is valid");
        Self::serve_listening(config, Some(source), listener).await
    }

    /// Serves an already loaded config.
    pub async fn start_with(config: plinth::Config) -> Self {
        Self::serve(config, None).await
    }

    /// Serves the deployment on every address, IPv6 and IPv4 (`[::]`).
    pub async fn start_dual_stack(deployment: &Deployment) -> Self {
        let config = deployment.load().expect("test config is valid");
        Self::serve_on(config, None, "[::]:0".parse().unwrap()).await
    }

    async fn serve(config: plinth::Config, source: Option<plinth::app::ConfigSource>) -> Self {
        Self::serve_on(config, source, "127.0.0.1:0".parse().unwrap()).await
    }

    async fn serve_on(
        mut config: plinth::Config,
        source: Option<plinth::app::ConfigSource>,
        listen: SocketAddr,
    ) -> Self {
        config.server.listen = listen;
        let listener = tokio::net::TcpListener::bind(config.server.listen).await.unwrap();
        Self::serve_listening(config, source, listener).await
    }

    async fn serve_listening(
        config: plinth::Config,
        source: Option<plinth::app::ConfigSource>,
        listener: tokio::net::TcpListener,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let watch = source.is_some();
        let app = Arc::new(plinth::App::build_from(config, source).await.expect("app builds"));
        if watch {
            plinth::watch::spawn(app.clone()).unwrap();
        }
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(plinth::run(listener, app.clone(), async {
            let _ = rx.await;
        }));
        Self { addr, app, shutdown: Some(tx), task: Some(task) }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shuts down and waits for the drain.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// The `plinth` binary running as a child process.
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Runs `plinth serve` on the deployment and waits for its address.
    /// Its log (JSON lines) goes to [`Deployment::log_path`].
    pub fn start(deployment: &Deployment) -> Self {
        Self::start_from(deployment, Command::new(env!("CARGO_BIN_EXE_plinth")))
    }

    /// Runs `plinth dev` on a config (data in `data`, stderr to `log`) and
    /// waits for its address, which it prints once its first builds are done.
    pub fn dev(config: &Path, data: &Path, log: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plinth"));
        command.arg("dev");
        Self::spawn(command, config, data, log, "json")
    }

    /// Like [`ServerProcess::start`], with the soft limit on open files
    /// lowered to `open_files` first, as a shell's `ulimit -Sn` would.
    pub fn start_with_open_files(deployment: &Deployment, open_files: u64) -> Self {
        let mut shell = Command::new("sh");
        shell.args(["-c", &format!("ulimit -Sn {open_files} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_plinth")]);
        Self::start_from(deployment, shell)
    }

    /// Like [`ServerProcess::start`], with files the server writes limited
    /// to `kib` KiB (`ulimit -f`; `SIGXFSZ` ignored, so a write past it
    /// fails with `EFBIG`, as a full disk fails with `ENOSPC`).
    pub fn start_with_file_size_limit(deployment: &Deployment, kib: u64) -> Self {
        let mut shell = Command::new("sh");
        let script = format!("trap '' XFSZ && ulimit -f {} && exec \"$0\" \"$@\"", kib);
        shell.args(["-c", &script, env!("CARGO_BIN_EXE_plinth")]);
        Self::start_from(deployment, shell)
    }

    /// As [`ServerProcess::start`], with the default, human-readable log
    /// lines as an operator redirecting stderr to a file gets them.
    pub fn start_with_text_log(deployment: &Deployment) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_plinth"));
        command.arg("serve");
        Self::spawn(command, &deployment.config_path(), &deployment.data_path(), &deployment.log_path(), "text")
    }

    fn start_from(deployment: &Deployment, mut command: Command) -> Self {
        command.arg("serve");
        Self::spawn(command, &deployment.config_path(), &deployment.data_path(), &deployment.log_path(), "json")
    }

    /// The server logs at its default level (info) whatever `RUST_LOG` the
    /// suite runs under: tests read its request lines.
    fn spawn(mut command: Command, config: &Path, data: &Path, log: &Path, log_format: &str) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let mut child = command
            .env_remove("RUST_LOG")
            .args(["--log-format", log_format, "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// Sends a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([format!("-{name}"), self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `plinth` binary with arguments; returns (success, stdout, stderr).
pub fn plinth_cli(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_plinth")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts a response is the JSON error shape with this status and code,
/// and that its trace id matches the `x-trace-id` header.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    let header = response.headers().get("x-trace-id").expect("x-trace-id").to_str().unwrap().to_owned();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["trace_id"], header.as_str());
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    body
}

/// Polls `probe` every 50 ms until it finds something, for at most 15 s.
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(found) = probe().await {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// GETs `path` with a session token (`Authorization` value).
pub async fn get_as(server: &TestServer, path: &str, authorization: &str) -> reqwest::Response {
    reqwest::Client::new().get(server.url(path)).header("authorization", authorization).send().await.unwrap()
}

/// GETs `path` with a session token and reads the JSON answer.
pub async fn get_json(server: &TestServer, path: &str, authorization: &str) -> serde_json::Value {
    get_as(server, path, authorization).await.json().await.unwrap()
}

/// An HTTP/1.1 answer read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The head (status line and headers), lower-cased.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `method target` as written, byte for byte (no client library
/// normalizes it), with `headers` and `body`, and reads the answer.
pub async fn raw_http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"));
    RawResponse { status, head: head.to_lowercase(), body: body.to_owned() }
}

/// A client whose connections come from `source` (another loopback address
/// stands for another client).
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(source.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

/// Every command of a Markdown file's `sh` blocks, in order, as one bash
/// script that stops at the first failure.
pub fn sh_blocks(markdown: &str) -> String {
    let mut script = String::from("set -euo pipefail\n");
    let mut in_block = false;
    for line in markdown.lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" if in_block => in_block = false,
            _ if in_block => script.push_str(&format!("{line}\n")),
            _ => {}
        }
    }
    script
}
