//! Panics (a trap) on every request after writing to stderr.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Trap;

impl exports::plinth::platform::handler::Guest for Trap {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        eprintln!("about to fail on {}", req.path());
        panic!("the trap plugin always fails");
    }
}

export!(Trap);
