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
use crate::routes::{Route, RouteTable};

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

    /// The rule that judges a request the router sent to `route`: the most
    /// specific rule matching the method and path among those nested with
    /// the route (covering it, or refining it to some of its paths). A rule
    /// written for another route never judges this one, even where the two
    /// routes' patterns both match the path: the policy and the router
    /// cannot read one request as two different routes.
    pub fn lookup(&self, route: &Route, method: &str, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.route.allows(method) && r.route.matches(path) && r.route.nested_with(route))
            .max_by_key(|r| r.route.specificity())
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

    /// Rules that judge no route in the table (none is nested with them): a
    /// typo, or a route that is gone. Harmless to serve, but worth a word.
    pub fn unused_rules<T>(&self, routes: &RouteTable<T>) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|rule| !routes.iter().any(|(route, _)| route.overlaps(&rule.route) && route.nested_with(&rule.route)))
            .collect()
    }

    /// Route × method × access, for `plinth policy check` and generated tests:
    /// each plugin route with each of its methods, plus every rule refining it.
    pub fn matrix<T>(&self, routes: &RouteTable<T>, owner: impl Fn(&T) -> String) -> Vec<MatrixRow> {
        let mut rows = Vec::new();
        for (route, target) in routes.iter() {
            for method in route_methods(route) {
                let mut paths = vec![route.example_path()];
                for rule in &self.rules {
                    if rule.route.allows(method) && rule.route.nested_with(route) && !route.covered_by(&rule.route) {
                        paths.push(rule.route.example_path());
                    }
                }
                for path in paths {
                    if route.match_path(&path).is_none() {
                        continue;
                    }
                    let rule = self.lookup(route, method, &path);
                    rows.push(MatrixRow {
                        plugin: owner(target),
                        method: method.to_owned(),
                        path,
                        access: rule.map(|r| r.access.clone()),
                        class: rule.map_or_else(|| DEFAULT_CLASS.to_owned(), |r| r.class.clone()),
                    });
                }
            }
        }
        rows.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
        rows.dedup_by(|a, b| a.path == b.path && a.method == b.method);
        rows
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
    /// Who may call it; `None` is a gap.
    pub access: Option<Access>,
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
        assert_eq!((&signup.access, signup.class.as_str()), (&Access::Public, "email"));
        let other = p.lookup(&accounts, "GET", "/v1/accounts/signup").unwrap();
        assert!(matches!(other.access, Access::Roles(_)));
        assert!(p.lookup(&Route::parse("/v2/**").unwrap(), "GET", "/v2/x").is_none());
    }

    #[test]
    fn a_rule_for_another_route_never_judges_a_request_both_match() {
        let p = policy(
            "[[route]]\nroute = \"/v1/media/**\"\nallow = \"authenticated\"\n\
             [[route]]\nroute = \"GET /v1/media/{id}/info\"\nallow = \"public\"\n\
             [[route]]\nroute = \"GET /v1/media/{id}\"\nallow = \"public\"\n\
             [[route]]\nroute = \"GET /v1/media/usage\"\nallow = [\"admin\"]\n",
        )
        .unwrap();
        let status = Route::parse("GET /v1/media/uploads/{id}").unwrap();
        let info = Route::parse("GET /v1/media/{id}/info").unwrap();
        // `/v1/media/uploads/info` matches both routes' patterns; the router
        // sends it to `uploads/{id}`, which the public info rule is not about.
        let rule = p.lookup(&status, "GET", "/v1/media/uploads/info").unwrap();
        assert_eq!(rule.access, Access::Authenticated);
        assert_eq!(p.lookup(&info, "GET", "/v1/media/abc/info").unwrap().access, Access::Public);
        // A rule refining a route to some of its paths still judges them.
        let item = Route::parse("GET /v1/media/{id}").unwrap();
        assert!(matches!(p.lookup(&item, "GET", "/v1/media/usage").unwrap().access, Access::Roles(_)));
        assert_eq!(p.lookup(&item, "GET", "/v1/media/abc").unwrap().access, Access::Public);

        let mut routes = RouteTable::default();
        routes.insert(status, "media").unwrap();
        let unused: Vec<String> = p.unused_rules(&routes).iter().map(|r| r.route.to_string()).collect();
        assert_eq!(unused, ["GET /v1/media/{id}/info", "GET /v1/media/{id}", "GET /v1/media/usage"]);
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
        let cells: Vec<(String, String)> =
            rows.iter().map(|r| (r.path.clone(), r.access.as_ref().unwrap().to_string())).collect();
        assert_eq!(
            cells,
            [("/v1/accounts".into(), "roles: admin".into()), ("/v1/accounts/signup".into(), "public".into())]
        );
    }
}
