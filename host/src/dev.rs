//! `plinth dev`: build the plugins a config names a `source` for, serve,
//! and rebuild a plugin when its source changes. A build puts the new
//! component in place with a rename, the server's own watcher
//! (`watch.rs`) sees it and swaps that plugin alone, without dropping a
//! request. A build that fails is printed; the old version keeps serving.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify::{RecursiveMode, Watcher as _};
use serde::Deserialize;

use crate::config::StorageConfig;

/// Quiet time after the last source change before building.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// A plugin `plinth dev` builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPlugin {
    /// Its name in the config.
    pub name: String,
    /// The crate directory (holding `Cargo.toml`).
    pub source: PathBuf,
    /// Where the server loads its component from.
    pub component: PathBuf,
}

/// What `plinth dev` builds and watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevConfig {
    /// The plugins with a `source`.
    pub plugins: Vec<DevPlugin>,
    /// The data directory the server will write, which a source directory
    /// may hold (the scaffold's does) and which must not trigger builds.
    pub data: PathBuf,
}

/// Just what `dev` needs of a config, readable before any component exists
/// (the full config refuses a missing component file).
#[derive(Deserialize)]
struct Sources {
    #[serde(default)]
    plugins: Vec<SourceEntry>,
    #[serde(default)]
    storage: StorageConfig,
}

#[derive(Deserialize)]
struct SourceEntry {
    name: String,
    component: PathBuf,
    source: Option<PathBuf>,
}

/// The plugins of `file` that name a `source`, paths resolved against the
/// file's directory, and the data directory (`data` overrides the file's).
/// An error when no plugin names a source, a source is no crate, or a
/// component would be written over the crate's own files.
pub fn load(file: &Path, data: Option<&Path>) -> anyhow::Result<DevConfig> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let sources: Sources = toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut plugins = Vec::new();
    for (i, entry) in sources.plugins.into_iter().enumerate() {
        let Some(source) = entry.source else { continue };
        let source = base.join(source);
        anyhow::ensure!(
            source.join("Cargo.toml").is_file(),
            "{}: plugins[{i}].source: `{}` is not a crate directory (no Cargo.toml)",
            file.display(),
            source.display()
        );
        let component = std::path::absolute(base.join(entry.component))?;
        let crate_dir = std::path::absolute(&source)?;
        anyhow::ensure!(
            !component.starts_with(&crate_dir) || component.starts_with(crate_dir.join("target")),
            "{}: plugins[{i}].component: `{}` is inside the crate `{}` but not under its target/; \
             plinth dev would write the build over the crate's own files",
            file.display(),
            component.display(),
            source.display()
        );
        plugins.push(DevPlugin { name: entry.name, source, component });
    }
    anyhow::ensure!(
        !plugins.is_empty(),
        "{}: no plugin names a `source`; add `source = \"path/to/crate\"` to each [[plugins]] plinth dev should build",
        file.display()
    );
    let data = data.map_or_else(|| base.join(&sources.storage.path), Path::to_path_buf);
    Ok(DevConfig { plugins, data: std::path::absolute(data)? })
}

/// Builds a plugin for wasm32-wasip2 (cargo's diagnostics go to stderr as
/// they come) and renames the component into place.
pub fn build(plugin: &DevPlugin) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("dev: building `{}` from {}", plugin.name, plugin.source.display());
    let manifest = plugin.source.join("Cargo.toml");
    let mut child = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let manifest = manifest.canonicalize()?;
    let mut artifact = None;
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        artifact = artifact.or_else(|| wasm_artifact(&line.ok()?, &manifest));
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "`{}` failed to build; the running version keeps serving", plugin.name);
    let artifact = artifact.with_context(|| format!("cargo built no wasm component for `{}`", plugin.name))?;
    let built = std::fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
    match std::fs::read(&plugin.component) {
        Ok(current) if current == built => {
            eprintln!("dev: `{}` is unchanged; nothing to swap", plugin.name);
            return Ok(());
        }
        Ok(current) => anyhow::ensure!(
            current.starts_with(b"\0asm"),
            "`{}` is not a wasm component; plinth dev does not write over it",
            plugin.component.display()
        ),
        Err(_) => {}
    }
    if let Some(dir) = plugin.component.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Renamed into place, so the server never reads half a file.
    let partial = plugin.component.with_extension("wasm.partial");
    std::fs::write(&partial, built).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &plugin.component)?;
    eprintln!("dev: built `{}` in {:.1} s", plugin.name, started.elapsed().as_secs_f64());
    Ok(())
}

/// The `.wasm` of a cdylib of the package at `manifest`, from one line of
/// cargo's JSON messages.
fn wasm_artifact(line: &str, manifest: &Path) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" || Path::new(message["manifest_path"].as_str()?) != manifest {
        return None;
    }
    let files = message["filenames"].as_array()?;
    files
        .iter()
        .filter_map(serde_json::Value::as_str)
        .map(PathBuf::from)
        .find(|f| f.extension() == Some("wasm".as_ref()))
}

/// Rebuilds a plugin whenever a file of its crate changes (its `target`,
/// dot-directories and the data directory aside), on a thread of its own,
/// one build at a time.
pub fn watch(config: DevConfig) -> anyhow::Result<()> {
    let DevConfig { plugins, data } = config;
    let (tx, rx) = mpsc::channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = tx.send(event.paths);
        }
    })?;
    // Canonical, as the events name them.
    let sources: Vec<PathBuf> = plugins.iter().map(|p| p.source.canonicalize()).collect::<Result<_, _>>()?;
    for source in &sources {
        watcher.watch(source, RecursiveMode::Recursive)?;
    }
    std::thread::Builder::new().name("plinth-dev".into()).spawn(move || {
        let _watcher = watcher;
        // Canonical once it exists; the server creates it after this starts.
        let data = || data.canonicalize().unwrap_or_else(|_| data.clone());
        while let Ok(paths) = rx.recv() {
            let mut changed: BTreeSet<usize> = touched(&sources, &data(), &paths).collect();
            if changed.is_empty() {
                continue;
            }
            while let Ok(paths) = rx.recv_timeout(DEBOUNCE) {
                changed.extend(touched(&sources, &data(), &paths));
            }
            for i in changed {
                if let Err(e) = build(&plugins[i]) {
                    eprintln!("dev: {e:#}");
                }
            }
        }
    })?;
    Ok(())
}

/// The plugins whose sources the paths are in, build output and the
/// server's data aside.
fn touched<'a>(sources: &'a [PathBuf], data: &'a Path, paths: &'a [PathBuf]) -> impl Iterator<Item = usize> + 'a {
    sources.iter().enumerate().filter_map(move |(i, source)| {
        paths.iter().any(|path| !path.starts_with(data) && is_source_file(source, path)).then_some(i)
    })
}

/// True for a file of the crate at `source` that a build reads: not under
/// `target/` or a dot-directory, not the lock file cargo itself writes, and
/// not a component (one put inside the crate must not rebuild itself).
fn is_source_file(source: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(source) else { return false };
    if path.extension().is_some_and(|e| e == "wasm" || e == "partial") {
        return false;
    }
    let mut parts = relative.components();
    let first = parts.next();
    let generated = matches!(first, Some(Component::Normal(name)) if name == "target" || name == "Cargo.lock");
    let hidden =
        relative.components().any(|c| matches!(c, Component::Normal(n) if n.to_string_lossy().starts_with('.')));
    first.is_some() && !generated && !hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_crates_own_files_trigger_a_build() {
        let source = Path::new("/w/notes");
        for (path, expected) in [
            ("/w/notes/src/lib.rs", true),
            ("/w/notes/Cargo.toml", true),
            ("/w/notes/wit/x.wit", true),
            ("/w/notes/target/wasm32-wasip2/release/notes.wasm", false),
            ("/w/notes/Cargo.lock", false),
            ("/w/notes/notes.wasm", false),
            ("/w/notes/notes.wasm.partial", false),
            ("/w/notes/src/.lib.rs.swp", false),
            ("/w/notes/.git/index", false),
            ("/w/other/src/lib.rs", false),
            ("/w/notes", false),
        ] {
            assert_eq!(is_source_file(source, Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn the_component_is_found_in_cargos_messages() {
        let manifest = Path::new("/w/notes/Cargo.toml");
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/w/notes/Cargo.toml","filenames":["/t/wasm32-wasip2/release/notes.wasm","/t/wasm32-wasip2/release/libnotes.rlib"]}"#;
        assert_eq!(wasm_artifact(line, manifest), Some(PathBuf::from("/t/wasm32-wasip2/release/notes.wasm")));
        let dependency = line.replace("/w/notes/Cargo.toml", "/r/serde/Cargo.toml");
        assert_eq!(wasm_artifact(&dependency, manifest), None);
        assert_eq!(wasm_artifact(r#"{"reason":"build-finished","success":true}"#, manifest), None);
    }

    #[test]
    fn configs_that_dev_cannot_build_safely_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plinth.toml");
        let refusal = |config: &str| {
            std::fs::write(&file, config).unwrap();
            load(&file, None).unwrap_err().to_string()
        };
        let err = refusal("[[plugins]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n");
        assert!(err.contains("no plugin names a `source`"), "{err}");
        let err = refusal("[[plugins]]\nname = \"a\"\ncomponent = \"a.wasm\"\nsource = \"nowhere\"\n");
        assert!(err.contains("plugins[0].source") && err.contains("not a crate directory"), "{err}");
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"a\"\n").unwrap();
        for component in ["src/lib.rs", "Cargo.toml", "plinth.toml", "a.wasm"] {
            let err = refusal(&format!("[[plugins]]\nname = \"a\"\ncomponent = {component:?}\nsource = \".\"\n"));
            assert!(err.contains("plugins[0].component") && err.contains("not under its target/"), "{err}");
        }
        std::fs::write(&file, "[[plugins]]\nname = \"a\"\ncomponent = \"target/a.wasm\"\nsource = \".\"\n").unwrap();
        let loaded = load(&file, None).unwrap();
        assert_eq!(loaded.data, std::path::absolute(dir.path().join("data")).unwrap());
        assert_eq!(load(&file, Some(Path::new("/elsewhere"))).unwrap().data, Path::new("/elsewhere"));
    }
}
