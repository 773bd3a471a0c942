//! Declares two routes that match the same requests, neither more specific:
//! the host must refuse to load it, naming both.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Ambiguous;

impl exports::plinth::platform::handler::Guest for Ambiguous {
    fn routes() -> Vec<String> {
        vec!["GET /v1/x/{a}".to_owned(), "GET /v1/x/{b}".to_owned()]
    }

    fn handle(_req: Request) -> Response {
        Response::new(204)
    }
}

export!(Ambiguous);
