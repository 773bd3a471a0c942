//! The real state component (built by `make plugins`, path in
//! `PLINTH_STATE_WASM`) fed arbitrary bodies on its write routes, with each
//! content type and precondition, as a signed-in user: every answer is a
//! response below 500 (or 507, a full store), never a trap or a timeout.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use plinth::runtime::bindings::types::Principal;

#[path = "component.rs"]
mod component;

/// Method and path of each write route; `fz` exists (made at start).
const ROUTES: [(&str, &str); 6] = [
    ("PUT", "/v1/state/notes/fz"),
    ("PATCH", "/v1/state/notes/fz"),
    ("PUT", "/v1/state/notes/new"),
    ("POST", "/v1/state/notes"),
    ("POST", "/v1/state/views"),
    ("PUT", "/v1/state/notes/fz/grants/bob"),
];
const CONTENT_TYPES: [&str; 3] = ["application/json", "application/merge-patch+json", "application/json-patch+json"];
const PRECONDITIONS: [Option<(&str, &str)>; 3] = [None, Some(("if-match", "*")), Some(("if-none-match", "*"))];

/// The kinds of the example deployment.
const KINDS: &str = r#"{"notes": {"max_bytes": 16384, "sharing": true, "schema": {"type": "object",
    "required": ["title"], "properties": {"title": {"type": "string", "maxLength": 200}}}}}"#;

fn fuzzer() -> Option<Principal> {
    Some(Principal { account_id: "fuzz".into(), roles: vec![], session_id: "s".into() })
}

static HARNESS: LazyLock<component::Harness> = LazyLock::new(|| {
    let component = std::env::var("PLINTH_STATE_WASM").expect("PLINTH_STATE_WASM names state.wasm");
    let harness = component::Harness::load(
        &format!(
            "name = \"state\"\ncomponent = {component:?}\nroutes = [\"/v1/state/**\"]\n\
             grants = [\"kv\", \"events\", \"signing\"]\nlimits = {{ kv_bytes = \"1GiB\" }}\n\
             [plugins.settings]\nkinds = '''{KINDS}'''\n"
        ),
        ("GET", "/v1/state/notes/fz"),
    );
    let headers = vec![("content-type".into(), "application/json".into()), ("if-none-match".into(), "*".into())];
    let (status, _) = harness.serve("PUT", "/v1/state/notes/fz", headers, br#"{"title": "fuzz"}"#, fuzzer());
    assert_eq!(status, 201);
    harness
});

// Loading compiles the component: done before the first input is timed.
fuzz_target!(init: { LazyLock::force(&HARNESS); }, |data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let (method, path) = ROUTES[usize::from(selector) % ROUTES.len()];
    let content_type = CONTENT_TYPES[usize::from(selector / 8) % CONTENT_TYPES.len()];
    let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
    if let Some((name, value)) = PRECONDITIONS[usize::from(selector / 32) % PRECONDITIONS.len()] {
        headers.push((name.to_owned(), value.to_owned()));
    }
    let (status, body) = HARNESS.serve(method, path, headers, body, fuzzer());
    assert!(status < 500 || status == 507, "{method} {path} answered {status}: {}", String::from_utf8_lossy(&body));
});
