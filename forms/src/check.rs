//! The checks a definition must pass before it is served: names, keys,
//! constraints that fit their field's type, references that resolve.

use std::collections::BTreeSet;

use crate::{Definition, FieldKind, MAX_FIELDS, MAX_MAX_FILE_BYTES, MAX_MAX_LENGTH, MAX_OPTIONS, MAX_RULES, WIDGETS};

/// Most variants one file field asks for.
const MAX_VARIANTS: usize = 4;
/// Largest box a variant fits in (the image worker's own bound).
const MAX_VARIANT_BOX: u32 = 4096;
/// Most files one file field takes.
const MAX_FILES: u32 = 20;
/// Most media types one file field lists.
const MAX_ACCEPT: usize = 32;

/// `type/subtype` or `type/*`, in lower case.
fn valid_media_type(t: &str) -> bool {
    let token = |s: &str| {
        (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    t.split_once('/').is_some_and(|(kind, sub)| token(kind) && (sub == "*" || token(sub)))
}

/// One thing wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// JSON pointer into the definition, such as `/fields/2/max_length`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl DefinitionError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// A form id: 1 to 64 of a-z, 0-9, `-`, `_`, starting with a letter or digit.
pub fn valid_form_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A field name: 1 to 64 of a-z, 0-9, `_`, starting with a letter.
pub fn valid_field_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A Fluent message id, optionally with an attribute: `form-title`, `field.help`.
pub fn valid_message_key(key: &str) -> bool {
    let identifier = |s: &str| {
        (1..=128).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match key.split_once('.') {
        Some((id, attribute)) => identifier(id) && identifier(attribute),
        None => identifier(key),
    }
}

impl Definition {
    pub(crate) fn check(&self) -> Result<(), Vec<DefinitionError>> {
        let mut errors = Vec::new();
        let mut error = |path: String, message: &str| errors.push(DefinitionError::new(path, message));
        if !valid_form_id(&self.id) {
            error("/id".into(), "is 1 to 64 of a-z, 0-9, `-`, `_`, starting with a letter or digit");
        }
        if self.version == Some(0) {
            error("/version".into(), "versions start at 1");
        }
        let mut keys: Vec<(String, &str)> = vec![("/title".into(), &self.title)];
        keys.extend(self.description.iter().map(|d| ("/description".to_owned(), d.as_str())));
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            error("/fields".into(), &format!("a form has 1 to {MAX_FIELDS} fields"));
        }
        let mut names = BTreeSet::new();
        for (i, field) in self.fields.iter().enumerate() {
            let at = |key: &str| format!("/fields/{i}/{key}");
            if !valid_field_name(&field.name) {
                error(at("name"), "is 1 to 64 of a-z, 0-9, `_`, starting with a letter");
            } else if !names.insert(field.name.as_str()) {
                error(at("name"), &format!("`{}` names two fields", field.name));
            }
            keys.push((at("label"), &field.label));
            keys.extend(field.help.iter().map(|h| (at("help"), h.as_str())));
            let kind = field.kind;
            let only = |present: bool, key: &str, kinds: &str, error: &mut dyn FnMut(String, &str)| {
                if present {
                    error(at(key), &format!("applies only to {kinds} fields"));
                }
            };
            let text = kind.is_text();
            only(!text && field.min_length.is_some(), "min_length", "text", &mut error);
            only(!text && field.max_length.is_some(), "max_length", "text", &mut error);
            only(!text && field.pattern.is_some(), "pattern", "text", &mut error);
            let number = kind == FieldKind::Number;
            only(!number && field.minimum.is_some(), "minimum", "number", &mut error);
            only(!number && field.maximum.is_some(), "maximum", "number", &mut error);
            only(!number && field.integer, "integer", "number", &mut error);
            let list = kind.is_list();
            only(!list && field.min_items.is_some(), "min_items", "multi-choice and file", &mut error);
            only(!list && field.max_items.is_some(), "max_items", "multi-choice and file", &mut error);
            let file = kind == FieldKind::File;
            only(!file && !field.accept.is_empty(), "accept", "file", &mut error);
            only(!file && field.max_bytes.is_some(), "max_bytes", "file", &mut error);
            only(!file && !field.variants.is_empty(), "variants", "file", &mut error);
            let variant_name = |n: &str| {
                (1..=32).contains(&n.len())
                    && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            };
            if field.variants.len() > MAX_VARIANTS
                || field
                    .variants
                    .iter()
                    .any(|(name, size)| !variant_name(name) || !(1..=MAX_VARIANT_BOX).contains(size))
            {
                error(
                    at("variants"),
                    &format!(
                        "at most {MAX_VARIANTS} variants, each named by 1 to 32 of a-z, 0-9, `-`, `_`, with a box of 1 to \
                         {MAX_VARIANT_BOX} px"
                    ),
                );
            }
            if file && (field.accept.is_empty() || field.accept.len() > MAX_ACCEPT) {
                error(at("accept"), &format!("a file field names 1 to {MAX_ACCEPT} media types it takes"));
            }
            if field.accept.iter().any(|t| !valid_media_type(t)) {
                error(at("accept"), "each is a media type such as `image/png`, or a family such as `image/*`");
            }
            if file && field.max_items.is_some_and(|m| m == 0 || m > MAX_FILES) {
                error(at("max_items"), &format!("a file field takes 1 to {MAX_FILES} files"));
            }
            if field.max_bytes.is_some_and(|m| m == 0 || m > MAX_MAX_FILE_BYTES) {
                error(at("max_bytes"), &format!("is 1 to {MAX_MAX_FILE_BYTES}"));
            }
            let choice = matches!(kind, FieldKind::Choice | FieldKind::MultiChoice);
            only(!choice && !field.options.is_empty(), "options", "choice and multi-choice", &mut error);
            if field.max_length.is_some_and(|m| m == 0 || m > MAX_MAX_LENGTH) {
                error(at("max_length"), &format!("is 1 to {MAX_MAX_LENGTH}"));
            }
            if let (Some(min), Some(max)) = (field.min_length, field.max_length)
                && min > max
            {
                error(at("min_length"), "is larger than max_length");
            }
            if let (Some(min), Some(max)) = (field.minimum, field.maximum)
                && min > max
            {
                error(at("minimum"), "is larger than maximum");
            }
            if [field.minimum, field.maximum].into_iter().flatten().any(|n| !n.is_finite()) {
                error(at("minimum"), "bounds are finite numbers");
            }
            if let (Some(min), Some(max)) = (field.min_items, field.max_items)
                && min > max
            {
                error(at("min_items"), "is larger than max_items");
            }
            if field.pattern.as_ref().is_some_and(|p| p.is_empty() || p.len() > 1024) {
                error(at("pattern"), "is 1 to 1024 characters");
            }
            if choice {
                if field.options.is_empty() || field.options.len() > MAX_OPTIONS {
                    error(at("options"), &format!("a choice field has 1 to {MAX_OPTIONS} options"));
                }
                let mut values = BTreeSet::new();
                for (j, option) in field.options.iter().enumerate() {
                    if option.value.is_empty() || option.value.len() > 200 {
                        error(format!("/fields/{i}/options/{j}/value"), "is 1 to 200 bytes");
                    } else if !values.insert(option.value.as_str()) {
                        error(
                            format!("/fields/{i}/options/{j}/value"),
                            &format!("`{}` is offered twice", option.value),
                        );
                    }
                    keys.push((format!("/fields/{i}/options/{j}/label"), &option.label));
                }
            }
            for (code, key) in &field.errors {
                keys.push((format!("/fields/{i}/errors/{code}"), key));
            }
        }
        for (code, key) in &self.errors {
            keys.push((format!("/errors/{code}"), key));
        }
        let known = |name: &str| self.fields.iter().any(|f| f.name == name);
        for (i, name) in self.ui.order.iter().enumerate() {
            if !known(name) {
                error(format!("/ui/order/{i}"), &format!("there is no field `{name}`"));
            }
        }
        for (i, group) in self.ui.groups.iter().enumerate() {
            keys.push((format!("/ui/groups/{i}/label"), &group.label));
            for (j, name) in group.fields.iter().enumerate() {
                if !known(name) {
                    error(format!("/ui/groups/{i}/fields/{j}"), &format!("there is no field `{name}`"));
                }
            }
        }
        for (name, widget) in &self.ui.widgets {
            if !known(name) {
                error(format!("/ui/widgets/{name}"), &format!("there is no field `{name}`"));
            } else if !WIDGETS.contains(&widget.as_str()) {
                error(format!("/ui/widgets/{name}"), &format!("`{widget}` is not one of {}", WIDGETS.join(", ")));
            }
        }
        if self.rules.len() > MAX_RULES {
            error("/rules".into(), &format!("a form has at most {MAX_RULES} rules"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            keys.push((format!("/rules/{i}/message"), &rule.message));
            if let Err(why) = rule.check(self) {
                error(format!("/rules/{i}"), &why);
            }
        }
        if let Some(schema) = &self.schema
            && !schema.is_object()
        {
            error("/schema".into(), "is a JSON Schema object");
        }
        let settings = &self.settings;
        if let Some(honeypot) = &settings.honeypot {
            if !valid_field_name(honeypot) {
                error("/settings/honeypot".into(), "is a field name: 1 to 64 of a-z, 0-9, `_`");
            } else if known(honeypot) {
                error("/settings/honeypot".into(), &format!("`{honeypot}` is a real field; name one people never see"));
            }
        }
        if settings.readers.is_empty() {
            error("/settings/readers".into(), "names at least one role");
        }
        if let crate::Audience::Roles(roles) = &settings.submit
            && roles.is_empty()
        {
            error("/settings/submit/roles".into(), "names at least one role");
        }
        if settings.min_fill_seconds > 3600 {
            error("/settings/min_fill_seconds".into(), "is at most 3600");
        }
        if settings.webhooks.len() > crate::MAX_WEBHOOKS {
            error("/settings/webhooks".into(), &format!("a form has at most {} webhooks", crate::MAX_WEBHOOKS));
        }
        for (i, hook) in settings.webhooks.iter().enumerate() {
            let scheme = hook.url.starts_with("https://") || hook.url.starts_with("http://");
            if !scheme || hook.url.len() > 2048 {
                error(format!("/settings/webhooks/{i}/url"), "is an http or https URL of at most 2048 bytes");
            }
        }
        if settings.proof_of_work.as_ref().is_some_and(|p| !(1_000..=10_000_000).contains(&p.max_number)) {
            error("/settings/proof_of_work/max_number".into(), "is 1000 to 10000000");
        }
        for (path, key) in keys {
            if !valid_message_key(key) {
                error(path, &format!("`{key}` is not a message key (a Fluent id such as `contact-email`)"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}
