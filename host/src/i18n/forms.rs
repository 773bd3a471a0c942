//! The forms part of the lint: every form definition a plugin ships as
//! an asset (`{id}.form.json`) parses and checks, and every message it
//! can show exists in every enabled locale.

use plinth_forms::{ASSET_SUFFIX, Definition};

use super::Catalog;
use crate::assets::Assets;

/// Every problem of the definitions in `assets`, against `messages`, each
/// naming file, key and locale; and how many definitions there were.
pub fn lint(assets: &Assets, messages: Option<&Catalog>) -> (usize, Vec<String>) {
    let mut problems = Vec::new();
    let mut forms = 0;
    for path in assets.paths() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(id) = name.strip_suffix(ASSET_SUFFIX) else { continue };
        forms += 1;
        let file = path.display();
        let bytes = assets.get(&name).unwrap_or_default();
        let definition = match Definition::parse(&bytes) {
            Ok(definition) => definition,
            Err(errors) => {
                problems.extend(errors.iter().map(|e| format!("{file}: {e}")));
                continue;
            }
        };
        if definition.id != id {
            problems.push(format!("{file}: /id: `{}` is not the file's name (`{id}{ASSET_SUFFIX}`)", definition.id));
        }
        if definition.version.is_none() {
            problems.push(format!("{file}: /version: a definition shipped as a file numbers its versions (1, 2...)"));
        }
        let keys = definition.message_keys();
        let Some(catalog) = messages else {
            problems
                .push(format!("{file}: the form shows messages, but the plugin's entry names no `messages` directory"));
            continue;
        };
        for (locale, key) in catalog.missing(&keys) {
            let dirs = catalog.locale_dirs(&locale).join(", ");
            problems
                .push(format!("{dirs}: locale `{locale}`: message `{key}` is missing (form `{id}` shows it: {file})"));
        }
    }
    (forms, problems)
}
