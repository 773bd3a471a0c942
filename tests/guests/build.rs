//! Builds the wasm guests the integration tests run (the test-only ones in
//! `wasm/`, `js/` and `python/`, and the real plugins in `/plugins`), once
//! per build, and writes a constant with the path of each component.
//!
//! JavaScript components are built with componentize-js from
//! `plugins/counters-js/node_modules` (`npm ci` there), Python ones with
//! the componentize-py that `PLINTH_COMPONENTIZE_PY` names (else the one on
//! `PATH`); `make test-deps` installs both.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Components in other languages: (constant, language, source directory
/// relative to this crate, module, world).
const LANGUAGE_GUESTS: &[(&str, Language, &str, &str, &str)] = &[
    ("COUNTERS_JS", Language::JavaScript, "../../plugins/counters-js", "counters.js", "counters"),
    ("COUNTERS_PY", Language::Python, "../../plugins/counters-py", "app", "counters"),
    ("JSPROBE", Language::JavaScript, "js", "probe.js", "probe"),
    ("PYPROBE", Language::Python, "python", "probe", "probe"),
];

#[derive(Clone, Copy)]
enum Language {
    JavaScript,
    Python,
}

/// (workspace, crates) pairs to build, relative to this crate.
const WORKSPACES: &[(&str, &[&str])] = &[
    (
        "wasm",
        &[
            "spin",
            "hog",
            "trap",
            "kvprobe",
            "issuer",
            "version",
            "wasiprobe",
            "ambiguous",
            "legacy",
            "signer",
            "blobtrap",
            "jobprobe",
            "migrator-v0",
            "migrator-v1",
            "migrator-v2",
            "httpprobe",
            "fetcher",
            "sleeper",
        ],
    ),
    ("../../plugins", &["hello", "accounts", "state", "media", "images", "forms", "exports"]),
    ("../../examples/notes", &["notes"]),
    ("../../examples/feedback-desk/desk", &["desk"]),
    ("../../examples/shared-checklist/lists", &["lists"]),
    // The `wasmtime serve` hello, deployed unchanged as a wasi:http plugin.
    ("../../benches/wasi-hello", &["wasi-hello"]),
];

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out; the guests get a
    // target directory beside the profiles, shared by every build.
    let target = out.ancestors().nth(4).expect("OUT_DIR is inside the target directory").join("wasm-guests");
    // The WIT (kept in the kit) and the kit, route and forms crates the plugins use.
    for shared in ["../../kit/wit", "../../kit/src", "../../kit/Cargo.toml", "../../routes/src", "../../forms/src"] {
        println!("cargo:rerun-if-changed={}", here.join(shared).display());
    }
    let mut constants = String::new();
    for (workspace, crates) in WORKSPACES {
        let dir = here.join(workspace);
        for watched in ["Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", dir.join(watched).display());
        }
        // Sources the crates share (`include!`d from the workspace's root).
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "rs") {
                println!("cargo:rerun-if-changed={}", entry.path().display());
            }
        }
        for name in *crates {
            println!("cargo:rerun-if-changed={}", dir.join(name).display());
        }
        build(&dir, &target);
        for name in *crates {
            let wasm = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
            assert!(wasm.is_file(), "{} was not built", wasm.display());
            constants.push_str(&format!(
                "/// The `{name}` component.\npub const {}: &str = {:?};\n",
                name.to_uppercase().replace('-', "_"),
                wasm.display().to_string()
            ));
        }
    }
    // The accounts plugin at its previous data version, in a target
    // directory of its own (the same crate with other features would
    // overwrite the current one's component).
    let previous = target.with_file_name("wasm-guests-accounts-data-v0");
    build_with(&here.join("../../plugins"), &previous, &["-p", "accounts", "--features", "data-v0"]);
    constants.push_str(&format!(
        "/// The accounts plugin as it stored data at version 0 (its `data-v0` feature).\n\
         pub const ACCOUNTS_DATA_V0: &str = {:?};\n",
        previous.join("wasm32-wasip2/release/accounts.wasm").display().to_string()
    ));
    let languages = target.with_file_name("wasm-guests-languages");
    std::fs::create_dir_all(&languages).unwrap();
    println!("cargo:rerun-if-env-changed=PLINTH_COMPONENTIZE_PY");
    for (constant, language, dir, module, world) in LANGUAGE_GUESTS {
        let dir = here.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let wasm = languages.join(format!("{}.wasm", constant.to_lowercase()));
        build_language(*language, &dir, module, world, &wasm);
        constants.push_str(&format!(
            "/// The `{constant}` component.\npub const {constant}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }
    std::fs::write(out.join("guests.rs"), constants).unwrap();
}

/// Builds a JavaScript or Python component from `dir` (its `wit/` and its
/// module) into `wasm`, unless `wasm` is newer than every source file.
fn build_language(language: Language, dir: &Path, module: &str, world: &str, wasm: &Path) {
    let built = std::fs::metadata(wasm).and_then(|m| m.modified()).ok();
    let sources = [dir.join("wit"), dir.join(module), dir.join(format!("{module}.py")), platform_wit(dir)];
    if built.is_some_and(|built| sources.iter().all(|s| newest(s).is_none_or(|changed| changed <= built))) {
        return;
    }
    let partial = wasm.with_extension("partial");
    let mut cmd = match language {
        Language::JavaScript => {
            let tool = repository_root(dir).join("plugins/counters-js/node_modules/.bin/componentize-js");
            assert!(
                tool.is_file(),
                "{} is missing: run `make test-deps` (npm ci in plugins/counters-js)",
                tool.display()
            );
            let mut cmd = Command::new(tool);
            cmd.arg(module).args(["--wit", "wit", "--world-name", world, "--disable", "http", "fetch-event", "--out"]);
            cmd
        }
        Language::Python => {
            let tool = std::env::var("PLINTH_COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());
            let mut cmd = Command::new(tool);
            cmd.args(["--wit-path", "wit", "--world", world, "--quiet", "componentize", module, "--python-path", "."]);
            cmd.arg("--output");
            cmd
        }
    };
    cmd.arg(&partial).current_dir(dir);
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run the component tool for {}: {e}; run `make test-deps` to install it", dir.display())
    });
    assert!(status.success(), "building the component in {} failed", dir.display());
    std::fs::rename(&partial, wasm).unwrap();
}

/// The repository root, from a directory inside it.
fn repository_root(dir: &Path) -> PathBuf {
    dir.ancestors().find(|a| a.join("kit/wit").is_dir()).expect("inside the repository").to_path_buf()
}

/// The WIT every language guest is built against.
fn platform_wit(dir: &Path) -> PathBuf {
    repository_root(dir).join("kit/wit")
}

/// The latest modification time of a file or of anything in a directory
/// (none when it does not exist), skipping `node_modules`.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter(|e| e.file_name() != "node_modules" && e.file_name() != "__pycache__")
        .filter_map(|e| newest(&e.path()))
        .chain(meta.modified().ok())
        .max()
}

fn build(workspace: &Path, target: &Path) {
    build_with(workspace, target, &[]);
}

fn build_with(workspace: &Path, target: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"]).arg(target);
    cmd.args(args);
    // Flags meant for the host build must not leak into the guest build.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the wasm guests");
    assert!(
        status.success(),
        "building the wasm guests in {} failed; is the target installed? (rustup target add wasm32-wasip2)",
        workspace.display()
    );
}
