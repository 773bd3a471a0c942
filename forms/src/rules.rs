//! Cross-field rules: what one field's schema cannot say about another.
//! A client can evaluate them as the server does; each is a few lines.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Definition, FieldKind};

/// One rule: a check, the code a failure is reported with, and the
/// message key shown for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable, such as `dates_in_order`; reported as the error's `code`.
    pub code: String,
    /// Message key shown for a failure.
    pub message: String,
    /// What must hold.
    pub check: Check,
}

/// What a rule checks. A rule on fields that are absent holds: whether a
/// field must be present is `required`'s business (or `required_if`'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The first field is before (less than) the second: numbers or dates.
    Before([String; 2]),
    /// The two fields are equal, such as an address typed twice.
    Equal([String; 2]),
    /// At least one of the fields is given.
    AnyOf(Vec<String>),
    /// `field` is required when `when` equals `equals`.
    RequiredIf {
        /// The field that becomes required.
        field: String,
        /// The field it depends on.
        when: String,
        /// The value that makes it required.
        equals: Value,
    },
}

impl Rule {
    /// The field a failure is reported on.
    pub fn target(&self) -> &str {
        match &self.check {
            Check::Before([_, second]) | Check::Equal([_, second]) => second,
            Check::AnyOf(fields) => fields.first().map(String::as_str).unwrap_or_default(),
            Check::RequiredIf { field, .. } => field,
        }
    }

    /// Whether `data` (an object the schema accepted) meets the rule.
    pub fn holds(&self, data: &Value) -> bool {
        let given = |name: &str| data.get(name).filter(|v| !is_empty(v));
        match &self.check {
            Check::Before([first, second]) => match (given(first), given(second)) {
                (Some(Value::Number(a)), Some(Value::Number(b))) => a.as_f64() < b.as_f64(),
                // ISO dates order as text.
                (Some(Value::String(a)), Some(Value::String(b))) => a < b,
                _ => true,
            },
            Check::Equal([first, second]) => match (given(first), given(second)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            },
            Check::AnyOf(fields) => fields.iter().any(|f| given(f).is_some()),
            Check::RequiredIf { field, when, equals } => data.get(when) != Some(equals) || given(field).is_some(),
        }
    }

    /// Why the rule cannot apply to `definition`, if it cannot.
    pub(crate) fn check(&self, definition: &Definition) -> Result<(), String> {
        let valid_code = (1..=64).contains(&self.code.len())
            && self.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_code {
            return Err("`code` is 1 to 64 of a-z, 0-9, `_`".into());
        }
        let field = |name: &str| definition.field(name).ok_or_else(|| format!("there is no field `{name}`"));
        match &self.check {
            Check::Before(pair) => {
                let kinds = [field(&pair[0])?.kind, field(&pair[1])?.kind];
                let comparable =
                    kinds.iter().all(|k| *k == FieldKind::Number) || kinds.iter().all(|k| *k == FieldKind::Date);
                if !comparable {
                    return Err("`before` compares two number fields or two date fields".into());
                }
            }
            Check::Equal(pair) => {
                field(&pair[0])?;
                field(&pair[1])?;
            }
            Check::AnyOf(fields) => {
                if fields.len() < 2 {
                    return Err("`any_of` names at least two fields".into());
                }
                for name in fields {
                    field(name)?;
                }
            }
            Check::RequiredIf { field: target, when, .. } => {
                field(target)?;
                field(when)?;
            }
        }
        Ok(())
    }
}

/// Absent as far as rules go: null, empty text, an empty list.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
