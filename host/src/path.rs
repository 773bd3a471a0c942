//! The one reading of a request path. The edge decides it once, before
//! routing, and every later decision (route, policy rule, rate-limit class,
//! the plugin's own dispatch) sees only this reading, so no two parsers can
//! disagree about which resource a request names.
//!
//! A path is accepted only in its canonical spelling: it starts with `/`,
//! percent-encoding is decoded once (into UTF-8), and the decoded path has
//! no empty segment (no `//`, no trailing `/`), no `.` or `..` segment, and
//! none of `/ \ % ? #` or control characters inside a segment. Anything else
//! is refused rather than repaired, naming the canonical spelling where one
//! exists: a client that means `/v1/me` writes `/v1/me`.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Longest path accepted, in bytes as sent.
pub const MAX_PATH_BYTES: usize = 2048;

/// A request path in its one accepted spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath(String);

impl CanonicalPath {
    /// The decoded path, such as `/v1/accounts/invite`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a path was refused; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathRefusal(String);

impl PathRefusal {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Decides the canonical reading of `raw` (the path as sent, without the
/// query), or refuses it.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathRefusal> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathRefusal::new(format!("the path is longer than {MAX_PATH_BYTES} bytes")));
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathRefusal::new("the path must start with `/`"));
    };
    if rest.is_empty() {
        return Ok(CanonicalPath("/".to_owned()));
    }
    let mut canonical = String::with_capacity(raw.len());
    let mut empty_segments = false;
    for segment in rest.split('/') {
        let decoded = decode(segment)?;
        if decoded.is_empty() {
            empty_segments = true;
            continue;
        }
        if decoded == "." || decoded == ".." {
            return Err(PathRefusal::new("`.` and `..` segments are not accepted, encoded or not"));
        }
        if let Some(c) = decoded.chars().find(|c| c.is_control() || matches!(c, '/' | '\\' | '%' | '?' | '#')) {
            return Err(PathRefusal::new(format!("a path segment may not contain {}, encoded or not", describe(c))));
        }
        canonical.push('/');
        canonical.push_str(segment);
    }
    if empty_segments {
        let hint = if canonical.is_empty() { "/" } else { canonical.as_str() };
        return Err(PathRefusal::new(format!("empty segments (`//`, a trailing `/`) are not accepted; use `{hint}`")));
    }
    match decode(&canonical)? {
        Cow::Borrowed(_) => Ok(CanonicalPath(canonical)),
        Cow::Owned(decoded) => Ok(CanonicalPath(decoded)),
    }
}

/// One segment, percent-decoded into UTF-8.
fn decode(segment: &str) -> Result<Cow<'_, str>, PathRefusal> {
    let bytes = segment.as_bytes();
    for (i, _) in segment.match_indices('%') {
        let well_formed = bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if !well_formed {
            return Err(PathRefusal::new("a `%` must be followed by two hexadecimal digits"));
        }
    }
    percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| PathRefusal::new("the path's percent-encoded bytes are not UTF-8"))
}

fn describe(c: char) -> String {
    if c.is_control() { format!("the control character U+{:04X}", u32::from(c)) } else { format!("`{c}`") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_unchanged() {
        for path in ["/", "/v1/hello", "/v1/things/42", "/v1/me/email", "/v1/média", "/a-b_c~d.e"] {
            assert_eq!(canonicalize(path).unwrap().as_str(), path);
        }
    }

    #[test]
    fn encoded_characters_are_decoded_once() {
        assert_eq!(canonicalize("/v1/m%C3%A9dia").unwrap().as_str(), "/v1/média");
        assert_eq!(canonicalize("/v1/a%20b").unwrap().as_str(), "/v1/a b");
        assert_eq!(canonicalize("/v1/accounts/%69nvite").unwrap().as_str(), "/v1/accounts/invite");
        assert_eq!(
            canonicalize("/v1/a%252F").unwrap_err().to_string(),
            "a path segment may not contain `%`, encoded or not"
        );
    }

    #[test]
    fn other_spellings_are_refused() {
        type Case<'a> = (&'a str, &'a str);
        let cases: &[Case] = &[
            ("/v1/accounts/invite//", "use `/v1/accounts/invite`"),
            ("/v1/accounts/invite/", "use `/v1/accounts/invite`"),
            ("//v1/accounts/invite", "use `/v1/accounts/invite`"),
            ("/v1//accounts/invite", "empty segments"),
            ("/v1/accounts/./invite", "`.` and `..`"),
            ("/v1/me/../accounts/invite", "`.` and `..`"),
            ("/v1/me/%2e%2e/accounts/invite", "`.` and `..`"),
            ("/v1/accounts%2finvite", "`/`"),
            ("/v1/accounts%2Finvite", "`/`"),
            ("/v1/accounts%5cinvite", "`\\`"),
            ("/v1/accounts\\invite", "`\\`"),
            ("/v1/a%2525", "`%`"),
            ("/v1/a%00", "U+0000"),
            ("/v1/a%0d%0a", "U+000D"),
            ("/v1/a%3f", "`?`"),
            ("/v1/a%23", "`#`"),
            ("/v1/a%", "two hexadecimal digits"),
            ("/v1/a%zz", "two hexadecimal digits"),
            ("/v1/%ff", "not UTF-8"),
            ("v1/hello", "start with `/`"),
            ("*", "start with `/`"),
        ];
        for (path, reason) in cases {
            let refusal = canonicalize(path).expect_err(path).to_string();
            assert!(refusal.contains(reason), "{path}: {refusal}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert!(canonicalize(&long).unwrap_err().to_string().contains("longer than"));
    }

    #[test]
    fn a_refused_spelling_never_names_a_different_resource_as_canonical() {
        let refusal = canonicalize("/v1/me/../accounts/invite").unwrap_err().to_string();
        assert!(!refusal.contains("use"), "{refusal}");
        assert!(canonicalize("//").unwrap_err().to_string().ends_with("use `/`"));
    }
}
