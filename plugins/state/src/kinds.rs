//! Document kinds, from the plugin's `kinds` setting: a JSON object of
//! kind name → size limit, optional JSON Schema, and who may create, read
//! and write.
//!
//! ```json
//! { "checklist": { "max_bytes": 16384, "schema": { "type": "object" },
//!                  "read": "owner", "write": "owner", "sharing": true } }
//! ```
//!
//! `read` and `write` are `"owner"` or a list of roles whose holders reach
//! every document of the kind; the owner always does, and so do accounts
//! the owner shared a document with when `sharing` is on. `create` is
//! `"anyone"` signed in (the default) or a list of roles.

use std::collections::BTreeMap;

use plinth_kit::{Error, Principal, Problem, Result, schemas};
use serde::Deserialize;
use serde_json::Value;

/// Size limit of a document when its kind sets none.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
/// Largest size limit a kind may set (the host's request body limit).
pub const MAX_MAX_BYTES: usize = 1024 * 1024;
/// Documents one owner may hold of a kind when the kind sets no limit.
pub const DEFAULT_MAX_PER_OWNER: usize = 1000;
/// Deepest nesting a document may have: stored inside its record, it must
/// still parse within serde_json's limit of 128 (a patch can nest deeper
/// than any body parses).
pub const MAX_DEPTH: usize = 100;

/// Who a rule lets in besides the owner (read by [`audience`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Audience {
    /// `"owner"` (or `"anyone"` for `create`): no role needed.
    #[default]
    Nobody,
    /// Holders of any of these roles.
    Roles(Vec<String>),
}

/// One kind as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindConfig {
    #[serde(default)]
    max_bytes: Option<usize>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default, deserialize_with = "audience")]
    read: Audience,
    #[serde(default, deserialize_with = "audience")]
    write: Audience,
    #[serde(default, deserialize_with = "audience")]
    create: Audience,
    #[serde(default)]
    sharing: bool,
    #[serde(default)]
    links: bool,
    #[serde(default)]
    max_per_owner: Option<usize>,
}

/// `"owner"`/`"anyone"` or a list of roles.
fn audience<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Audience, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Word(String),
        Roles(Vec<String>),
    }
    match Raw::deserialize(d)? {
        Raw::Word(word) if word == "owner" || word == "anyone" => Ok(Audience::Nobody),
        Raw::Word(other) => {
            Err(serde::de::Error::custom(format!("`{other}` is not \"owner\", \"anyone\" or a list of roles")))
        }
        Raw::Roles(roles) => Ok(Audience::Roles(roles)),
    }
}

/// A kind, ready to check documents against.
pub struct Kind {
    /// Its name.
    pub name: String,
    /// Largest document, in bytes of JSON.
    pub max_bytes: usize,
    /// The JSON Schema, as JSON text for the host's validator.
    schema: Option<String>,
    read: Audience,
    write: Audience,
    create: Audience,
    /// Owners may share documents with named accounts.
    pub sharing: bool,
    /// Owners may make read-only links to documents.
    pub links: bool,
    /// Documents one owner may hold; none: no bound.
    pub max_per_owner: Option<usize>,
}

/// What a principal may do with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Nothing; answered as if the document did not exist.
    None,
    /// Read it and follow its changes.
    Read,
    /// Also change and delete it.
    Write,
}

fn invalid_settings(why: String) -> Error {
    plinth_kit::log::error("the `kinds` setting is invalid", &[("error", &why)]);
    Error::new(500, "invalid_settings", format!("the state plugin's `kinds` setting is invalid: {why}"))
}

fn holds(principal: &Principal, audience: &Audience) -> bool {
    match audience {
        Audience::Nobody => false,
        Audience::Roles(roles) => principal.roles.iter().any(|r| roles.contains(r)),
    }
}

/// A kind name: 1 to 64 of a-z, 0-9, `-`, `_`; `views` and `links` are
/// routes.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "views"
        && name != "links"
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Kind {
    /// The kind named `name`, or 404 `unknown_kind`.
    pub fn named(name: &str) -> Result<Kind> {
        let text = plinth_kit::settings::get("kinds").unwrap_or_else(|| "{}".to_owned());
        let mut kinds: BTreeMap<String, KindConfig> =
            serde_json::from_str(&text).map_err(|e| invalid_settings(e.to_string()))?;
        let config = kinds
            .remove(name)
            .filter(|_| valid_name(name))
            .ok_or_else(|| Error::new(404, "unknown_kind", format!("there is no document kind `{name}`")).at("kind"))?;
        let max_bytes = config.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        if max_bytes == 0 || max_bytes > MAX_MAX_BYTES {
            return Err(invalid_settings(format!("kinds.{name}.max_bytes must be 1 to {MAX_MAX_BYTES}")));
        }
        // 0: no bound, for kinds only role holders create (such as an
        // inbox's marks, one per item, made by whichever admin).
        let max_per_owner = match config.max_per_owner.unwrap_or(DEFAULT_MAX_PER_OWNER) {
            0 if matches!(config.create, Audience::Roles(_)) => None,
            0 => {
                return Err(invalid_settings(format!(
                    "kinds.{name}.max_per_owner may be 0 (no bound) only when `create` names roles"
                )));
            }
            n if n <= plinth_kit::kv::MAX_SCAN_PAGE as usize => Some(n),
            _ => {
                return Err(invalid_settings(format!(
                    "kinds.{name}.max_per_owner must be 1 to {} (or 0 when `create` names roles)",
                    plinth_kit::kv::MAX_SCAN_PAGE
                )));
            }
        };
        let schema = config.schema.as_ref().map(Value::to_string);
        Ok(Kind {
            name: name.to_owned(),
            max_bytes,
            schema,
            read: config.read,
            write: config.write,
            create: config.create,
            sharing: config.sharing,
            links: config.links,
            max_per_owner,
        })
    }

    /// How far `principal` reaches a document owned by `owner`, given the
    /// document's grant to this principal (if any).
    pub fn reach(&self, principal: &Principal, owner: &str, granted: Option<Reach>) -> Reach {
        if principal.account_id == owner || holds(principal, &self.write) {
            return Reach::Write;
        }
        let granted = if self.sharing { granted.unwrap_or(Reach::None) } else { Reach::None };
        let by_role = if holds(principal, &self.read) { Reach::Read } else { Reach::None };
        granted.max(by_role)
    }

    /// Whether `principal` changes every document of this kind by a role.
    pub fn writes_by_role(&self, principal: &Principal) -> bool {
        holds(principal, &self.write)
    }

    /// Whether `principal` reads every document of this kind by a role.
    pub fn readable_by_role(&self, principal: &Principal) -> bool {
        holds(principal, &self.read) || holds(principal, &self.write)
    }

    /// Refuses a principal who may not create documents of this kind.
    pub fn may_create(&self, principal: &Principal) -> Result<()> {
        match &self.create {
            Audience::Nobody => Ok(()),
            roles if holds(principal, roles) => Ok(()),
            Audience::Roles(roles) => {
                Err(Error::forbidden(format!("creating a `{}` document needs one of the roles {roles:?}", self.name)))
            }
        }
    }

    /// Checks a document against the size limit and the schema: 413
    /// `document_too_large`, or 422 `schema_violation` listing every
    /// problem with its JSON pointer.
    pub fn check(&self, document: &Value) -> Result<Vec<u8>> {
        let depth = depth(document);
        if depth > MAX_DEPTH {
            return Err(Error::new(
                422,
                "too_deep",
                format!("the document nests {depth} levels deep; at most {MAX_DEPTH}"),
            ));
        }
        let bytes = serde_json::to_vec(document).expect("a JSON value serializes");
        if bytes.len() > self.max_bytes {
            return Err(Error::new(
                413,
                "document_too_large",
                format!("the document is {} bytes; a `{}` is at most {}", bytes.len(), self.name, self.max_bytes),
            ));
        }
        if let Some(schema) = &self.schema {
            let text = std::str::from_utf8(&bytes).expect("serde_json writes UTF-8");
            let violations = plinth_kit::schemas::validate(schema, text).map_err(|e| match e {
                schemas::Error::InvalidSchema(why) => invalid_settings(format!("kinds.{}.schema: {why}", self.name)),
                schemas::Error::InvalidDocument(why) => Error::new(400, "invalid_json", why),
            })?;
            let problems: Vec<Problem> = violations
                .into_iter()
                .map(|v| Problem { path: v.path, code: keyword_code(&v.keyword), message: v.message })
                .collect();
            if !problems.is_empty() {
                return Err(Error::new(
                    422,
                    "schema_violation",
                    format!("the document does not fit the `{}` schema ({} problems)", self.name, problems.len()),
                )
                .with_problems(problems));
            }
        }
        Ok(bytes)
    }
}

/// How deeply `value` nests (a scalar is 1), without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((value, level)) = pending.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(fields) => pending.extend(fields.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// `max_length` from `maxLength`: the keyword that failed, in the
/// platform's snake_case.
fn keyword_code(keyword: &str) -> String {
    let mut code = String::with_capacity(keyword.len() + 4);
    for c in keyword.chars() {
        if c.is_ascii_uppercase() {
            code.push('_');
            code.push(c.to_ascii_lowercase());
        } else {
            code.push(c);
        }
    }
    if code.is_empty() { "schema".to_owned() } else { code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_levels() {
        assert_eq!(depth(&serde_json::json!(1)), 1);
        assert_eq!(depth(&serde_json::json!({"a": [1, {"b": 2}]})), 4);
    }

    #[test]
    fn keywords_become_codes() {
        assert_eq!(keyword_code("maxLength"), "max_length");
        assert_eq!(keyword_code("required"), "required");
        assert_eq!(keyword_code(""), "schema");
    }
}
