//! `GET /v1/hello` greets; `POST /v1/hello/count` bumps a counter in kv and
//! returns it. The counter is stored as a decimal string under `count`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plinth:platform/plugin",
});

use exports::plinth::platform::handler::Guest;
use plinth::platform::kv;
use plinth::platform::types::{Request, Response};

struct Hello;

/// Attempts before a contended counter update gives up with a 409.
const MAX_CAS_ATTEMPTS: usize = 16;

impl Guest for Hello {
    fn handle(req: Request) -> Response {
        match (req.method().as_str(), req.path().as_str()) {
            ("GET", "/v1/hello") => {
                let name = req.principal().map(|p| p.account_id).unwrap_or_else(|| "world".to_owned());
                json(200, &serde_json::json!({ "message": format!("hello, {name}") }))
            }
            ("POST", "/v1/hello/count") => match increment() {
                Ok(count) => json(200, &serde_json::json!({ "count": count })),
                Err(response) => response,
            },
            // Signed-in only (see policies/routes.toml): who the host says you are.
            ("GET", "/v1/hello/me") => match req.principal() {
                Some(p) => json(200, &serde_json::json!({ "account_id": p.account_id, "roles": p.roles })),
                None => error(401, "unauthenticated", "no principal"),
            },
            // Admins only: the counter without changing it.
            ("GET", "/v1/hello/stats") => match kv::get("count") {
                Ok(current) => {
                    let count = current.as_deref().map(parse_count).transpose();
                    match count {
                        Ok(count) => json(200, &serde_json::json!({ "count": count.unwrap_or(0) })),
                        Err(response) => response,
                    }
                }
                Err(e) => storage_error(e),
            },
            _ => error(404, "not_found", "no such hello route"),
        }
    }
}

/// Compare-and-swap so that concurrent increments never lose a count.
fn increment() -> Result<u64, Response> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = kv::get("count").map_err(storage_error)?;
        let count = match &current {
            Some(bytes) => parse_count(bytes)? + 1,
            None => 1,
        };
        let next = count.to_string().into_bytes();
        match kv::compare_and_swap("count", current.as_deref(), Some(&next)).map_err(storage_error)? {
            kv::Swap::Swapped => return Ok(count),
            kv::Swap::Conflict(_) => continue,
        }
    }
    Err(error(409, "contended", "the counter is too contended; retry"))
}

fn parse_count(bytes: &[u8]) -> Result<u64, Response> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| error(500, "corrupt_counter", "the stored counter is not a number"))
}

fn storage_error(e: kv::Error) -> Response {
    match e {
        kv::Error::QuotaExceeded(_) => error(507, "quota_exceeded", "the hello namespace is full"),
        other => error(500, "storage", &format!("{other:?}")),
    }
}

fn json(status: u16, body: &serde_json::Value) -> Response {
    let response = Response::new(status);
    response.set_header("content-type", "application/json").expect("content-type is a plugin header");
    response.set_body(body.to_string().as_bytes());
    response
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

export!(Hello);
