//! Route policies (`policies/routes.toml`): who may call each route, and the
//! route class that picks its rate limits and security headers.
//!
//! Rules may refine one another; the most specific matching rule applies
//! (see [`Route::specificity`]). Every plugin route must be covered, for
//! each of its methods, by a rule whose pattern covers the whole route, so a
//! request that reaches a plugin always has a rule: coverage is checked at
//! load and a gap refuses the config.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::routes::{Lookup, Route, RouteTable};

/// The role that may use the host's `/admin` routes.
pub const ADMIN_ROLE: &str = "admin";
/// What the host's own admin endpoints (`/admin/**`, `/metrics`) require.
pub static ADMIN_ONLY: LazyLock<Access> = LazyLock::new(|| Access::Roles(BTreeSet::from([ADMIN_ROLE.to_owned()])));
/// The class of routes without one.
pub const DEFAULT_CLASS: &str = "default";
/// Every method a route without methods accepts.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// True for classes whose rate-limit blocks are audited: everything but the
/// general `default` and `admin` traffic (login, password reset, e-mail...).
pub fn is_sensitive_class(class: &str) -> bool {
    class != DEFAULT_CLASS && class != "admin"
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Any signed-in principal.
    Authenticated,
    /// A signed-in principal with at least one of these roles.
    Roles(BTreeSet<String>),
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::Authenticated => f.write_str("authenticated"),
            Access::Roles(roles) => write!(f, "roles: {}", roles.iter().cloned().collect::<Vec<_>>().join(" | ")),
        }
    }
}

/// Why a request is refused by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Nobody is signed in and the route needs someone: 401.
    Unauthenticated,
    /// The principal lacks the role: 403.
    Forbidden,
}

/// The first of `accesses` that refuses a principal's roles (`None`:
/// anonymous), and why: a request goes on only if every one allows it.
pub fn refusal<'a>(
    accesses: impl IntoIterator<Item = &'a Access>,
    roles: Option<&[String]>,
) -> Option<(&'a Access, Denial)> {
    accesses.into_iter().find_map(|access| access.decide(roles).err().map(|denial| (access, denial)))
}

impl Access {
    /// Decides for a principal's roles (`None`: anonymous).
    pub fn decide(&self, roles: Option<&[String]>) -> Result<(), Denial> {
        match (self, roles) {
            (Access::Public, _) => Ok(()),
            (_, None) => Err(Denial::Unauthenticated),
            (Access::Authenticated, Some(_)) => Ok(()),
            (Access::Roles(needed), Some(held)) => {
                if held.iter().any(|r| needed.contains(r)) {
                    Ok(())
                } else {
                    Err(Denial::Forbidden)
                }
            }
        }
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The routes it applies to.
    pub route: Route,
    /// Who may call them.
    pub access: Access,
    /// Rate-limit and header class.
    pub class: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    route: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    route: String,
    allow: RawAccess,
    class: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAccess {
    Word(String),
    Roles(Vec<String>),
}

/// The rules of one policy file.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// In file order.
    rules: Vec<Rule>,
    /// The file, for messages.
    source: PathBuf,
}

impl Policy {
    /// Reads and parses a policy file; `None` when it does not exist.
    pub fn load(file: &Path) -> Result<Option<Self>, ConfigError> {
        match std::fs::read_to_string(file) {
            Ok(text) => Self::parse(&text, file).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read { file: file.to_owned(), source }),
        }
    }

    /// Parses policy text that came from `file`.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: RawPolicy = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        let invalid = |key: String, message: String| ConfigError::Invalid { file: file.to_owned(), key, message };
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.route.len());
        for (i, rule) in raw.route.into_iter().enumerate() {
            let route = Route::parse(&rule.route).map_err(|e| invalid(format!("route[{i}].route"), e.to_string()))?;
            let access = match rule.allow {
                RawAccess::Word(w) if w == "public" => Access::Public,
                RawAccess::Word(w) if w == "authenticated" => Access::Authenticated,
                RawAccess::Roles(roles) if !roles.is_empty() && roles.iter().all(|r| valid_role(r)) => {
                    Access::Roles(roles.into_iter().collect())
                }
                _ => {
                    return Err(invalid(
                        format!("route[{i}].allow"),
                        "expected \"public\", \"authenticated\" or a non-empty list of roles such as [\"admin\"]"
                            .into(),
                    ));
                }
            };
            if let Some(other) =
                rules.iter().find(|r| r.route.overlaps(&route) && r.route.specificity() == route.specificity())
            {
                return Err(invalid(
                    format!("route[{i}].route"),
                    format!("`{route}` overlaps `{}` and neither is more specific", other.route),
                ));
            }
            rules.push(Rule { route, access, class: rule.class.unwrap_or_else(|| DEFAULT_CLASS.to_owned()) });
        }
        Ok(Self { rules, source: file.to_owned() })
    }

    /// The file it came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Every rule.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules that judge a request the router sent to `route`: the most
    /// specific rule for its method and path, and the most specific of
    /// those nested with the route (covering it, or refining it to some of
    /// its paths). Almost always one rule; where the path also matches a
    /// more specific rule written for another route, both must allow the
    /// request, so such a rule can add a requirement but never lift the
    /// route's own. `None` when no rule is nested with the route (coverage
    /// at load rules that out): the request is refused.
    pub fn lookup(&self, route: &Route, method: &str, path: &str) -> Option<Judges<'_>> {
        let mut for_path: Option<&Rule> = None;
        let mut for_route: Option<&Rule> = None;
        for rule in self.rules.iter().filter(|r| r.route.allows(method) && r.route.matches(path)) {
            let more_specific =
                |best: Option<&Rule>| best.is_none_or(|b| rule.route.specificity() > b.route.specificity());
            if more_specific(for_path) {
                for_path = Some(rule);
            }
            if more_specific(for_route) && rule.route.nested_with(route) {
                for_route = Some(rule);
            }
        }
        let (rule, route_rule) = (for_path?, for_route?);
        Some(Judges { rule, route_rule: (!std::ptr::eq(rule, route_rule)).then_some(route_rule) })
    }

    /// Refuses a policy that leaves some plugin route without a rule.
    pub fn check_coverage<T>(&self, routes: &RouteTable<T>, owner: impl Fn(&T) -> String) -> Result<(), ConfigError> {
        for (route, target) in routes.iter() {
            for method in route_methods(route) {
                let single = Route::parse(&format!("{method} {}", route.path_pattern())).expect("valid");
                if !self.rules.iter().any(|r| single.covered_by(&r.route)) {
                    return Err(ConfigError::Invalid {
                        file: self.source.clone(),
                        key: "route".into(),
                        message: format!(
                            "no rule covers `{method}` on route `{route}` of plugin `{}`; add a [[route]] whose \
                             route covers it, with allow = \"public\", \"authenticated\" or a list of roles",
                            owner(target)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Rules that match no route in the table: a typo, or a route that
    /// is gone. Harmless to serve, but worth a word.
    pub fn unused_rules<T>(&self, routes: &RouteTable<T>) -> Vec<&Rule> {
        self.rules.iter().filter(|rule| !routes.iter().any(|(route, _)| route.overlaps(&rule.route))).collect()
    }

    /// Route × method × access, for `plinth policy check` and generated tests:
    /// each plugin route with each of its methods, plus every rule refining
    /// it; each path judged as the route the router sends it to.
    pub fn matrix<T>(&self, routes: &RouteTable<T>, owner: impl Fn(&T) -> String) -> Vec<MatrixRow> {
        let mut rows = Vec::new();
        for (route, _) in routes.iter() {
            for method in route_methods(route) {
                let mut paths = vec![route.example_path()];
                for rule in &self.rules {
                    if rule.route.allows(method) && rule.route.overlaps(route) && !route.covered_by(&rule.route) {
                        paths.push(rule.route.example_path());
                    }
                }
                for path in paths {
                    let Lookup::Found { route: reached, target, .. } = routes.lookup(method, &path) else { continue };
                    if route.match_path(&path).is_none() {
                        continue;
                    }
                    let judges = self.lookup(reached, method, &path);
                    rows.push(MatrixRow {
                        plugin: owner(target),
                        method: method.to_owned(),
                        path,
                        access: judges.map(|j| j.accesses().cloned().collect()).unwrap_or_default(),
                        class: judges.map_or_else(|| DEFAULT_CLASS.to_owned(), |j| j.rule.class.clone()),
                    });
                }
            }
        }
        rows.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        rows.dedup_by(|a, b| a.path == b.path && a.method == b.method);
        rows
    }
}

/// The rules that judge one request; see [`Policy::lookup`].
#[derive(Debug, Clone, Copy)]
pub struct Judges<'p> {
    /// The most specific rule for the method and path: its class applies,
    /// and its access must allow the request.
    pub rule: &'p Rule,
    /// The most specific rule nested with the route the request reaches,
    /// when that is another rule: its access must allow the request too.
    pub route_rule: Option<&'p Rule>,
}

impl<'p> Judges<'p> {
    /// Every access the request must satisfy, the path's rule first.
    pub fn accesses(&self) -> impl Iterator<Item = &'p Access> + use<'p> {
        std::iter::once(&self.rule.access).chain(self.route_rule.map(|r| &r.access))
    }
}

/// One line of the policy matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixRow {
    /// The plugin serving it.
    pub plugin: String,
    /// The method.
    pub method: String,
    /// A concrete path (parameters filled with `x`).
    pub path: String,
    /// What a caller must satisfy (every one); none is a gap.
    pub access: Vec<Access>,
    /// Its class.
    pub class: String,
}

/// True for a well-formed role name.
pub fn valid_role(role: &str) -> bool {
    !role.is_empty() && role.len() <= 64 && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn route_methods(route: &Route) -> Vec<&'static str> {
    match route.methods() {
        Some(methods) => {
            let listed: Vec<&str> = methods.collect();
            METHODS.into_iter().filter(|m| listed.contains(m)).collect()
        }
        None => METHODS.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Result<Policy, String> {
        Policy::parse(text, Path::new("routes.toml")).map_err(|e| e.to_string())
    }

    const RULES: &str = r#"
        [[route]]
        route = "/v1/accounts/**"
        allow = ["admin"]

        [[route]]
        route = "POST /v1/accounts/signup"
        allow = "public"
        class = "email"

        [[route]]
        route = "/v1/me/**"
        allow = "authenticated"
    "#;

    #[test]
    fn the_most_specific_rule_applies() {
        let p = policy(RULES).unwrap();
        let accounts = Route::parse("/v1/accounts/**").unwrap();
        let signup = p.lookup(&accounts, "POST", "/v1/accounts/signup").unwrap();
        assert_eq!((&signup.rule.access, signup.rule.class.as_str()), (&Access::Public, "email"));
        assert!(signup.route_rule.is_none(), "one rule judges it");
        let other = p.lookup(&accounts, "GET", "/v1/accounts/signup").unwrap();
        assert!(matches!(other.rule.access, Access::Roles(_)));
        assert!(p.lookup(&Route::parse("/v2/**").unwrap(), "GET", "/v2/x").is_none());
    }

    #[test]
    fn a_rule_for_another_route_adds_to_the_routes_own_and_never_lifts_it() {
        let p = policy(
            "[[route]]\nroute = \"/v1/media/**\"\nallow = \"authenticated\"\n\
             [[route]]\nroute = \"GET /v1/media/{id}/info\"\nallow = \"public\"\n\
             [[route]]\nroute = \"GET /v1/media/{id}\"\nallow = \"public\"\n\
             [[route]]\nroute = \"GET /v1/media/usage\"\nallow = [\"admin\"]\n\
             [[route]]\nroute = \"/v1/docs/**\"\nallow = \"public\"\n\
             [[route]]\nroute = \"/v1/docs/internal/**\"\nallow = [\"staff\"]\n",
        )
        .unwrap();
        let accesses = |route: &str, path: &str| -> Vec<String> {
            let judges = p.lookup(&Route::parse(route).unwrap(), "GET", path).unwrap();
            judges.accesses().map(ToString::to_string).collect()
        };
        // `/v1/media/uploads/info` matches both routes' patterns; the router
        // sends it to `uploads/{id}`, whose own rule must allow it too.
        assert_eq!(accesses("GET /v1/media/uploads/{id}", "/v1/media/uploads/info"), ["public", "authenticated"]);
        assert_eq!(accesses("GET /v1/media/{id}/info", "/v1/media/abc/info"), ["public"]);
        // A rule refining a route to some of its paths judges them alone.
        assert_eq!(accesses("GET /v1/media/{id}", "/v1/media/usage"), ["roles: admin"]);
        assert_eq!(accesses("GET /v1/media/{id}", "/v1/media/abc"), ["public"]);
        // A stricter rule for another route's paths still applies.
        assert_eq!(accesses("GET /v1/docs/{id}", "/v1/docs/internal"), ["roles: staff", "public"]);
        let uploads = Route::parse("GET /v1/media/uploads/{id}").unwrap();
        let judges = p.lookup(&uploads, "GET", "/v1/media/uploads/info").unwrap();
        let refused = refusal(judges.accesses(), None).map(|(access, denial)| (access.to_string(), denial));
        assert_eq!(
            refused,
            Some(("authenticated".to_owned(), Denial::Unauthenticated)),
            "anonymous callers are refused"
        );
        assert_eq!(refusal(judges.accesses(), Some(&[])), None, "signed-in callers are let through");
    }

    #[test]
    fn access_decisions() {
        let admin = Access::Roles(["admin".to_owned()].into());
        let (user, boss) = (vec!["user".to_owned()], vec!["admin".to_owned()]);
        assert_eq!(admin.decide(None), Err(Denial::Unauthenticated));
        assert_eq!(admin.decide(Some(&user)), Err(Denial::Forbidden));
        assert_eq!(admin.decide(Some(&boss)), Ok(()));
        assert_eq!(Access::Authenticated.decide(Some(&[])), Ok(()));
        assert_eq!(Access::Public.decide(None), Ok(()));
    }

    #[test]
    fn gaps_and_bad_rules_are_refused() {
        let p = policy(RULES).unwrap();
        let mut routes = RouteTable::default();
        routes.insert(Route::parse("/v1/me/**").unwrap(), "accounts").unwrap();
        routes.insert(Route::parse("GET /v1/hello").unwrap(), "hello").unwrap();
        let err = p.check_coverage(&routes, |n| n.to_string()).unwrap_err().to_string();
        assert!(err.contains("`GET` on route `GET /v1/hello` of plugin `hello`"), "{err}");

        let err = policy("[[route]]\nroute = \"/a\"\nallow = \"everyone\"\n").unwrap_err();
        assert!(err.contains("route[0].allow") && err.contains("\"authenticated\""), "{err}");
        let err = policy(
            "[[route]]\nroute = \"/a/{x}\"\nallow = \"public\"\n[[route]]\nroute = \"/a/{y}\"\nallow = \"public\"\n",
        )
        .unwrap_err();
        assert!(err.contains("route[1].route") && err.contains("neither is more specific"), "{err}");
        let err = policy("[[route]]\nroute = \"/a\"\nallow = \"public\"\nwho = 1\n").unwrap_err();
        assert!(err.contains("who"), "{err}");
    }

    #[test]
    fn matrix_lists_refinements() {
        let p = policy(RULES).unwrap();
        let mut routes = RouteTable::default();
        routes.insert(Route::parse("POST /v1/accounts/**").unwrap(), "accounts").unwrap();
        let rows = p.matrix(&routes, |n| n.to_string());
        let cells: Vec<(String, String)> = rows.iter().map(|r| (r.path.clone(), r.access[0].to_string())).collect();
        assert_eq!(
            cells,
            [("/v1/accounts".into(), "roles: admin".into()), ("/v1/accounts/signup".into(), "public".into())]
        );
    }
}
