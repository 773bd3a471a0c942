//! Security headers on every response, errors and plugin output included.
//! A plugin cannot set these (see `HOST_OWNED_HEADERS`), and the edge
//! overwrites them after the plugin answers, so it cannot weaken them.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::{HeadersConfig, RateLimitConfig};

/// The defaults: an API that renders nothing, frames nothing, leaks nothing.
pub const DEFAULTS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
    ),
];
/// The built-in class for HTML pages that run their own script and style
/// from this origin (a form's page, an inbox): nothing inline, nothing from
/// elsewhere, images also from `blob:` (previews of files being chosen),
/// and no string ever turned into markup or script (Trusted Types).
pub const PAGE_CLASS: &str = "page";
/// Form posts: their answer can be the form's page again (with its
/// errors), which must run the same script as the page itself.
pub const FORM_SUBMIT_CLASS: &str = "form_submit";
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                        connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                        require-trusted-types-for 'script'";
/// Sent only over TLS, where it means something.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";
/// Headers that identify the software; always removed.
static REMOVED: [HeaderName; 2] = [header::SERVER, HeaderName::from_static("x-powered-by")];

/// Header values per route class, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    /// For every class not listed in `classes`.
    base: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Per class, the full list (base with the class's overrides).
    classes: HashMap<String, Vec<(HeaderName, Option<HeaderValue>)>>,
    /// `strict-transport-security` value, or none when configured off.
    hsts: Option<HeaderValue>,
}

type Entries = Vec<(HeaderName, Option<HeaderValue>)>;

fn merge(
    into: &mut Entries,
    overrides: &std::collections::BTreeMap<String, String>,
    key: &str,
) -> Result<(), (String, String)> {
    for (name, value) in overrides {
        let invalid = |what: &str| (format!("{key}.\"{name}\""), format!("not a valid header {what}"));
        let name = HeaderName::try_from(name.as_str()).map_err(|_| invalid("name"))?;
        let value = if value.is_empty() {
            None
        } else {
            Some(HeaderValue::try_from(value.as_str()).map_err(|_| invalid("value"))?)
        };
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => into.push((name, value)),
        }
    }
    Ok(())
}

impl SecurityHeaders {
    /// Builds from config; an error is (key, message).
    pub fn from_config(config: &HeadersConfig, limits: &RateLimitConfig) -> Result<Self, (String, String)> {
        let mut base: Entries =
            DEFAULTS.iter().map(|(n, v)| (HeaderName::from_static(n), Some(HeaderValue::from_static(v)))).collect();
        base.push((header::STRICT_TRANSPORT_SECURITY, Some(HeaderValue::from_static(HSTS))));
        merge(&mut base, &config.set, "headers.set")?;
        let mut classes = HashMap::new();
        let mut page = base.clone();
        let csp = [("content-security-policy".to_owned(), PAGE_CSP.to_owned())].into();
        merge(&mut page, &csp, "headers.classes.page").expect("the built-in CSP is a valid header");
        classes.insert(FORM_SUBMIT_CLASS.to_owned(), page.clone());
        classes.insert(PAGE_CLASS.to_owned(), page);
        for (class, overrides) in &config.classes {
            if !limits.classes.contains_key(class) {
                return Err((
                    format!("headers.classes.{class}"),
                    format!(
                        "unknown class `{class}`; classes are those of [rate_limits.classes]: {}",
                        limits.classes.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let mut entries = classes.get(class).cloned().unwrap_or_else(|| base.clone());
            merge(&mut entries, overrides, &format!("headers.classes.{class}"))?;
            classes.insert(class.clone(), entries);
        }
        let split = |entries: &mut Entries| {
            let at = entries
                .iter()
                .position(|(n, _)| n == header::STRICT_TRANSPORT_SECURITY)
                .expect("hsts is in every list");
            entries.remove(at).1
        };
        let hsts = split(&mut base);
        for entries in classes.values_mut() {
            split(entries);
        }
        Ok(Self { base, classes, hsts })
    }

    /// Sets the class's headers (overwriting what a plugin sent), HSTS over
    /// TLS, `Cache-Control: no-store` when a principal is involved, and
    /// removes software banners.
    pub fn apply(&self, headers: &mut HeaderMap, class: &str, tls: bool, authenticated: bool) {
        for name in &REMOVED {
            headers.remove(name);
        }
        for (name, value) in self.classes.get(class).unwrap_or(&self.base) {
            match value {
                Some(value) => {
                    headers.insert(name.clone(), value.clone());
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        if let (true, Some(hsts)) = (tls, &self.hsts) {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if authenticated {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_overrides_and_removals() {
        let config = HeadersConfig {
            set: [("permissions-policy".to_owned(), String::new())].into(),
            classes: [(
                "login".to_owned(),
                [("content-security-policy".to_owned(), "default-src 'self'".to_owned())].into(),
            )]
            .into(),
        };
        let headers = SecurityHeaders::from_config(&config, &RateLimitConfig::default()).unwrap();
        let mut map = HeaderMap::new();
        map.insert("server", HeaderValue::from_static("x"));
        map.insert("content-security-policy", HeaderValue::from_static("weak"));
        headers.apply(&mut map, "default", false, true);
        assert!(map.get("server").is_none() && map.get("permissions-policy").is_none());
        assert!(map["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
        assert!(map.get("strict-transport-security").is_none());
        assert_eq!(map["cache-control"], "no-store");
        let mut login = HeaderMap::new();
        headers.apply(&mut login, "login", true, false);
        assert_eq!(login["content-security-policy"], "default-src 'self'");
        assert_eq!(login["strict-transport-security"], HSTS);
    }

    #[test]
    fn pages_run_their_own_origins_scripts_and_nothing_inline() {
        let headers = SecurityHeaders::from_config(&HeadersConfig::default(), &RateLimitConfig::default()).unwrap();
        let mut page = HeaderMap::new();
        headers.apply(&mut page, PAGE_CLASS, false, false);
        let csp = page["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains('*'), "{csp}");
        assert_eq!(page["x-content-type-options"], "nosniff");
        let mut posted = HeaderMap::new();
        headers.apply(&mut posted, FORM_SUBMIT_CLASS, false, false);
        assert_eq!(posted["content-security-policy"], csp, "a form post's answer can be the page again");
        let config = HeadersConfig {
            set: [("referrer-policy".to_owned(), "same-origin".to_owned())].into(),
            classes: [("page".to_owned(), [("permissions-policy".to_owned(), String::new())].into())].into(),
        };
        let headers = SecurityHeaders::from_config(&config, &RateLimitConfig::default()).unwrap();
        let mut page = HeaderMap::new();
        headers.apply(&mut page, PAGE_CLASS, false, false);
        assert_eq!(page["content-security-policy"], PAGE_CSP, "an operator's override keeps the built-in CSP");
        assert_eq!(page["referrer-policy"], "same-origin");
        assert!(page.get("permissions-policy").is_none());
    }

    #[test]
    fn bad_names_and_unknown_classes_are_refused() {
        let bad = HeadersConfig { set: [("bad header".to_owned(), "x".to_owned())].into(), ..Default::default() };
        let err = SecurityHeaders::from_config(&bad, &RateLimitConfig::default()).unwrap_err();
        assert_eq!(err.0, "headers.set.\"bad header\"");
        let unknown = HeadersConfig { classes: [("nope".to_owned(), Default::default())].into(), ..Default::default() };
        let err = SecurityHeaders::from_config(&unknown, &RateLimitConfig::default()).unwrap_err();
        assert!(err.1.contains("unknown class `nope`"), "{}", err.1);
    }
}
