//! What a file is, from its first bytes: the client's `Content-Type` and
//! file name are never believed. Markup is looked for first, because a
//! file a browser would render as a document (SVG, HTML, XML) must be
//! known as one whatever else its bytes resemble.

/// Bytes read from the start of a file to decide its type.
pub const HEAD_BYTES: u64 = 8192;

/// Types a browser may show inline from this origin: passive media and
/// plain text. Everything else is served as an attachment.
const INLINE: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "audio/x-wav",
    "audio/webm",
    "audio/aac",
    "audio/mp4",
    "audio/x-flac",
    "text/plain",
];

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// Its media type.
    pub media_type: String,
    /// A binary format (by its magic bytes) that also carries markup a
    /// browser would run: a polyglot, refused whatever the purpose.
    pub polyglot: bool,
}

/// The type of a file that starts with `head`.
pub fn sniff(head: &[u8]) -> Sniffed {
    let markup = markup(head);
    let magic =
        infer::get(head).map(|kind| kind.mime_type()).filter(|m| !m.starts_with("text/") && !m.ends_with("xml"));
    let (media_type, polyglot) = match (magic, markup) {
        (Some(magic), markup) => (magic, markup.is_some()),
        (None, Some(markup)) => (markup, false),
        (None, None) if is_text(head) => ("text/plain", false),
        (None, None) => ("application/octet-stream", false),
    };
    Sniffed { media_type: media_type.to_owned(), polyglot }
}

/// Whether a type may be shown inline (else it is an attachment).
pub fn inline(media_type: &str) -> bool {
    INLINE.contains(&media_type)
}

/// SVG, HTML or XML, recognised by their markup anywhere in the head
/// (after a byte-order mark, whitespace and comments a browser would skip
/// too, or further in).
fn markup(head: &[u8]) -> Option<&'static str> {
    let text: String = head.iter().map(|&b| if b.is_ascii() { b.to_ascii_lowercase() as char } else { ' ' }).collect();
    let start = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n', '\x0c']);
    if text.contains("<svg") {
        return Some("image/svg+xml");
    }
    // Elements that run script or navigate on their own (`onerror`,
    // `javascript:` links, refreshes, plugins, forms) besides the document's.
    const HTML: &[&str] = &[
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<script",
        "<iframe",
        "<frame",
        "<style",
        "<title",
        "<img",
        "<a href",
        "<meta",
        "<object",
        "<embed",
        "<form",
        "<link",
        "<base",
        "<video",
        "<audio",
        "<input",
        "<details",
        "<math",
    ];
    if HTML.iter().any(|tag| start.starts_with(tag) || text.contains(tag)) {
        return Some("text/html");
    }
    if start.starts_with("<?xml") {
        return Some("application/xml");
    }
    None
}

/// UTF-8 without control characters but whitespace (a cut last character
/// is allowed: the head may end inside one).
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).expect("checked"),
        Err(_) => return false,
    };
    !valid.is_empty() && valid.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media_type(head: &[u8]) -> String {
        let sniffed = sniff(head);
        assert!(!sniffed.polyglot, "{head:?}");
        sniffed.media_type
    }

    #[test]
    fn bytes_decide_not_names() {
        assert_eq!(media_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(media_type(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), "image/jpeg");
        assert_eq!(media_type(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(media_type(b"hello, world\n"), "text/plain");
        assert_eq!(media_type(b"\0\x01\x02\x03"), "application/octet-stream");
    }

    #[test]
    fn markup_is_found_whatever_it_hides_behind() {
        assert_eq!(media_type(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "image/svg+xml");
        assert_eq!(media_type(b"\xef\xbb\xbf  <?xml version='1.0'?><svg/>"), "image/svg+xml");
        assert_eq!(media_type(b"<!-- hi --><SVG onload=alert(1)>"), "image/svg+xml");
        assert_eq!(media_type(b"<!DOCTYPE html><p>x"), "text/html");
        assert_eq!(media_type(b"plain words <script>alert(1)</script>"), "text/html");
        assert_eq!(media_type(b"<?xml version='1.0'?><a/>"), "application/xml");
        // Script that is also a GIF: a GIF, never rendered as anything else.
        assert_eq!(media_type(b"GIF89a/*\x01\x00*/=alert(1)//"), "image/gif");
        // A GIF that carries markup a browser would run is a polyglot.
        let polyglot = sniff(b"GIF89a\x01\x00\x01\x00<svg onload=alert(1)>");
        assert_eq!((polyglot.media_type.as_str(), polyglot.polyglot), ("image/gif", true));
        let polyglot = sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR<html><script>alert(1)</script>");
        assert!(polyglot.polyglot);
        let mut late = vec![b'a'; 4000];
        late.extend_from_slice(b"<script>alert(1)</script>");
        assert_eq!(media_type(&late), "text/html", "markup past the first KiB is still found");
        for active in
            ["x <img src=x onerror=alert(1)>", "<a href=javascript:alert(1)>x</a>", "<META http-equiv=refresh>"]
        {
            assert_eq!(media_type(active.as_bytes()), "text/html", "{active}");
        }
        assert_eq!(media_type(b"if a <b and c > d"), "text/plain", "comparisons are not markup");
        assert!(!inline("image/svg+xml") && !inline("text/html") && !inline("application/pdf"));
        assert!(inline("image/png") && inline("video/mp4"));
    }
}
