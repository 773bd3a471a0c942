//! The real state component (built by `make plugins`, path in
//! `PLINTH_STATE_WASM`) fed arbitrary bodies on its write routes, with each
//! content type and precondition, as a signed-in user: every answer is a
//! response below 500 (or 507, a full store), never a trap or a timeout.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use plinth::App;
use plinth::app::Deployment;
use plinth::audit::Actor;
use plinth::routes::Lookup;
use plinth::runtime::Plugin;
use plinth::runtime::bindings::types::Principal;
use plinth::runtime::host::types::RequestData;

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

struct Harness {
    runtime: tokio::runtime::Runtime,
    plugin: Arc<Plugin>,
    deployment: Arc<Deployment>,
    _app: App,
    _dir: tempfile::TempDir,
}

fn request(
    harness_deployment: &Deployment,
    method: &str,
    path: &str,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> RequestData {
    let Lookup::Found { target, params, .. } = harness_deployment.routes.lookup(method, path) else {
        panic!("{method} {path} is a state route")
    };
    RequestData {
        method: method.into(),
        path: path.into(),
        query: None,
        headers,
        body: body.to_vec().into(),
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        client_address: "192.0.2.1".into(),
        route: target.declared.clone(),
        params,
        principal: Some(Principal { account_id: "fuzz".into(), roles: vec![], session_id: "s".into() }),
        revalidation: false,
    }
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let component = std::env::var("PLINTH_STATE_WASM").expect("PLINTH_STATE_WASM names state.wasm");
    let dir = tempfile::tempdir().unwrap();
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/routes.toml");
    std::fs::write(
        dir.path().join("plinth.toml"),
        format!(
            "policies = {policy:?}\n[[plugins]]\nname = \"state\"\ncomponent = {component:?}\n\
             routes = [\"/v1/state/**\"]\ngrants = [\"kv\", \"events\", \"signing\"]\n\
             limits = {{ kv_bytes = \"1GiB\" }}\n[plugins.settings]\nkinds = '''{KINDS}'''\n"
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
    let app = runtime.block_on(App::build(config)).unwrap();
    let deployment = app.deployment.load_full();
    let Lookup::Found { target, .. } = deployment.routes.lookup("GET", "/v1/state/notes/fz") else {
        panic!("the state plugin is loaded")
    };
    let plugin = deployment.plugins[target.plugin].plugin.clone();
    let headers = vec![("content-type".into(), "application/json".into()), ("if-none-match".into(), "*".into())];
    let create = request(&deployment, "PUT", "/v1/state/notes/fz", headers, br#"{"title": "fuzz"}"#);
    let created = runtime.block_on(plugin.handle(create, "fuzz".into(), Actor::Anonymous)).unwrap();
    assert_eq!(created.response.status, 201);
    Harness { runtime, plugin, deployment: deployment.clone(), _app: app, _dir: dir }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let (method, path) = ROUTES[usize::from(selector) % ROUTES.len()];
    let content_type = CONTENT_TYPES[usize::from(selector / 8) % CONTENT_TYPES.len()];
    let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
    if let Some((name, value)) = PRECONDITIONS[usize::from(selector / 32) % PRECONDITIONS.len()] {
        headers.push((name.to_owned(), value.to_owned()));
    }
    let harness = &*HARNESS;
    let request = request(&harness.deployment, method, path, headers, body);
    let output = harness.runtime.block_on(harness.plugin.handle(request, "fuzz".into(), Actor::Anonymous));
    let output = output.unwrap_or_else(|failure| panic!("{method} {path}: {failure}"));
    let status = output.response.status;
    assert!(
        status < 500 || status == 507,
        "{method} {path} answered {status}: {}",
        String::from_utf8_lossy(&output.response.body)
    );
});
