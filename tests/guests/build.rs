//! Builds the wasm guests the integration tests run (the test-only ones in
//! `wasm/` and the real plugins in `/plugins`), once per build, and writes a
//! constant with the path of each component.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    std::fs::write(out.join("guests.rs"), constants).unwrap();
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
