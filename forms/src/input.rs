//! An HTML form's fields (`application/x-www-form-urlencoded` pairs) as the
//! data the schema checks: each field's value in the type the field holds,
//! so a page without JavaScript is validated exactly as the JSON API is.

use serde_json::{Map, Number, Value, json};

use crate::{Definition, FieldError, FieldKind};

/// Values a checkbox sends for "on".
const CHECKED: [&str; 4] = ["on", "true", "yes", "1"];

impl Definition {
    /// The data `pairs` carry, and the values that could not be read as
    /// their field's type (such as `x` for a number: `type`). An empty
    /// text is absent; an unchecked checkbox is `false`; names that are not
    /// fields (`_token`, `_csrf`...) are left out, but the honeypot is kept
    /// for the spam check. Line breaks are counted as one character, as a
    /// browser counts them (`\r\n` → `\n`).
    pub fn from_pairs(&self, pairs: &[(String, String)]) -> (Value, Vec<FieldError>) {
        let mut data = Map::new();
        let mut errors = Vec::new();
        fn values<'a>(pairs: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
            pairs.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
        }
        for field in &self.fields {
            let first = values(pairs, &field.name).next().map(|v| v.replace("\r\n", "\n"));
            let value = match field.kind {
                FieldKind::Text | FieldKind::Email | FieldKind::LongText | FieldKind::Date | FieldKind::Choice => {
                    first.filter(|v| !v.is_empty()).map(Value::String)
                }
                FieldKind::Number => match first.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    None => None,
                    Some(text) => match parse_number(text, field.integer) {
                        Some(number) => Some(Value::Number(number)),
                        None => {
                            errors.extend(self.schema_error(&format!("/{}", field.name), "type", &Value::Null));
                            None
                        }
                    },
                },
                FieldKind::Boolean => Some(Value::Bool(first.is_some_and(|v| CHECKED.contains(&v.as_str())))),
                // A file field's values are the ids of its finished uploads.
                FieldKind::MultiChoice | FieldKind::File => {
                    let chosen: Vec<Value> =
                        values(pairs, &field.name).filter(|v| !v.is_empty()).map(|v| json!(v)).collect();
                    (!chosen.is_empty()).then_some(Value::Array(chosen))
                }
            };
            if let Some(value) = value {
                data.insert(field.name.clone(), value);
            }
        }
        if let Some(honeypot) = &self.settings.honeypot
            && let Some(value) = values(pairs, honeypot).next()
        {
            data.insert(honeypot.clone(), json!(value));
        }
        (Value::Object(data), errors)
    }
}

fn parse_number(text: &str, integer: bool) -> Option<Number> {
    if integer {
        return text.parse::<i64>().ok().map(Number::from);
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite()).and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Definition;

    #[test]
    fn html_fields_become_typed_data() {
        let definition = Definition::parse(
            json!({ "id": "f", "title": "t", "fields": [
                { "name": "name", "type": "text", "label": "l" },
                { "name": "note", "type": "long-text", "label": "l" },
                { "name": "age", "type": "number", "label": "l", "integer": true },
                { "name": "tags", "type": "multi-choice", "label": "l",
                  "options": [ { "value": "a", "label": "l" }, { "value": "b", "label": "l" } ] },
                { "name": "agree", "type": "boolean", "label": "l" },
                { "name": "empty", "type": "text", "label": "l" },
                { "name": "files", "type": "file", "label": "l", "accept": ["image/*"], "max_items": 2 }
            ], "settings": { "honeypot": "website" } })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let pairs: Vec<(String, String)> = [
            ("_token", "t"),
            ("name", "Ada"),
            ("note", "two\r\nlines"),
            ("age", " 36 "),
            ("tags", "a"),
            ("tags", "b"),
            ("empty", ""),
            ("website", ""),
            ("stray", "x"),
            ("files", "0123456789abcdef0123456789abcdef"),
            ("files", ""),
            ("files", "fedcba9876543210fedcba9876543210"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let (data, errors) = definition.from_pairs(&pairs);
        assert_eq!(errors, []);
        assert_eq!(
            data,
            json!({ "name": "Ada", "note": "two\nlines", "age": 36, "tags": ["a", "b"], "agree": false, "website": "",
                    "files": ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"] })
        );
        let (_, errors) = definition.from_pairs(&[("age".into(), "36.5".into())]);
        assert_eq!((errors[0].path.as_str(), errors[0].code.as_str()), ("/age", "type"));
    }
}
