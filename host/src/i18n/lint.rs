//! The localization lint: every locale says everything the default locale
//! says, with the same placeholders, every plural form its language has,
//! and nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fluent_bundle::FluentResource;
use fluent_syntax::ast;
use intl_pluralrules::{PluralCategory, PluralRuleType, PluralRules};
use unic_langid::LanguageIdentifier;

/// One thing wrong with a plugin's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, or the file the message belongs in.
    pub file: PathBuf,
    /// The locale.
    pub locale: String,
    /// The message, when the problem is about one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    pub(super) fn file(file: impl AsRef<Path>, locale: &str, message: impl Into<String>) -> Self {
        Self { file: file.as_ref().to_owned(), locale: locale.to_owned(), key: None, message: message.into() }
    }

    fn key(file: impl AsRef<Path>, locale: &str, key: &str, message: impl Into<String>) -> Self {
        Self { key: Some(key.to_owned()), ..Self::file(file, locale, message) }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: locale `{}`: ", self.file.display(), self.locale)?;
        if let Some(key) = &self.key {
            write!(f, "message `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What the lint knows of one message (or attribute, as `id.attribute`).
#[derive(Debug, Default)]
struct Entry {
    file: PathBuf,
    placeholders: BTreeSet<String>,
    /// The variant keys of each select expression on plural categories.
    plural_selects: Vec<BTreeSet<String>>,
    /// Messages and terms it refers to.
    references: BTreeSet<String>,
}

/// Every problem of `sources`: (locale, its parsed files), the default
/// locale first.
pub fn check(sources: &[(String, Vec<(PathBuf, FluentResource)>)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let entries: Vec<(&str, BTreeMap<String, Entry>)> = sources
        .iter()
        .map(|(locale, resources)| (locale.as_str(), collect(locale, resources, &mut problems)))
        .collect();
    let Some((default_locale, default)) = entries.first() else { return problems };
    for (locale, messages) in &entries {
        let categories = plural_categories(locale);
        for (key, entry) in messages {
            for reference in &entry.references {
                if !messages.contains_key(reference) {
                    problems.push(Problem::key(
                        &entry.file,
                        locale,
                        key,
                        format!("refers to `{reference}`, which is not defined"),
                    ));
                }
            }
            for keys in &entry.plural_selects {
                let missing: Vec<&str> = categories.iter().filter(|c| !keys.contains(**c)).copied().collect();
                if !missing.is_empty() {
                    problems.push(Problem::key(
                        &entry.file,
                        locale,
                        key,
                        format!(
                            "plural forms missing: [{}]; `{locale}` has the forms [{}]",
                            missing.join(", "),
                            categories.join(", ")
                        ),
                    ));
                }
            }
            let Some(original) = default.get(key) else {
                problems.push(Problem::key(
                    &entry.file,
                    locale,
                    key,
                    format!("is not in the default locale `{default_locale}` (remove it, or add it there)"),
                ));
                continue;
            };
            if entry.placeholders != original.placeholders {
                problems.push(Problem::key(
                    &entry.file,
                    locale,
                    key,
                    format!(
                        "placeholders [{}] differ from the default locale's [{}] ({})",
                        variables(&entry.placeholders),
                        variables(&original.placeholders),
                        original.file.display()
                    ),
                ));
            }
        }
        for (key, original) in default {
            if !messages.contains_key(key) {
                let file = sources
                    .iter()
                    .find(|(l, _)| l == locale)
                    .and_then(|(_, files)| files.first())
                    .map(|(f, _)| f.with_file_name(original.file.file_name().unwrap_or_default()))
                    .unwrap_or_else(|| original.file.clone());
                problems.push(Problem::key(
                    file,
                    locale,
                    key,
                    format!("is missing (the default locale `{default_locale}` has it in {})", original.file.display()),
                ));
            }
        }
    }
    problems
}

fn variables(names: &BTreeSet<String>) -> String {
    names.iter().map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The messages, terms and attributes of one locale's files.
fn collect(
    locale: &str,
    resources: &[(PathBuf, FluentResource)],
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Entry> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut add = |file: &Path, key: String, pattern: Option<&ast::Pattern<&str>>, problems: &mut Vec<Problem>| {
        if let Some(existing) = entries.get(&key) {
            problems.push(Problem::key(
                file,
                locale,
                &key,
                format!("is defined twice (also in {})", existing.file.display()),
            ));
            return;
        }
        let mut entry = Entry { file: file.to_owned(), ..Entry::default() };
        if let Some(pattern) = pattern {
            walk_pattern(pattern, &mut entry);
        }
        entries.insert(key, entry);
    };
    for (file, resource) in resources {
        for item in resource.entries() {
            let (id, value, attributes) = match item {
                ast::Entry::Message(m) => (m.id.name.to_owned(), m.value.as_ref(), &m.attributes),
                ast::Entry::Term(t) => (format!("-{}", t.id.name), Some(&t.value), &t.attributes),
                _ => continue,
            };
            for attribute in attributes {
                add(file, format!("{id}.{}", attribute.id.name), Some(&attribute.value), problems);
            }
            add(file, id, value, problems);
        }
    }
    entries
}

fn walk_pattern(pattern: &ast::Pattern<&str>, entry: &mut Entry) {
    for element in &pattern.elements {
        if let ast::PatternElement::Placeable { expression } = element {
            walk_expression(expression, entry);
        }
    }
}

fn walk_expression(expression: &ast::Expression<&str>, entry: &mut Entry) {
    match expression {
        ast::Expression::Inline(inline) => walk_inline(inline, entry),
        ast::Expression::Select { selector, variants } => {
            walk_inline(selector, entry);
            let numeric = matches!(selector, ast::InlineExpression::VariableReference { .. })
                || matches!(selector, ast::InlineExpression::FunctionReference { id, .. } if id.name == "NUMBER");
            let names: BTreeSet<String> = variants
                .iter()
                .filter_map(|v| match &v.key {
                    ast::VariantKey::Identifier { name } => Some((*name).to_owned()),
                    ast::VariantKey::NumberLiteral { .. } => None,
                })
                .collect();
            if numeric && !names.is_empty() && names.iter().all(|n| CATEGORY_NAMES.contains(&n.as_str())) {
                entry.plural_selects.push(names);
            }
            for variant in variants {
                walk_pattern(&variant.value, entry);
            }
        }
    }
}

fn walk_inline(inline: &ast::InlineExpression<&str>, entry: &mut Entry) {
    match inline {
        ast::InlineExpression::VariableReference { id } => drop(entry.placeholders.insert(id.name.to_owned())),
        ast::InlineExpression::FunctionReference { arguments, .. } => walk_arguments(arguments, entry),
        ast::InlineExpression::MessageReference { id, attribute } => {
            let key = match attribute {
                Some(attribute) => format!("{}.{}", id.name, attribute.name),
                None => id.name.to_owned(),
            };
            entry.references.insert(key);
        }
        ast::InlineExpression::TermReference { id, arguments, .. } => {
            entry.references.insert(format!("-{}", id.name));
            if let Some(arguments) = arguments {
                walk_arguments(arguments, entry);
            }
        }
        ast::InlineExpression::Placeable { expression } => walk_expression(expression, entry),
        ast::InlineExpression::StringLiteral { .. } | ast::InlineExpression::NumberLiteral { .. } => {}
    }
}

fn walk_arguments(arguments: &ast::CallArguments<&str>, entry: &mut Entry) {
    for positional in &arguments.positional {
        walk_inline(positional, entry);
    }
    for named in &arguments.named {
        walk_inline(&named.value, entry);
    }
}

const CATEGORY_NAMES: [&str; 6] = ["zero", "one", "two", "few", "many", "other"];

/// The cardinal plural categories `locale` uses, in CLDR order: found by
/// asking its rules about integers and decimals that reach every branch
/// of CLDR's rules (which test `n % 100` and whether there is a fraction).
fn plural_categories(locale: &str) -> Vec<&'static str> {
    let Ok(id) = locale.parse::<LanguageIdentifier>() else { return vec!["other"] };
    let language = LanguageIdentifier::from_parts(id.language, None, None, &[]);
    let Ok(rules) = PluralRules::create(id, PluralRuleType::CARDINAL)
        .or_else(|_| PluralRules::create(language, PluralRuleType::CARDINAL))
    else {
        return vec!["other"];
    };
    let mut seen = Vec::new();
    let integers = (0..=1_200u32).map(|n| rules.select(n));
    let decimals = ["0.0", "0.5", "1.0", "1.5", "2.5", "3.5", "10.5", "1000000", "1000000.5"].map(|n| rules.select(n));
    for category in integers.chain(decimals).flatten() {
        if !seen.contains(&category) {
            seen.push(category);
        }
    }
    [
        (PluralCategory::ZERO, "zero"),
        (PluralCategory::ONE, "one"),
        (PluralCategory::TWO, "two"),
        (PluralCategory::FEW, "few"),
        (PluralCategory::MANY, "many"),
        (PluralCategory::OTHER, "other"),
    ]
    .into_iter()
    .filter(|(c, _)| seen.contains(c))
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(files: &[(&str, &str)]) -> Vec<(String, Vec<(PathBuf, FluentResource)>)> {
        files
            .iter()
            .map(|(locale, text)| {
                let resource = FluentResource::try_new((*text).to_owned()).expect("parses");
                (locale.to_string(), vec![(PathBuf::from(format!("{locale}/main.ftl")), resource)])
            })
            .collect()
    }

    #[test]
    fn plural_categories_follow_cldr() {
        assert_eq!(plural_categories("en"), ["one", "other"]);
        assert_eq!(plural_categories("pl"), ["one", "few", "many", "other"]);
        assert_eq!(plural_categories("ar"), ["zero", "one", "two", "few", "many", "other"]);
        assert_eq!(plural_categories("pl-PL"), ["one", "few", "many", "other"]);
    }

    #[test]
    fn complete_locales_pass() {
        let problems = check(&sources(&[
            ("en", "files = { $n ->\n [one] one file\n *[other] { $n } files\n}\n"),
            (
                "pl",
                "files = { $n ->\n [one] plik\n [few] { $n } pliki\n [many] { $n } plików\n *[other] { $n } pliku\n}\n",
            ),
        ]));
        assert_eq!(problems, []);
    }

    #[test]
    fn missing_keys_orphans_placeholders_and_plural_forms_are_named() {
        let problems = check(&sources(&[
            (
                "en",
                "hello = Hello, { $name }\nbye = Bye\nfiles = { $n ->\n [one] one file\n *[other] { $n } files\n}\n",
            ),
            ("pl", "hello = Cześć\nextra = Nadmiar\nfiles = { $n ->\n [one] plik\n *[other] { $n } plików\n}\n"),
        ]));
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|p| p.contains("pl/main.ftl: locale `pl`: message `bye`: is missing")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("message `extra`: is not in the default locale `en`")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("message `hello`: placeholders [] differ")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("message `files`: plural forms missing: [few, many]")), "{text:?}");
        assert_eq!(problems.len(), 4, "{text:?}");
    }

    #[test]
    fn duplicates_and_dangling_references_are_named() {
        let problems = check(&sources(&[("en", "a = { b }\na = again\nc = { -brand }\n")]));
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|p| p.contains("message `a`: is defined twice")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("message `c`: refers to `-brand`")), "{text:?}");
    }
}
