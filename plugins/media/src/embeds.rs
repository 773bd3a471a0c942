//! Video embeds from a registry of providers (the `embed_providers`
//! setting): a URL a user pastes becomes the provider's canonical embed URL
//! and the iframe attributes to show it with. The server never fetches the
//! URL and never passes on markup from a provider (no oEmbed HTML): it
//! only recognises a video id in a URL of a listed host and shape.
//!
//! ```json
//! { "youtube": { "hosts": ["www.youtube.com", "youtube.com", "youtu.be"],
//!                "paths": ["/watch?v={id}", "/embed/{id}", "/shorts/{id}", "/{id}"],
//!                "id": { "chars": "A-Za-z0-9_-", "min": 11, "max": 11 },
//!                "embed": "https://www.youtube-nocookie.com/embed/{id}",
//!                "allow": "encrypted-media; picture-in-picture; fullscreen" } }
//! ```
//!
//! A path shape is literal segments with one `{id}` segment, or a literal
//! path with `?name={id}`. Hosts match exactly (after the URL parser's
//! IDNA and case normalisation), so look-alikes do not; only `https` and
//! `http` URLs are read.

use std::collections::BTreeMap;

use plinth_kit::{Error, Request, Response, Result, settings};
use serde::Deserialize;
use serde_json::json;

/// The `sandbox` attribute every embed gets: scripts for the player, its
/// own origin for its storage, and nothing that reaches the page.
const SANDBOX: &str = "allow-scripts allow-same-origin allow-presentation";
/// Longest URL read.
const MAX_URL_BYTES: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdRule {
    chars: String,
    min: usize,
    max: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    hosts: Vec<String>,
    paths: Vec<String>,
    id: IdRule,
    embed: String,
    #[serde(default)]
    allow: String,
}

impl IdRule {
    /// Whether a character is in a class like `A-Za-z0-9_-` (ranges, then
    /// single characters; a `-` last is itself).
    fn admits(&self, c: char) -> bool {
        let class: Vec<char> = self.chars.chars().collect();
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == '-' {
                if (class[i]..=class[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if class[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    }

    fn check<'a>(&self, id: &'a str) -> Option<&'a str> {
        let count = id.chars().count();
        (count >= self.min && count <= self.max && id.chars().all(|c| self.admits(c))).then_some(id)
    }
}

impl Provider {
    /// The video id in a URL of this provider, if it has one.
    fn id_in(&self, url: &url::Url) -> Option<String> {
        let host = url.host_str()?;
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return None;
        }
        let path: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
        self.paths.iter().find_map(|shape| {
            let (shape_path, query) = match shape.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (shape.as_str(), None),
            };
            let shape_segments: Vec<&str> = shape_path.split('/').filter(|s| !s.is_empty()).collect();
            if shape_segments.len() != path.len() {
                return None;
            }
            let mut id = None;
            for (want, got) in shape_segments.iter().zip(&path) {
                match *want {
                    "{id}" => id = Some(*got),
                    literal if literal == *got => {}
                    _ => return None,
                }
            }
            if let Some(query) = query {
                let (name, placeholder) = query.split_once('=')?;
                if placeholder != "{id}" {
                    return None;
                }
                let value = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())?;
                return self.id.check(&value).map(str::to_owned);
            }
            self.id.check(id?).map(str::to_owned)
        })
    }
}

fn providers() -> Result<BTreeMap<String, Provider>> {
    let Some(text) = settings::get("embed_providers") else { return Ok(BTreeMap::new()) };
    let providers: BTreeMap<String, Provider> = serde_json::from_str(&text)
        .map_err(|e| Error::new(500, "invalid_settings", format!("setting `embed_providers`: {e}")))?;
    for (name, provider) in &providers {
        let origin = url::Url::parse(&provider.embed.replace("{id}", "x")).ok();
        if !provider.embed.contains("{id}") || origin.is_none_or(|o| o.scheme() != "https") {
            return Err(Error::new(
                500,
                "invalid_settings",
                format!("setting `embed_providers`: `{name}.embed` is an https URL with `{{id}}`"),
            ));
        }
    }
    Ok(providers)
}

/// The origin an embed URL template points to.
fn origin(template: &str) -> Option<String> {
    let url = url::Url::parse(&template.replace("{id}", "x")).ok()?;
    Some(url.origin().ascii_serialization())
}

/// `POST /v1/media/embeds {"url": ...}`: the provider and what to embed.
pub fn create(req: &Request) -> Result<Response> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewEmbed {
        url: String,
    }
    req.signed_in()?;
    let NewEmbed { url } = req.json()?;
    let refuse = |why: &str| Error::new(422, "embed_refused", why.to_owned()).at("url");
    if url.len() > MAX_URL_BYTES {
        return Err(refuse("the URL is longer than 2048 bytes"));
    }
    let parsed = url::Url::parse(url.trim()).map_err(|_| refuse("not an absolute URL"))?;
    if !matches!(parsed.scheme(), "https" | "http") || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("only plain http(s) links to a listed video provider are embedded"));
    }
    let providers = providers()?;
    let (name, provider, id) = providers
        .iter()
        .find_map(|(name, provider)| provider.id_in(&parsed).map(|id| (name, provider, id)))
        .ok_or_else(|| {
            let names = providers.keys().cloned().collect::<Vec<_>>().join(", ");
            refuse(&format!("not a video link of an enabled provider ({names})"))
        })?;
    let src = provider.embed.replace("{id}", &id);
    Ok(Response::json(
        200,
        &json!({
            "provider": name,
            "id": id,
            "embed_url": src,
            "iframe": {
                "src": src,
                "sandbox": SANDBOX,
                "allow": provider.allow,
                "referrerpolicy": "strict-origin-when-cross-origin",
                "loading": "lazy",
            },
        }),
    ))
}

/// `GET /v1/media/embeds/frame-src`: the CSP `frame-src` a page showing
/// embeds needs, from the enabled providers only.
pub fn frame_src(_req: &Request) -> Result<Response> {
    let mut origins: Vec<String> = providers()?.values().filter_map(|p| origin(&p.embed)).collect();
    origins.sort();
    origins.dedup();
    let directive =
        if origins.is_empty() { "frame-src 'none'".to_owned() } else { format!("frame-src {}", origins.join(" ")) };
    Ok(Response::json(200, &json!({ "origins": origins, "directive": directive })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn youtube() -> Provider {
        serde_json::from_str(
            r#"{"hosts": ["www.youtube.com", "youtube.com", "youtu.be"],
                "paths": ["/watch?v={id}", "/embed/{id}", "/{id}"],
                "id": {"chars": "A-Za-z0-9_-", "min": 11, "max": 11},
                "embed": "https://www.youtube-nocookie.com/embed/{id}"}"#,
        )
        .unwrap()
    }

    fn id(url: &str) -> Option<String> {
        youtube().id_in(&url::Url::parse(url).ok()?)
    }

    #[test]
    fn known_shapes_give_the_id() {
        assert_eq!(id("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42").as_deref(), Some("dQw4w9WgXcQ"));
        assert_eq!(id("https://YOUTUBE.com/embed/dQw4w9WgXcQ").as_deref(), Some("dQw4w9WgXcQ"));
        assert_eq!(id("https://youtu.be/dQw4w9WgXcQ").as_deref(), Some("dQw4w9WgXcQ"));
    }

    #[test]
    fn look_alikes_and_bad_ids_give_nothing() {
        for url in [
            "https://youtube.com.evil.example/watch?v=dQw4w9WgXcQ",
            "https://www.youtube.com.evil.example/embed/dQw4w9WgXcQ",
            "https://xn--yutube-wqf.com/watch?v=dQw4w9WgXcQ",
            "https://youtu.be/dQw4w9WgXcQ/extra",
            "https://youtu.be/short",
            "https://youtu.be/dQw4w9WgXc%22",
            "https://www.youtube.com/watch?v=dQw4w9WgX\"Q",
            "https://www.youtube.com/watch?x=dQw4w9WgXcQ",
        ] {
            assert_eq!(id(url), None, "{url}");
        }
    }
}
