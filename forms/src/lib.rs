//! Form definitions: the one model the forms plugin serves and validates
//! with and the host's `plinth forms lint` reads, so that the two cannot
//! disagree about which messages a form names.
//!
//! A definition is JSON: fields (each with a type, a label message and
//! constraints), optional extra JSON Schema, cross-field rules, UI hints,
//! message overrides for error codes and the form's settings. The JSON
//! Schema a client validates with is derived from it ([`Definition::schema`]),
//! and the server validates with the very same schema plus the same rules.
//!
//! ```json
//! { "id": "contact", "title": "contact-title",
//!   "fields": [ { "name": "email", "type": "email", "label": "contact-email", "required": true } ],
//!   "settings": { "submit": "public", "honeypot": "website", "min_fill_seconds": 3 } }
//! ```

mod check;
mod input;
pub mod rules;
mod schema;
pub mod validation;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use check::{DefinitionError, valid_field_name, valid_form_id, valid_message_key};
pub use validation::FieldError;

/// Largest definition, in bytes of JSON.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Most fields a form has.
pub const MAX_FIELDS: usize = 100;
/// Most options a choice field has.
pub const MAX_OPTIONS: usize = 200;
/// Most cross-field rules a form has.
pub const MAX_RULES: usize = 50;
/// Longest text a field takes when its definition sets no `max_length`.
pub const DEFAULT_MAX_LENGTH: u32 = 1_000;
/// Longest text a `long-text` field takes when its definition sets none.
pub const DEFAULT_LONG_MAX_LENGTH: u32 = 10_000;
/// Longest text any field may be set to take.
pub const MAX_MAX_LENGTH: u32 = 100_000;
/// A file field's largest file unless it says.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 << 20;
/// The most a file field may allow.
pub const MAX_MAX_FILE_BYTES: u64 = 1 << 30;
/// Suffix of definition files shipped as plugin assets.
pub const ASSET_SUFFIX: &str = ".form.json";

/// One form, as its authors describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// 1 to 64 of a-z, 0-9, `-`, `_`, starting with a letter or digit.
    pub id: String,
    /// The version, in a definition shipped as a file; the API numbers
    /// the versions it publishes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Message key of the form's title.
    pub title: String,
    /// Message key of a line under the title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The fields, in the order they are shown unless `ui.order` says otherwise.
    pub fields: Vec<Field>,
    /// More JSON Schema (2020-12) the data must also meet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// Checks across fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<rules::Rule>,
    /// How to lay it out.
    #[serde(default)]
    pub ui: Ui,
    /// Message keys for error codes, over the default `form-error-{code}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
    /// Who may submit, abuse controls, retention.
    #[serde(default)]
    pub settings: Settings,
}

/// One field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Its key in the submitted data: 1 to 64 of a-z, 0-9, `_`, starting with a letter.
    pub name: String,
    /// What it holds.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// Message key of its label.
    pub label: String,
    /// Message key of a hint shown with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// Must be given (a boolean: must be true; text: not empty).
    #[serde(default)]
    pub required: bool,
    /// Shortest text, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// Longest text, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A regular expression text must match (no look-around, no back-references).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Smallest number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// A number must be whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub integer: bool,
    /// The choices of a `choice` or `multi-choice` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// Fewest choices or files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_items: Option<u32>,
    /// Most choices or files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u32>,
    /// The media types a file field takes, as sniffed from the bytes
    /// (`type/*` for a family); required for file fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
    /// Largest file a file field takes, in bytes ([`DEFAULT_MAX_FILE_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Image variants a file field's JPEG, PNG, GIF and WebP files get:
    /// name → the square box in pixels (1 to 4096) each fits in, re-encoded
    /// without metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, u32>,
    /// Message keys for error codes on this field, over the form's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// An e-mail address.
    Email,
    /// A number (`integer` for whole ones).
    Number,
    /// One of `options`.
    Choice,
    /// Any of `options`.
    MultiChoice,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// Yes or no.
    Boolean,
    /// Lines of text.
    LongText,
    /// Attachments: ids of files uploaded for the form.
    File,
}

impl FieldKind {
    /// Whether the field holds text.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Text | Self::Email | Self::LongText)
    }

    /// Whether the field holds a list.
    pub fn is_list(self) -> bool {
        matches!(self, Self::MultiChoice | Self::File)
    }
}

impl Field {
    /// Largest file this (file) field takes.
    pub fn file_max_bytes(&self) -> u64 {
        self.max_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES)
    }

    /// Most files this (file) field takes: one unless it says.
    pub fn file_max_items(&self) -> u32 {
        self.max_items.unwrap_or(1)
    }
}

/// Whether a file of `media_type` (sniffed) is one of a file field's
/// `accept` types (`type/*`: the whole family).
pub fn accepts(accept: &[String], media_type: &str) -> bool {
    accept.iter().any(|allowed| match allowed.strip_suffix("/*") {
        Some(family) => media_type.split_once('/').is_some_and(|(kind, _)| kind == family),
        None => allowed == media_type,
    })
}

/// One option of a choice field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// What the data holds when it is chosen.
    pub value: String,
    /// Message key of what people see.
    pub label: String,
}

/// Layout hints for whoever renders the form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ui {
    /// Field names in the order to show them (the rest follow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
    /// Fields shown together under a heading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// A widget per field name: `text`, `textarea`, `select`, `radio`,
    /// `checkbox`, `checkboxes`, `date`, `email`, `number`, `file`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub widgets: BTreeMap<String, String>,
}

/// The widgets a renderer knows.
pub const WIDGETS: [&str; 10] =
    ["text", "textarea", "select", "radio", "checkbox", "checkboxes", "date", "email", "number", "file"];

/// Fields under one heading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Message key of the heading.
    pub label: String,
    /// The fields, by name.
    pub fields: Vec<String>,
}

/// Who may submit, how abuse is held off, how long submissions stay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Who may submit.
    #[serde(default)]
    pub submit: Audience,
    /// Roles that read, export and erase submissions.
    #[serde(default = "default_readers")]
    pub readers: Vec<String>,
    /// Days a submission is kept; none keeps them until erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Seconds after a new version is published during which submissions
    /// made against the version it replaced are still accepted (and
    /// validated against that version).
    #[serde(default = "default_accept_previous")]
    pub accept_previous_seconds: u64,
    /// A field people never see: a submission that fills it is answered as
    /// if accepted, and dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honeypot: Option<String>,
    /// Fewest seconds between showing the form and submitting it.
    #[serde(default)]
    pub min_fill_seconds: u32,
    /// Asks clients for an ALTCHA-compatible proof of work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_of_work: Option<ProofOfWork>,
    /// Most submissions the form takes in a day (UTC), from everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_day: Option<u32>,
    /// Endpoints told of each submission (`form.submitted`), by the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// `false` for a definition that only describes data kept elsewhere
    /// (labels, messages and checks for an editor, such as a checklist's
    /// items in the state plugin): it is shown and validates, but takes no
    /// submissions or files.
    #[serde(default = "default_submissions", skip_serializing_if = "Clone::clone")]
    pub submissions: bool,
}

/// An endpoint a form notifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `https://…` (or `http://`); the host refuses internal addresses
    /// unless its operator allowed the host.
    pub url: String,
}

/// Most webhooks a form has.
pub const MAX_WEBHOOKS: usize = 10;

impl Default for Settings {
    fn default() -> Self {
        Self {
            submit: Audience::default(),
            readers: default_readers(),
            retention_days: None,
            accept_previous_seconds: default_accept_previous(),
            honeypot: None,
            min_fill_seconds: 0,
            proof_of_work: None,
            max_per_day: None,
            webhooks: Vec::new(),
            submissions: true,
        }
    }
}

fn default_readers() -> Vec<String> {
    vec!["admin".to_owned()]
}

fn default_submissions() -> bool {
    true
}

fn default_accept_previous() -> u64 {
    24 * 60 * 60
}

/// The work a proof of work asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofOfWork {
    /// The secret number is drawn from 0 to this; a client tries half of
    /// them on average.
    pub max_number: u64,
}

/// Who may submit a form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Anyone, signed in or not.
    #[default]
    Public,
    /// Anyone signed in.
    Authenticated,
    /// Holders of any of these roles.
    Roles(Vec<String>),
}

impl Definition {
    /// Reads and checks a definition: every problem, each at a JSON
    /// pointer into the definition.
    pub fn parse(bytes: &[u8]) -> Result<Self, Vec<DefinitionError>> {
        if bytes.len() > MAX_DEFINITION_BYTES {
            return Err(vec![DefinitionError::new(
                "",
                format!("{} bytes; a definition is at most {MAX_DEFINITION_BYTES}", bytes.len()),
            )]);
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let definition: Self = from_json(&mut deserializer)?;
        definition.check()?;
        Ok(definition)
    }

    /// One field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The message key for error `code` on `field`: the field's override,
    /// the form's, or `form-error-{code}`.
    pub fn error_key(&self, field: Option<&Field>, code: &str) -> String {
        field
            .and_then(|f| f.errors.get(code))
            .or_else(|| self.errors.get(code))
            .cloned()
            .unwrap_or_else(|| default_error_key(code))
    }

    /// Every message key the form can show, sorted: its texts, and the
    /// key of every error its fields and rules can produce.
    pub fn message_keys(&self) -> Vec<String> {
        let mut keys = std::collections::BTreeSet::new();
        keys.insert(self.title.clone());
        keys.extend(self.description.clone());
        for field in &self.fields {
            keys.insert(field.label.clone());
            keys.extend(field.help.clone());
            keys.extend(field.options.iter().map(|o| o.label.clone()));
            for code in validation::codes_of(field) {
                keys.insert(self.error_key(Some(field), code));
            }
        }
        keys.extend(self.ui.groups.iter().map(|g| g.label.clone()));
        keys.extend(self.rules.iter().map(|r| r.message.clone()));
        keys.extend(self.errors.values().cloned());
        keys.insert(self.error_key(None, validation::UNKNOWN_FIELD));
        keys.insert(self.error_key(None, validation::NOT_AN_OBJECT_MESSAGE));
        if self.schema.is_some() {
            keys.insert(self.error_key(None, validation::SCHEMA));
        }
        keys.into_iter().collect()
    }
}

/// `form-error-max-length` for `maxLength`.
pub fn default_error_key(code: &str) -> String {
    let mut key = String::from("form-error-");
    for c in code.chars() {
        if c.is_ascii_uppercase() {
            key.push('-');
            key.push(c.to_ascii_lowercase());
        } else if c == '_' {
            key.push('-');
        } else {
            key.push(c);
        }
    }
    key
}

/// Deserializes all of it; serde's message names the line and column.
fn from_json<'de, T: Deserialize<'de>>(
    deserializer: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, Vec<DefinitionError>> {
    let value = T::deserialize(&mut *deserializer).map_err(|e| vec![DefinitionError::new("", e.to_string())])?;
    deserializer.end().map_err(|e| vec![DefinitionError::new("", e.to_string())])?;
    Ok(value)
}

#[cfg(test)]
mod tests;
