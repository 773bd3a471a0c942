//! One plugin's Fluent messages, a bundle per enabled locale, read from
//! `{dir}/{locale}/*.ftl` of each of its message directories and linted
//! before they serve.

use std::path::{Path, PathBuf};

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use sha2::{Digest, Sha256};

use super::Locales;
use super::lint::{self, Problem};

/// Largest message file.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most message files in one locale.
const MAX_FILES: usize = 64;

/// A value for a message's placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Argument {
    /// Inserted as it is.
    Text(String),
    /// Selects plural forms, and is written as a number.
    Number(f64),
}

/// The messages of one plugin.
pub struct Catalog {
    /// One bundle per enabled locale, in [`Locales`] order (default first).
    bundles: Vec<(String, FluentBundle<FluentResource>)>,
    /// The files read, for the watcher.
    files: Vec<PathBuf>,
    /// SHA-256 of every file's name and text, to tell a change.
    digest: [u8; 32],
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("locales", &self.bundles.len()).field("files", &self.files).finish()
    }
}

impl Catalog {
    /// Reads and lints `dirs`: every problem found, or the messages.
    pub fn load(dirs: &[PathBuf], locales: &Locales) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut sources: Vec<(String, Vec<(PathBuf, FluentResource)>)> = Vec::new();
        for locale in locales.names() {
            let mut resources = Vec::new();
            for dir in dirs {
                let files = match ftl_files(&dir.join(locale)) {
                    Ok(files) => files,
                    Err(message) => {
                        problems.push(Problem::file(dir.join(locale), locale, message));
                        continue;
                    }
                };
                for file in files {
                    match read_resource(&file) {
                        Ok(resource) => resources.push((file, resource)),
                        Err(found) => problems.extend(found.into_iter().map(|m| Problem::file(&file, locale, m))),
                    }
                }
            }
            sources.push((locale.clone(), resources));
        }
        for dir in dirs {
            warn_unused_locale_dirs(dir, locales);
        }
        if problems.is_empty() {
            problems.extend(lint::check(&sources));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut files = Vec::new();
        let mut hasher = Sha256::new();
        let mut bundles = Vec::with_capacity(sources.len());
        for (locale, resources) in sources {
            let id = locale.parse().expect("enabled locales parse");
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // Messages go into plain text (JSON, e-mail, attributes) as
            // often as into HTML: no invisible isolation marks around
            // placeholders.
            bundle.set_use_isolating(false);
            bundle.add_builtins().expect("the builtins are added once");
            for (file, resource) in resources {
                hasher.update(file.as_os_str().as_encoded_bytes());
                hasher.update(resource.source().len().to_le_bytes());
                hasher.update(resource.source());
                bundle.add_resource(resource).map_err(|errors| {
                    errors.iter().map(|e| Problem::file(&file, &locale, e.to_string())).collect::<Vec<_>>()
                })?;
                files.push(file);
            }
            bundles.push((locale, bundle));
        }
        Ok(Self { bundles, files, digest: hasher.finalize().into() })
    }

    /// The files it was read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The directories `locale`'s files were read from.
    pub fn locale_dirs(&self, locale: &str) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| f.parent())
            .filter(|d| d.file_name().is_some_and(|n| n == locale))
            .map(|d| d.display().to_string())
            .collect();
        dirs.dedup();
        dirs
    }

    /// SHA-256 of what was read.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The message `key` (`id` or `id.attribute`) in `locale`, or in the
    /// default locale when `locale` is not enabled or lacks it, with
    /// `args` in its placeholders; none when no locale has it.
    pub fn format(&self, locale: &str, key: &str, args: &[(String, Argument)]) -> Option<String> {
        let requested = self.bundles.iter().find(|(name, _)| name == locale);
        let default = self.bundles.first();
        let args = fluent_args(args);
        [requested, default].into_iter().flatten().find_map(|(_, bundle)| format_in(bundle, key, &args))
    }

    /// Each `(locale, key)` of `keys` some enabled locale lacks.
    pub fn missing(&self, keys: &[String]) -> Vec<(String, String)> {
        let args = FluentArgs::new();
        let mut missing = Vec::new();
        for (locale, bundle) in &self.bundles {
            for key in keys {
                if format_in(bundle, key, &args).is_none() {
                    missing.push((locale.clone(), key.clone()));
                }
            }
        }
        missing
    }
}

fn fluent_args(args: &[(String, Argument)]) -> FluentArgs<'_> {
    let mut fluent = FluentArgs::with_capacity(args.len());
    for (name, value) in args {
        match value {
            Argument::Text(text) => fluent.set(name.as_str(), FluentValue::from(text.as_str())),
            Argument::Number(n) => fluent.set(name.as_str(), FluentValue::from(*n)),
        }
    }
    fluent
}

fn format_in(bundle: &FluentBundle<FluentResource>, key: &str, args: &FluentArgs) -> Option<String> {
    let (id, attribute) = match key.split_once('.') {
        Some((id, attribute)) => (id, Some(attribute)),
        None => (key, None),
    };
    let message = bundle.get_message(id)?;
    let pattern = match attribute {
        Some(name) => message.get_attribute(name)?.value(),
        None => message.value()?,
    };
    let mut errors = Vec::new();
    let text = bundle.format_pattern(pattern, Some(args), &mut errors);
    if !errors.is_empty() {
        tracing::warn!(key, errors = ?errors, "message formatted with errors (an argument missing?)");
    }
    Some(text.into_owned())
}

/// The `.ftl` files of one locale's directory, sorted.
fn ftl_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read the locale's directory: {e}"))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "ftl") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err("holds no .ftl file".into());
    }
    if files.len() > MAX_FILES {
        return Err(format!("holds {} .ftl files; at most {MAX_FILES}", files.len()));
    }
    files.sort();
    Ok(files)
}

/// One file parsed, or each syntax error with its line.
fn read_resource(file: &Path) -> Result<FluentResource, Vec<String>> {
    let size = std::fs::metadata(file).map_err(|e| vec![format!("cannot read: {e}")])?.len();
    if size > MAX_FILE_BYTES {
        return Err(vec![format!("{size} bytes; a message file is at most {MAX_FILE_BYTES}")]);
    }
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read as UTF-8: {e}")])?;
    FluentResource::try_new(text).map_err(|(resource, errors)| {
        let source = resource.source();
        errors
            .iter()
            .map(|e| {
                let line = source[..e.pos.start.min(source.len())].matches('\n').count() + 1;
                format!("line {line}: {e}")
            })
            .collect()
    })
}

fn warn_unused_locale_dirs(dir: &Path, locales: &Locales) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !name.starts_with('.') && !locales.names().contains(&name) {
            tracing::warn!(dir = %entry.path().display(), "messages for a locale [i18n] does not enable are not served");
        }
    }
}
