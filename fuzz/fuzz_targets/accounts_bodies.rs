//! The real accounts component (built by `make plugins`, path in
//! `PLINTH_ACCOUNTS_WASM`) fed arbitrary bodies on each of its routes, as
//! anyone, a signed-in user or an admin: every answer is a response below
//! 500, never a trap, a timeout or a 5xx.
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

struct Harness {
    runtime: tokio::runtime::Runtime,
    plugin: Arc<Plugin>,
    /// Its routes, to find the declared route of each request.
    deployment: Arc<Deployment>,
    /// Storage, audit log and the rest the plugin writes through.
    _app: App,
    /// Keeps the data directory for the life of the process.
    _dir: tempfile::TempDir,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let component = std::env::var("PLINTH_ACCOUNTS_WASM").expect("PLINTH_ACCOUNTS_WASM names accounts.wasm");
    let dir = tempfile::tempdir().unwrap();
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/routes.toml");
    std::fs::write(
        dir.path().join("plinth.toml"),
        format!(
            "policies = {policy:?}\n[[plugins]]\nname = \"accounts\"\ncomponent = {component:?}\n\
             routes = [\"/v1/accounts/**\", \"/v1/sessions/**\", \"/v1/me/**\", \"/v1/admin/accounts/**\"]\n\
             grants = [\"kv\", \"audit\", \"log\", \"principals\", \"sessions\", \"passwords\", \"outbox\"]\n"
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
    let app = runtime.block_on(App::build(config)).unwrap();
    let deployment = app.deployment.load_full();
    let Lookup::Found { target, .. } = deployment.routes.lookup("GET", "/v1/me") else {
        panic!("the accounts plugin is loaded")
    };
    let plugin = deployment.plugins[target.plugin].plugin.clone();
    Harness { runtime, plugin, deployment: deployment.clone(), _app: app, _dir: dir }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let (method, path) = ROUTES[usize::from(selector) % ROUTES.len()];
    let principal = match selector / 64 {
        0 => None,
        1 => Some(vec![]),
        _ => Some(vec!["admin".to_owned()]),
    }
    .map(|roles| Principal { account_id: "fuzz".into(), roles, session_id: "s".into() });
    let harness = &*HARNESS;
    let Lookup::Found { target, params, .. } = harness.deployment.routes.lookup(method, path) else {
        panic!("{method} {path} is an accounts route")
    };
    let request = RequestData {
        method: method.into(),
        path: path.into(),
        query: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec().into(),
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        client_address: "192.0.2.1".into(),
        route: target.declared.clone(),
        params,
        principal,
        revalidation: false,
    };
    let output = harness.runtime.block_on(harness.plugin.handle(request, "fuzz".into(), Actor::Anonymous));
    let output = output.unwrap_or_else(|failure| panic!("{method} {path}: {failure}"));
    let status = output.response.status;
    assert!(status < 500, "{method} {path} answered {status}: {}", String::from_utf8_lossy(&output.response.body));
});
