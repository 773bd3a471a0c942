//! Where clients fetch files: paths at this origin, or absolute URLs at a
//! separate media origin (the `origin` setting, such as
//! `https://media.example.com`, served by the same plinth). There a file a
//! page shows runs nothing at the app's origin and is sent none of its
//! cookies; so URLs of items whose purpose is not public carry a signed
//! link, valid `origin_link_ttl` seconds (default an hour), for whoever the
//! plugin gave the URL to.

use plinth_kit::{Error, Result, settings};

use crate::items::{self, Access, Item};
use crate::purposes::{Purpose, Readers};

/// A link's life in an item's URL when the setting says none.
const DEFAULT_ORIGIN_LINK_TTL: u64 = 3600;

/// How URLs of files are made.
pub struct Urls {
    /// `scheme://host[:port]`, when files are served from another origin.
    origin: Option<String>,
    /// Seconds a link in a URL lives.
    ttl: u64,
}

impl Urls {
    /// From the `origin` and `origin_link_ttl` settings; a malformed one is
    /// a 500 naming it.
    pub fn from_settings() -> Result<Self> {
        let invalid = |name: &str, why: String| Error::new(500, "invalid_settings", format!("setting `{name}`: {why}"));
        let origin = settings::get("origin")
            .map(|text| parse_origin(&text))
            .transpose()
            .map_err(|why| invalid("origin", why))?;
        let ttl = settings::parse_or("origin_link_ttl", DEFAULT_ORIGIN_LINK_TTL)?;
        if !(60..=items::MAX_LINK_TTL).contains(&ttl) {
            return Err(invalid("origin_link_ttl", format!("{ttl}: 60 to {} seconds", items::MAX_LINK_TTL)));
        }
        Ok(Self { origin, ttl })
    }

    /// The URL of an item's file, or of one of its variants, for a caller
    /// with `access`: one who came with a link gets that link again (never
    /// a new or longer-lived one); a reader gets a new link for exactly
    /// this file (a variant's opens that variant alone).
    pub fn file(&self, item: &Item, purpose: &Purpose, variant: Option<&str>, access: &Access) -> Result<String> {
        let path = format!("/v1/media/{}", items::link_scope(&item.id, variant));
        let Some(origin) = &self.origin else { return Ok(path) };
        if purpose.readers == Readers::Public {
            return Ok(format!("{origin}{path}"));
        }
        let token = match access {
            Access::Link(token) => token.clone(),
            Access::Reader => items::sign_link(&items::link_scope(&item.id, variant), self.ttl)?.0,
        };
        Ok(format!("{origin}{path}?token={token}"))
    }

    /// Where a signed link's path is fetched from.
    pub fn at_origin(&self, path: &str) -> String {
        match &self.origin {
            Some(origin) => format!("{origin}{path}"),
            None => path.to_owned(),
        }
    }
}

/// `scheme://host[:port]` of an `http` or `https` origin with nothing after it.
fn parse_origin(text: &str) -> std::result::Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !url.username().is_empty() || !bare {
        return Err(format!(
            "`{text}` is not an origin; write scheme://host[:port], such as https://media.example.com"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn an_origin_is_a_scheme_a_host_and_a_port_only() {
        assert_eq!(parse_origin("https://Media.Example.com").unwrap(), "https://media.example.com");
        assert_eq!(parse_origin("http://127.0.0.1:8081/").unwrap(), "http://127.0.0.1:8081");
        for bad in [
            "media.example.com",
            "https://m.example.com/files",
            "javascript:alert(1)",
            "https://u@m.example.com",
            "ftp://m.example.com",
            "https://m.example.com/?x",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
