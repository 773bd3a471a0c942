//! The account lifecycle as a plinth plugin. Business rules live here; the
//! host owns sessions, password hashing, the principal registry, e-mail
//! delivery and the audit log, and this plugin reaches them only through its
//! grants (`kv`, `audit`, `log`, `principals`, `sessions`, `passwords`,
//! `outbox`).
//!
//! Storage (its own kv namespace): `account/{id}`, `email/{address}` → id,
//! `token/{sha256 of token}` → single-use token, `fail/{sha256 of address}`
//! → failed sign-ins this hour, `mailed/{sha256 of address}` → mails the
//! forms sent it this hour.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plinth:platform/plugin",
});

mod admin;
mod hourly;
mod http;
mod lifecycle;
mod model;
mod profile;
mod signin;
mod store;

use exports::plinth::platform::handler::Guest;
use plinth::platform::types::{Request, Response};

struct Accounts;

impl Guest for Accounts {
    fn handle(req: Request) -> Response {
        let method = req.method();
        let path = req.path();
        // The host hands over the canonical path its route and policy were
        // decided on; match it exactly, segment by segment, so no other
        // spelling reaches a handler.
        let segments: Vec<&str> = path.strip_prefix('/').map(|rest| rest.split('/').collect()).unwrap_or_default();
        let result = match (method.as_str(), segments.as_slice()) {
            ("POST", ["v1", "accounts", "signup"]) => lifecycle::signup(&req),
            ("POST", ["v1", "accounts", "verify"]) => lifecycle::verify(&req),
            ("POST", ["v1", "accounts", "invite"]) => http::admin(&req).and_then(|()| lifecycle::invite(&req)),
            ("POST", ["v1", "accounts", "accept-invite"]) => lifecycle::accept_invite(&req),
            ("POST", ["v1", "accounts", "password-reset"]) => lifecycle::request_reset(&req),
            ("POST", ["v1", "accounts", "password-reset", "confirm"]) => lifecycle::confirm_reset(&req),
            ("POST", ["v1", "accounts", "confirm-email"]) => profile::confirm_email(&req),
            ("POST", ["v1", "sessions"]) => signin::sign_in(&req),
            ("GET", ["v1", "sessions"]) => signin::list(&req),
            ("DELETE", ["v1", "sessions", "current"]) => signin::sign_out(&req),
            ("DELETE", ["v1", "sessions", id]) => signin::revoke(&req, id),
            ("GET", ["v1", "me"]) => profile::get(&req),
            ("PATCH", ["v1", "me"]) => profile::update(&req),
            ("DELETE", ["v1", "me"]) => profile::deactivate(&req),
            ("POST", ["v1", "me", "password"]) => profile::change_password(&req),
            ("POST", ["v1", "me", "email"]) => profile::change_email(&req),
            ("GET", ["v1", "admin", "accounts"]) => http::admin(&req).and_then(|()| admin::list(&req)),
            ("POST", ["v1", "admin", "accounts", id, action]) => {
                http::admin(&req).and_then(|()| admin::transition(id, action))
            }
            _ => Err(http::Failure::new(404, "not_found", "no such accounts route")),
        };
        result.unwrap_or_else(|failure| failure.into_response(&req))
    }
}

export!(Accounts);
