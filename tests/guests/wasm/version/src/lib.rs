//! Answers `GET /v1/version` with its `version` setting, so tests can see
//! which deployment served a request.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::settings;
use plinth::platform::types::{Request, Response};

struct Version;

impl exports::plinth::platform::handler::Guest for Version {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(_req: Request) -> Response {
        let response = Response::new(200);
        response.set_body(settings::get("version").unwrap_or_default().as_bytes());
        response
    }
}

export!(Version);
