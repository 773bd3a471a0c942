//! How documents are kept: keys, the stored record, access, preconditions
//! and the one write path that publishes each change.
//!
//! - `doc/{kind}/{id}`: versioned, `{"owner", "life", "body"}`; the
//!   version is the ETag, `life` a random id the document gets when it is
//!   created.
//! - `acl/{kind}/{id}`: `{"life", "grants", "link_epoch"}`, the accounts
//!   the owner shared it with, and which of its links still open it.
//!   Both count only for the life they name: a grant racing a delete
//!   cannot reach a document created again under the same id.
//! - `own/{kind}/{owner}/{id}`: the owner's index, for listing.

use std::collections::BTreeMap;

use plinth_kit::events::{self, WriteOutcome};
use plinth_kit::kv::{self, Entry, Op};
use plinth_kit::{Error, Principal, Request, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::kinds::{Kind, Reach};

/// A document as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The account that created it.
    pub owner: String,
    /// Random, made at creation: tells this document from an earlier one
    /// with the same id.
    pub life: String,
    /// The document.
    pub body: Value,
}

/// A document the caller may reach, with its version.
pub struct Loaded {
    pub version: u64,
    pub doc: Stored,
    pub reach: Reach,
}

/// Who a document is shared with, and how far.
pub type Grants = BTreeMap<String, Access>;

/// The grants and links of one life of a document, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Acl {
    /// The document life they were made for.
    pub life: String,
    /// Account → access.
    pub grants: Grants,
    /// Links name the epoch they were made in; revoking them all moves it on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub link_epoch: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Acl {
    /// Whether there is anything to keep.
    pub fn worth_keeping(&self) -> bool {
        !self.grants.is_empty() || self.link_epoch > 0
    }
}

/// A grant's reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

pub fn doc_key(kind: &str, id: &str) -> String {
    format!("doc/{kind}/{id}")
}

pub fn acl_key(kind: &str, id: &str) -> String {
    format!("acl/{kind}/{id}")
}

pub fn own_prefix(kind: &str, owner: &str) -> String {
    format!("own/{kind}/{owner}/")
}

/// A strong ETag for a version.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// An id (document or account): 1 to 128 of A-Z, a-z, 0-9, `-`, `_`.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The route's `kind` and `id`, checked.
pub fn address(req: &Request) -> Result<(Kind, String)> {
    let kind = Kind::named(&req.param::<String>("kind")?)?;
    let id: String = req.param("id")?;
    if !valid_id(&id) {
        return Err(Error::new(400, "invalid_param", "a document id is 1 to 128 of A-Z, a-z, 0-9, `-`, `_`").at("id"));
    }
    Ok((kind, id))
}

/// The 404 for a document that is absent or out of the caller's reach:
/// the same answer, so ids cannot be probed.
pub fn not_found(kind: &Kind, id: &str) -> Error {
    Error::not_found(format!("no `{}` document `{id}`", kind.name))
}

/// The grants and link epoch of this life of a document.
pub fn acl(kind: &Kind, id: &str, life: &str) -> Result<Acl> {
    let acl: Option<Acl> = kv::get_json(&acl_key(&kind.name, id))?;
    Ok(acl.filter(|acl| acl.life == life).unwrap_or_else(|| Acl { life: life.to_owned(), ..Acl::default() }))
}

/// The grants of this life of a document.
pub fn grants(kind: &Kind, id: &str, life: &str) -> Result<Grants> {
    Ok(acl(kind, id, life)?.grants)
}

/// The document and its version, whoever asks.
pub fn read(kind: &Kind, id: &str) -> Result<Option<(u64, Stored)>> {
    let Some((version, bytes)) = kv::get_with_version(&doc_key(&kind.name, id))? else {
        return Ok(None);
    };
    let doc: Stored = serde_json::from_slice(&bytes).map_err(|e| {
        plinth_kit::log::error("stored document does not decode", &[("id", id), ("error", &e.to_string())]);
        Error::new(500, "corrupt_value", "a stored document could not be read")
    })?;
    Ok(Some((version, doc)))
}

/// The document, when it exists and the caller reaches it at all.
pub fn load(kind: &Kind, id: &str, me: &Principal) -> Result<Option<Loaded>> {
    let Some((version, doc)) = read(kind, id)? else {
        return Ok(None);
    };
    let granted = if kind.sharing && doc.owner != me.account_id {
        grants(kind, id, &doc.life)?.get(&me.account_id).map(|a| match a {
            Access::Read => Reach::Read,
            Access::Write => Reach::Write,
        })
    } else {
        None
    };
    let reach = kind.reach(me, &doc.owner, granted);
    Ok((reach != Reach::None).then_some(Loaded { version, doc, reach }))
}

/// Refuses a create past the kind's documents per owner: 507
/// `too_many_documents`. (Two creates at once may both pass at the limit.)
pub fn check_room(kind: &Kind, owner: &str) -> Result<()> {
    let Some(most) = kind.max_per_owner else { return Ok(()) };
    let held = kv::scan_prefix(&own_prefix(&kind.name, owner), None, most as u32)?;
    if held.entries.len() >= most {
        return Err(Error::new(
            507,
            "too_many_documents",
            format!("you hold {most} `{}` documents, the most one account may; delete some first", kind.name),
        ));
    }
    Ok(())
}

/// The document if the caller may change it: 404 when it cannot even read
/// it, 403 when it can only read it.
pub fn load_for_write(kind: &Kind, id: &str, me: &Principal) -> Result<Loaded> {
    let loaded = load(kind, id, me)?.ok_or_else(|| not_found(kind, id))?;
    if loaded.reach < Reach::Write {
        return Err(Error::forbidden(format!("you may read `{id}` but not change it")));
    }
    Ok(loaded)
}

/// What a write asks of the document's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `If-None-Match: *`: it must not exist.
    Absent,
    /// `If-Match: *`: it must exist.
    Exists,
    /// `If-Match` with these strong versions (weak or foreign tags never match).
    OneOf(Vec<u64>),
}

impl Precondition {
    /// The request's precondition: 428 `precondition_required` without one,
    /// 400 `invalid_header` for one that does not parse.
    pub fn of(req: &Request) -> Result<Precondition> {
        let invalid =
            |header: &str, why: &str| Error::new(400, "invalid_header", format!("`{header}`: {why}")).at(header);
        match (req.if_match(), req.header("if-none-match")) {
            (Some(_), Some(_)) => Err(invalid("if-none-match", "send either If-Match or If-None-Match, not both")),
            (None, Some(none)) if none.trim() == "*" => Ok(Precondition::Absent),
            (None, Some(_)) => Err(invalid("if-none-match", "only `*` (create) is meaningful on a write")),
            (Some(tags), None) if tags.trim() == "*" => Ok(Precondition::Exists),
            (Some(tags), None) => {
                let mut versions = Vec::new();
                for tag in tags.split(',').map(str::trim) {
                    if let Some(opaque) = tag.strip_prefix("W/") {
                        // Weak tags never satisfy If-Match (RFC 9110 §13.1.1).
                        if !quoted(opaque) {
                            return Err(invalid("if-match", "an entity tag is a quoted string, such as \"42\""));
                        }
                    } else if quoted(tag) {
                        // Only a version's own spelling names it (not `"+7"` or `"07"`).
                        let opaque = &tag[1..tag.len() - 1];
                        versions.extend(opaque.parse::<u64>().ok().filter(|v| v.to_string() == opaque));
                    } else {
                        return Err(invalid("if-match", "an entity tag is a quoted string, such as \"42\""));
                    }
                }
                Ok(Precondition::OneOf(versions))
            }
            (None, None) => Err(Error::new(
                428,
                "precondition_required",
                "send If-Match with the ETag you read (or If-None-Match: * to create), so no change is lost",
            )
            .at("if-match")),
        }
    }

    /// Whether an existing document at `version` satisfies it.
    pub fn admits(&self, version: u64) -> bool {
        match self {
            Precondition::Absent => false,
            Precondition::Exists => true,
            Precondition::OneOf(versions) => versions.contains(&version),
        }
    }
}

fn quoted(tag: &str) -> bool {
    tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') && !tag[1..tag.len() - 1].contains('"')
}

/// 412 with the current ETag, which the caller may see.
pub fn stale(id: &str, version: Option<u64>) -> Error {
    let error = Error::new(412, "precondition_failed", format!("`{id}` changed since you read it; read it again"))
        .at("if-match");
    match version {
        Some(version) => error.with_header("etag", etag(version)),
        None => error,
    }
}

/// One write of a document: the stored record (none deletes), the plain
/// writes that go with it, and the change subscribers get.
pub struct Write<'a> {
    pub kind: &'a Kind,
    pub id: &'a str,
    pub expected: Option<u64>,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Stored>,
    pub also: Vec<Op>,
    /// `create`, `replace`, `patch` or `delete`.
    pub op: &'static str,
}

/// Commits a write and publishes its change as a JSON Patch from the old
/// document to the new one; the new version, or the one found instead.
pub fn commit(write: Write<'_>) -> Result<WriteOutcome> {
    let Write { kind, id, expected, old, new, also, op } = write;
    let stored = new.map(|doc| serde_json::to_vec(doc).expect("documents serialize"));
    let change = match (old, new) {
        (_, None) => json!({ "op": op }),
        (old, Some(new)) => json!({ "op": op, "patch": json_patch::diff(old.unwrap_or(&Value::Null), &new.body) }),
    };
    let mut data = serde_json::to_vec(&change).expect("changes serialize");
    if data.len() > events::MAX_CHANGE_BYTES {
        data = serde_json::to_vec(&json!({ "op": op, "refetch": true })).expect("changes serialize");
    }
    events::publish_write(&doc_key(&kind.name, id), expected, stored.as_deref(), &also, &data)
}

/// A plain set of a JSON value, for [`Write::also`].
pub fn set(key: String, value: &impl Serialize) -> Op {
    set_bytes(key, serde_json::to_vec(value).expect("values serialize"))
}

/// A plain set, for [`Write::also`].
pub fn set_bytes(key: String, value: Vec<u8>) -> Op {
    Op::Set(Entry { key, value })
}
