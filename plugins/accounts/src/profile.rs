//! The signed-in user's own account: profile with ETag / If-Match, password
//! and e-mail changes, self-deactivation.

use serde::Deserialize;

use crate::fields;
use crate::lifecycle::{check_password, hash};
use crate::model::{Account, Action, Purpose, State, Token};
use crate::signin::{check_password_attempt, revoke_all, session_error};
use crate::store::{self, Stored};
use plinth_kit::audit::Outcome as Audit;
use plinth_kit::{Error, Request, Response, Result};

fn mine(req: &Request) -> Result<Stored, Error> {
    let me = req.signed_in()?;
    store::account(&me.account_id)?.ok_or_else(|| Error::new(404, "not_found", "this account does not exist"))
}

fn profile_response(status: u16, account: &Account) -> Response {
    Response::json(status, &account.profile()).header("etag", account.etag())
}

pub fn get(req: &Request) -> Result<Response> {
    Ok(profile_response(200, &mine(req)?.account))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    display_name: Option<String>,
    /// A BCP 47 tag such as `en` or `pt-BR`; empty clears it.
    locale: Option<String>,
}

/// Attempts of a PATCH without `If-Match` whose read is overtaken by another
/// write to the account before its compare-and-swap.
const MAX_UPDATE_ATTEMPTS: usize = 8;

impl Patch {
    fn apply(&self, mut account: Account) -> Result<Account, Error> {
        if let Some(name) = &self.display_name {
            account.display_name = fields::display_name(name)?;
        }
        if let Some(locale) = &self.locale {
            let ok = locale.len() <= 35
                && locale
                    .split('-')
                    .all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()));
            account.locale = match (locale.is_empty(), ok) {
                (true, _) => None,
                (false, true) => Some(locale.clone()),
                (false, false) => return Err(Error::invalid("locale", "a language tag such as `en` or `pt-BR`")),
            };
        }
        Ok(account)
    }
}

/// With `If-Match`, the update applies only to that version (else 412);
/// without it, a concurrent write is not the client's problem: re-read and
/// apply again. The audit record follows the write it describes; if it
/// cannot be written the write is undone.
pub fn update(req: &Request) -> Result<Response> {
    let patch: Patch = req.json()?;
    let precondition = req.header("if-match").map(|tag| tag.trim().to_owned()).filter(|tag| tag != "*");
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let stored = mine(req)?;
        if precondition.as_ref().is_some_and(|tag| *tag != stored.account.etag()) {
            return Err(Error::new(
                412,
                "precondition_failed",
                "the profile changed since you read it; fetch it again",
            ));
        }
        let next = patch.apply(stored.account.clone())?;
        if next == stored.account {
            // Nothing changes, so nothing is written or recorded.
            return Ok(profile_response(200, &stored.account));
        }
        match store::update(&stored, next)? {
            Some(updated) => {
                if let Err(failure) = store::record("account.profile_updated", &updated.id, Audit::Success, None) {
                    store::revert(&stored, &updated)?;
                    return Err(failure);
                }
                return Ok(profile_response(200, &updated));
            }
            None if precondition.is_some() => {
                return Err(Error::new(412, "precondition_failed", "the profile changed meanwhile; fetch it again"));
            }
            None => continue,
        }
    }
    Err(Error::new(409, "contended", "the profile is being changed by many requests at once; retry"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    password: String,
}

pub fn change_password(req: &Request) -> Result<Response> {
    let me = req.signed_in()?;
    let stored = mine(req)?;
    let input: PasswordChange = req.json()?;
    check_password_attempt(&stored.account, &input.current_password)?;
    check_password(&input.password, &[&stored.account.email, &stored.account.display_name])?;
    let next = Account { password_hash: hash(&input.password)?, ..stored.account.clone() };
    let updated = store::update_recorded(&stored, next, "account.password_changed", None)?;
    revoke_all(&updated.id, Some(&me.session_id))?;
    store::mail(&updated.email, "notice", "Your password was changed", "Your password was just changed, and your other sessions were signed out. If this was not you, reset your password now.".into())?;
    Ok(Response::empty(204))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailChange {
    current_password: String,
    email: String,
}

pub fn change_email(req: &Request) -> Result<Response> {
    let stored = mine(req)?;
    let input: EmailChange = req.json()?;
    check_password_attempt(&stored.account, &input.current_password)?;
    let email = fields::email("email", &input.email)?;
    if email == stored.account.email {
        return Err(Error::invalid("email", "this is already your address"));
    }
    store::record("account.email_change_requested", &stored.account.id, Audit::Success, None)?;
    if store::account_by_email(&email)?.is_none() {
        store::mail_link(
            &email,
            &Token {
                purpose: Purpose::EmailChange,
                account_id: Some(stored.account.id.clone()),
                email: Some(email.clone()),
                roles: Vec::new(),
                expires_at: store::now() + store::seconds("email_change_ttl", "1h"),
                stamp: Some(stored.account.credential_stamp()),
            },
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
    Ok(Response::json(
        202,
        &serde_json::json!({ "status": "accepted", "message": "confirm the change from the new address" }),
    ))
}

/// Moves the account to the confirmed address: the new address is claimed
/// first, the token used, then the account written; any step failing gives
/// back what the earlier ones took, so the index never keeps an address the
/// account does not have.
pub fn confirm_email(req: &Request) -> Result<Response> {
    let input: fields::TokenOnly = req.json()?;
    let (held, stored) = store::peek_for_account(&input.token, Purpose::EmailChange)?;
    if stored.account.state != State::Active {
        return Err(Error::new(400, "invalid_token", "the link is invalid, used or expired"));
    }
    let id = stored.account.id.clone();
    let email = held.token.email.clone().unwrap_or_default();
    if !store::claim_email(&id, &email)? {
        return Err(Error::new(409, "email_taken", "this address was taken meanwhile"));
    }
    let next = Account { email: email.clone(), ..stored.account.clone() };
    let moved = store::consume(held).and_then(|_| store::update_recorded(&stored, next, "account.email_changed", None));
    match moved {
        Ok(_) => {
            store::release_email(&id, &stored.account.email)?;
            Ok(Response::empty(204))
        }
        Err(failure) => {
            store::release_email(&id, &email)?;
            Err(failure)
        }
    }
}

pub fn deactivate(req: &Request) -> Result<Response> {
    let stored = mine(req)?;
    let state =
        stored.account.state.apply(Action::Deactivate).map_err(|why| Error::new(409, "invalid_transition", why))?;
    let next = Account { state, ..stored.account.clone() };
    let updated = store::update_recorded(&stored, next, "account.deactivated", Some("by the owner".into()))?;
    plinth_kit::sessions::revoke_current().map_err(session_error)?;
    store::sync_principal(&updated)?;
    store::mail(
        &updated.email,
        "notice",
        "Your account was deactivated",
        "Your account was deactivated at your request.".into(),
    )?;
    Ok(Response::empty(204))
}
