//! A plugin's migration step files, `{NNNN}-{name}.toml` in its
//! `migrations` directory, one per step of its component:
//!
//! ```toml
//! description = "Split display_name into given and family names."
//! families = ["acct/"]
//! # versioned = true: the families are written with `write-versioned`; each
//! # conversion (and fixture) is the value alone, and the record keeps its version.
//!
//! [[fixtures]]
//! key = "acct/a1"
//! before = '{"display_name": "Ada Lovelace"}'
//! after = '{"name": {"given": "Ada", "family": "Lovelace"}}'
//! ```
//!
//! Each step has two checksums. The canonical one is over the file as
//! data (TOML parsed, fixtures' JSON parsed, keys sorted), so reformatting,
//! comments and line endings leave it alone (sqlx#2659). The semantic one
//! is over what the component's conversions make of the fixtures, so a
//! changed conversion shows even when the file did not change.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::runtime::migrating::{Converter, Direction, Entry, Step};

/// One step file, read.
#[derive(Debug, Clone)]
pub struct StepFile {
    /// The file.
    pub path: PathBuf,
    /// The version the step leads to (its number).
    pub to: u32,
    /// Its name (the file name after the number).
    pub name: String,
    /// What it does, for people.
    pub description: String,
    /// Key prefixes of the records it converts.
    pub families: Vec<String>,
    /// Its families are written with `write-versioned`: each conversion
    /// gets the value without its version, which the record keeps.
    pub versioned: bool,
    /// Records before and after it.
    pub fixtures: Vec<Fixture>,
    /// SHA-256 (hex) of the file's canonical form.
    pub canonical: String,
}

/// A record before and after a step.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Its key before the step.
    pub key: String,
    /// Its key after the step (the same unless the step re-keys it).
    pub key_after: String,
    /// Its value before, as JSON.
    pub before: serde_json::Value,
    /// Its value after, as JSON.
    pub after: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    description: String,
    families: Vec<String>,
    #[serde(default)]
    versioned: bool,
    #[serde(default)]
    fixtures: Vec<RawFixture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    key: String,
    key_after: Option<String>,
    before: String,
    after: String,
}

/// A problem with a plugin's steps, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct StepProblem {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
}

fn problem(path: &Path, why: impl Into<String>) -> StepProblem {
    StepProblem { path: path.to_owned(), why: why.into() }
}

/// Reads every step file of `dir`, in order: numbered from 1 without gaps.
pub fn read_dir(dir: &Path) -> Result<Vec<StepFile>, StepProblem> {
    let entries = std::fs::read_dir(dir).map_err(|e| problem(dir, format!("cannot read the directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| problem(dir, e.to_string()))?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(read_file(&path)?);
        }
    }
    files.sort_by_key(|f| f.to);
    for (i, file) in files.iter().enumerate() {
        let expected = i as u32 + 1;
        if file.to != expected {
            return Err(problem(
                &file.path,
                format!("step {expected} is missing: steps are numbered 1, 2, … without gaps"),
            ));
        }
    }
    Ok(files)
}

fn read_file(path: &Path) -> Result<StepFile, StepProblem> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let (number, name) = stem
        .split_once('-')
        .filter(|(n, name)| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty())
        .ok_or_else(|| problem(path, "a step file is named `NNNN-name.toml`, such as `0001-structured-name.toml`"))?;
    let to: u32 = number.parse().expect("four digits");
    if to == 0 {
        return Err(problem(path, "steps are numbered from 0001"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| problem(path, format!("cannot read it: {e}")))?;
    let raw: RawStep = toml::from_str(&text).map_err(|e| problem(path, format!("{e}")))?;
    if raw.families.is_empty() || raw.families.iter().any(String::is_empty) {
        return Err(problem(path, "`families` lists the key prefixes the step converts; none may be empty"));
    }
    if raw.fixtures.is_empty() {
        return Err(problem(path, "a step needs at least one `[[fixtures]]` record, before and after"));
    }
    let mut fixtures = Vec::new();
    for (i, fixture) in raw.fixtures.into_iter().enumerate() {
        let json = |field: &str, text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| problem(path, format!("fixture {}: `{field}` is not JSON: {e}", i + 1)))
        };
        fixtures.push(Fixture {
            before: json("before", &fixture.before)?,
            after: json("after", &fixture.after)?,
            key_after: fixture.key_after.unwrap_or_else(|| fixture.key.clone()),
            key: fixture.key,
        });
    }
    let canonical = canonical_checksum(&raw.description, &raw.families, raw.versioned, &fixtures);
    Ok(StepFile {
        path: path.to_owned(),
        to,
        name: name.to_owned(),
        description: raw.description,
        families: raw.families,
        versioned: raw.versioned,
        fixtures,
        canonical,
    })
}

/// JSON with object keys sorted and no whitespace: one text per value.
pub fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", serde_json::Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

fn canonical_checksum(description: &str, families: &[String], versioned: bool, fixtures: &[Fixture]) -> String {
    let mut document = serde_json::json!({
        "description": description,
        "families": families,
        "fixtures": fixtures.iter().map(|f| serde_json::json!({
            "key": f.key, "key_after": f.key_after, "before": f.before, "after": f.after,
        })).collect::<Vec<_>>(),
    });
    // Only when set, so the checksums of steps from before the field stay.
    if versioned {
        document["versioned"] = true.into();
    }
    hex::encode(Sha256::digest(canonical_json(&document).as_bytes()))
}

/// Checks the files against the component's steps and runs each fixture
/// through its conversions (up gives `after`, down gives `before` back,
/// the plugin's check passes both); every problem found, and each step's
/// semantic checksum when it had none.
pub async fn lint(files: &[StepFile], declared: &[Step], converter: &Converter) -> (Vec<String>, Vec<StepProblem>) {
    let mut problems = Vec::new();
    if files.len() != declared.len() {
        let dir = files.first().map_or_else(PathBuf::new, |f| f.path.parent().unwrap_or(Path::new("")).to_owned());
        problems.push(problem(
            &dir,
            format!("the component declares {} steps, the directory holds {}", declared.len(), files.len()),
        ));
    }
    let mut semantic = Vec::new();
    for (file, step) in files.iter().zip(declared) {
        if step.to != file.to || step.name != file.name {
            problems.push(problem(
                &file.path,
                format!("the component's step {} is `{}`, the file's is `{}`", step.to, step.name, file.name),
            ));
        }
        if step.families != file.families {
            problems.push(problem(
                &file.path,
                format!("the component's step converts {:?}, the file says {:?}", step.families, file.families),
            ));
        }
        match semantic_checksum(file, converter).await {
            Ok(sum) => semantic.push(sum),
            Err(mut found) => problems.append(&mut found),
        }
    }
    (semantic, problems)
}

/// What the conversions make of one step's fixtures, hashed; every
/// fixture they do not reproduce is a problem.
async fn semantic_checksum(file: &StepFile, converter: &Converter) -> Result<String, Vec<StepProblem>> {
    let mut hasher = Sha256::new();
    let mut problems = Vec::new();
    for (i, fixture) in file.fixtures.iter().enumerate() {
        let n = i + 1;
        let entry = |key: &str, value: &serde_json::Value| Entry {
            key: key.to_owned(),
            value: serde_json::to_vec(value).expect("JSON serializes"),
        };
        let up = converter.convert(file.to, Direction::Up, entry(&fixture.key, &fixture.before)).await;
        let down = converter.convert(file.to, Direction::Down, entry(&fixture.key_after, &fixture.after)).await;
        for (way, result, key, expected) in
            [("up", &up, &fixture.key_after, &fixture.after), ("down", &down, &fixture.key, &fixture.before)]
        {
            match result {
                Err(e) => problems.push(problem(&file.path, format!("fixture {n}: {way}: {e}"))),
                Ok(out) => {
                    let got = serde_json::from_slice::<serde_json::Value>(&out.value)
                        .map(|v| canonical_json(&v))
                        .unwrap_or_else(|_| String::from_utf8_lossy(&out.value).into_owned());
                    if out.key != *key || got != canonical_json(expected) {
                        problems.push(problem(
                            &file.path,
                            format!(
                                "fixture {n}: {way} gives `{}` = {got}; the file expects `{key}` = {}",
                                out.key,
                                canonical_json(expected)
                            ),
                        ));
                    }
                    hasher.update(out.key.as_bytes());
                    hasher.update([0]);
                    hasher.update(got.as_bytes());
                    hasher.update([0]);
                }
            }
        }
        for (version, key, value) in
            [(file.to, &fixture.key_after, &fixture.after), (file.to - 1, &fixture.key, &fixture.before)]
        {
            if let Err(e) = converter.check(version, entry(key, value)).await {
                problems.push(problem(&file.path, format!("fixture {n}: the check at version {version}: {e}")));
            }
        }
    }
    if problems.is_empty() { Ok(hex::encode(hasher.finalize())) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const STEP: &str = "description = \"Shout.\"\nfamilies = [\"note/\"]\n\n[[fixtures]]\nkey = \"note/1\"\n\
                        before = '{\"text\": \"hi\", \"n\": 1}'\nafter = '{\"text\": \"HI\", \"n\": 1}'\n";

    #[test]
    fn the_canonical_checksum_ignores_layout_and_sees_content() {
        let dir = tempfile::tempdir().unwrap();
        let first = read_file(&write(dir.path(), "0001-shout.toml", STEP)).unwrap();
        assert_eq!((first.to, first.name.as_str()), (1, "shout"));
        let reformatted =
            STEP.replace('\n', "\r\n").replace("{\"text\": \"hi\", \"n\": 1}", "{ \"n\":1,\"text\":\"hi\" }");
        let same =
            read_file(&write(dir.path(), "0001-shout.toml", &format!("# a comment\n{reformatted}\n\n"))).unwrap();
        assert_eq!(same.canonical, first.canonical, "line endings, spacing, key order and comments do not count");
        let edited = read_file(&write(dir.path(), "0001-shout.toml", &STEP.replace("\"HI\"", "\"HEY\""))).unwrap();
        assert_ne!(edited.canonical, first.canonical);
        let versioned = read_file(&write(dir.path(), "0001-shout.toml", &format!("versioned = true\n{STEP}"))).unwrap();
        assert!(versioned.versioned && !first.versioned);
        assert_ne!(versioned.canonical, first.canonical, "saying the records are versioned is content");
    }

    #[test]
    fn a_file_from_before_the_versioned_field_keeps_its_checksum() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/accounts/migrations/0001-verified-at.toml");
        let file = read_file(&path).unwrap();
        assert_eq!(file.canonical, "47b80c483e45d9b01072ad3f44649f8fb9c996525ac297b790346ef551fcff83");
    }

    #[test]
    fn files_are_named_numbered_without_gaps_and_carry_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001-shout.toml", STEP);
        write(dir.path(), "0003-later.toml", STEP);
        let gap = read_dir(dir.path()).unwrap_err();
        assert!(gap.why.contains("step 2 is missing"), "{gap}");
        std::fs::remove_file(dir.path().join("0003-later.toml")).unwrap();
        write(dir.path(), "2-bad.toml", STEP);
        assert!(read_dir(dir.path()).unwrap_err().why.contains("NNNN-name.toml"));
        std::fs::remove_file(dir.path().join("2-bad.toml")).unwrap();
        let bare = write(dir.path(), "0002-bare.toml", "description = \"x\"\nfamilies = [\"a/\"]\n");
        assert!(read_file(&bare).unwrap_err().why.contains("at least one `[[fixtures]]`"));
        let bad_json = write(dir.path(), "0002-bare.toml", &STEP.replace("'{\"text\": \"HI\", \"n\": 1}'", "'{oops'"));
        let error = read_file(&bad_json).unwrap_err();
        assert!(error.why.contains("fixture 1: `after` is not JSON"), "{error}");
    }
}
