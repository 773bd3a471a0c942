//! Credentials at the edge: the session token from the cookie or a bearer
//! header, the session cookie itself, and CSRF checks.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The session cookie's name; `__Host-` binds it to this origin, `Secure`, `Path=/`.
pub const COOKIE_NAME: &str = "__Host-plinth_session";
/// The cookie name under `dev_insecure_cookies` (plain-HTTP localhost).
pub const DEV_COOKIE_NAME: &str = "plinth_session";
/// The cookie binding a sign-in through a provider to its browser.
pub const FLOW_COOKIE_NAME: &str = "__Host-plinth_oidc";
/// Its name with `sessions.dev_insecure_cookies` over plain HTTP.
pub const DEV_FLOW_COOKIE_NAME: &str = "plinth_oidc";
/// The request header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How a token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// In the session cookie: a browser; CSRF rules apply.
    Cookie,
    /// In `Authorization: Bearer`: an API client; exempt from CSRF.
    Bearer,
}

/// Cookie attributes for this deployment.
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    /// Drop `Secure` and `__Host-` (development on plain HTTP only).
    pub insecure: bool,
}

impl CookiePolicy {
    /// The policy a config asks for: `dev_insecure_cookies` applies to
    /// plain HTTP only, never over TLS.
    pub fn for_config(config: &crate::Config) -> Self {
        Self { insecure: config.sessions.dev_insecure_cookies && config.server.tls.is_none() }
    }

    /// The cookie name in use.
    pub fn name(self) -> &'static str {
        if self.insecure { DEV_COOKIE_NAME } else { COOKIE_NAME }
    }

    /// `Set-Cookie` carrying a token for `max_age` seconds.
    pub fn issue(self, token: &str, max_age: u64) -> HeaderValue {
        self.header(self.name(), token, max_age)
    }

    /// `Set-Cookie` that removes the cookie.
    pub fn clear(self) -> HeaderValue {
        self.header(self.name(), "", 0)
    }

    /// The cookie that binds a sign-in through a provider to the browser
    /// that started it.
    pub fn flow_name(self) -> &'static str {
        if self.insecure { DEV_FLOW_COOKIE_NAME } else { FLOW_COOKIE_NAME }
    }

    /// `Set-Cookie` for a sign-in flow's binding (`""`, 0: removed).
    pub fn flow(self, value: &str, max_age: u64) -> HeaderValue {
        self.header(self.flow_name(), value, max_age)
    }

    /// The sign-in flow's binding a request carries.
    pub fn flow_binding(self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, self.flow_name())
    }

    fn header(self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.insecure { "" } else { "; Secure" };
        HeaderValue::try_from(format!("{name}={value}; Path=/{secure}; HttpOnly; SameSite=Lax; Max-Age={max_age}"))
            .expect("cookie values are hex")
    }

    /// The token a request presents, if any; a bearer header wins.
    pub fn token(self, headers: &HeaderMap) -> Option<(String, Presented)> {
        if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            let (scheme, token) = auth.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| (token.trim().to_owned(), Presented::Bearer));
        }
        cookie(headers, self.name()).map(|value| (value, Presented::Cookie))
    }
}

/// The first cookie named `name` in a request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.to_owned())
}

/// True for methods that may change state.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Where a request says it comes from, for CSRF checks.
#[derive(Debug, Clone, Copy)]
pub struct Origins<'a> {
    /// The host the request was sent to (`Host`, or HTTP/2's `:authority`).
    pub host: Option<&'a str>,
    /// Origins (`https://app.example.com`) allowed besides the request's
    /// own host; from `sessions.allowed_origins`.
    pub allowed: &'a [String],
}

impl Origins<'_> {
    /// True when a browser's `Origin` names a site other than this one and
    /// the allowed ones (`null`, from sandboxed or privacy-redirected
    /// pages, counts as foreign).
    fn foreign(&self, origin: &str) -> bool {
        if self.allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
            return false;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return true;
        };
        let default_port = if scheme.eq_ignore_ascii_case("https") { ":443" } else { ":80" };
        let origin_authority = authority.strip_suffix(default_port).unwrap_or(authority);
        self.host.is_none_or(|host| {
            let host = host.strip_suffix(default_port).unwrap_or(host);
            !host.eq_ignore_ascii_case(origin_authority)
        })
    }
}

/// CSRF rules for a state-changing request: a browser saying it is
/// cross-site, or sending an `Origin` that is neither this host nor an
/// allowed origin, is refused whether signed in or not (a login form
/// posted from elsewhere included); a cookie-authenticated request must
/// also echo the session's CSRF token, in `X-CSRF-Token`, or, for an HTML
/// form's POST (`application/x-www-form-urlencoded`, which cannot carry a
/// header), in its [`CSRF_FIELD`]: then the token to find there is
/// returned, for the caller to check once the body is read. Bearer clients
/// are exempt.
pub fn check_csrf(
    method: &Method,
    headers: &HeaderMap,
    origins: Origins<'_>,
    presented: Option<Presented>,
    session_csrf: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if !is_unsafe(method) || presented == Some(Presented::Bearer) {
        return Ok(None);
    }
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_cross_site",
            "cross-site requests may not change state",
        ));
    }
    // Under `Referrer-Policy: no-referrer` (the default headers) a browser
    // sends `Origin: null` with a page's own form post; its
    // `Sec-Fetch-Site: same-origin`, which no page can forge, vouches for it.
    let same_origin_fetch =
        headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin"));
    if let Some(origin) = headers.get(header::ORIGIN)
        && origin.to_str().map_or(true, |origin| origins.foreign(origin) && !(origin == "null" && same_origin_fetch))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_cross_origin",
            "requests from another origin may not change state; list it in sessions.allowed_origins",
        ));
    }
    if let Some(expected) = session_csrf {
        let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes);
        let html_form = method == Method::POST
            && headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        match sent {
            None if html_form => return Ok(Some(expected.to_owned())),
            Some(sent) if bool::from(sent.ct_eq(expected.as_bytes())) => {}
            _ => return Err(csrf_token_invalid(method)),
        }
    }
    Ok(None)
}

/// The field of an HTML form that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "_csrf";

/// Whether the urlencoded `body` carries `expected` in its [`CSRF_FIELD`].
pub fn form_carries_csrf(body: &[u8], expected: &str) -> bool {
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == CSRF_FIELD)
        .is_some_and(|(_, sent)| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())))
}

/// 403 `csrf_token_invalid`.
pub fn csrf_token_invalid(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        format!(
            "a cookie-authenticated {method} needs the session's CSRF token in `X-CSRF-Token` \
             (or, for an HTML form, its `{CSRF_FIELD}` field)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::test_headers as headers;

    #[test]
    fn cookie_attributes() {
        let strict = CookiePolicy { insecure: false }.issue("abc", 60);
        assert_eq!(strict, "__Host-plinth_session=abc; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60");
        let dev = CookiePolicy { insecure: true }.clear();
        assert_eq!(dev, "plinth_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    }

    #[test]
    fn tokens_from_cookie_or_bearer() {
        let policy = CookiePolicy { insecure: false };
        let cookie = headers(&[("cookie", "a=1; __Host-plinth_session=tok; b=2")]);
        assert_eq!(policy.token(&cookie), Some(("tok".into(), Presented::Cookie)));
        let bearer = headers(&[("authorization", "Bearer xyz"), ("cookie", "__Host-plinth_session=tok")]);
        assert_eq!(policy.token(&bearer), Some(("xyz".into(), Presented::Bearer)));
        assert_eq!(policy.token(&headers(&[("authorization", "Basic xyz")])), None);
    }

    #[test]
    fn csrf_rules() {
        let post = Method::POST;
        let here = Origins { host: Some("app.example"), allowed: &[] };
        let ok = headers(&[("x-csrf-token", "t1")]);
        assert!(check_csrf(&post, &ok, here, Some(Presented::Cookie), Some("t1")).is_ok());
        let wrong = headers(&[("x-csrf-token", "t2")]);
        assert_eq!(
            check_csrf(&post, &wrong, here, Some(Presented::Cookie), Some("t1")).unwrap_err().code,
            "csrf_token_invalid"
        );
        assert!(check_csrf(&post, &HeaderMap::new(), here, Some(Presented::Cookie), Some("t1")).is_err());
        assert!(check_csrf(&post, &HeaderMap::new(), here, Some(Presented::Bearer), Some("t1")).is_ok());
        assert!(check_csrf(&Method::GET, &HeaderMap::new(), here, Some(Presented::Cookie), Some("t1")).is_ok());
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(check_csrf(&post, &cross, here, None, None).unwrap_err().code, "csrf_cross_site");
    }

    #[test]
    fn a_foreign_origin_may_not_change_state_even_signed_out() {
        let post = Method::POST;
        let allowed = ["https://front.example".to_owned()];
        let origins = Origins { host: Some("api.example:443"), allowed: &allowed };
        for (origin, foreign) in [
            ("https://api.example", false),
            ("https://API.example:443", false),
            ("https://front.example", false),
            ("https://evil.example", true),
            ("http://api.example:8080", true),
            ("null", true),
        ] {
            let sent = headers(&[("origin", origin)]);
            let verdict = check_csrf(&post, &sent, origins, None, None);
            assert_eq!(verdict.is_err(), foreign, "{origin}");
            if foreign {
                assert_eq!(verdict.unwrap_err().code, "csrf_cross_origin");
            }
        }
        let own_page = headers(&[("origin", "null"), ("sec-fetch-site", "same-origin")]);
        assert!(check_csrf(&post, &own_page, origins, None, None).is_ok(), "a page's own post under no-referrer");
        let sandboxed = headers(&[("origin", "null"), ("sec-fetch-site", "cross-site")]);
        assert!(check_csrf(&post, &sandboxed, origins, None, None).is_err(), "a sandboxed frame elsewhere");
        let unvouched = headers(&[("origin", "null")]);
        assert!(check_csrf(&post, &unvouched, origins, None, None).is_err(), "null without fetch metadata");
        let evil = headers(&[("origin", "https://evil.example")]);
        assert!(check_csrf(&post, &evil, origins, Some(Presented::Bearer), None).is_ok(), "API clients are exempt");
        assert!(check_csrf(&Method::GET, &evil, origins, None, None).is_ok(), "reads are not CSRF");
    }

    #[test]
    fn an_html_form_carries_the_token_in_its_body_and_nothing_else_does() {
        let here = Origins { host: Some("app.example"), allowed: &[] };
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let deferred = check_csrf(&Method::POST, &form, here, Some(Presented::Cookie), Some("t1"));
        assert_eq!(deferred.unwrap(), Some("t1".to_owned()), "checked once the body is read");
        assert!(form_carries_csrf(b"name=Ada&_csrf=t1", "t1"));
        assert!(!form_carries_csrf(b"name=Ada&_csrf=t2", "t1"));
        assert!(!form_carries_csrf(b"name=Ada", "t1"));
        let json = headers(&[("content-type", "application/json")]);
        assert!(check_csrf(&Method::POST, &json, here, Some(Presented::Cookie), Some("t1")).is_err());
        assert!(check_csrf(&Method::PUT, &form, here, Some(Presented::Cookie), Some("t1")).is_err(), "forms POST only");
        let cross =
            headers(&[("content-type", "application/x-www-form-urlencoded"), ("origin", "https://evil.example")]);
        assert!(check_csrf(&Method::POST, &cross, here, Some(Presented::Cookie), Some("t1")).is_err());
    }
}
