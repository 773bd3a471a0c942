//! A plugin built against plinth:platform@0.1.0 as it was before the state
//! work added `signing`, `events` and versioned kv (`wit/` here is that
//! WIT, frozen): newer hosts must keep loading and serving it. Any request
//! bumps a kv counter and answers its new value.

wit_bindgen::generate!({ path: "wit", world: "plinth:platform/plugin" });

use plinth::platform::kv;
use plinth::platform::types::{Request, Response};

struct Legacy;

impl exports::plinth::platform::handler::Guest for Legacy {
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(_req: Request) -> Response {
        let count = kv::get("count").ok().flatten().and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok());
        let next = count.unwrap_or(0) + 1;
        let response = Response::new(if kv::set("count", next.to_string().as_bytes()).is_ok() { 200 } else { 500 });
        response.set_body(next.to_string().as_bytes());
        response
    }
}

export!(Legacy);
