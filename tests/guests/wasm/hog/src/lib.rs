//! Allocates without bound, so the memory cap must stop it.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Hog;

impl exports::plinth::platform::handler::Guest for Hog {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(_req: Request) -> Response {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            chunk[0] = hoard.len() as u8;
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

export!(Hog);
