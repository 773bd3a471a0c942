//! Stores a blob and then fails, for tests of what the host undoes:
//! `POST /**` stores the body as a blob for the owner `t`, then traps when
//! the path ends in `/trap`, submits a job (`make 1 ok` to the worker
//! `probe`, the blob its input) and traps when it ends in `/job-trap`, and
//! answers with the blob's id otherwise.
//! `GET /**` answers the owner's stored and reserved bytes.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::types::{Request, Response};
use plinth::platform::{blobs, jobs};

struct BlobTrap;

fn answer(status: u16, body: &str) -> Response {
    let response = Response::new(status);
    response.set_body(body.as_bytes());
    response
}

impl exports::plinth::platform::handler::Guest for BlobTrap {
    fn routes() -> Vec<String> {
        vec!["POST /**".to_owned(), "GET /**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        if req.method() == "GET" {
            return match blobs::usage(Some("t")) {
                Ok((stored, reserved)) => answer(200, &format!("{stored} {reserved}")),
                Err(e) => answer(500, &format!("{e:?}")),
            };
        }
        let blob = match blobs::create("t", &req.body()) {
            Ok(blob) => blob,
            Err(e) => return answer(500, &format!("{e:?}")),
        };
        if req.path().ends_with("/trap") {
            panic!("trapping after storing {}", blob.id);
        }
        if req.path().ends_with("/job-trap") {
            let job = jobs::submit("probe", "t", std::slice::from_ref(&blob.id), "make 1 ok");
            panic!("trapping after submitting {job:?}");
        }
        answer(200, &blob.id)
    }
}

export!(BlobTrap);
