//! A plinth plugin (not a wasi:http component) that makes outgoing HTTP
//! requests through `wasi:http/outgoing-handler`, which its grant
//! `outgoing-http` links: `GET /fetch?URL` answers `ok STATUS` or
//! `error CODE`.

wit_bindgen::generate!({
    inline: "package probe:fetcher; world fetcher { export plinth:platform/handler@0.1.0; }",
    path: "../../../../wit",
    generate_all,
});

use exports::plinth::platform::handler::Guest;
use plinth::platform::types::{Request, Response};

struct Fetcher;

impl Guest for Fetcher {
    fn routes() -> Vec<String> {
        vec!["GET /fetch".to_owned()]
    }

    fn handle(req: Request) -> Response {
        let response = Response::new(200);
        response.set_body(fetch(&req.query().unwrap_or_default()).as_bytes());
        response
    }
}

include!("../../fetch.rs");

export!(Fetcher);
