//! Validation errors in one shape, for client and server: a JSON pointer,
//! a stable code (the schema keyword or the rule's code), the parameters
//! of the constraint, and the message key that says it in people's words.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::schema::{max_items, max_length, min_items, min_length};
use crate::{Definition, Field, FieldKind};

/// Code of a key the form has no field for.
pub const UNKNOWN_FIELD: &str = "additionalProperties";
/// Code of data that is not a JSON object (its message: `notAnObject`'s).
pub const NOT_AN_OBJECT: &str = "type";
/// Message code of data that is not a JSON object.
pub const NOT_AN_OBJECT_MESSAGE: &str = "notAnObject";
/// Message code of a failure of the definition's own `schema`.
pub const SCHEMA: &str = "schema";

/// One way submitted data fails its form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// JSON pointer into the data, such as `/email` (empty: the whole).
    pub path: String,
    /// Stable: the schema keyword (`required`, `maxLength`...) or the rule's code.
    pub code: String,
    /// The constraint, such as `{"limit": 100}` for `maxLength`.
    pub params: Map<String, Value>,
    /// The message key that says it.
    #[serde(skip)]
    pub message_key: String,
}

/// A file field names an attachment that is not one of the form's
/// finished uploads for this field and this showing of the form, or that
/// was sent already.
pub const ATTACHMENT: &str = "attachment";
/// A file field names an upload whose bytes have not all arrived.
pub const ATTACHMENT_INCOMPLETE: &str = "attachment_incomplete";

/// The codes a field's own constraints can fail with.
pub fn codes_of(field: &Field) -> Vec<&'static str> {
    let mut codes = vec!["type"];
    if field.required {
        codes.push("required");
    }
    match field.kind {
        FieldKind::Text | FieldKind::Email | FieldKind::LongText => {
            codes.push("maxLength");
            if field.min_length.is_some() {
                codes.push("minLength");
            }
            if field.pattern.is_some() {
                codes.push("pattern");
            }
            if field.kind == FieldKind::Email {
                codes.push("format");
            }
        }
        FieldKind::Number => {
            codes.extend(field.minimum.map(|_| "minimum"));
            codes.extend(field.maximum.map(|_| "maximum"));
        }
        FieldKind::Choice => codes.push("enum"),
        FieldKind::MultiChoice | FieldKind::File => {
            if field.kind == FieldKind::File {
                codes.extend(["pattern", ATTACHMENT, ATTACHMENT_INCOMPLETE]);
            } else {
                codes.push("enum");
            }
            codes.push("uniqueItems");
            codes.extend(field.min_items.map(|_| "minItems"));
            codes.extend(max_items(field).map(|_| "maxItems"));
        }
        FieldKind::Date => codes.push("format"),
        FieldKind::Boolean => {}
    }
    codes
}

impl Definition {
    /// What the schema cannot name well: data that is not an object, keys
    /// the form has no field for, and required fields that are absent.
    /// Run it first; [`Definition::schema_error`] skips what it reports.
    pub fn shape_errors(&self, data: &Value) -> Vec<FieldError> {
        let Some(object) = data.as_object() else {
            let mut error = self.error("", None, NOT_AN_OBJECT, json!({ "type": "object" }));
            error.message_key = self.error_key(None, NOT_AN_OBJECT_MESSAGE);
            return vec![error];
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| self.field(k).is_none())
            .map(|k| self.error(&format!("/{}", escape(k)), None, UNKNOWN_FIELD, json!({})))
            .collect();
        for field in self.fields.iter().filter(|f| f.required && !object.contains_key(&f.name)) {
            errors.push(self.error(&format!("/{}", field.name), Some(field), "required", json!({})));
        }
        errors
    }

    /// A schema violation (JSON pointer, keyword) as a field error; none
    /// for what [`Definition::shape_errors`] reports already. `data` is
    /// what was validated.
    pub fn schema_error(&self, path: &str, keyword: &str, data: &Value) -> Option<FieldError> {
        if path.is_empty() && matches!(keyword, "required" | "additionalProperties" | "type") {
            return None;
        }
        let name = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let Some(field) = self.field(name) else {
            return Some(self.error(path, None, keyword, json!({})));
        };
        let empty = data.get(name).is_some_and(|v| v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty));
        let missing_true = field.kind == FieldKind::Boolean && keyword == "const";
        if field.required && (missing_true || (empty && matches!(keyword, "minLength" | "minItems"))) {
            return Some(self.error(path, Some(field), "required", json!({})));
        }
        if !codes_of(field).contains(&keyword) {
            // The definition's own `schema`: its keyword, the form's message for it.
            let mut error = self.error(path, Some(field), keyword, json!({}));
            error.message_key = self.error_key(Some(field), SCHEMA);
            return Some(error);
        }
        let params = match keyword {
            "maxLength" => json!({ "limit": max_length(field) }),
            "minLength" => json!({ "limit": min_length(field) }),
            "maxItems" => json!({ "limit": max_items(field) }),
            "minItems" => json!({ "limit": min_items(field) }),
            "minimum" => json!({ "limit": field.minimum }),
            "maximum" => json!({ "limit": field.maximum }),
            "format" => json!({ "format": if field.kind == FieldKind::Date { "date" } else { "email" } }),
            "type" => json!({ "type": expected_type(field) }),
            _ => json!({}),
        };
        Some(self.error(path, Some(field), keyword, params))
    }

    /// Every rule `data` (which met the schema) breaks.
    pub fn rule_errors(&self, data: &Value) -> Vec<FieldError> {
        self.rules
            .iter()
            .filter(|rule| !rule.holds(data))
            .map(|rule| FieldError {
                path: format!("/{}", rule.target()),
                code: rule.code.clone(),
                params: Map::new(),
                message_key: rule.message.clone(),
            })
            .collect()
    }

    /// Error `code` on the field named `name`.
    pub fn field_error(&self, name: &str, code: &str, params: Value) -> FieldError {
        self.error(&format!("/{name}"), self.field(name), code, params)
    }

    fn error(&self, path: &str, field: Option<&Field>, code: &str, params: Value) -> FieldError {
        FieldError {
            path: path.to_owned(),
            code: code.to_owned(),
            params: match params {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            message_key: self.error_key(field, code),
        }
    }
}

fn expected_type(field: &Field) -> &'static str {
    match field.kind {
        FieldKind::Number if field.integer => "integer",
        FieldKind::Number => "number",
        FieldKind::Boolean => "boolean",
        FieldKind::MultiChoice | FieldKind::File => "array",
        _ => "string",
    }
}

/// A key as a JSON pointer segment (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
