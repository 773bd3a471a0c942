//! Stands in for the accounts plugin in edge tests: it signs in whoever it
//! is told to, through the host's `principals` and `sessions` interfaces.
//!
//! - `POST /v1/test/login`, body `id[ roles,comma,separated]`: makes the
//!   account active with those roles and issues a session; answers
//!   `session_id csrf_token`.
//! - `POST /v1/test/status/{id}/{status}`: sets an account's status.
//! - `POST /v1/test/logout`: revokes the current session.
//! - `DELETE /v1/test/sessions/{id}`: revokes one of the caller's sessions.
//! - `GET /v1/test/whoami`: `account_id roles,csv session_id`.
//! - `GET /v1/test/sessions`: the caller's session ids, one per line.
//! - `POST /v1/test/echo`: `ok` (a state-changing route for CSRF tests).
//! - `GET /v1/test/headers`: tries to set host-owned headers and one of its
//!   own; answers with what `set-header` refused.
//! - `GET /v1/test/seen`: the request header names it was handed, one per
//!   line, then its path.

wit_bindgen::generate!({ path: "../../../../wit", world: "plinth:platform/plugin" });

use plinth::platform::principals::{self, Account, Status};
use plinth::platform::sessions;
use plinth::platform::types::{Request, Response};

struct Issuer;

fn text(status: u16, body: &str) -> Response {
    let response = Response::new(status);
    response.set_body(body.as_bytes());
    response
}

impl exports::plinth::platform::handler::Guest for Issuer {
    /// Any path: each test's config grants the routes it serves.
    fn routes() -> Vec<String> {
        vec!["/**".to_owned()]
    }

    fn handle(req: Request) -> Response {
        let path = req.path();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let me = req.principal();
        match (req.method().as_str(), parts.as_slice()) {
            ("POST", ["v1", "test", "login"]) => {
                let body = String::from_utf8(req.body()).unwrap_or_default();
                let (id, roles) = body.trim().split_once(' ').unwrap_or((body.trim(), ""));
                let roles = roles.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect();
                let account = Account { id: id.to_owned(), roles, status: Status::Active };
                if let Err(e) = principals::put(&account) {
                    return text(500, &format!("{e:?}"));
                }
                match sessions::issue(id) {
                    Ok(issued) => text(200, &format!("{} {}", issued.session_id, issued.csrf_token)),
                    Err(sessions::Error::AuditUnavailable) => text(503, "audit unavailable"),
                    Err(e) => text(500, &format!("{e:?}")),
                }
            }
            ("POST", ["v1", "test", "status", id, status]) => {
                let status = match *status {
                    "active" => Status::Active,
                    "suspended" => Status::Suspended,
                    "deactivated" => Status::Deactivated,
                    _ => Status::Pending,
                };
                let roles = principals::get(id).ok().flatten().map(|a| a.roles).unwrap_or_default();
                match principals::put(&Account { id: (*id).to_owned(), roles, status }) {
                    Ok(()) => text(204, ""),
                    Err(e) => text(500, &format!("{e:?}")),
                }
            }
            ("POST", ["v1", "test", "logout"]) => match sessions::revoke_current() {
                Ok(_) => text(204, ""),
                Err(e) => text(500, &format!("{e:?}")),
            },
            ("DELETE", ["v1", "test", "sessions", id]) => {
                let Some(me) = me else { return text(401, "") };
                match sessions::revoke(&me.account_id, id) {
                    Ok(true) => text(204, ""),
                    Ok(false) => text(404, ""),
                    Err(e) => text(500, &format!("{e:?}")),
                }
            }
            ("GET", ["v1", "test", "whoami"]) => match me {
                Some(p) => text(200, &format!("{} {} {}", p.account_id, p.roles.join(","), p.session_id)),
                None => text(200, "anonymous"),
            },
            ("GET", ["v1", "test", "sessions"]) => {
                let Some(me) = me else { return text(401, "") };
                match sessions::list(&me.account_id) {
                    Ok(list) => text(200, &list.iter().map(|s| s.session_id.clone()).collect::<Vec<_>>().join("\n")),
                    Err(e) => text(500, &format!("{e:?}")),
                }
            }
            ("POST", ["v1", "test", "echo"]) => text(200, "ok"),
            ("GET", ["v1", "test", "headers"]) => {
                let response = Response::new(200);
                let attempts = [
                    ("content-security-policy", "default-src *"),
                    ("set-cookie", "stolen=1"),
                    ("server", "guest/1.0"),
                    ("x-plugin", "yes"),
                ];
                let refused: Vec<&str> = attempts
                    .iter()
                    .filter(|(name, value)| response.set_header(name, value).is_err())
                    .map(|(n, _)| *n)
                    .collect();
                response.set_body(refused.join(",").as_bytes());
                response
            }
            ("GET", ["v1", "test", "seen"]) => {
                let names: Vec<String> = req.headers().into_iter().map(|(name, _)| name).collect();
                text(200, &format!("{}\n{}", names.join("\n"), req.path()))
            }
            _ => text(404, "no such test route"),
        }
    }
}

export!(Issuer);
