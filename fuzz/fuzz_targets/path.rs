//! The canonicalizer, and the route table and policy that consume its
//! output: a path is either refused or has one spelling that reads back as
//! itself, and every plugin route it reaches has a policy rule.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use plinth::path::canonicalize;
use plinth::policy::Policy;
use plinth::routes::{Lookup, Route, RouteTable};

/// The example deployment's routes and policy.
static EXAMPLE: LazyLock<(RouteTable<usize>, Policy)> = LazyLock::new(|| {
    let config: toml::Value = toml::from_str(include_str!("../../examples/plinth.toml")).unwrap();
    let mut table = RouteTable::default();
    for (i, plugin) in config["plugins"].as_array().unwrap().iter().enumerate() {
        for route in plugin["routes"].as_array().unwrap() {
            table.insert(Route::parse(route.as_str().unwrap()).unwrap(), i).unwrap();
        }
    }
    let policy = Policy::parse(include_str!("../../policies/routes.toml"), Path::new("routes.toml")).unwrap();
    (table, policy)
});

const METHODS: [&str; 5] = ["GET", "POST", "PATCH", "DELETE", "PUT"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, raw)) = data.split_first() else { return };
    let Ok(raw) = std::str::from_utf8(raw) else { return };
    let Ok(path) = canonicalize(raw) else { return };
    let path = path.as_str();
    assert!(path.starts_with('/'), "{raw:?} → {path:?}");
    if path != "/" {
        for segment in path[1..].split('/') {
            assert!(!segment.is_empty() && segment != "." && segment != "..", "{raw:?} → {path:?}");
            assert!(!segment.chars().any(|c| c.is_control() || "/\\%?#".contains(c)), "{raw:?} → {path:?}");
        }
    }
    assert_eq!(canonicalize(path).map(|p| p.as_str().to_owned()).as_deref(), Ok(path), "{raw:?} reads back");
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let (table, policy) = &*EXAMPLE;
    if let Lookup::Found { route, .. } = table.lookup(method, path) {
        let rule = policy.lookup(route, method, path);
        assert!(rule.is_some(), "{method} {path} reaches {route} without a rule");
    }
});
