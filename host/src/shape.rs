//! Shape digests: what a data directory's records look like, per key
//! family, without a single value, so two environments can be compared
//! (`plinth data shape`, `GET /admin/data/shape`) and drift shows before a
//! migration meets it.
//!
//! A key's family is its first segment, kept when it looks like a word of
//! a layout (lower-case letters, `_`, `-`; otherwise `{}`), and `{}` for
//! each further one (`account/{}`, `sub/{}/{}`). A value's shape is the JSON type
//! skeleton: objects by field name, arrays by the union of their items'
//! shapes, scalars by type; a value after a version header (a versioned
//! write) is marked `versioned`; anything else is `bytes`. A key counts as
//! a field name only when it looks like one and at least half of two or
//! more records of the family have it at that place; any other object is a
//! map (`{*: …}`), so names, addresses or ids used as keys never show.
//! Field names are the only text taken from the data.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// Keys counted per place before an object is taken for a map.
const MAX_COUNTED_KEYS: usize = 256;
/// Values one record's census visits at most.
const MAX_COUNTED_NODES: usize = 4096;

/// The family of a key.
pub fn family(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    let mut segments = key.split('/');
    let first = segments.next().filter(|s| looks_like_a_field(s)).unwrap_or("{}");
    format!("{first}{}", "/{}".repeat(segments.count()))
}

fn looks_like_a_field(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// How often each key occurs at each place (`/field/field`, `[]` for an
/// array's items) of one family's values: what tells fields from map keys.
#[derive(Default)]
struct Census {
    places: HashMap<String, Place>,
}

#[derive(Default)]
struct Place {
    /// Records with an object here.
    records: u64,
    /// Records with each key here.
    keys: HashMap<String, u64>,
    /// Too many distinct keys: a map.
    overflow: bool,
}

impl Census {
    /// Counts one record's value.
    fn count(&mut self, value: &serde_json::Value, place: &str, depth: usize) {
        let mut budget = MAX_COUNTED_NODES;
        self.count_within(value, place, depth, &mut budget);
    }

    /// Counts a value at `place`; an object's children are counted both as
    /// fields (`place/key`) and as a map's values (`place/*`), since which
    /// they are is known only once every record is counted.
    fn count_within(&mut self, value: &serde_json::Value, place: &str, depth: usize, budget: &mut usize) {
        use serde_json::Value;
        if depth == MAX_DEPTH || *budget == 0 {
            return;
        }
        *budget -= 1;
        match value {
            Value::Array(items) => {
                for item in items.iter().take(MAX_ITEMS) {
                    self.count_within(item, &format!("{place}[]"), depth + 1, budget);
                }
            }
            Value::Object(map) => {
                let here = self.places.entry(place.to_owned()).or_default();
                here.records += 1;
                for key in map.keys() {
                    if here.keys.len() >= MAX_COUNTED_KEYS && !here.keys.contains_key(key) {
                        here.overflow = true;
                    } else {
                        *here.keys.entry(key.clone()).or_default() += 1;
                    }
                }
                for (key, child) in map {
                    if looks_like_a_field(key) {
                        self.count_within(child, &format!("{place}/{key}"), depth + 1, budget);
                    }
                    self.count_within(child, &format!("{place}/*"), depth + 1, budget);
                }
            }
            _ => {}
        }
    }

    /// Whether every key of `map` at `place` is a field: it looks like one
    /// and two or more records, at least half of those with an object
    /// there, have it; in a family of one fixed key (`tail`), whose one
    /// record is part of the layout, looking like one is enough.
    fn fields(&self, map: &serde_json::Map<String, serde_json::Value>, place: &str, fixed: bool) -> bool {
        let Some(here) = self.places.get(place) else { return false };
        let common = |k: &String| here.keys.get(k).is_some_and(|n| *n >= 2 && n * 2 >= here.records);
        !here.overflow
            && map.len() <= MAX_FIELDS
            && map.keys().all(|k| looks_like_a_field(k) && ((fixed && here.records == 1) || common(k)))
    }
}

/// A JSON value's type skeleton, fields told from map keys by `census`
/// (`fixed`: the family is one fixed key).
fn skeleton(census: &Census, value: &serde_json::Value, place: &str, fixed: bool, depth: usize) -> String {
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
            let place = format!("{place}[]");
            let kinds: BTreeSet<String> =
                items.iter().take(MAX_ITEMS).map(|v| skeleton(census, v, &place, fixed, depth + 1)).collect();
            format!("[{}]", kinds.into_iter().collect::<Vec<_>>().join("|"))
        }
        Value::Object(map) if census.fields(map, place, fixed) => {
            let fields: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, skeleton(census, v, &format!("{place}/{k}"), fixed, depth + 1))).collect();
            let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Object(map) => {
            let place = format!("{place}/*");
            let kinds: BTreeSet<String> =
                map.values().take(MAX_ITEMS).map(|v| skeleton(census, v, &place, false, depth + 1)).collect();
            format!("{{*: {}}}", kinds.into_iter().collect::<Vec<_>>().join("|"))
        }
    }
}

/// A stored value as JSON, and whether it carried a version header.
fn parse(value: &[u8]) -> Option<(bool, serde_json::Value)> {
    if let Ok(json) = serde_json::from_slice(value) {
        return Some((false, json));
    }
    let json = serde_json::from_slice(value.get(8..)?).ok()?;
    Some((true, json))
}

/// A stored value's shape, given its family's census (`fixed`: the family
/// is one fixed key).
fn value_shape(census: &Census, value: &[u8], fixed: bool) -> String {
    match parse(value) {
        Some((false, json)) => skeleton(census, &json, "", fixed, 0),
        Some((true, json)) => format!("versioned {}", skeleton(census, &json, "", fixed, 0)),
        None => "bytes".into(),
    }
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
        let mut censuses: HashMap<String, Census> = HashMap::new();
        snapshot.read(namespace, &mut |key, value| {
            if let Some((_, json)) = parse(value) {
                censuses.entry(family(key)).or_default().count(&json, "", 0);
            }
            Ok(())
        })?;
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let empty = Census::default();
        snapshot.read(namespace, &mut |key, value| {
            let name = family(key);
            let fixed = !name.contains("{}");
            let shape = value_shape(censuses.get(&name).unwrap_or(&empty), value, fixed);
            let family = families.entry(name).or_default();
            family.records += 1;
            *family.shapes.entry(shape).or_default() += 1;
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

    /// The shapes of `values` as one family's records.
    fn shapes_of(values: &[&[u8]]) -> Vec<String> {
        let mut census = Census::default();
        for value in values {
            if let Some((_, json)) = parse(value) {
                census.count(&json, "", 0);
            }
        }
        values.iter().map(|v| value_shape(&census, v, false)).collect()
    }

    #[test]
    fn families_and_shapes_say_nothing_of_values() {
        assert_eq!(family(b"account/5f0c"), "account/{}");
        assert_eq!(family(b"sub/contact/0001"), "sub/{}/{}");
        assert_eq!(family(b"5f0c1e2d3b4a"), "{}", "an id alone is no family name");
        assert_eq!(family(b"email/ada@example.com"), "email/{}");
        assert_eq!(family(b"tail"), "tail");
        let ada = br#"{"id":"5f0c","email":"ada@example.com","roles":["admin"],"verified_at":null,"n":3}"#;
        let bo = br#"{"id":"77aa","email":"bo@example.com","roles":[],"verified_at":1,"n":4}"#;
        assert_eq!(
            shapes_of(&[ada, bo])[0],
            "{email: string, id: string, n: number, roles: [string], verified_at: null}"
        );
        let boards: [&[u8]; 2] = [
            br#"{"title":"a","members":{"alice":{"role":"owner"},"bob":{"role":"viewer"}}}"#,
            br#"{"title":"b","members":{"carol":{"role":"owner"}}}"#,
        ];
        let shapes = shapes_of(&boards);
        assert_eq!(shapes[0], "{members: {*: {role: string}}, title: string}", "names used as keys are a map");
        assert!(!shapes.concat().contains("alice"));
        let alone: [&[u8]; 1] = [br#"{"members":{"alice":true}}"#];
        assert_eq!(shapes_of(&alone)[0], "{*: {*: bool}}", "one record of ids tells no fields from keys");
        let mut tail = Census::default();
        tail.count(&serde_json::json!({"next_id": 4, "last_hash": "ab"}), "", 0);
        let fixed = value_shape(&tail, br#"{"next_id":4,"last_hash":"ab"}"#, true);
        assert_eq!(fixed, "{last_hash: string, next_id: number}", "a fixed key's one record is layout");
        let mut versioned = 7u64.to_be_bytes().to_vec();
        versioned.extend_from_slice(br#"{"title":"x"}"#);
        assert_eq!(shapes_of(&[&versioned, &versioned])[0], "versioned {title: string}");
        assert_eq!(shapes_of(&[&[0xff, 0, 1]])[0], "bytes");
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
        let there = digest_with(vec![
            ("account/7", r#"{"name":"Zofia"}"#),
            ("account/8", r#"{"name":"Jan"}"#),
            ("account/9", r#"{"name":"Ola"}"#),
        ])
        .await;
        assert_eq!(here[0].digest, there[0].digest, "other values, other counts, one shape");
        assert_eq!(here[0].families[0].shapes, vec![("{name: string}".to_owned(), 2)]);
        let drifted = digest_with(vec![
            ("account/1", r#"{"name":"Ada","verified_at":1}"#),
            ("account/2", r#"{"name":"Bo","verified_at":2}"#),
        ])
        .await;
        assert_ne!(here[0].digest, drifted[0].digest);
    }
}
