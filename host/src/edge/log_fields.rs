//! What the request log shows of text a client chose. The log is read on
//! terminals and by tools that split lines, so a character that could
//! move the cursor, start a line or reorder what a reader sees is written
//! as its `\u{..}` escape instead: C0 and C1 controls (U+009B is a CSI on
//! terminals that honour 8-bit controls, U+0085 a line break to some
//! tools), line and paragraph separators, and bidirectional and
//! zero-width format characters. hyper passes any byte at or above 0x80
//! in a request target, and the path is logged before it is checked.

use std::borrow::Cow;
use std::fmt::Write;

/// A request path as the log shows it: tokens cut (see
/// [`crate::signing::redact_tokens`]) and unsafe characters escaped.
pub fn path(raw: &str) -> Cow<'_, str> {
    escape(crate::signing::redact_tokens(raw))
}

fn escape(text: Cow<'_, str>) -> Cow<'_, str> {
    if !text.chars().any(unsafe_in_log) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_in_log(c) {
            write!(escaped, "{}", c.escape_unicode()).expect("writing to a String");
        } else {
            escaped.push(c);
        }
    }
    escaped.into()
}

fn unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::path;

    #[test]
    fn controls_separators_and_bidi_marks_are_escaped() {
        let cases = [
            ("/v1/hello", "/v1/hello"),
            ("/v1/caf\u{e9}", "/v1/caf\u{e9}"),
            ("/a\u{9b}31mred", "/a\\u{9b}31mred"),
            ("/a\u{85}fake line", "/a\\u{85}fake line"),
            ("/a\u{1b}[2J", "/a\\u{1b}[2J"),
            ("/a\u{2028}b\u{202e}c", "/a\\u{2028}b\\u{202e}c"),
            ("/a\u{200b}b\u{feff}", "/a\\u{200b}b\\u{feff}"),
        ];
        for (raw, logged) in cases {
            assert_eq!(path(raw), logged, "{raw:?}");
        }
    }

    #[test]
    fn tokens_are_still_cut() {
        assert_eq!(path("/v1/state/links/v1.1.eyJrIjoieCJ9.c2VjcmV0dGFn"), "/v1/state/links/v1.…");
        assert_eq!(path("/v1/state/links/v1.1.eyJrIjoieCJ9.c2VjcmV0dGFn/\u{9b}"), "/v1/state/links/v1.…/\\u{9b}");
    }
}
