//! Panics (a trap) on every request after writing to stderr.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Trap;

impl exports::plinth::platform::handler::Guest for Trap {
    fn handle(req: Request) -> Response {
        eprintln!("about to fail on {}", req.path());
        panic!("the trap plugin always fails");
    }
}

export!(Trap);
