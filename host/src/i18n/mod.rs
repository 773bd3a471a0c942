//! Locales: which of the deployment's locales a request is served in, and
//! each plugin's Fluent messages in them.
//!
//! The host negotiates once per request (an explicit `locale` query
//! parameter, then `Accept-Language` by quality, then the default) and
//! formats messages for plugins, so that a plugin instance, which lives for
//! one request, never parses Fluent files. Messages are linted when a
//! deployment loads ([`lint`]): a locale that lacks a key, a placeholder or
//! a plural form refuses the deployment, naming file, key and locale.

mod catalog;
pub mod forms;
pub mod lint;

pub use catalog::{Argument, Catalog};
pub use lint::Problem;

use unic_langid::{CharacterDirection, LanguageIdentifier};

use crate::config::I18nConfig;

/// Most `Accept-Language` entries considered.
const MAX_ACCEPTED: usize = 32;

/// The deployment's locales, the default first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locales {
    enabled: Vec<LanguageIdentifier>,
    names: Vec<String>,
}

impl Locales {
    /// The locales `[i18n]` names, or the key and why not.
    pub fn from_config(config: &I18nConfig) -> Result<Self, (String, String)> {
        if config.locales.is_empty() {
            return Err(("i18n.locales".into(), "must name at least one locale, such as [\"en\"]".into()));
        }
        let mut enabled = Vec::with_capacity(config.locales.len());
        for (i, tag) in config.locales.iter().enumerate() {
            let id: LanguageIdentifier = tag.parse().map_err(|_| {
                (format!("i18n.locales[{i}]"), format!("`{tag}` is not a BCP 47 language tag, such as `en` or `pt-BR`"))
            })?;
            if enabled.contains(&id) {
                return Err((format!("i18n.locales[{i}]"), format!("`{tag}` is listed twice")));
            }
            enabled.push(id);
        }
        let default: LanguageIdentifier = config
            .default
            .parse()
            .map_err(|_| ("i18n.default".to_owned(), format!("`{}` is not a BCP 47 language tag", config.default)))?;
        let Some(position) = enabled.iter().position(|l| *l == default) else {
            return Err((
                "i18n.default".into(),
                format!("`{}` is not one of i18n.locales [{}]", config.default, config.locales.join(", ")),
            ));
        };
        enabled.swap(0, position);
        let names = enabled.iter().map(ToString::to_string).collect();
        Ok(Self { enabled, names })
    }

    /// Locale names, the default first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The default locale's name.
    pub fn default_name(&self) -> &str {
        &self.names[0]
    }

    /// The locale to serve: the first enabled one `explicit` (a `locale`
    /// parameter) matches, else the best by `accept_language`, else the
    /// default. A region falls back to its language (`pl-PL` → `pl`).
    pub fn negotiate(&self, explicit: Option<&str>, accept_language: Option<&str>) -> &str {
        let explicit = explicit.and_then(|tag| tag.parse::<LanguageIdentifier>().ok());
        let requested: Vec<LanguageIdentifier> = match explicit {
            Some(tag) => std::iter::once(tag).chain(accepted(accept_language.unwrap_or_default())).collect(),
            None => accepted(accept_language.unwrap_or_default()),
        };
        let chosen = fluent_langneg::negotiate_languages(
            &requested,
            &self.enabled,
            None,
            fluent_langneg::NegotiationStrategy::Lookup,
        );
        match chosen.first().and_then(|c| self.enabled.iter().position(|e| e == *c)) {
            Some(index) => &self.names[index],
            None => self.default_name(),
        }
    }

    /// Whether `locale` is written right to left, such as Arabic.
    pub fn is_rtl(locale: &str) -> bool {
        locale.parse::<LanguageIdentifier>().is_ok_and(|l| l.character_direction() == CharacterDirection::RTL)
    }
}

/// The tags of an `Accept-Language` value, best first: `q=0` entries and
/// `*` dropped, equal qualities kept in the client's order.
fn accepted(header: &str) -> Vec<LanguageIdentifier> {
    let mut entries: Vec<(u16, LanguageIdentifier)> = header
        .split(',')
        .take(MAX_ACCEPTED)
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let tag = parts.next()?.trim();
            let quality = parts.find_map(|p| p.trim().strip_prefix("q=").map(quality)).unwrap_or(Some(1000))?;
            (quality > 0 && tag != "*").then(|| Some((quality, tag.parse().ok()?)))?
        })
        .collect();
    entries.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    entries.into_iter().map(|(_, tag)| tag).collect()
}

/// A quality value in thousandths (`0.8` → 800), or none when malformed.
fn quality(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    (0.0..=1.0).contains(&value).then(|| (value * 1000.0).round() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locales(tags: &[&str], default: &str) -> Locales {
        let config = I18nConfig { locales: tags.iter().map(|t| t.to_string()).collect(), default: default.into() };
        Locales::from_config(&config).expect("valid")
    }

    #[test]
    fn explicit_parameter_wins_then_quality_order_then_default() {
        let l = locales(&["en", "pl", "ar"], "en");
        assert_eq!(l.negotiate(Some("ar"), Some("pl")), "ar");
        assert_eq!(l.negotiate(Some("de"), Some("pl")), "pl", "an unknown explicit locale falls through");
        assert_eq!(l.negotiate(None, Some("de-DE,ar;q=0.5,pl;q=0.9")), "pl");
        assert_eq!(l.negotiate(None, Some("pl-PL")), "pl", "a region falls back to its language");
        assert_eq!(l.negotiate(None, Some("pl;q=0, ar;q=0.1")), "ar", "q=0 means not acceptable");
        assert_eq!(l.negotiate(None, Some("*")), "en");
        assert_eq!(l.negotiate(None, Some("??, ;;, q=2")), "en");
        assert_eq!(l.negotiate(None, None), "en");
    }

    #[test]
    fn the_default_comes_first_and_must_be_enabled() {
        assert_eq!(locales(&["pl", "en"], "en").names(), ["en", "pl"]);
        let bad = I18nConfig { locales: vec!["en".into()], default: "pl".into() };
        assert_eq!(Locales::from_config(&bad).unwrap_err().0, "i18n.default");
        let twice = I18nConfig { locales: vec!["en".into(), "en".into()], default: "en".into() };
        assert_eq!(Locales::from_config(&twice).unwrap_err().0, "i18n.locales[1]");
        let junk = I18nConfig { locales: vec!["not a tag".into()], default: "en".into() };
        assert_eq!(Locales::from_config(&junk).unwrap_err().0, "i18n.locales[0]");
    }

    #[test]
    fn arabic_is_right_to_left() {
        assert!(Locales::is_rtl("ar"));
        assert!(!Locales::is_rtl("pl"));
    }
}
