//! Loops forever on `/v1/spin`, so the epoch deadline must cut it off.
//! Answers `/v1/spin/ok` at once, to show the host still serves.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Spin;

impl exports::plinth::platform::handler::Guest for Spin {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        if req.path() == "/v1/spin/ok" {
            return Response::new(204);
        }
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(Spin);
