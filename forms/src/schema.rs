//! The JSON Schema (2020-12) a form's data must meet, derived from its
//! fields: what a client validates with as the user types, and what the
//! server validates with, so the two cannot drift.

use serde_json::{Map, Value, json};

use crate::{DEFAULT_LONG_MAX_LENGTH, DEFAULT_MAX_LENGTH, Definition, Field, FieldKind};

/// Attachment ids: what the media host's blob ids look like.
pub const ATTACHMENT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,128}$";

impl Definition {
    /// The schema of the form's data: an object of its fields, nothing
    /// else, with `required`, each field's constraints, and the
    /// definition's own `schema` under `allOf`.
    pub fn schema(&self) -> Value {
        let properties: Map<String, Value> = self.fields.iter().map(|f| (f.name.clone(), field_schema(f))).collect();
        let required: Vec<&str> = self.fields.iter().filter(|f| f.required).map(|f| f.name.as_str()).collect();
        let mut schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        if let Some(extra) = &self.schema {
            schema["allOf"] = json!([extra]);
        }
        schema
    }
}

/// The most text `field` takes.
pub fn max_length(field: &Field) -> u32 {
    field.max_length.unwrap_or(if field.kind == FieldKind::LongText {
        DEFAULT_LONG_MAX_LENGTH
    } else {
        DEFAULT_MAX_LENGTH
    })
}

/// The fewest characters `field` takes (1 when it is required).
pub fn min_length(field: &Field) -> Option<u32> {
    match (field.required, field.min_length) {
        (true, min) => Some(min.unwrap_or(1).max(1)),
        (false, min) => min,
    }
}

/// The fewest items `field` takes (1 when it is required).
pub fn min_items(field: &Field) -> Option<u32> {
    match (field.required, field.min_items) {
        (true, min) => Some(min.unwrap_or(1).max(1)),
        (false, min) => min,
    }
}

/// The most items `field` takes (one file unless it says more).
pub fn max_items(field: &Field) -> Option<u32> {
    match field.kind {
        FieldKind::File => Some(field.file_max_items()),
        _ => field.max_items,
    }
}

fn field_schema(field: &Field) -> Value {
    let mut schema = Map::new();
    let mut set = |key: &str, value: Value| drop(schema.insert(key.to_owned(), value));
    match field.kind {
        FieldKind::Text | FieldKind::Email | FieldKind::LongText => {
            set("type", json!("string"));
            set("maxLength", json!(max_length(field)));
            if let Some(min) = min_length(field) {
                set("minLength", json!(min));
            }
            if let Some(pattern) = &field.pattern {
                set("pattern", json!(pattern));
            }
            if field.kind == FieldKind::Email {
                set("format", json!("email"));
            }
        }
        FieldKind::Number => {
            set("type", json!(if field.integer { "integer" } else { "number" }));
            if let Some(min) = field.minimum {
                set("minimum", json!(min));
            }
            if let Some(max) = field.maximum {
                set("maximum", json!(max));
            }
        }
        FieldKind::Choice => {
            set("type", json!("string"));
            set("enum", field.options.iter().map(|o| json!(o.value)).collect());
        }
        FieldKind::MultiChoice | FieldKind::File => {
            set("type", json!("array"));
            set("uniqueItems", json!(true));
            let items = if field.kind == FieldKind::File {
                json!({ "type": "string", "pattern": ATTACHMENT_ID_PATTERN })
            } else {
                json!({ "type": "string", "enum": field.options.iter().map(|o| &o.value).collect::<Vec<_>>() })
            };
            set("items", items);
            if let Some(min) = min_items(field) {
                set("minItems", json!(min));
            }
            if let Some(max) = max_items(field) {
                set("maxItems", json!(max));
            }
        }
        FieldKind::Date => {
            set("type", json!("string"));
            set("format", json!("date"));
        }
        FieldKind::Boolean => {
            set("type", json!("boolean"));
            if field.required {
                set("const", json!(true));
            }
        }
    }
    Value::Object(schema)
}
