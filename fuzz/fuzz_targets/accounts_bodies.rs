//! The real accounts component (built by `make plugins`, path in
//! `PLINTH_ACCOUNTS_WASM`) fed arbitrary bodies on each of its routes, as
//! anyone, a signed-in user or an admin: every answer is a response below
//! 500, never a trap, a timeout or a 5xx.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use plinth::runtime::bindings::types::Principal;

#[path = "component.rs"]
mod component;

/// Method and path of every accounts route.
const ROUTES: [(&str, &str); 17] = [
    ("POST", "/v1/accounts/signup"),
    ("POST", "/v1/accounts/verify"),
    ("POST", "/v1/accounts/invite"),
    ("POST", "/v1/accounts/accept-invite"),
    ("POST", "/v1/accounts/password-reset"),
    ("POST", "/v1/accounts/password-reset/confirm"),
    ("POST", "/v1/accounts/confirm-email"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/current"),
    ("DELETE", "/v1/sessions/abc"),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    ("POST", "/v1/me/password"),
    ("POST", "/v1/me/email"),
    ("GET", "/v1/admin/accounts"),
    ("POST", "/v1/admin/accounts/abc/suspend"),
];

static HARNESS: LazyLock<component::Harness> = LazyLock::new(|| {
    let component = std::env::var("PLINTH_ACCOUNTS_WASM").expect("PLINTH_ACCOUNTS_WASM names accounts.wasm");
    component::Harness::load(
        &format!(
            "name = \"accounts\"\ncomponent = {component:?}\n\
             routes = [\"/v1/accounts/**\", \"/v1/sessions/**\", \"/v1/me/**\", \"/v1/admin/accounts/**\"]\n\
             grants = [\"kv\", \"audit\", \"log\", \"principals\", \"sessions\", \"passwords\", \"outbox\"]\n"
        ),
        ("GET", "/v1/me"),
    )
});

// Loading compiles the component: done before the first input is timed.
fuzz_target!(init: { LazyLock::force(&HARNESS); }, |data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let (method, path) = ROUTES[usize::from(selector) % ROUTES.len()];
    let principal = match selector / 64 {
        0 => None,
        1 => Some(vec![]),
        _ => Some(vec!["admin".to_owned()]),
    }
    .map(|roles| Principal { account_id: "fuzz".into(), roles, session_id: "s".into() });
    let headers = vec![("content-type".into(), "application/json".into())];
    let (status, body) = HARNESS.serve(method, path, headers, body, principal);
    assert!(status < 500, "{method} {path} answered {status}: {}", String::from_utf8_lossy(&body));
});
