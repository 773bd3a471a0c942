//! Test support: deployments written to a temp dir, the real server run
//! in-process on port 0, and the real binary run as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Writes `toml` as `plinth.toml`; `[storage] path` defaults to `data`.
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plinth.toml"), toml).unwrap();
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

/// Server bounds small enough for tests to reach.
pub const TEST_SERVER: &str = "[server]\nmax_in_flight = 32\nmax_body = \"1KiB\"\nmax_headers = 20\n\n";

/// The real server, in this process, on a free port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Builds the deployment's app and serves it.
    pub async fn start(deployment: &Deployment) -> Self {
        let mut config = deployment.load().expect("test config is valid");
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        Self::start_with(config).await
    }

    /// Serves an already loaded config.
    pub async fn start_with(config: plinth::Config) -> Self {
        let listener = tokio::net::TcpListener::bind(config.server.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(plinth::App::build(config).await.expect("app builds"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(plinth::run(listener, app, async {
            let _ = rx.await;
        }));
        Self { addr, shutdown: Some(tx), task: Some(task) }
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
        let log = std::fs::File::create(deployment.log_path()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(deployment.config_path())
            .arg("--data")
            .arg(deployment.data_path())
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
