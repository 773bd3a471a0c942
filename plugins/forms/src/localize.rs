//! A form's words in the request's locale: its texts, and every error
//! message each field can show, formatted with the constraint's values, so
//! a client validating as the user types shows the server's own words.

use std::collections::BTreeMap;

use plinth_forms::validation::codes_of;
use plinth_forms::{Definition, FieldError};
use plinth_kit::messages::{self, Argument};
use plinth_kit::{Request, Response};
use serde_json::{Map, Value, json};

/// Every text the form shows (title, labels, help, options, groups), by key.
pub fn texts(definition: &Definition, locale: &str) -> BTreeMap<String, String> {
    let mut keys = vec![definition.title.clone()];
    keys.extend(definition.description.clone());
    for field in &definition.fields {
        keys.push(field.label.clone());
        keys.extend(field.help.clone());
        keys.extend(field.options.iter().map(|o| o.label.clone()));
    }
    keys.extend(definition.ui.groups.iter().map(|g| g.label.clone()));
    keys.into_iter().map(|key| (key.clone(), messages::text(locale, &key, &[]))).collect()
}

/// For each field, each error it can show, worded: `{"/email": {"format": "…"}}`,
/// and the rules' messages under their target field.
pub fn errors(definition: &Definition, locale: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut errors: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let empty = json!({});
    for field in &definition.fields {
        let path = format!("/{}", field.name);
        for code in codes_of(field) {
            // A violation of `code` on an empty value, as the server words it.
            let sample = definition.schema_error(&path, code, &empty);
            if let Some(error) = sample.filter(|e| e.code == code) {
                errors.entry(path.clone()).or_default().insert(code.to_owned(), message(definition, &error, locale));
            }
        }
    }
    for rule in &definition.rules {
        let text = messages::text(locale, &rule.message, &[]);
        errors.entry(format!("/{}", rule.target())).or_default().insert(rule.code.clone(), text);
    }
    errors
}

/// One error in people's words: its message with the constraint's values
/// and the field's label as `$label`.
pub fn message(definition: &Definition, error: &FieldError, locale: &str) -> String {
    let name = error.path.trim_start_matches('/').split('/').next().unwrap_or_default();
    let mut args: Vec<(&str, Argument)> = Vec::new();
    if let Some(field) = definition.field(name) {
        args.push(("label", Argument::Text(messages::text(locale, &field.label, &[]))));
    }
    for (name, value) in &error.params {
        match value {
            Value::Number(n) => args.push((name.as_str(), Argument::Number(n.as_f64().unwrap_or_default()))),
            Value::String(s) => args.push((name.as_str(), Argument::Text(s.clone()))),
            _ => {}
        }
    }
    messages::text(locale, &error.message_key, &args)
}

/// 422 `validation_failed` with every error, each with its message.
pub fn rejection(req: &Request, definition: &Definition, errors: &[FieldError]) -> Response {
    let locale = req.locale();
    let fields: Vec<Value> = errors
        .iter()
        .map(|e| {
            json!({ "path": e.path, "code": e.code, "params": Value::Object(e.params.clone()),
                    "message": message(definition, e, &locale) })
        })
        .collect();
    let mut error = Map::new();
    error.insert("code".into(), json!("validation_failed"));
    error.insert(
        "message".into(),
        json!(format!("the data does not meet the form: {} problem(s), see `fields`", errors.len())),
    );
    error.insert("trace_id".into(), json!(req.trace_id()));
    error.insert("fields".into(), Value::Array(fields));
    Response::json(422, &json!({ "error": error }))
}
