//! Route patterns and the table that maps a request to what serves it: one
//! parser and one matcher, shared by the host's edge and the plugin kit, so
//! that the two can never read a route differently.
//!
//! A pattern is a path of `/`-separated segments: literals, `{name}`
//! parameters that match one segment, and an optional trailing `**` that
//! matches zero or more segments (so `/v1/x/**` matches `/v1/x` itself). A
//! route may be limited to some methods (`"GET,POST /v1/things/{id}"`).
//! Paths are matched as the host's canonical path: already percent-decoded
//! once, with no empty segment, so `/v1/x/` never matches `/v1/x` and a
//! parameter's value is the decoded segment.

use std::collections::BTreeSet;
use std::fmt;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// Matches any one non-empty segment and binds it to the name.
    Param(String),
    /// Matches the rest of the path, zero or more segments; only last.
    Rest,
}

/// A parsed route: the methods it accepts and its path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Methods this route accepts; `None` accepts every method.
    methods: Option<BTreeSet<String>>,
    /// The path pattern, segment by segment.
    segments: Vec<Segment>,
    /// The text it was parsed from, for messages.
    source: String,
    /// See [`Route::specificity`]; ranked once, compared on every lookup.
    rank: (Vec<u8>, bool),
    /// The leading literal segments as a path (`/v1/things` for
    /// `/v1/things/{id}`), which every path it matches starts with: a
    /// table's lookup turns most routes away with one comparison.
    prefix: String,
}

/// Why a route string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// The route text as written.
    pub route: String,
    /// What is wrong with it and what would be valid.
    pub reason: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid route `{}`: {}", self.route, self.reason)
    }
}

impl std::error::Error for RouteError {}

/// The methods a route may name.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Route {
    /// Parses `"[METHOD[,METHOD...] ]/path/{param}/**"`.
    pub fn parse(text: &str) -> Result<Self, RouteError> {
        let fail = |reason: &str| RouteError { route: text.to_owned(), reason: reason.to_owned() };
        let trimmed = text.trim();
        let (methods, path) = match trimmed.split_once(' ') {
            Some((methods, path)) => (Some(parse_methods(methods).map_err(|r| fail(&r))?), path.trim()),
            None => (None, trimmed),
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(fail("the path must start with `/`"));
        };
        let mut segments = Vec::new();
        let mut names = BTreeSet::new();
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(fail("`**` may only be the last segment"));
                }
                Segment::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(fail("a parameter is `{name}` with letters, digits or `_`"));
                }
                if !names.insert(name.to_owned()) {
                    return Err(fail(&format!("parameter `{name}` appears twice")));
                }
                Segment::Param(name.to_owned())
            } else if part.is_empty() {
                return Err(fail("empty segment (`//` or a trailing `/`)"));
            } else if part.contains(['{', '}', '*', '?', '#']) {
                return Err(fail(&format!(
                    "segment `{part}` mixes text with `{{`, `}}`, `*`, `?` or `#`; use a whole `{{name}}` or a final `**`"
                )));
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        let rank = rank(&segments, methods.is_some());
        let prefix = literal_prefix(&segments);
        Ok(Self { methods, segments, source: text.trim().to_owned(), rank, prefix })
    }

    /// The route as written (ends trimmed): what the host hands a plugin as
    /// `request.route`.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when this route accepts the method.
    pub fn allows(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// The methods this route accepts, `None` for all.
    pub fn methods(&self) -> Option<impl Iterator<Item = &str>> {
        self.methods.as_ref().map(|m| m.iter().map(String::as_str))
    }

    /// Matches a canonical path ([`crate::path`]) segment by segment, exactly:
    /// `/v1/hello/` is not `/v1/hello`. Returns the bound parameters (and
    /// `**` as `rest`).
    pub fn match_path(&self, path: &str) -> Option<Params> {
        let mut params = Vec::new();
        self.walk(path, |name, value| params.push((name.to_owned(), value.to_owned()))).then_some(params)
    }

    /// Whether [`Route::match_path`] would match, without binding anything.
    pub fn matches(&self, path: &str) -> bool {
        self.walk(path, |_, _| {})
    }

    /// Matches `path` segment by segment, handing each binding to `bind`.
    fn walk<'p>(&self, path: &'p str, mut bind: impl FnMut(&str, &'p str)) -> bool {
        if !path.starts_with(&self.prefix) {
            return false;
        }
        let Some(rest) = path.strip_prefix('/') else { return false };
        // What is left of the path after the segments taken so far; `None`
        // once it is used up (the root has no segment at all).
        let mut left = (!rest.is_empty()).then_some(rest);
        let mut next = || {
            let text = left?;
            let (segment, after) = text.split_once('/').map_or((text, None), |(s, after)| (s, Some(after)));
            left = after;
            Some(segment)
        };
        for segment in &self.segments {
            match segment {
                Segment::Rest => {
                    bind("rest", left.unwrap_or(""));
                    return true;
                }
                Segment::Literal(lit) => {
                    if next() != Some(lit.as_str()) {
                        return false;
                    }
                }
                Segment::Param(name) => match next() {
                    Some(value) if !value.is_empty() => bind(name, value),
                    _ => return false,
                },
            }
        }
        next().is_none()
    }

    /// True when every request this route matches, `other` matches too.
    pub fn covered_by(&self, other: &Route) -> bool {
        let methods_covered = match (&self.methods, &other.methods) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => mine.is_subset(theirs),
        };
        methods_covered && path_covered_by(&self.segments, &other.segments)
    }

    /// True when one route's paths hold all of the other's (methods
    /// aside): `/v1/x/**` and `/v1/x/{id}`, or `/v1/x/{id}` and
    /// `/v1/x/public`. Routes that merely overlap, such as `/v1/x/{id}/info`
    /// and `/v1/x/uploads/{id}`, are not nested: each has paths the other
    /// lacks, so they were written for different things.
    pub fn nested_with(&self, other: &Route) -> bool {
        path_covered_by(&self.segments, &other.segments) || path_covered_by(&other.segments, &self.segments)
    }

    /// Orders routes by how specific they are, most specific greatest: per
    /// segment a literal beats a parameter beats `**`, then a longer path
    /// wins, then a route with methods beats one for every method.
    pub fn specificity(&self) -> &(Vec<u8>, bool) {
        &self.rank
    }

    /// The path pattern without methods, such as `/v1/things/{id}`.
    pub fn path_pattern(&self) -> String {
        let parts: Vec<String> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Param(p) => format!("{{{p}}}"),
                Segment::Rest => "**".to_owned(),
            })
            .collect();
        format!("/{}", parts.join("/"))
    }

    /// A path this route matches, for generated tests and matrices: each
    /// parameter becomes `x`, `**` matches nothing.
    pub fn example_path(&self) -> String {
        let parts: Vec<&str> = self
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Param(_) => Some("x"),
                Segment::Rest => None,
            })
            .collect();
        format!("/{}", parts.join("/"))
    }

    /// True when the two routes would match some request alike: they
    /// overlap and neither is more specific, so neither could win it.
    pub fn ambiguous_with(&self, other: &Route) -> bool {
        self.overlaps(other) && self.specificity() == other.specificity()
    }

    /// True when some request (method and path) would match both routes.
    pub fn overlaps(&self, other: &Route) -> bool {
        let methods_meet = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => !a.is_disjoint(b),
            _ => true,
        };
        methods_meet && segments_overlap(&self.segments, &other.segments)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route's [`Route::specificity`].
fn rank(segments: &[Segment], has_methods: bool) -> (Vec<u8>, bool) {
    let mut rank: Vec<u8> = segments
        .iter()
        .map(|s| match s {
            Segment::Literal(_) => 3,
            Segment::Param(_) => 2,
            Segment::Rest => 1,
        })
        .collect();
    // A path that ends outranks `**` at that position, which also matches
    // longer paths.
    rank.push(if segments.last() == Some(&Segment::Rest) { 0 } else { 2 });
    (rank, has_methods)
}

/// A route's [`Route::prefix`](Route).
fn literal_prefix(segments: &[Segment]) -> String {
    let mut prefix = String::new();
    for segment in segments {
        let Segment::Literal(literal) = segment else { break };
        prefix.push('/');
        prefix.push_str(literal);
    }
    prefix
}

fn parse_methods(text: &str) -> Result<BTreeSet<String>, String> {
    let mut methods = BTreeSet::new();
    for method in text.split(',') {
        let method = method.trim();
        if !METHODS.contains(&method) {
            return Err(format!("unknown method `{method}`; valid: {}", METHODS.join(", ")));
        }
        methods.insert(method.to_owned());
    }
    Ok(methods)
}

fn path_covered_by(inner: &[Segment], outer: &[Segment]) -> bool {
    match (inner.first(), outer.first()) {
        (_, Some(Segment::Rest)) => true,
        (None, None) => true,
        (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if a == b => path_covered_by(&inner[1..], &outer[1..]),
        (Some(Segment::Literal(_) | Segment::Param(_)), Some(Segment::Param(_))) => {
            path_covered_by(&inner[1..], &outer[1..])
        }
        _ => false,
    }
}

fn segments_overlap(a: &[Segment], b: &[Segment]) -> bool {
    match (a.first(), b.first()) {
        (Some(Segment::Rest), _) | (_, Some(Segment::Rest)) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x != y => false,
        _ => segments_overlap(&a[1..], &b[1..]),
    }
}

/// A route's bound parameters, in path order.
pub type Params = Vec<(String, String)>;

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, T> {
    /// A route matched path and method.
    Found {
        /// The value the route was registered with.
        target: &'a T,
        /// The route that matched.
        route: &'a Route,
        /// Its parameters.
        params: Vec<(String, String)>,
    },
    /// A route matched the path but not the method; these methods would.
    MethodNotAllowed(Vec<String>),
    /// Nothing matched the path.
    NotFound,
}

/// Routes with the value each leads to; built once, read by every request.
/// Where routes overlap (only ever added with [`RouteTable::push`]), the
/// most specific one that allows the method wins.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// In registration order.
    entries: Vec<(Route, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route, refusing one that overlaps a route already present.
    /// The error carries the value of the route it overlaps.
    pub fn insert(&mut self, route: Route, target: T) -> Result<(), (&T, &Route)> {
        if let Some(i) = self.entries.iter().position(|(r, _)| r.overlaps(&route)) {
            let (existing, value) = &self.entries[i];
            return Err((value, existing));
        }
        self.entries.push((route, target));
        Ok(())
    }

    /// Adds a route that may overlap others; see [`Route::specificity`].
    pub fn push(&mut self, route: Route, target: T) {
        self.entries.push((route, target));
    }

    /// Finds the route for a request: of the routes that match the path and
    /// allow the method, the most specific.
    pub fn lookup(&self, method: &str, path: &str) -> Lookup<'_, T> {
        let mut allowed = Vec::new();
        let mut best: Option<&(Route, T)> = None;
        for entry @ (route, _) in &self.entries {
            if route.matches(path) {
                if !route.allows(method) {
                    allowed.extend(route.methods().into_iter().flatten().map(str::to_owned));
                } else if best.is_none_or(|(b, _)| route.specificity() > b.specificity()) {
                    best = Some(entry);
                }
            }
        }
        if let Some((route, target)) = best {
            let params = route.match_path(path).expect("it matched");
            return Lookup::Found { target, route, params };
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            allowed.sort();
            allowed.dedup();
            Lookup::MethodNotAllowed(allowed)
        }
    }

    /// Every route with its value.
    pub fn iter(&self) -> impl Iterator<Item = &(Route, T)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> Route {
        Route::parse(s).unwrap()
    }

    #[test]
    fn matches_literals_params_and_rest() {
        type Case<'a> = (&'a str, &'a str, Option<&'a [(&'a str, &'a str)]>);
        let cases: &[Case] = &[
            ("/v1/hello", "/v1/hello", Some(&[])),
            ("/v1/hello", "/v1/hello/", None),
            ("/v1/hello", "/v1//hello", None),
            ("/v1/things/{id}", "/v1/things//", None),
            ("/v1/hello", "/v1/hellox", None),
            ("/v1/things/{id}", "/v1/things/42", Some(&[("id", "42")])),
            ("/v1/things/{id}", "/v1/things", None),
            ("/v1/things/{id}", "/v1/things/42/x", None),
            ("/v1/me/**", "/v1/me", Some(&[("rest", "")])),
            ("/v1/me/**", "/v1/me/password", Some(&[("rest", "password")])),
            ("/v1/me/**", "/v1/me/a/b", Some(&[("rest", "a/b")])),
            ("/v1/me/**", "/v1/mex", None),
            ("/v1/me/**", "/v1/me/", Some(&[("rest", "")])),
            ("/v1/me/**", "/v1/me/a//b/", Some(&[("rest", "a//b/")])),
            ("/**", "/", Some(&[("rest", "")])),
            ("/", "/", Some(&[])),
            ("/", "/x", None),
            ("/v1/hello", "v1/hello", None),
            ("/v1/hello", "", None),
            // Literals after a parameter are not part of the prefix a
            // lookup compares first; a prefix that ends inside a segment
            // is not a match.
            ("/v1/things/{id}/tags", "/v1/things/7/tags", Some(&[("id", "7")])),
            ("/v1/things/{id}/tags", "/v1/things/7/tagsx", None),
            ("/v1/me/{id}", "/v1/mex/1", None),
            ("/{any}/hello", "/v2/hello", Some(&[("any", "v2")])),
        ];
        for (pattern, path, expected) in cases {
            let got = route(pattern).match_path(path);
            let expected = expected.map(|e| e.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
            assert_eq!(got, expected, "{pattern} against {path}");
            assert_eq!(route(pattern).matches(path), expected.is_some(), "{pattern} matches {path}");
        }
    }

    #[test]
    fn refuses_malformed_routes_with_a_reason() {
        for (text, reason) in [
            ("v1/hello", "must start with `/`"),
            ("/v1/**/x", "last segment"),
            ("/v1/{a}/{a}", "appears twice"),
            ("/v1//x", "empty segment"),
            ("/v1/x{id}", "mixes text"),
            ("FETCH /v1/x", "unknown method `FETCH`"),
            ("/v1/{}", "a parameter is"),
        ] {
            let err = Route::parse(text).unwrap_err();
            assert!(err.reason.contains(reason), "{text}: {}", err.reason);
        }
    }

    #[test]
    fn detects_overlaps() {
        let cases = [
            ("/v1/things/{id}", "/v1/things/new", true),
            ("/v1/things/{id}", "/v1/things/{key}", true),
            ("/v1/accounts/**", "/v1/accounts", true),
            ("/v1/accounts/**", "/v1/accounts/x/y", true),
            ("/v1/accounts/**", "/v1/accountsx", false),
            ("/v1/a", "/v1/b", false),
            ("/v1/a/{x}", "/v1/a", false),
            ("GET /v1/a", "POST /v1/a", false),
            ("GET,POST /v1/a", "POST /v1/a", true),
            ("/v1/a", "DELETE /v1/a", true),
        ];
        for (a, b, expected) in cases {
            assert_eq!(route(a).overlaps(&route(b)), expected, "{a} vs {b}");
            assert_eq!(route(b).overlaps(&route(a)), expected, "{b} vs {a}");
        }
    }

    #[test]
    fn coverage_and_specificity() {
        assert!(route("GET /v1/me").covered_by(&route("/v1/me/**")));
        assert!(route("/v1/me/**").covered_by(&route("/v1/**")));
        assert!(route("/v1/things/{id}").covered_by(&route("/v1/{kind}/{id}")));
        assert!(!route("/v1/me/**").covered_by(&route("/v1/me/{x}")));
        assert!(!route("/v1/me").covered_by(&route("GET /v1/me")));
        assert!(!route("/v1/{x}").covered_by(&route("/v1/me")));
        let mut ranked = ["/v1/**", "/v1/me/**", "/v1/me", "GET /v1/me", "/v1/{x}"].map(route);
        ranked.sort_by(|a, b| a.specificity().cmp(b.specificity()));
        let order: Vec<String> = ranked.iter().map(ToString::to_string).collect();
        assert_eq!(order, ["/v1/**", "/v1/{x}", "/v1/me/**", "/v1/me", "GET /v1/me"]);
        assert_eq!(route("/v1/things/{id}/**").example_path(), "/v1/things/x");
    }

    #[test]
    fn table_reports_method_not_allowed() {
        let mut table = RouteTable::default();
        table.insert(route("GET /v1/hello"), 1).unwrap();
        table.insert(route("POST /v1/hello/count"), 2).unwrap();
        assert!(matches!(table.lookup("GET", "/v1/hello"), Lookup::Found { target: 1, .. }));
        assert_eq!(table.lookup("DELETE", "/v1/hello"), Lookup::MethodNotAllowed(vec!["GET".into()]));
        assert_eq!(table.lookup("GET", "/v2"), Lookup::NotFound);
        let (owner, existing) = table.insert(route("/v1/hello"), 3).unwrap_err();
        assert_eq!((*owner, existing.to_string()), (1, "GET /v1/hello".to_owned()));
    }

    #[test]
    fn overlapping_routes_go_to_the_most_specific() {
        let mut table = RouteTable::default();
        table.push(route("DELETE /v1/sessions/{id}"), "one");
        table.push(route("DELETE /v1/sessions/current"), "current");
        table.push(route("GET /v1/sessions"), "list");
        table.push(route("/v1/**"), "rest");
        let found = |method, path| match table.lookup(method, path) {
            Lookup::Found { target, params, .. } => Some((*target, params)),
            _ => None,
        };
        assert_eq!(found("DELETE", "/v1/sessions/current"), Some(("current", vec![])));
        assert_eq!(found("DELETE", "/v1/sessions/abc"), Some(("one", vec![("id".into(), "abc".into())])));
        assert_eq!(found("GET", "/v1/sessions").map(|f| f.0), Some("list"));
        assert_eq!(found("POST", "/v1/sessions").map(|f| f.0), Some("rest"));
        assert_eq!(found("GET", "/v1").map(|f| f.0), Some("rest"));
        assert!(route("GET /a/{x}").ambiguous_with(&route("GET /a/{y}")));
        assert!(!route("DELETE /v1/sessions/{id}").ambiguous_with(&route("DELETE /v1/sessions/current")));
        assert!(!route("GET /a/{x}").ambiguous_with(&route("POST /a/{y}")));
    }

    #[test]
    fn nesting_is_holding_every_path_of_the_other_either_way() {
        let nested = |a: &str, b: &str| route(a).nested_with(&route(b));
        assert!(nested("/v1/media/**", "GET /v1/media/{id}"));
        assert!(nested("GET /v1/media/{id}", "/v1/media/**"));
        assert!(nested("GET /v1/things/{id}", "GET /v1/things/public"));
        assert!(nested("/v1/x/**", "/v1/x"), "`**` holds its own prefix");
        assert!(nested("GET /a/{x}", "POST /a/{y}"), "methods aside");
        assert!(!nested("GET /v1/media/{id}/info", "GET /v1/media/uploads/{id}"));
        assert!(route("GET /v1/media/{id}/info").overlaps(&route("GET /v1/media/uploads/{id}")));
        assert!(!nested("/v1/x/{id}", "/v1/x/{id}/more"));
        assert!(!nested("/v1/a/**", "/v1/b"));
    }
}
