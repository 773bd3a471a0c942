//! Routes declared once: the router tells the host its routes at load, and
//! serves each request with the handler of the route the host matched.

use plinth_routes::Route;

use crate::error::{Error, Result};
use crate::request::Request;
use crate::response::Response;

/// A request handler.
pub type Handler = fn(&Request) -> Result<Response>;

/// A plugin's routes and their handlers. Patterns are the config's route
/// syntax: `"GET /v1/things/{id}"`, a final `**` for a subtree.
///
/// A fresh instance serves each request and builds its router anew, so
/// building it copies nothing and serving only compares route texts;
/// parsing and checking happen where the routes are declared: at load, and
/// in the plugin's unit tests.
#[derive(Default)]
pub struct Router {
    routes: Vec<Entry>,
}

/// One route: `method` and `pattern` together are the text the host names
/// in `request.route`.
struct Entry {
    /// Set by [`Router::get`] and its siblings; `None` when `pattern` is a
    /// whole route with its methods.
    method: Option<&'static str>,
    pattern: &'static str,
    handler: Handler,
}

impl Entry {
    /// The route as declared to the host.
    fn text(&self) -> String {
        match self.method {
            Some(method) => format!("{method} {}", self.pattern),
            None => self.pattern.to_owned(),
        }
    }

    /// True when the host's `request.route` names this route.
    fn is(&self, route: &str) -> bool {
        match self.method {
            Some(method) => route.strip_prefix(method).and_then(|r| r.strip_prefix(' ')) == Some(self.pattern),
            None => route == self.pattern,
        }
    }
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route, `"[METHOD[,METHOD...] ]/path"` (checked by
    /// [`Router::declared`]).
    pub fn route(self, route: &'static str, handler: Handler) -> Self {
        self.add(None, route, handler)
    }

    fn add(mut self, method: Option<&'static str>, pattern: &'static str, handler: Handler) -> Self {
        self.routes.push(Entry { method, pattern: pattern.trim(), handler });
        self
    }

    /// Adds a `GET` route (which also answers `HEAD`).
    pub fn get(self, path: &'static str, handler: Handler) -> Self {
        self.add(Some("GET"), path, handler)
    }

    /// Adds a `POST` route.
    pub fn post(self, path: &'static str, handler: Handler) -> Self {
        self.add(Some("POST"), path, handler)
    }

    /// Adds a `PUT` route.
    pub fn put(self, path: &'static str, handler: Handler) -> Self {
        self.add(Some("PUT"), path, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch(self, path: &'static str, handler: Handler) -> Self {
        self.add(Some("PATCH"), path, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete(self, path: &'static str, handler: Handler) -> Self {
        self.add(Some("DELETE"), path, handler)
    }

    /// The routes, as the host reads them at load.
    ///
    /// # Panics
    ///
    /// On a malformed route or one declared twice: a mistake in the plugin's
    /// code, caught by its first unit test ([`crate::testing::TestHost::new`]
    /// calls this) and, in a wasm build, refused by the host at load.
    pub fn declared(&self) -> Vec<String> {
        self.parsed().iter().map(|r| r.as_str().to_owned()).collect()
    }

    /// Every route parsed, refusing malformed and ambiguous ones.
    fn parsed(&self) -> Vec<Route> {
        let mut parsed: Vec<Route> = Vec::with_capacity(self.routes.len());
        for entry in &self.routes {
            let route = Route::parse(&entry.text()).unwrap_or_else(|e| panic!("{e}"));
            if let Some(same) = parsed.iter().find(|r| r.ambiguous_with(&route)) {
                panic!("route `{route}` is declared twice (it overlaps `{same}` and neither is more specific)");
            }
            parsed.push(route);
        }
        parsed
    }

    /// Serves a request with the handler of the route the host matched; a
    /// failure becomes its error response.
    pub fn handle(&self, req: &Request) -> Response {
        let route = req.route();
        let outcome = match self.routes.iter().find(|entry| entry.is(&route)) {
            Some(entry) => (entry.handler)(req),
            None => Err(Error::not_found(format!("this plugin declares no route `{route}`"))),
        };
        outcome.unwrap_or_else(|e| e.into_response(&req.trace_id()))
    }

    /// The routes as a table, for the in-memory host to match paths with
    /// the same rules as the host's edge.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn table(&self) -> plinth_routes::RouteTable<String> {
        let mut table = plinth_routes::RouteTable::default();
        for route in self.parsed() {
            let text = route.as_str().to_owned();
            table.push(route, text);
        }
        table
    }

    /// Serves one request from the host; used by [`crate::plugin!`].
    #[cfg(target_arch = "wasm32")]
    pub fn serve_host(
        &self,
        req: crate::bindings::plinth::platform::types::Request,
    ) -> crate::bindings::plinth::platform::types::Response {
        let req = Request::from_host(req);
        let response = self.handle(&req);
        into_host(response).unwrap_or_else(|error| {
            into_host(error.into_response(&req.trace_id())).expect("error responses carry only plain headers")
        })
    }

    /// Only a wasm build is served by a host; see [`crate::testing`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn serve_host(
        &self,
        _req: crate::bindings::plinth::platform::types::Request,
    ) -> crate::bindings::plinth::platform::types::Response {
        unreachable!("only a wasm32 build is served by the plinth host")
    }
}

/// The host's response resource for a response; a header the host refuses
/// or a stream it cannot open becomes the error to answer instead.
#[cfg(target_arch = "wasm32")]
fn into_host(response: Response) -> Result<crate::bindings::plinth::platform::types::Response> {
    let out = crate::bindings::plinth::platform::types::Response::new(response.status);
    for (name, value) in &response.headers {
        out.set_header(name, value).map_err(|refused| {
            crate::log::error("the host refused a response header", &[("error", &refused)]);
            Error::new(500, "invalid_response_header", refused)
        })?;
    }
    out.set_body(&response.body);
    if let Some(follow) = &response.follow {
        follow.start(&out)?;
    }
    if let Some(blob) = &response.blob {
        blob.start(&out)?;
    }
    Ok(out)
}
