//! Fails every request after writing to stderr: `.../overflow` by
//! recursing until the stack is gone, anything else by panicking;
//! `.../flood` first calls `log` 5,000 times, each with 200 fields.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::log::{Level, log};
use plinth::platform::types::{Request, Response};

struct Trap;

impl exports::plinth::platform::handler::Guest for Trap {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        eprintln!("about to fail on {}", req.path());
        if req.path().ends_with("/flood") {
            let fields: Vec<(String, String)> = (0..200).map(|i| (format!("field{i}"), "x".repeat(100))).collect();
            for line in 0..5_000 {
                log(Level::Info, &format!("flood line {line}"), &fields);
            }
        }
        if req.path().ends_with("/overflow") {
            let depth = recurse(std::hint::black_box(1));
            return Response::new(u16::try_from(depth % 100 + 200).unwrap_or(200));
        }
        panic!("the trap plugin always fails");
    }
}

/// Recursion with a frame the optimizer cannot remove, deeper than any
/// stack.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return n;
    }
    let frame = std::hint::black_box([n; 64]);
    frame[(n % 64) as usize] + recurse(std::hint::black_box(n + 1))
}

export!(Trap);
