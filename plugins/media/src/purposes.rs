//! Upload purposes, from the plugin's `purposes` setting: what may be
//! uploaded for what, how large, and who may read it.
//!
//! ```json
//! { "avatar": { "types": ["image/png", "image/jpeg"], "max_bytes": 5242880, "read": "public" },
//!   "attachment": { "types": ["image/*", "application/pdf"], "max_bytes": 104857600,
//!                   "read": ["support"] } }
//! ```
//!
//! `variants` (optional) names image variants and the square box each fits
//! in, such as `{"thumb": 320}`: JPEG, PNG, GIF and WebP items of the
//! purpose get them from a worker (see `variants`).
//!
//! `types` are media types as sniffed from the bytes (never the client's
//! word), `type/*` for a whole family. `read` is `"public"` (anyone with
//! the link), `"owner"` (the default), or a list of roles whose holders may
//! read every item of the purpose besides its owner. Anyone holding a
//! signed link the owner made may read the item until the link expires.

use std::collections::BTreeMap;

use plinth_kit::images::{self, MAX_BOX as MAX_VARIANT_BOX};
use plinth_kit::{Error, Result, settings};
use serde::Deserialize;

/// Largest size a purpose may allow (the blob store's practical bound for
/// one upload, and what `Tus-Max-Size` says at most).
pub const MAX_MAX_BYTES: u64 = 64 << 30;

/// Who may read a purpose's items besides their owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readers {
    /// Anyone, signed in or not.
    Public,
    /// Holders of one of these roles (empty: the owner alone).
    Roles(Vec<String>),
}

/// One purpose as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeConfig {
    types: Vec<String>,
    max_bytes: u64,
    #[serde(default, deserialize_with = "readers")]
    read: Option<Readers>,
    #[serde(default)]
    variants: BTreeMap<String, u32>,
}

fn readers<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Readers>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Word(String),
        Roles(Vec<String>),
    }
    match Raw::deserialize(d)? {
        Raw::Word(word) if word == "public" => Ok(Some(Readers::Public)),
        Raw::Word(word) if word == "owner" => Ok(Some(Readers::Roles(Vec::new()))),
        Raw::Word(other) => {
            Err(serde::de::Error::custom(format!("`{other}` is not \"public\", \"owner\" or a list of roles")))
        }
        Raw::Roles(roles) => Ok(Some(Readers::Roles(roles))),
    }
}

/// A purpose, ready to judge uploads with.
#[derive(Debug, Clone)]
pub struct Purpose {
    /// Its name.
    pub name: String,
    types: Vec<String>,
    /// Largest item.
    pub max_bytes: u64,
    /// Who reads its items.
    pub readers: Readers,
    /// Image variants its raster images get: name → the square box, in
    /// pixels, each fits in.
    pub variants: BTreeMap<String, u32>,
}

impl Purpose {
    /// A purpose no longer configured: nothing may be stored for it, and
    /// its items are their owners' alone.
    pub fn owner_only(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            types: Vec::new(),
            max_bytes: 0,
            readers: Readers::Roles(Vec::new()),
            variants: BTreeMap::new(),
        }
    }

    /// Whether this is a purpose no longer configured.
    pub fn retired(&self) -> bool {
        self.types.is_empty()
    }

    /// Whether a sniffed media type may be stored for this purpose.
    pub fn allows(&self, media_type: &str) -> bool {
        self.types.iter().any(|allowed| match allowed.strip_suffix("/*") {
            Some(family) => media_type.split('/').next() == Some(family),
            None => allowed == media_type,
        })
    }

    /// The types it allows, for messages.
    pub fn types(&self) -> String {
        self.types.join(", ")
    }

    /// Whether `roles` let their holder read every item of this purpose.
    pub fn readable_by(&self, roles: &[String]) -> bool {
        match &self.readers {
            Readers::Public => true,
            Readers::Roles(allowed) => allowed.iter().any(|r| roles.contains(r)),
        }
    }
}

/// Every purpose, from the `purposes` setting; a broken setting is a 500
/// naming the purpose and the field.
pub fn all() -> Result<BTreeMap<String, Purpose>> {
    let text = settings::require("purposes")?;
    parse(&text).map_err(|why| Error::new(500, "invalid_settings", format!("setting `purposes`: {why}")))
}

fn parse(text: &str) -> std::result::Result<BTreeMap<String, Purpose>, String> {
    let raw: BTreeMap<String, PurposeConfig> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if raw.is_empty() {
        return Err("declares no purpose".to_owned());
    }
    raw.into_iter()
        .map(|(name, config)| {
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(format!("`{name}` is not a purpose name: 1 to 64 of a-z, 0-9, `-`, `_`"));
            }
            if config.max_bytes == 0 || config.max_bytes > MAX_MAX_BYTES {
                return Err(format!("`{name}.max_bytes` is 1 to {MAX_MAX_BYTES}"));
            }
            if config.types.is_empty() {
                return Err(format!("`{name}.types` lists no media type"));
            }
            if let Some(bad) = config.types.iter().find(|t| t.split('/').count() != 2 || t.contains(' ')) {
                return Err(format!("`{name}.types` has `{bad}`, which is not `type/subtype` or `type/*`"));
            }
            if let Some((variant, size)) = config
                .variants
                .iter()
                .find(|(v, size)| !images::valid_name(v) || !(1..=MAX_VARIANT_BOX).contains(*size))
            {
                return Err(format!(
                    "`{name}.variants.{variant}` = {size}: a variant name is 1 to 32 of a-z, 0-9, `-`, `_` and its \
                     box 1 to {MAX_VARIANT_BOX} px"
                ));
            }
            let readers = config.read.unwrap_or(Readers::Roles(Vec::new()));
            Ok((
                name.clone(),
                Purpose { name, types: config.types, max_bytes: config.max_bytes, readers, variants: config.variants },
            ))
        })
        .collect()
}

/// One purpose by name: 422 `unknown_purpose` naming those that exist.
pub fn named(name: &str) -> Result<Purpose> {
    let mut all = all()?;
    all.remove(name).ok_or_else(|| {
        Error::new(
            422,
            "unknown_purpose",
            format!(
                "`{name}` is not an upload purpose; purposes: {}",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
        .at("purpose")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_exact_types() {
        let all = parse(r#"{"a": {"types": ["image/*", "application/pdf"], "max_bytes": 10}}"#).unwrap();
        let a = &all["a"];
        assert!(a.allows("image/png") && a.allows("application/pdf"));
        assert!(!a.allows("application/pdfx") && !a.allows("imagex/png") && !a.allows("text/plain"));
        assert_eq!(a.readers, Readers::Roles(Vec::new()));
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (text, needle) in [
            (r#"{"A": {"types": ["image/png"], "max_bytes": 1}}"#, "`A` is not a purpose name"),
            (r#"{"a": {"types": [], "max_bytes": 1}}"#, "`a.types` lists no media type"),
            (r#"{"a": {"types": ["png"], "max_bytes": 1}}"#, "`png`"),
            (r#"{"a": {"types": ["image/png"], "max_bytes": 0}}"#, "`a.max_bytes`"),
            (r#"{"a": {"types": ["image/png"], "max_bytes": 1, "read": "all"}}"#, "`all`"),
            (r#"{"a": {"types": ["image/png"], "max_bytes": 1, "wat": 1}}"#, "wat"),
            ("{}", "no purpose"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
