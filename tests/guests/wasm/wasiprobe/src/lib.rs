//! Reports what WASI lets it see, as `key=value` lines: environment
//! variables, arguments, filesystem access (reading `/` and `.`, creating a
//! file), and whether the clock and the random source work. The host must
//! give it clocks and randomness and nothing else.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Probe;

impl exports::plinth::platform::handler::Guest for Probe {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(_req: Request) -> Response {
        let mut random = [0u8; 16];
        let report = [
            ("env", std::env::vars_os().count().to_string()),
            ("args", std::env::args_os().count().to_string()),
            ("read_root", std::fs::read_dir("/").is_ok().to_string()),
            ("read_cwd", std::fs::read_dir(".").is_ok().to_string()),
            ("create_file", std::fs::File::create("probe.txt").is_ok().to_string()),
            ("clock", (std::time::SystemTime::now() > std::time::UNIX_EPOCH).to_string()),
            ("random", (getrandom::fill(&mut random).is_ok() && random != [0; 16]).to_string()),
        ];
        let body: String = report.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let response = Response::new(200);
        response.set_body(body.as_bytes());
        response
    }
}

export!(Probe);
