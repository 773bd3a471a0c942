//! Shape digests: what a data directory's records look like, per key
//! family, without a single value, so two environments can be compared
//! (`plinth data shape`, `GET /admin/data/shape`) and drift shows before a
//! migration meets it.
//!
//! A key's family is its first segment with each further segment replaced
//! by `{}` (`account/{}`, `sub/{}/{}`). A value's shape is the JSON type
//! skeleton: objects by field name (an object whose keys do not look like
//! field names, such as ids, is a map and shows as `{*: …}`), arrays by the
//! union of their items' shapes, scalars by type; a value after a version
//! header (a versioned write) is marked `versioned`; anything else is
//! `bytes`. Field names are the only text taken from the data.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::storage::Snapshot;

/// Distinct shapes kept per family; more are counted, not listed.
const MAX_SHAPES: usize = 16;
/// Nesting followed into a value.
const MAX_DEPTH: usize = 6;
/// Items of an array looked at.
const MAX_ITEMS: usize = 16;
/// An object with more keys than this is a map.
const MAX_FIELDS: usize = 64;

/// One namespace's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceShape {
    /// `plugin/{name}`, `system/{name}`.
    pub namespace: String,
    /// SHA-256 over its families' digests.
    pub digest: String,
    /// Its key families.
    pub families: Vec<FamilyShape>,
}

/// One key family's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyShape {
    /// `account/{}`.
    pub family: String,
    /// Records in it.
    pub records: u64,
    /// SHA-256 over its distinct shapes (not how many records each has).
    pub digest: String,
    /// Its distinct shapes, with how many records have each.
    pub shapes: Vec<(String, u64)>,
    /// Distinct shapes past the first ones listed.
    pub more: u64,
}

/// The family of a key.
pub fn family(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    let mut segments = key.split('/');
    let first = segments.next().unwrap_or_default();
    let rest = segments.count();
    format!("{first}{}", "/{}".repeat(rest))
}

fn looks_like_a_field(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// A JSON value's type skeleton.
fn skeleton(value: &serde_json::Value, depth: usize) -> String {
    use serde_json::Value;
    if depth == MAX_DEPTH {
        return "…".into();
    }
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => {
            let kinds: BTreeSet<String> = items.iter().take(MAX_ITEMS).map(|v| skeleton(v, depth + 1)).collect();
            format!("[{}]", kinds.into_iter().collect::<Vec<_>>().join("|"))
        }
        Value::Object(map) if map.len() <= MAX_FIELDS && map.keys().all(|k| looks_like_a_field(k)) => {
            let fields: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, skeleton(v, depth + 1))).collect();
            let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Object(map) => {
            let kinds: BTreeSet<String> = map.values().take(MAX_ITEMS).map(|v| skeleton(v, depth + 1)).collect();
            format!("{{*: {}}}", kinds.into_iter().collect::<Vec<_>>().join("|"))
        }
    }
}

/// A stored value's shape.
pub fn value_shape(value: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(value) {
        return skeleton(&json, 0);
    }
    if value.len() > 8
        && let Ok(json) = serde_json::from_slice::<serde_json::Value>(&value[8..])
    {
        return format!("versioned {}", skeleton(&json, 0));
    }
    "bytes".into()
}

#[derive(Default)]
struct Family {
    records: u64,
    shapes: BTreeMap<String, u64>,
}

fn sha256_hex(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_ref());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The shape of every namespace of a snapshot. Blocking.
pub fn of(snapshot: &dyn Snapshot) -> std::io::Result<Vec<NamespaceShape>> {
    let mut shapes = Vec::new();
    for namespace in snapshot.namespaces() {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        snapshot.read(namespace, &mut |key, value| {
            let family = families.entry(family(key)).or_default();
            family.records += 1;
            *family.shapes.entry(value_shape(value)).or_default() += 1;
            Ok(())
        })?;
        let families: Vec<FamilyShape> = families
            .into_iter()
            .map(|(name, family)| {
                let digest = sha256_hex(std::iter::once(name.clone()).chain(family.shapes.keys().cloned()));
                let more = family.shapes.len().saturating_sub(MAX_SHAPES) as u64;
                FamilyShape {
                    family: name,
                    records: family.records,
                    digest,
                    shapes: family.shapes.into_iter().take(MAX_SHAPES).collect(),
                    more,
                }
            })
            .collect();
        shapes.push(NamespaceShape {
            namespace: namespace.clone(),
            digest: sha256_hex(families.iter().map(|f| f.digest.clone())),
            families,
        });
    }
    Ok(shapes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{NamespaceId, SledStorage, Storage};

    #[test]
    fn families_and_shapes_say_nothing_of_values() {
        assert_eq!(family(b"account/5f0c"), "account/{}");
        assert_eq!(family(b"sub/contact/0001"), "sub/{}/{}");
        assert_eq!(family(b"secret"), "secret");
        let account = br#"{"id":"5f0c","email":"ada@example.com","roles":["admin"],"verified_at":null,"n":3}"#;
        assert_eq!(value_shape(account), "{email: string, id: string, n: number, roles: [string], verified_at: null}");
        let items = br#"{"items":{"k1":{"done":true},"k2":{"done":false}}}"#;
        assert_eq!(value_shape(items), "{items: {*: {done: bool}}}", "ids as keys are a map, not fields");
        let mut versioned = 7u64.to_be_bytes().to_vec();
        versioned.extend_from_slice(br#"{"title":"x"}"#);
        assert_eq!(value_shape(&versioned), "versioned {title: string}");
        assert_eq!(value_shape(&[0xff, 0, 1]), "bytes");
    }

    #[tokio::test]
    async fn equal_layouts_have_equal_digests_and_a_new_field_shows() {
        let digest_with = |records: Vec<(&'static str, &'static str)>| async move {
            let dir = tempfile::tempdir().unwrap();
            let storage = SledStorage::open(dir.path()).unwrap();
            let ns = storage.namespace(NamespaceId::Plugin("p".into()), None).unwrap();
            for (key, value) in records {
                ns.set(key, value.as_bytes().to_vec()).await.unwrap();
            }
            of(storage.snapshot().unwrap().as_ref()).unwrap()
        };
        let here = digest_with(vec![("account/1", r#"{"name":"Ada"}"#), ("account/2", r#"{"name":"Bo"}"#)]).await;
        let there = digest_with(vec![("account/9", r#"{"name":"Zofia"}"#)]).await;
        assert_eq!(here[0].digest, there[0].digest, "other values, other counts, one shape");
        assert_eq!(here[0].families[0].shapes, vec![("{name: string}".to_owned(), 2)]);
        let drifted = digest_with(vec![("account/1", r#"{"name":"Ada","verified_at":1}"#)]).await;
        assert_ne!(here[0].digest, drifted[0].digest);
    }
}
