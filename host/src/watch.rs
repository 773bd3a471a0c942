//! Reload when the config file, the policy file, a component file (a
//! plugin's, its canary's or a worker's) or a plugin's messages or assets
//! change on disk (notify), debounced so that an editor's burst of writes
//! or a copy in progress makes one reload.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use crate::app::{App, Deployment};
use crate::audit::Envelope;

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The files a reload reads, and their names, for one deployment: a path
/// whose name is not among them is no watched file, known without a system
/// call (a log written beside the config changes often). Each file is held
/// where it resolves to, and where it and each symlink on its path are
/// named (their directory resolved, their own name not): re-pointing a
/// symlink at another release (`ln -sfn`, to the file or to a directory
/// above it) is a change, as is a change to the file it names.
struct Watched {
    /// The deployment they were read from; a swap (a reload, or a plugin
    /// version swapped by an operator) means reading them again.
    deployment: Weak<Deployment>,
    files: HashSet<PathBuf>,
    names: HashSet<OsString>,
    /// False when some file could not be found (mid-copy, or removed and
    /// not yet back): then they are read again at every change, as a file
    /// missing from the set would go unwatched.
    complete: bool,
}

impl Watched {
    fn of(deployment: &Arc<Deployment>) -> Self {
        let config = &deployment.config;
        let mut files = vec![config.source.clone(), config.policies.clone()];
        files.extend(config.plugins.iter().map(|p| p.component.clone()));
        files.extend(config.plugins.iter().filter_map(|p| p.canary.as_ref()).map(|c| c.component.clone()));
        files.extend(config.workers.iter().map(|w| w.component.clone()));
        for plugin in &deployment.plugins {
            files.extend(plugin.files.paths().map(Path::to_path_buf));
            // A file added to a messages or assets directory counts too.
            files.extend(plugin.files.paths().filter_map(Path::parent).map(Path::to_path_buf));
        }
        let found: Vec<PathBuf> = files.iter().filter_map(|f| f.canonicalize().ok()).collect();
        let complete = found.len() == files.len();
        let named = files.iter().flat_map(|f| links_on_the_way(f));
        let files: HashSet<PathBuf> = found.into_iter().chain(named).collect();
        let names = files.iter().filter_map(|f| f.file_name()).map(ToOwned::to_owned).collect();
        Self { deployment: Arc::downgrade(deployment), files, names, complete }
    }

    /// Whether this set still holds for `deployment`.
    fn holds_for(&self, deployment: &Arc<Deployment>) -> bool {
        self.complete && std::ptr::eq(self.deployment.as_ptr(), Arc::as_ptr(deployment))
    }

    /// Whether a path from a change event is a watched file or directory.
    fn contains(&self, path: &Path) -> bool {
        self.files.contains(path)
            || path.file_name().is_some_and(|name| self.names.contains(name))
                && path.canonicalize().is_ok_and(|c| self.files.contains(&c))
    }

    /// Whether any of an event's paths is one a reload would read.
    fn relevant(&self, paths: &[PathBuf]) -> bool {
        paths.iter().any(|p| self.contains(p) || p.parent().is_some_and(|dir| self.contains(dir) && is_plugin_file(p)))
    }
}

/// Watches the deployment's files until the app is dropped.
pub fn spawn(app: Arc<App>) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = tx.send(event.paths);
        }
    })?;
    let app = Arc::downgrade(&app);
    tokio::spawn(async move {
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        let mut watched: Option<Watched> = None;
        loop {
            let Some(strong) = app.upgrade() else { return };
            let deployment = strong.deployment.load_full();
            drop(strong);
            if !watched.as_ref().is_some_and(|w| w.holds_for(&deployment)) {
                watched = Some(Watched::of(&deployment));
            }
            drop(deployment);
            let current = watched.as_ref().expect("read above");
            // Directories, not files: editors and `cp` replace files, which
            // would end a watch on the file itself. A directory no longer
            // read (a release a link has left) is let go, so that release
            // after release does not pile up watches.
            let wanted: HashSet<PathBuf> =
                current.files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
            dirs.retain(|dir| {
                let keep = wanted.contains(dir);
                if !keep {
                    // A directory since removed has lost its watch already.
                    let _ = watcher.unwatch(dir);
                }
                keep
            });
            for dir in wanted {
                if !dirs.contains(&dir) {
                    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => drop(dirs.insert(dir)),
                        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch"),
                    }
                }
            }
            let Some(paths) = rx.recv().await else { return };
            if !current.relevant(&paths) {
                continue;
            }
            while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            let Some(app) = app.upgrade() else { return };
            tracing::info!("a watched file changed; reloading");
            app.reload(&Envelope::system()).await;
            // Read the files again even when the reload failed: a
            // re-pointed symlink now resolves elsewhere, and a fix made
            // there must be seen.
            watched = None;
        }
    });
    Ok(())
}

/// Where `path` is named, and where each symlink among its ancestors is.
fn links_on_the_way(path: &Path) -> Vec<PathBuf> {
    let is_link = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
    let links = path.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty() && is_link(a));
    std::iter::once(path).chain(links).filter_map(where_named).collect()
}

/// Where `path` is named: its directory canonicalized, its own name kept
/// as it is (a symlink stays the link, not what it points at).
fn where_named(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.canonicalize().ok()?,
        _ => std::env::current_dir().ok()?,
    };
    Some(dir.join(path.file_name()?))
}

/// Whether a new file in a plugin's messages or assets directory is one
/// the plugin would read (editors' hidden and backup files are not).
fn is_plugin_file(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    !name.starts_with('.') && !name.ends_with('~')
}
