//! Signs for tests: `POST /**` with body `purpose payload` answers a token
//! made with this plugin's own key, to show that another plugin refuses it.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::signing;
use plinth::platform::types::{Request, Response};

struct Signer;

impl exports::plinth::platform::handler::Guest for Signer {
    fn routes() -> Vec<String> {
        vec!["POST /**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        let body = String::from_utf8(req.body()).unwrap_or_default();
        let (purpose, payload) = body.split_once(' ').unwrap_or((body.as_str(), ""));
        match signing::sign(purpose, payload.as_bytes(), None) {
            Ok(token) => {
                let response = Response::new(200);
                response.set_body(token.as_bytes());
                response
            }
            Err(why) => {
                let response = Response::new(400);
                response.set_body(why.as_bytes());
                response
            }
        }
    }
}

export!(Signer);
