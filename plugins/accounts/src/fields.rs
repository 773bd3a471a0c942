//! The fields the accounts plugin validates itself: addresses and names.

use plinth_kit::Error;

/// A body that carries only a token from an e-mailed link.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenOnly {
    pub token: String,
}

/// Longest address, in bytes once normalized.
const MAX_EMAIL_BYTES: usize = 254;

/// The one spelling of an address: trimmed, NFKC-normalized (composed
/// accents, fullwidth letters as ASCII) and lower-cased, so that spellings
/// a person cannot tell apart name one account. Refuses anything else that
/// could hide in an address: whitespace, control and invisible characters
/// (only ASCII symbols and letters or digits of any script are accepted).
pub fn email(field: &str, raw: &str) -> Result<String, Error> {
    use unicode_normalization::UnicodeNormalization;
    let invalid = |why: &str| Error::invalid(field, why);
    if raw.len() > 4 * MAX_EMAIL_BYTES {
        return Err(invalid("not an e-mail address (too long)"));
    }
    let email: String = raw.trim().nfkc().collect::<String>().to_lowercase().nfkc().collect();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(invalid("not an e-mail address (too long)"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("not an e-mail address"));
    };
    let local_ok = !local.is_empty()
        && local.chars().all(|c| c.is_alphanumeric() || (c.is_ascii_graphic() && !matches!(c, '@' | '"' | '\\')));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok { Ok(email) } else { Err(invalid("not an e-mail address")) }
}

/// A display name: 1 to 100 characters, no control characters.
pub fn display_name(raw: &str) -> Result<String, Error> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 || count > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid("display_name", "1 to 100 characters, no control characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_look_alike_are_one_address() {
        for (raw, normal) in [
            ("  Ada@Example.COM ", "ada@example.com"),
            ("jos\u{e9}@example.com", "jos\u{e9}@example.com"),
            ("jose\u{301}@example.com", "jos\u{e9}@example.com"),
            ("\u{ff41}da@example.com", "ada@example.com"),
            ("a.b+tag@sub.example.org", "a.b+tag@sub.example.org"),
        ] {
            assert_eq!(email("email", raw).map_err(|f| f.message).as_deref(), Ok(normal), "{raw:?}");
        }
    }

    #[test]
    fn hidden_or_malformed_addresses_are_refused() {
        let long = format!("{}@example.com", "a".repeat(2048));
        for raw in [
            "ada\u{200b}@example.com",
            "ada@exa\u{200d}mple.com",
            "ad\u{202e}a@example.com",
            "a da@example.com",
            "ada@example",
            "ada@-example.com",
            "ada@example..com",
            "@example.com",
            "ada",
            "a\"b@example.com",
            long.as_str(),
        ] {
            assert!(email("email", raw).is_err(), "{raw:?}");
        }
    }
}
