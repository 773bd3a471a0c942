//! A plugin whose `routes` sleeps for a minute (waiting in WASI, where no
//! epoch deadline reaches): the host must give up on it, not wait.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};

struct Sleeper;

impl exports::plinth::platform::handler::Guest for Sleeper {
    fn routes() -> Vec<String> {
        std::thread::sleep(std::time::Duration::from_secs(60));
        vec!["/**".to_owned()]
    }

    fn handle(_req: Request) -> Response {
        Response::new(204)
    }
}

export!(Sleeper);
