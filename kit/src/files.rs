//! Files from clients: the names they give, and how a response names a
//! file it serves.

use crate::sniff;

/// Longest file name kept, in characters.
const MAX_FILENAME_CHARS: usize = 255;

/// Characters that change how text around them is shown (direction
/// overrides, zero-width marks): in a file name they disguise its
/// extension (`photo<U+202E>gnp.exe` shows as `photoexe.png`).
fn disguises(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// A file name as a client gave it, reduced to its last path segment
/// without control or disguising characters; none when nothing is left.
pub fn clean_filename(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|&c| !c.is_control() && !disguises(c)).take(MAX_FILENAME_CHARS).collect();
    let clean = clean.trim().to_owned();
    (!clean.is_empty() && clean != "." && clean != "..").then_some(clean)
}

/// `Content-Disposition` for a file of `media_type`: inline only for
/// passive types (see [`sniff::inline`]), with the file name as ASCII and
/// as UTF-8 (RFC 6266).
pub fn disposition(media_type: &str, filename: Option<&str>) -> String {
    let kind = if sniff::inline(media_type) { "inline" } else { "attachment" };
    let Some(name) = filename else { return kind.to_owned() };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_controls() {
        assert_eq!(clean_filename("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_filename("C:\\Users\\a\\photo.jpg").as_deref(), Some("photo.jpg"));
        assert_eq!(clean_filename("a\u{0}b\r\n.png").as_deref(), Some("ab.png"));
        assert_eq!(clean_filename("..").as_deref(), None);
        assert_eq!(clean_filename("dir/").as_deref(), None);
        assert_eq!(clean_filename("photo\u{202E}gnp.exe").as_deref(), Some("photognp.exe"));
        assert_eq!(clean_filename("a\u{200B}b\u{2066}.txt").as_deref(), Some("ab.txt"));
    }

    #[test]
    fn dispositions_quote_safely() {
        assert_eq!(
            disposition("image/svg+xml", Some("ré\"sumé.svg")),
            "attachment; filename=\"r__sum_.svg\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9.svg"
        );
        assert_eq!(disposition("image/png", None), "inline");
    }
}
