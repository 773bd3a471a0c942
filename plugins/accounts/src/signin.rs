//! Signing in and out, and the caller's own sessions. Every failed sign-in
//! answers the same 401, whatever the reason; failures are counted per
//! address so one account cannot be guessed at more than the configured
//! number of times an hour (the host also limits each client address).

use serde::Deserialize;

use crate::hourly;

use crate::http::{self, Failure, Outcome, unavailable};
use crate::model::{Account, State};
use crate::plinth::platform::audit::Outcome as Audit;
use crate::plinth::platform::types::Request;
use crate::plinth::platform::{kv, passwords, sessions};
use crate::store;

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

/// Refuses while this address has used up its failures for the hour.
fn check_throttle(key: &str) -> Result<(), Failure> {
    let (failures, left) = hourly::current(key)?;
    if failures >= failure_limit() {
        let mut refusal = Failure::new(
            429,
            "too_many_failed_logins",
            "too many failed sign-ins; try again later or reset your password",
        );
        refusal.headers.push(("retry-after", left.to_string()));
        return Err(refusal);
    }
    Ok(())
}

/// The failed-attempt counter of an address (sign-ins and password checks
/// of a signed-in user count together).
fn failure_key(email: &str) -> String {
    format!("fail/{}", store::sha256(email))
}

/// Checks a password a signed-in user (or a verifying one) re-enters:
/// 403 when wrong, and counted with failed sign-ins, so a stolen session
/// cannot guess the password faster than a sign-in form could.
pub fn check_password_attempt(account: &Account, password: &str) -> Result<(), Failure> {
    let key = failure_key(&account.email);
    check_throttle(&key)?;
    if passwords::verify(password, Some(&account.password_hash)).valid {
        return Ok(());
    }
    hourly::count(&key)?;
    store::record("account.password_check_failed", &account.id, Audit::Failure, None)?;
    Err(Failure::new(403, "wrong_password", "the password is wrong"))
}

pub fn sign_in(req: &Request) -> Outcome {
    let input: Credentials = http::body(req)?;
    let email = http::email("email", &input.email)?;
    let key = failure_key(&email);
    check_throttle(&key)?;
    let stored = store::account_by_email(&email)?;
    // Unknown addresses are checked against a dummy hash: same cost.
    let verdict = passwords::verify(&input.password, stored.as_ref().map(|s| s.account.password_hash.as_str()));
    let account = match stored {
        Some(stored) if verdict.valid && stored.account.state == State::Active => stored,
        other => {
            let reason = other
                .map_or("unknown address", |s| if verdict.valid { s.account.state.name() } else { "wrong password" });
            hourly::count(&key)?;
            store::record("session.login_failed", &store::sha256(&email), Audit::Failure, Some(reason.into()))?;
            return Err(Failure::new(401, "invalid_credentials", "the e-mail address or password is wrong"));
        }
    };
    kv::delete(&key).map_err(unavailable)?;
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
    let issued = sessions::issue(&account.id).map_err(session_error)?;
    Ok(http::json(200, &serde_json::json!({ "account_id": account.id, "csrf_token": issued.csrf_token })))
}

pub fn session_error(e: sessions::Error) -> Failure {
    match e {
        sessions::Error::AuditUnavailable => store::audit_unavailable(),
        sessions::Error::AccountNotActive => {
            Failure::new(401, "invalid_credentials", "the e-mail address or password is wrong")
        }
        other => unavailable(other),
    }
}

pub fn list(req: &Request) -> Outcome {
    let me = http::principal(req)?;
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
    Ok(http::json(200, &serde_json::json!({ "sessions": sessions })))
}

pub fn sign_out(req: &Request) -> Outcome {
    let me = http::principal(req)?;
    store::record("session.logout", &me.account_id, Audit::Success, None)?;
    sessions::revoke_current().map_err(session_error)?;
    Ok(http::empty(204))
}

pub fn revoke(req: &Request, session_id: &str) -> Outcome {
    let me = http::principal(req)?;
    // Only the caller's own sessions: the host looks it up under this account.
    if sessions::revoke(&me.account_id, session_id).map_err(session_error)? {
        Ok(http::empty(204))
    } else {
        Err(Failure::new(404, "not_found", "no such session"))
    }
}

/// Revokes every session of an account but `except`.
pub fn revoke_all(account_id: &str, except: Option<&str>) -> Result<u32, Failure> {
    sessions::revoke_all(account_id, except).map_err(session_error)
}
