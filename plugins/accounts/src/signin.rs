//! Signing in and out, and the caller's own sessions. Every failed sign-in
//! answers the same 401, whatever the reason; password checks are counted
//! per address before they are made (a right password gives its count
//! back), so one account cannot be guessed at more than the configured
//! number of times an hour, however many guesses arrive at once (the host
//! also limits each client address).

use serde::Deserialize;

use crate::{fields, hourly};

use crate::model::{Account, State};
use crate::store;
use plinth_kit::audit::Outcome as Audit;
use plinth_kit::{Error, Request, Response, Result};
use plinth_kit::{kv, passwords, sessions};

/// The most failures an account may have per window, whatever the settings.
const MAX_FAILURES: u64 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

fn failure_limit() -> u64 {
    store::setting("max_failed_logins_per_hour", "20").parse().unwrap_or(20).clamp(1, MAX_FAILURES)
}

/// Takes one of the address's password checks for the hour, before the
/// password is checked (given back when it is right), so that checks sent
/// at once cannot all pass before any failure is counted; refused once
/// they are used up.
fn take_attempt(key: &str) -> Result<(), Error> {
    match hourly::take(key, failure_limit())? {
        hourly::Taken::Yes => Ok(()),
        hourly::Taken::Full { seconds_left } => Err(Error::new(
            429,
            "too_many_failed_logins",
            "too many failed sign-ins; try again later or reset your password",
        )
        .with_header("retry-after", seconds_left.to_string())),
    }
}

/// The failed-attempt counter of an address (sign-ins and password checks
/// of a signed-in user count together).
fn failure_key(email: &str) -> String {
    format!("fail/{}", store::sha256(email))
}

/// The password hash to check against: none for an account that has no
/// password (made by a sign-in through a provider), which then costs what
/// an unknown address does and never matches.
fn stored_hash(account: &Account) -> Option<&str> {
    Some(account.password_hash.as_str()).filter(|hash| !hash.is_empty())
}

/// Checks a password a signed-in user (or a verifying one) re-enters:
/// 403 when wrong, and counted with failed sign-ins, so a stolen session
/// cannot guess the password faster than a sign-in form could.
pub fn check_password_attempt(account: &Account, password: &str) -> Result<(), Error> {
    let key = failure_key(&account.email);
    take_attempt(&key)?;
    if passwords::verify(password, stored_hash(account)).valid {
        return hourly::give_back(&key);
    }
    store::record("account.password_check_failed", &account.id, Audit::Failure, None)?;
    Err(Error::new(403, "wrong_password", "the password is wrong"))
}

/// `POST /v1/sessions`: browser sign-in; the host sets the session cookie.
pub fn sign_in(req: &Request) -> Result<Response> {
    let account = check_credentials(req)?;
    let issued = sessions::issue(&account.id).map_err(session_error)?;
    still_current(&account, &issued.session_id)?;
    Ok(Response::json(200, &serde_json::json!({ "account_id": account.id, "csrf_token": issued.csrf_token })))
}

/// `POST /v1/sessions/token`: API sign-in. No cookie: the bearer token is
/// in the body, for `Authorization: Bearer` (which needs no CSRF token).
pub fn sign_in_for_api(req: &Request) -> Result<Response> {
    let account = check_credentials(req)?;
    let issued = sessions::issue_token(&account.id).map_err(session_error)?;
    still_current(&account, &issued.session.session_id)?;
    Ok(Response::json(
        200,
        &serde_json::json!({
            "account_id": account.id,
            "token": issued.token,
            "token_type": "Bearer",
            "expires_at": issued.session.expires_at,
        }),
    ))
}

/// After a session is issued to `checked`: the account must still hold
/// the credentials that were checked, and be active. A reset, a password
/// change or a suspension that landed while the password was being checked
/// revoked the sessions it saw, not yet this one; so this one is revoked
/// here, and the sign-in fails as a wrong password does.
fn still_current(checked: &Account, session_id: &str) -> Result<()> {
    let now = store::account(&checked.id)?;
    if now
        .is_some_and(|s| s.account.state == State::Active && s.account.credential_stamp() == checked.credential_stamp())
    {
        return Ok(());
    }
    sessions::revoke(&checked.id, session_id).map_err(session_error)?;
    Err(Error::new(401, "invalid_credentials", "the e-mail address or password is wrong"))
}

/// The active account whose e-mail address and password the body carries,
/// with the throttle, the constant-cost check and the audit record.
fn check_credentials(req: &Request) -> Result<Account> {
    let input: Credentials = req.json()?;
    // Decided before the password is checked: the answer must not tell
    // whether it was right.
    let only_role = match sessions::password_sign_in() {
        sessions::PasswordPolicy::Off => {
            return Err(Error::new(
                403,
                "password_sign_in_disabled",
                "password sign-in is off: sign in through a provider (GET /v1/auth/status)",
            ));
        }
        sessions::PasswordPolicy::BreakGlassOnly(role) => Some(role),
        sessions::PasswordPolicy::Available => None,
    };
    let email = fields::email("email", &input.email)?;
    let key = failure_key(&email);
    take_attempt(&key)?;
    let stored = store::account_by_email(&email)?;
    // Unknown addresses are checked against a dummy hash: same cost.
    let verdict = passwords::verify(&input.password, stored.as_ref().and_then(|s| stored_hash(&s.account)));
    let allowed = |account: &Account| only_role.as_ref().is_none_or(|role| account.roles.contains(role));
    let account = match stored {
        Some(stored) if verdict.valid && stored.account.state == State::Active && allowed(&stored.account) => stored,
        other => {
            let reason = other.map_or("unknown address", |s| match (verdict.valid, s.account.state) {
                (false, _) => "wrong password",
                (true, State::Active) => "not break-glass in emergency mode",
                (true, state) => state.name(),
            });
            store::record("session.login_failed", &store::sha256(&email), Audit::Failure, Some(reason.into()))?;
            return Err(Error::new(401, "invalid_credentials", "the e-mail address or password is wrong"));
        }
    };
    kv::delete(&key).map_err(Error::unavailable)?;
    let account = if verdict.needs_rehash {
        let next = crate::model::Account {
            password_hash: crate::lifecycle::hash(&input.password)?,
            ..account.account.clone()
        };
        store::update(&account, next)?.unwrap_or(account.account)
    } else {
        account.account
    };
    store::record("session.login", &account.id, Audit::Success, None)?;
    Ok(account)
}

pub fn session_error(e: sessions::Error) -> Error {
    match e {
        sessions::Error::AuditUnavailable => store::audit_unavailable(),
        sessions::Error::AccountNotActive => {
            Error::new(401, "invalid_credentials", "the e-mail address or password is wrong")
        }
        // Only after the credentials were checked (break-glass mode): the
        // answer a wrong password gets, so it tells nothing.
        sessions::Error::Refused(_) => {
            Error::new(401, "invalid_credentials", "the e-mail address or password is wrong")
        }
        other => Error::unavailable(other),
    }
}

pub fn list(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let sessions = sessions::list(&me.account_id).map_err(session_error)?;
    let sessions: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.session_id,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "client_address": s.client_address,
                "user_agent": s.user_agent,
                "current": s.current,
            })
        })
        .collect();
    Ok(Response::json(200, &serde_json::json!({ "sessions": sessions })))
}

pub fn sign_out(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    store::record("session.logout", &me.account_id, Audit::Success, None)?;
    sessions::revoke_current().map_err(session_error)?;
    Ok(Response::empty(204))
}

/// `DELETE /v1/sessions/{id}`.
pub fn revoke(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let session_id: String = req.param("id")?;
    // Only the caller's own sessions: the host looks it up under this account.
    if sessions::revoke(&me.account_id, &session_id).map_err(session_error)? {
        Ok(Response::empty(204))
    } else {
        Err(Error::new(404, "not_found", "no such session"))
    }
}

/// Revokes every session of an account but `except`.
pub fn revoke_all(account_id: &str, except: Option<&str>) -> Result<u32, Error> {
    sessions::revoke_all(account_id, except).map_err(session_error)
}
