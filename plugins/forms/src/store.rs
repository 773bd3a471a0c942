//! Form definitions and their versions. A form is either shipped with the
//! deployment (an asset `{id}.form.json` with a `version`), or published
//! through the admin API, which numbers versions 1, 2, 3... Either way each
//! version is kept (`def/{id}/{version}`) so that a submission made against
//! a version that has just been replaced is validated against it, and the
//! form's record (`form/{id}`) says which version is current and when each
//! was replaced.

use plinth_forms::{ASSET_SUFFIX, Definition};
use plinth_kit::{Error, Result, assets, kv};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the current definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An asset of the deployment; read-only through the API.
    Config,
    /// Published with `PUT /v1/admin/forms/{id}`.
    Api,
}

/// What is known of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Its number.
    pub version: u32,
    /// When it became current (seconds since the Unix epoch).
    pub published_at: u64,
    /// When another version replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<u64>,
    /// For a published version, part of the SHA-256 of its definition,
    /// which names where it is stored: two racing publishers each store
    /// their own, and the record the winner swapped in names the winner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The record of one form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormRecord {
    /// The version served now.
    pub current: u32,
    /// Where it comes from.
    pub source: Source,
    /// Every version it has had, oldest first.
    pub versions: Vec<VersionInfo>,
}

impl FormRecord {
    /// One version's facts.
    pub fn version(&self, version: u32) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Makes `version` current as of `now`, the previous one replaced.
    fn make_current(&mut self, version: u32, now: u64) {
        for info in self.versions.iter_mut().filter(|v| v.version == self.current && v.replaced_at.is_none()) {
            info.replaced_at = Some(now);
        }
        match self.versions.iter_mut().find(|v| v.version == version) {
            Some(info) => {
                info.published_at = now;
                info.replaced_at = None;
            }
            None => self.versions.push(VersionInfo { version, published_at: now, replaced_at: None, digest: None }),
        }
        self.current = version;
    }
}

/// A form as served: its record and its current definition.
pub struct Form {
    /// The record.
    pub record: FormRecord,
    /// The current version's definition (its `version` set).
    pub definition: Definition,
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn record_key(id: &str) -> String {
    format!("form/{id}")
}

fn definition_key(id: &str, version: u32, digest: Option<&str>) -> String {
    match digest {
        Some(digest) => format!("def/{id}/{version:010}/{digest}"),
        None => format!("def/{id}/{version:010}"),
    }
}

/// The definition shipped for `id`, if any.
pub fn shipped(id: &str) -> Result<Option<Definition>> {
    let Some(bytes) = assets::get(&format!("{id}{ASSET_SUFFIX}")) else { return Ok(None) };
    Definition::parse(&bytes).map(Some).map_err(|errors| {
        // The host's lint refuses a deployment with a bad definition; this
        // is a plugin and host out of step.
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        plinth_kit::log::error("a shipped form definition does not parse", &[("form", id), ("errors", &detail)]);
        Error::new(500, "misconfigured", format!("the definition of form `{id}` is invalid"))
    })
}

/// The form `id` as served now, or 404 `form_not_found`.
pub fn load(id: &str) -> Result<Form> {
    if !plinth_forms::valid_form_id(id) {
        return Err(not_found(id));
    }
    match shipped(id)? {
        Some(definition) => load_shipped(id, definition),
        None => {
            let record: FormRecord = kv::get_json(&record_key(id))?.ok_or_else(|| not_found(id))?;
            let current = record.version(record.current).ok_or_else(|| not_found(id))?;
            let definition = version(id, current)?.ok_or_else(|| not_found(id))?;
            Ok(Form { record, definition })
        }
    }
}

fn not_found(id: &str) -> Error {
    Error::new(404, "form_not_found", format!("there is no form `{id}`"))
}

/// A shipped definition, its version recorded the first time it is served
/// (and again when the deployment ships another).
fn load_shipped(id: &str, definition: Definition) -> Result<Form> {
    let version = definition.version.unwrap_or(1);
    let stored = definition_key(id, version, None);
    let bytes = serde_json::to_vec(&definition).expect("a definition serializes");
    let found = kv::get(&stored)?;
    if found.as_deref() != Some(bytes.as_slice()) {
        if found.is_some() {
            plinth_kit::log::warn(
                "a shipped form definition changed without a new version; submissions pinned to it now meet the new one",
                &[("form", id), ("version", &version.to_string())],
            );
        }
        kv::set(&stored, &bytes)?;
    }
    let current: Option<FormRecord> = kv::get_json(&record_key(id))?;
    if let Some(record) = current.filter(|r| r.current == version && r.source == Source::Config) {
        return Ok(Form { record, definition });
    }
    let record = kv::update::<FormRecord, _>(&record_key(id), None, |record| {
        let mut record =
            record.unwrap_or(FormRecord { current: version, source: Source::Config, versions: Vec::new() });
        if record.current != version || record.version(version).is_none() {
            record.make_current(version, now());
        }
        record.source = Source::Config;
        Ok(Some(record))
    })?
    .expect("the update writes a record")
    .value;
    Ok(Form { record, definition })
}

/// The definition of one version of form `id`.
pub fn version(id: &str, info: &VersionInfo) -> Result<Option<Definition>> {
    let Some(bytes) = kv::get(&definition_key(id, info.version, info.digest.as_deref()))? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        plinth_kit::log::error("a stored form definition does not decode", &[("form", id), ("error", &e.to_string())]);
        Error::new(500, "corrupt_value", "a stored form definition could not be read")
    })
}

/// Publishes `definition` as the next version of an API form: `expected`
/// is the version the client read (none: the form must not exist yet).
/// Returns the new version; 412 when the form exists and `expected` is
/// not its current version.
pub fn publish(id: &str, mut definition: Definition, expected: Option<u32>) -> Result<u32> {
    let key = record_key(id);
    let old = kv::get(&key)?;
    let record: Option<FormRecord> = match &old {
        Some(bytes) => Some(serde_json::from_slice(bytes).map_err(|e| {
            plinth_kit::log::error("a form record does not decode", &[("form", id), ("error", &e.to_string())]);
            Error::new(500, "corrupt_value", "a stored form record could not be read")
        })?),
        None => None,
    };
    let next = match (&record, expected) {
        (None, None) => 1,
        (Some(record), Some(version)) if record.current == version => version + 1,
        (Some(_), None) => {
            return Err(Error::new(412, "form_exists", format!("form `{id}` exists; send If-Match with its ETag"))
                .at("if-none-match"));
        }
        _ => return Err(Error::precondition_failed(&format!("form `{id}`"))),
    };
    definition.version = Some(next);
    // Stored first, under its digest: if the record's swap loses, it is an
    // unreferenced copy, and never the one the winner's record names.
    let bytes = serde_json::to_vec(&definition).expect("a definition serializes");
    let digest: String = Sha256::digest(&bytes)[..8].iter().map(|b| format!("{b:02x}")).collect();
    kv::set(&definition_key(id, next, Some(&digest)), &bytes)?;
    let mut record = record.unwrap_or(FormRecord { current: next, source: Source::Api, versions: Vec::new() });
    record.make_current(next, now());
    record.source = Source::Api;
    for info in record.versions.iter_mut().filter(|v| v.version == next) {
        info.digest = Some(digest.clone());
    }
    let new = serde_json::to_vec(&record).expect("a record serializes");
    match kv::compare_and_swap(&key, old.as_deref(), Some(&new))? {
        kv::Swap::Swapped => Ok(next),
        kv::Swap::Conflict(_) => Err(Error::precondition_failed(&format!("form `{id}`"))),
    }
}

/// Every form id, shipped and published, sorted.
pub fn ids() -> Result<Vec<String>> {
    let mut ids: Vec<String> =
        assets::names().into_iter().filter_map(|n| n.strip_suffix(ASSET_SUFFIX).map(str::to_owned)).collect();
    for entry in kv::scan::<FormRecord>("form/") {
        let (key, _) = entry?;
        ids.push(key.trim_start_matches("form/").to_owned());
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}
