//! The signed-in user's own account: profile with ETag / If-Match, password
//! and e-mail changes, self-deactivation.

use serde::Deserialize;

use crate::http::{self, Failure, Outcome};
use crate::lifecycle::{check_password, conflict, hash};
use crate::model::{Account, Action, Purpose, Token};
use crate::plinth::platform::audit::Outcome as Audit;
use crate::plinth::platform::passwords;
use crate::plinth::platform::types::{Request, Response};
use crate::signin::{revoke_all, session_error};
use crate::store::{self, Stored};

fn mine(req: &Request) -> Result<Stored, Failure> {
    let me = http::principal(req)?;
    store::account(&me.account_id)?.ok_or_else(|| Failure::new(404, "not_found", "this account does not exist"))
}

fn profile_response(status: u16, account: &Account) -> Response {
    let response = http::json(status, &account.profile());
    let _ = response.set_header("etag", &account.etag());
    response
}

pub fn get(req: &Request) -> Outcome {
    Ok(profile_response(200, &mine(req)?.account))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    display_name: Option<String>,
    /// A BCP 47 tag such as `en` or `pt-BR`; empty clears it.
    locale: Option<String>,
}

pub fn update(req: &Request) -> Outcome {
    let stored = mine(req)?;
    if let Some(expected) = req.header("if-match")
        && expected.trim() != "*"
        && expected.trim() != stored.account.etag()
    {
        return Err(Failure::new(412, "precondition_failed", "the profile changed since you read it; fetch it again"));
    }
    let patch: Patch = http::body(req)?;
    let mut next = stored.account.clone();
    if let Some(name) = patch.display_name {
        next.display_name = http::display_name(&name)?;
    }
    if let Some(locale) = patch.locale {
        let ok = locale.len() <= 35
            && locale.split('-').all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()));
        next.locale = match (locale.is_empty(), ok) {
            (true, _) => None,
            (false, true) => Some(locale),
            (false, false) => return Err(Failure::invalid("locale", "a language tag such as `en` or `pt-BR`")),
        };
    }
    store::record("account.profile_updated", &next.id, Audit::Success, None)?;
    let updated = store::update(&stored, next)?
        .ok_or_else(|| Failure::new(412, "precondition_failed", "the profile changed meanwhile; fetch it again"))?;
    Ok(profile_response(200, &updated))
}

fn require_password(account: &Account, password: &str) -> Result<(), Failure> {
    if passwords::verify(password, Some(&account.password_hash)).valid {
        Ok(())
    } else {
        store::record("account.password_check_failed", &account.id, Audit::Failure, None)?;
        Err(Failure::new(403, "wrong_password", "the current password is wrong"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    password: String,
}

pub fn change_password(req: &Request) -> Outcome {
    let me = http::principal(req)?;
    let stored = mine(req)?;
    let input: PasswordChange = http::body(req)?;
    require_password(&stored.account, &input.current_password)?;
    check_password(&input.password, &[&stored.account.email, &stored.account.display_name])?;
    let next = Account { password_hash: hash(&input.password)?, ..stored.account.clone() };
    store::record("account.password_changed", &me.account_id, Audit::Success, None)?;
    let updated = store::update(&stored, next)?.ok_or_else(conflict)?;
    revoke_all(&updated.id, Some(&me.session_id))?;
    store::mail(&updated.email, "notice", "Your password was changed", "Your password was just changed, and your other sessions were signed out. If this was not you, reset your password now.".into())?;
    Ok(http::empty(204))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailChange {
    current_password: String,
    email: String,
}

pub fn change_email(req: &Request) -> Outcome {
    let stored = mine(req)?;
    let input: EmailChange = http::body(req)?;
    require_password(&stored.account, &input.current_password)?;
    let email = http::email("email", &input.email)?;
    if email == stored.account.email {
        return Err(Failure::invalid("email", "this is already your address"));
    }
    store::record("account.email_change_requested", &stored.account.id, Audit::Success, None)?;
    if store::account_by_email(&email)?.is_none() {
        let token = store::issue_token(&Token {
            purpose: Purpose::EmailChange,
            account_id: Some(stored.account.id.clone()),
            email: Some(email.clone()),
            roles: Vec::new(),
            expires_at: store::now() + store::seconds("email_change_ttl", "1h"),
        })?;
        let link = store::link("confirm-email", &token);
        store::mail(
            &email,
            "email_change",
            "Confirm your new e-mail address",
            format!("Open this link to make this your account's address:\n{link}\n"),
        )?;
    }
    store::mail(
        &stored.account.email,
        "notice",
        "Your e-mail address is changing",
        format!(
            "A change of your account's address to {email} was requested. It applies once confirmed from that address. If this was not you, change your password now."
        ),
    )?;
    Ok(http::json(
        202,
        &serde_json::json!({ "status": "accepted", "message": "confirm the change from the new address" }),
    ))
}

pub fn confirm_email(req: &Request) -> Outcome {
    let input: http::TokenOnly = http::body(req)?;
    let token = store::redeem(&input.token, Purpose::EmailChange)?;
    let id = token.account_id.unwrap_or_default();
    let email = token.email.unwrap_or_default();
    let stored = store::account(&id)?.ok_or_else(|| Failure::new(400, "invalid_token", "the link is invalid"))?;
    store::record("account.email_changed", &id, Audit::Success, None)?;
    if !store::move_email(&id, &stored.account.email, &email)? {
        return Err(Failure::new(409, "email_taken", "this address was taken meanwhile"));
    }
    let next = Account { email, ..stored.account.clone() };
    store::update(&stored, next)?.ok_or_else(conflict)?;
    Ok(http::empty(204))
}

pub fn deactivate(req: &Request) -> Outcome {
    let stored = mine(req)?;
    let state =
        stored.account.state.apply(Action::Deactivate).map_err(|why| Failure::new(409, "invalid_transition", why))?;
    store::record("account.deactivated", &stored.account.id, Audit::Success, Some("by the owner".into()))?;
    let updated = store::update(&stored, Account { state, ..stored.account.clone() })?.ok_or_else(conflict)?;
    crate::plinth::platform::sessions::revoke_current().map_err(session_error)?;
    store::sync_principal(&updated)?;
    store::mail(
        &updated.email,
        "notice",
        "Your account was deactivated",
        "Your account was deactivated at your request.".into(),
    )?;
    Ok(http::empty(204))
}
