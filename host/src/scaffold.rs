//! `plinth new plugin NAME [--lang rust|js|python]`: a plugin ready to
//! build, test and serve. In Rust, a crate on the kit: a first route with
//! its unit test, an integration test against the real host, a
//! `plinth.toml` that serves it (and names its `source` for `plinth dev`),
//! and its policy rules. In JavaScript or Python, a module with a first
//! route, its WIT world (plinth's WIT copied in), a test against the real
//! host, and the same `plinth.toml` and policies.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The language a scaffolded plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// A crate on the plugin kit, built with cargo.
    Rust,
    /// A module built with componentize-js (from the npm registry).
    Js,
    /// A module built with componentize-py (from PyPI).
    Python,
}

/// The componentize-js version a JavaScript scaffold pins (as
/// `plugins/counters-js` does).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// The componentize-py version a Python scaffold's comments name (as the
/// Makefile installs).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

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

/// Writes the plugin `name` in `language` into `dir`, on the kit at `kit`
/// (a Rust crate depends on it; the other languages copy its WIT).
pub fn new_plugin(name: &str, dir: &Path, kit: &Path, language: Language) -> anyhow::Result<Vec<PathBuf>> {
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
    let mut files = match language {
        Language::Rust => {
            vec![
                ("Cargo.toml", cargo_toml(name, &kit)),
                ("src/lib.rs", lib_rs(name)),
                ("tests/serve.rs", SERVE_TEST.replace("NAME", name)),
                ("plinth.toml", plinth_toml(name, language)),
                (".gitignore", "/target\n/.plinth\n".to_owned()),
            ]
        }
        Language::Js | Language::Python => {
            let platform = std::fs::read_to_string(kit.join("wit/platform.wit"))
                .with_context(|| format!("reading {}", kit.join("wit/platform.wit").display()))?;
            let mut files = vec![
                ("wit/world.wit", WORLD.to_owned()),
                ("wit/deps/platform/platform.wit", platform),
                ("plinth.toml", plinth_toml(name, language)),
            ];
            files.extend(match language {
                Language::Js => vec![
                    ("package.json", package_json(name)),
                    ("plugin.js", JS_PLUGIN.replace("NAME", name)),
                    ("test/serve.test.mjs", JS_SERVE_TEST.replace("NAME", name)),
                    (".gitignore", "node_modules/\n*.wasm\n.plinth/\n".to_owned()),
                ],
                _ => vec![
                    ("app.py", PY_PLUGIN.replace("NAME", name)),
                    ("test_serve.py", PY_SERVE_TEST.replace("NAME", name)),
                    (".gitignore", "*.wasm\n__pycache__/\n.plinth/\n.venv/\n".to_owned()),
                ],
            });
            files
        }
    };
    files.push(("policies/routes.toml", policy(name)));
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

/// The scaffold's `plinth.toml`: how to build and serve the plugin, and
/// its entry (a JavaScript or Python instance holds its language's whole
/// runtime, so it gets more memory).
fn plinth_toml(name: &str, language: Language) -> String {
    let serving = "#   plinth serve --config plinth.toml";
    let swap = format!("# The server swaps the plugin in when {name}.wasm changes, without dropping a request.");
    let (serving, wasm, source, memory) = match language {
        Language::Rust => (
            format!(
                "#   plinth dev --config plinth.toml    (builds, serves, rebuilds and swaps on change)\n\
                 # or, step by step:\n\
                 #   cargo build --release --target wasm32-wasip2 --target-dir target\n{serving}"
            ),
            format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
            "# The crate `plinth dev` builds the component from.\nsource = \".\"\n",
            "16MiB",
        ),
        Language::Js => (
            format!("#   npm install    (once)\n#   npm run build\n{serving}\n{swap}"),
            format!("{name}.wasm"),
            "",
            "128MiB",
        ),
        Language::Python => (
            format!(
                "#   python3 -m venv .venv && .venv/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION}    (once)\n\
                 #   .venv/bin/componentize-py --wit-path wit --world component componentize app --output {name}.wasm\n\
                 {serving}\n{swap}"
            ),
            format!("{name}.wasm"),
            "",
            "128MiB",
        ),
    };
    format!(
        r#"# Serves the `{name}` plugin on http://127.0.0.1:8080 for development:
{serving}
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
component = "{wasm}"
{source}# The URL space this plugin may claim; it serves the routes it declares
# inside it.
routes = ["/v1/{name}/**"]
grants = ["kv"]
limits = {{ memory = "{memory}", timeout_ms = 1000, kv_bytes = "16MiB" }}
"#
    )
}

/// A JavaScript or Python plugin's world: what it imports is what it may
/// be granted, so it names only `kv` (add imports with their grants).
const WORLD: &str = r#"/// This plugin's world: plinth's handler, and the host interfaces it
/// imports (each needs its grant in plinth.toml). plinth's WIT is in
/// deps/platform; the interfaces it has are listed in its `plugin` world.
package local:plugin;

world component {
    import plinth:platform/kv@0.1.0;
    export plinth:platform/handler@0.1.0;
}
"#;

fn package_json(name: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "componentize-js plugin.js --wit wit --world-name component --disable http fetch-event --out {name}.wasm",
    "test": "node --test test/serve.test.mjs"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "{COMPONENTIZE_JS_VERSION}"
  }}
}}
"#
    )
}

/// The JavaScript plugin. `NAME` is the plugin's name.
const JS_PLUGIN: &str = r#"// The `NAME` plugin: greets the caller and counts their visits in kv.
// Requests and responses are plinth's `types` resources; a kv error is
// thrown with its variant as `payload`.

import { Response } from 'plinth:platform/types@0.1.0';
import { get, compareAndSwap } from 'plinth:platform/kv@0.1.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function json(status, value) {
  const response = new Response(status);
  response.setHeader('content-type', 'application/json');
  response.setBody(encoder.encode(JSON.stringify(value)));
  return response;
}

/** Adds one to a counter, retrying when another request got there first. */
function visit(key) {
  for (;;) {
    const current = get(key);
    const visits = (current === undefined ? 0 : Number(decoder.decode(current))) + 1;
    if (compareAndSwap(key, current, encoder.encode(String(visits))).tag === 'swapped') return visits;
  }
}

export const handler = {
  routes() {
    return ['GET /v1/NAME'];
  },

  handle(req) {
    const principal = req.principal();
    const who = principal ? principal.accountId : 'world';
    try {
      return json(200, { hello: who, plugin: 'NAME', visits: visit(`visits/${who}`) });
    } catch (e) {
      const error = { code: 'storage_unavailable', message: 'try again', trace_id: req.traceId() };
      return json(503, { error });
    }
  },
};
"#;

/// The JavaScript plugin's test: the built component in the real host.
const JS_SERVE_TEST: &str = r#"// The built component (npm run build) in the real plinth host: serves this
// directory's plinth.toml with `plinth serve` (on the PATH, or the binary
// the PLINTH variable names) and calls it over HTTP.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

test('the component answers over HTTP', async () => {
  const data = mkdtempSync(join(tmpdir(), 'NAME-test-'));
  const plinth = process.env.PLINTH ?? 'plinth';
  const server = spawn(plinth, ['serve', '--config', 'plinth.toml', '--listen', '127.0.0.1:0', '--data', data], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const [line] = await Promise.race([
      (async () => { for await (const l of createInterface({ input: server.stdout })) return [l]; })(),
      new Promise((_, reject) => server.on('error', reject)),
    ]);
    const address = line.replace('listening on ', '');
    for (const visits of [1, 2]) {
      const response = await fetch(`http://${address}/v1/NAME`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { hello: 'world', plugin: 'NAME', visits });
    }
  } finally {
    server.kill();
  }
});
"#;

/// The Python plugin. `NAME` is the plugin's name.
const PY_PLUGIN: &str = r#""""The `NAME` plugin: greets the caller and counts their visits in kv.

Requests and responses are plinth's `types` resources; a kv error is raised
as `componentize_py_types.Err` with its variant as `value`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv
from wit_world.imports.types import Request, Response


def respond(status: int, value) -> Response:
    response = Response(status)
    response.set_header("content-type", "application/json")
    response.set_body(json.dumps(value, separators=(",", ":")).encode())
    return response


def visit(key: str) -> int:
    """Adds one to a counter, retrying when another request got there first."""
    while True:
        current = kv.get(key)
        visits = (0 if current is None else int(current.decode())) + 1
        if isinstance(kv.compare_and_swap(key, current, str(visits).encode()), kv.Swap_Swapped):
            return visits


class Handler(exports.Handler):
    def routes(self) -> list[str]:
        return ["GET /v1/NAME"]

    def handle(self, req: Request) -> Response:
        principal = req.principal()
        who = principal.account_id if principal else "world"
        try:
            return respond(200, {"hello": who, "plugin": "NAME", "visits": visit(f"visits/{who}")})
        except Err:
            error = {"code": "storage_unavailable", "message": "try again", "trace_id": req.trace_id()}
            return respond(503, {"error": error})
"#;

/// The Python plugin's test: the built component in the real host.
const PY_SERVE_TEST: &str = r#""""The built component (NAME.wasm) in the real plinth host: serves this
directory's plinth.toml with `plinth serve` (on the PATH, or the binary the
PLINTH variable names) and calls it over HTTP."""

import json
import os
import subprocess
import tempfile
import unittest
import urllib.request


class Serve(unittest.TestCase):
    def test_the_component_answers_over_http(self):
        plinth = os.environ.get("PLINTH", "plinth")
        with tempfile.TemporaryDirectory() as data:
            server = subprocess.Popen(
                [plinth, "serve", "--config", "plinth.toml", "--listen", "127.0.0.1:0", "--data", data],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                address = server.stdout.readline().strip().removeprefix("listening on ")
                for visits in (1, 2):
                    with urllib.request.urlopen(f"http://{address}/v1/NAME") as response:
                        self.assertEqual(response.status, 200)
                        answer = json.load(response)
                    self.assertEqual(answer, {"hello": "world", "plugin": "NAME", "visits": visits})
            finally:
                server.kill()
                server.wait()


if __name__ == "__main__":
    unittest.main()
"#;

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
        let err = new_plugin("Bad Name", &dir.path().join("x"), &kit, Language::Rust).unwrap_err().to_string();
        assert!(err.contains("`Bad Name` is not a valid plugin name"), "{err}");
        let err = new_plugin("notes", dir.path(), &kit, Language::Js).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        let err = new_plugin("notes", &dir.path().join("n"), dir.path(), Language::Python).unwrap_err().to_string();
        assert!(err.contains("is not the plinth kit"), "{err}");
    }
}
