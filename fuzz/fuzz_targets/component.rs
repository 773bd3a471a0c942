//! One real plugin component in a real `App` (storage, audit log, the host
//! interfaces), for the targets that feed it requests.

use std::sync::Arc;

use plinth::App;
use plinth::app::Deployment;
use plinth::audit::Actor;
use plinth::routes::Lookup;
use plinth::runtime::Plugin;
use plinth::runtime::bindings::types::Principal;
use plinth::runtime::host::types::{RequestBody, RequestData};

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    plugin: Arc<Plugin>,
    /// Its routes, to find the declared route of each request.
    deployment: Arc<Deployment>,
    /// Storage, audit log and the rest the plugin writes through.
    _app: App,
    /// Keeps the data directory for the life of the process.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Loads the `[[plugins]]` entry `plugin` (TOML, without the header)
    /// under the example policies; `probe` is one of its routes.
    pub fn load(plugin: &str, probe: (&str, &str)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/routes.toml");
        std::fs::write(dir.path().join("plinth.toml"), format!("policies = {policy:?}\n[[plugins]]\n{plugin}"))
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
        let app = runtime.block_on(App::build(config)).unwrap();
        let deployment = app.deployment.load_full();
        let Lookup::Found { target, .. } = deployment.routes.lookup(probe.0, probe.1) else {
            panic!("the plugin serves {} {}", probe.0, probe.1)
        };
        let plugin = deployment.plugins[target.plugin].plugin.clone();
        Self { runtime, plugin, deployment, _app: app, _dir: dir }
    }

    /// Serves `method path` with these headers and body, as `principal`;
    /// the status and body. A trap, timeout or memory cap panics.
    pub fn serve(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: &[u8],
        principal: Option<Principal>,
    ) -> (u16, Vec<u8>) {
        let (status, _, body) = self.serve_with_headers(method, path, headers, body, principal);
        (status, body)
    }

    /// [`Harness::serve`], with the response's headers too.
    pub fn serve_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: &[u8],
        principal: Option<Principal>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (path, None),
        };
        let Lookup::Found { target, params, .. } = self.deployment.routes.lookup(method, path) else {
            panic!("{method} {path} is a route of the plugin")
        };
        let request = RequestData {
            method: method.into(),
            path: path.into(),
            query,
            headers,
            body: RequestBody::Read(body.to_vec().into()),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            client_address: "192.0.2.1".into(),
            route: target.declared.clone(),
            params,
            principal,
            csrf_token: None,
            revalidation: false,
        };
        let output =
            self.runtime.block_on(self.plugin.handle(request, "fuzz".into(), Actor::Anonymous, Default::default()));
        let output = output.unwrap_or_else(|failure| panic!("{method} {path}: {failure}"));
        let headers = output
            .response
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or_default().to_owned()))
            .collect();
        (output.response.status, headers, output.response.body)
    }
}
