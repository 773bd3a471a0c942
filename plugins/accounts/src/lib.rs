//! The account lifecycle as a plinth plugin. Business rules live here; the
//! host owns sessions, password hashing, the principal registry, e-mail
//! delivery and the audit log, and this plugin reaches them only through its
//! grants (`kv`, `audit`, `log`, `principals`, `sessions`, `passwords`,
//! `outbox`).
//!
//! Storage (its own kv namespace): `account/{id}`, `email/{address}` → id,
//! `token/{sha256 of token}` → single-use token, `fail/{sha256 of address}`
//! → password checks this hour (each counted before it is made, given
//! back when right, cleared by a sign-in), `mailed/{sha256 of address}` → mails the
//! forms sent it this hour, `link/{provider}/{sha256 of subject}` → the
//! account a person signing in through an external provider is.

mod admin;
mod external;
mod fields;
mod hourly;
mod lifecycle;
mod migrations;
mod model;
mod profile;
mod signin;
mod store;

use plinth_kit::Router;

/// The role that may invite and manage accounts. The host's policy already
/// requires it on those routes; the handlers check it too, so a loosened
/// policy opens nothing.
pub const ADMIN_ROLE: &str = "admin";

fn router() -> Router {
    Router::new()
        .post("/v1/accounts/signup", lifecycle::signup)
        .post("/v1/accounts/verify", lifecycle::verify)
        .post("/v1/accounts/invite", lifecycle::invite)
        .post("/v1/accounts/accept-invite", lifecycle::accept_invite)
        .post("/v1/accounts/password-reset", lifecycle::request_reset)
        .post("/v1/accounts/password-reset/confirm", lifecycle::confirm_reset)
        .post("/v1/accounts/confirm-email", profile::confirm_email)
        .post("/v1/sessions", signin::sign_in)
        .post("/v1/sessions/token", signin::sign_in_for_api)
        .get("/v1/sessions", signin::list)
        .delete("/v1/sessions/current", signin::sign_out)
        .delete("/v1/sessions/{id}", signin::revoke)
        .get("/v1/me", profile::get)
        .patch("/v1/me", profile::update)
        .delete("/v1/me", profile::deactivate)
        .post("/v1/me/password", profile::change_password)
        .post("/v1/me/email", profile::change_email)
        .get("/v1/admin/accounts", admin::list)
        .post("/v1/admin/accounts/{id}/{action}", admin::transition)
}

plinth_kit::plugin!(router, migrations = migrations::migrations);
plinth_kit::external_sign_in!(external::admit);
