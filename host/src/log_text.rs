//! Text a client or a plugin chose, as the log shows it. The log is read
//! on terminals and by tools that split lines, so a character that could
//! move the cursor, start a line or reorder what a reader sees is written
//! as its `\u{..}` escape instead: C0 and C1 controls (U+009B is a CSI on
//! terminals that honour 8-bit controls, U+0085 a line break to some
//! tools), line and paragraph separators, bidirectional and zero-width
//! format characters, and the other invisible ones that can hide text or
//! make two strings look alike (the soft hyphen, the Mongolian vowel
//! separator, variation selectors, tag characters). A request path is
//! logged before it is checked (hyper passes any byte at or above 0x80 in
//! a request target); a plugin's messages and output are its own to shape.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every character unsafe in a log line escaped; borrowed when
/// there is none.
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_in_log) {
        return text.into();
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
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}')
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn controls_separators_and_bidi_marks_are_escaped() {
        let cases = [
            ("/v1/hello", "/v1/hello"),
            ("/v1/caf\u{e9}", "/v1/caf\u{e9}"),
            ("/a\u{9b}31mred", "/a\\u{9b}31mred"),
            ("/a\u{85}fake line", "/a\\u{85}fake line"),
            ("/a\u{1b}[2J", "/a\\u{1b}[2J"),
            ("ok\r\n2026-01-01 INFO forged", "ok\\u{d}\\u{a}2026-01-01 INFO forged"),
            ("/a\u{2028}b\u{202e}c", "/a\\u{2028}b\\u{202e}c"),
            ("/a\u{200b}b\u{feff}", "/a\\u{200b}b\\u{feff}"),
            ("ad\u{ad}min", "ad\\u{ad}min"),
            ("a\u{180e}b\u{fe0f}c\u{e0041}\u{e007f}", "a\\u{180e}b\\u{fe0f}c\\u{e0041}\\u{e007f}"),
            ("x\u{e0100}", "x\\u{e0100}"),
        ];
        for (raw, logged) in cases {
            assert_eq!(escaped(raw), logged, "{raw:?}");
        }
    }
}
