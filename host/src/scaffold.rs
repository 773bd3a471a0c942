//! `plinth new plugin NAME`: a plugin crate on the kit, ready to build,
//! test and serve: a first route with its unit test, an integration test
//! against the real host, a `plinth.toml` that serves it (and names its
//! `source` for `plinth dev`), and its policy rules.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Names Rust or cargo would refuse for a crate.
const RESERVED: &[&str] = &[
    "test",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "self",
    "super",
    "crate",
    "build",
    // The crates a plugin depends on.
    "plinth-kit",
    "plinth-routes",
];

/// Why a scaffold was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// Not usable as both a crate and a plugin name.
    #[error(
        "`{0}` is not a valid plugin name: use 1 to 63 of a-z, 0-9, `-`, starting with a letter, and not a reserved word"
    )]
    InvalidName(String),
    /// The directory exists; nothing is overwritten.
    #[error("`{0}` already exists; choose another name or --dir")]
    Exists(PathBuf),
}

/// True for a name that is a valid crate name, plugin name and URL segment.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !RESERVED.contains(&name)
}

/// Writes the plugin crate `name` into `dir`, depending on the kit at `kit`.
pub fn new_plugin(name: &str, dir: &Path, kit: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()).into());
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_owned()).into());
    }
    let kit = std::path::absolute(kit).with_context(|| format!("resolving the kit path {}", kit.display()))?;
    anyhow::ensure!(
        kit.join("wit/platform.wit").is_file(),
        "`{}` is not the plinth kit (no wit/platform.wit); pass --kit",
        kit.display()
    );
    let wasm = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, &kit)),
        ("src/lib.rs", lib_rs(name)),
        ("tests/serve.rs", SERVE_TEST.replace("NAME", name)),
        ("plinth.toml", plinth_toml(name, &wasm)),
        ("policies/routes.toml", policy(name)),
        (".gitignore", "/target\n/.plinth\n".to_owned()),
    ];
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("files are inside the crate"))
            .with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn cargo_toml(name: &str, kit: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
plinth-kit = {{ path = {kit:?} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

[workspace]
"#,
        kit = kit.display().to_string()
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! The `{name}` plugin.

use plinth_kit::prelude::*;
use serde_json::json;

fn router() -> Router {{
    Router::new().get("/v1/{name}", hello)
}}

plinth_kit::plugin!(router);

fn hello(req: &Request) -> Result<Response> {{
    let who = req.principal().map_or_else(|| "world".to_owned(), |p| p.account_id);
    Ok(Response::json(200, &json!({{ "plugin": "{name}", "hello": who }})))
}}

#[cfg(test)]
mod tests {{
    use plinth_kit::testing::{{TestHost, TestRequest}};
    use serde_json::Value;

    use super::router;

    #[test]
    fn greets_whoever_calls() {{
        let host = TestHost::new(router());
        let response = host.send(TestRequest::get("/v1/{name}").signed_in("ada", &[]));
        assert_eq!(response.status, 200);
        assert_eq!(response.body_json::<Value>()["hello"], "ada");
    }}
}}
"#
    )
}

/// The scaffold's integration test: the component, built for wasm32, in the
/// real host, over HTTP. `NAME` is the plugin's name.
const SERVE_TEST: &str = r##"//! The component in the real plinth host: builds it for wasm32-wasip2,
//! serves this crate's plinth.toml with `plinth serve` (on the PATH, or the
//! binary the PLINTH variable names) and calls it over HTTP.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

#[test]
fn the_component_answers_over_http() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir", "target"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(built.success(), "the component builds");
    let data = tempfile_dir();
    let plinth = std::env::var("PLINTH").unwrap_or_else(|_| "plinth".into());
    let mut server = Command::new(&plinth)
        .args(["serve", "--config", "plinth.toml", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running `{plinth}` (put plinth on the PATH or set PLINTH): {e}"));
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let answer = line.trim().strip_prefix("listening on ").map(|addr| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET /v1/NAME HTTP/1.1
host: localhost
connection: close

").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    let answer = answer.unwrap_or_else(|| panic!("plinth did not start: {line:?}"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""plugin":"NAME""#), "{answer}");
}

/// A fresh data directory for this run.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("NAME-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
"##;

fn plinth_toml(name: &str, wasm: &str) -> String {
    format!(
        r#"# Serves the `{name}` plugin on http://127.0.0.1:8080 for development:
#   plinth dev --config plinth.toml    (builds, serves, rebuilds and swaps on change)
# or, step by step:
#   cargo build --release --target wasm32-wasip2 --target-dir target
#   plinth serve --config plinth.toml
policies = "policies/routes.toml"

[server]
listen = "127.0.0.1:8080"

[sessions]
# Plain HTTP on localhost only; never on a deployment others reach.
dev_insecure_cookies = true

# The database and the audit key, kept apart from the sources.
[storage]
path = ".plinth/data"

[audit]
key_file = ".plinth/audit.key"

[[plugins]]
name = "{name}"
component = "target/wasm32-wasip2/release/{wasm}.wasm"
# The crate `plinth dev` builds the component from.
source = "."
# The URL space this plugin may claim; it serves the routes its router
# declares inside it.
routes = ["/v1/{name}/**"]
grants = ["kv"]
limits = {{ memory = "16MiB", timeout_ms = 1000, kv_bytes = "16MiB" }}
"#
    )
}

fn policy(name: &str) -> String {
    format!(
        r#"# Who may call the `{name}` plugin's routes; the most specific rule applies.

[[route]]
route = "/v1/{name}/**"
allow = "authenticated"

[[route]]
route = "GET /v1/{name}"
allow = "public"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_plugin_and_path_names() {
        for good in ["notes", "a", "todo-list", "v2-api"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Notes", "1st", "-x", "x-", "a_b", "a/b", "a b", "test", "self", "plinth-kit", &"x".repeat(64)]
        {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn refuses_an_existing_directory_and_a_bad_name() {
        let dir = tempfile::tempdir().unwrap();
        let kit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kit");
        let err = new_plugin("Bad Name", &dir.path().join("x"), &kit).unwrap_err().to_string();
        assert!(err.contains("`Bad Name` is not a valid plugin name"), "{err}");
        let err = new_plugin("notes", dir.path(), &kit).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        let err = new_plugin("notes", &dir.path().join("n"), dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not the plinth kit"), "{err}");
    }
}
