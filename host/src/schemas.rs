//! JSON Schema validation for plugins, compiled once and cached.
//!
//! A plugin runs in a fresh instance per request, so a validator it
//! compiled itself would be rebuilt every time, with the draft's
//! meta-schema (2–10 ms in wasm, measured in BENCHMARKS.md). The host
//! compiles each schema once, keyed by its SHA-256, in a bounded LRU shared
//! by all plugins (a schema is data, not a capability). Patterns use the
//! `regex` crate (linear time, no backtracking), formats (`email`, `date`,
//! `uri`...) are checked, remote references are not fetched, and sizes
//! are capped.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Largest schema, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Largest document, in bytes of JSON (a kv value's limit).
pub const MAX_DOCUMENT_BYTES: usize = crate::storage::MAX_VALUE_BYTES;
/// Compiled schemas kept.
const CACHED: usize = 256;
/// Most violations reported for one document.
const MAX_VIOLATIONS: usize = 100;

/// One way a document fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the document (empty: the whole).
    pub path: String,
    /// The schema keyword that failed, such as `maxLength`.
    pub keyword: String,
    /// For people.
    pub message: String,
}

/// Why nothing could be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema is not JSON, not a valid schema, or too large.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// The document is not JSON or too large.
    #[error("invalid document: {0}")]
    InvalidDocument(String),
}

/// The compiled schemas.
pub struct Schemas {
    compiled: Mutex<lru::LruCache<[u8; 32], Arc<jsonschema::Validator>>>,
}

impl Default for Schemas {
    fn default() -> Self {
        Self { compiled: Mutex::new(lru::LruCache::new(NonZeroUsize::new(CACHED).expect("non-zero"))) }
    }
}

impl Schemas {
    /// Every violation of `schema` by `document` (both JSON text), at most
    /// [`MAX_VIOLATIONS`]; empty when it fits.
    pub fn validate(&self, schema: &str, document: &str) -> Result<Vec<Violation>, SchemaError> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(SchemaError::InvalidDocument(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        let validator = self.compiled(schema)?;
        let document: serde_json::Value =
            serde_json::from_str(document).map_err(|e| SchemaError::InvalidDocument(e.to_string()))?;
        Ok(validator
            .iter_errors(&document)
            .take(MAX_VIOLATIONS)
            .map(|e| {
                let schema_path = e.schema_path.to_string();
                Violation {
                    path: e.instance_path.to_string(),
                    keyword: schema_path.rsplit('/').next().unwrap_or_default().to_owned(),
                    message: e.to_string(),
                }
            })
            .collect())
    }

    /// The validator of `schema`, compiled now or earlier.
    fn compiled(&self, schema: &str) -> Result<Arc<jsonschema::Validator>, SchemaError> {
        if schema.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::InvalidSchema(format!("larger than {MAX_SCHEMA_BYTES} bytes")));
        }
        let key: [u8; 32] = Sha256::digest(schema.as_bytes()).into();
        if let Some(found) = self.compiled.lock().expect("schema cache lock").get(&key) {
            return Ok(found.clone());
        }
        let value: serde_json::Value =
            serde_json::from_str(schema).map_err(|e| SchemaError::InvalidSchema(e.to_string()))?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&value)
            .map_err(|e| SchemaError::InvalidSchema(e.to_string()))?;
        let validator = Arc::new(validator);
        self.compiled.lock().expect("schema cache lock").put(key, validator.clone());
        Ok(validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type": "object", "required": ["title"],
        "properties": {"title": {"type": "string", "maxLength": 3}, "tag": {"pattern": "^(a+)+$"}}}"#;

    #[test]
    fn every_violation_is_reported_with_its_pointer_and_keyword() {
        let schemas = Schemas::default();
        assert_eq!(schemas.validate(SCHEMA, r#"{"title": "abc"}"#).unwrap(), vec![]);
        let mut found = schemas.validate(SCHEMA, r#"{"title": "long", "extra": 1}"#).unwrap();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!((found[0].path.as_str(), found[0].keyword.as_str()), ("/title", "maxLength"));
        let missing = schemas.validate(SCHEMA, "{}").unwrap();
        assert_eq!((missing[0].path.as_str(), missing[0].keyword.as_str()), ("", "required"));
    }

    #[test]
    fn formats_are_checked() {
        let schema = r#"{"properties": {"email": {"format": "email"}, "day": {"format": "date"}}}"#;
        let schemas = Schemas::default();
        assert_eq!(schemas.validate(schema, r#"{"email": "ada@example.com", "day": "2026-02-28"}"#).unwrap(), vec![]);
        let found = schemas.validate(schema, r#"{"email": "not an address", "day": "2026-02-30"}"#).unwrap();
        let mut keywords: Vec<(&str, &str)> = found.iter().map(|v| (v.path.as_str(), v.keyword.as_str())).collect();
        keywords.sort();
        assert_eq!(keywords, [("/day", "format"), ("/email", "format")]);
    }

    #[test]
    fn a_pathological_pattern_runs_in_linear_time() {
        // Catastrophic for a backtracking engine; the regex crate does not backtrack.
        let tag = format!("{}!", "a".repeat(5000));
        let found = Schemas::default().validate(SCHEMA, &serde_json::json!({"title": "a", "tag": tag}).to_string());
        assert_eq!(found.unwrap()[0].keyword, "pattern");
    }

    #[test]
    fn bad_schemas_and_documents_are_refused() {
        let schemas = Schemas::default();
        assert!(matches!(schemas.validate("{", "{}"), Err(SchemaError::InvalidSchema(_))));
        assert!(matches!(schemas.validate(r#"{"type": 5}"#, "{}"), Err(SchemaError::InvalidSchema(_))));
        assert!(matches!(schemas.validate(SCHEMA, "{"), Err(SchemaError::InvalidDocument(_))));
        let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(MAX_SCHEMA_BYTES));
        assert!(matches!(schemas.validate(&huge, "{}"), Err(SchemaError::InvalidSchema(_))));
    }
}
