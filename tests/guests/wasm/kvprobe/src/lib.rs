//! Reads and writes its kv namespace: `PUT /v1/{plugin}/kv/{key}` stores the
//! body, `GET` returns it (404 when absent). Two plugins loaded from this one
//! component must each see only their own values.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::kv;
use plinth::platform::types::{Request, Response};

struct Probe;

impl exports::plinth::platform::handler::Guest for Probe {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        let Some(key) = req.param("key") else {
            return Response::new(400);
        };
        let result = match req.method().as_str() {
            "PUT" => kv::set(&key, &req.body()).map(|()| Response::new(204)),
            _ => kv::get(&key).map(|value| match value {
                Some(value) => {
                    let response = Response::new(200);
                    response.set_body(&value);
                    response
                }
                None => Response::new(404),
            }),
        };
        result.unwrap_or_else(|e| {
            let response = Response::new(507);
            response.set_body(format!("{e:?}").as_bytes());
            response
        })
    }
}

export!(Probe);
