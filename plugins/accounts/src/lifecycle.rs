//! Signup and verification, invitations, and password resets. Answers that
//! could tell whether an address has an account are the same either way.

use serde::Deserialize;

use crate::fields;
use crate::model::{Account, Action, Purpose, State, Token};
use crate::store;
use plinth_kit::audit::Outcome as Audit;
use plinth_kit::passwords;
use plinth_kit::{Error, Request, Response, Result};

/// Longest a reset link may live, whatever the settings say.
const MAX_RESET_TTL: u64 = 3600;

fn accepted() -> Result<Response> {
    Ok(Response::json(
        202,
        &serde_json::json!({ "status": "accepted", "message": "if the address can receive it, an e-mail is on its way" }),
    ))
}

/// Refuses weak passwords with a 422 that says why.
pub fn check_password(password: &str, related: &[&str]) -> Result<(), Error> {
    let related: Vec<String> = related.iter().map(|s| (*s).to_owned()).collect();
    passwords::check_strength(password, &related).map_err(|why| Error::new(422, "weak_password", why))
}

pub fn hash(password: &str) -> Result<String, Error> {
    passwords::hash(password).map_err(Error::unavailable)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signup {
    email: String,
    password: String,
    display_name: String,
}

pub fn signup(req: &Request) -> Result<Response> {
    let input: Signup = req.json()?;
    let email = fields::email("email", &input.email)?;
    let display_name = fields::display_name(&input.display_name)?;
    check_password(&input.password, &[&email, &display_name])?;
    // Hash either way, so an existing address costs the same time.
    let password_hash = hash(&input.password)?;
    let existing = store::account_by_email(&email)?;
    if let Some(pending) = existing.as_ref().filter(|s| s.account.state == State::Pending) {
        // Nobody has proven this address yet, so it is not held: the new
        // signup replaces the old one's password. Its links stay valid (a
        // pending account's stamp is its address), but verification needs
        // the password now in force, and a reset needs only the address.
        let next = Account { password_hash, display_name, ..pending.account.clone() };
        let reason = Some("replaced an unverified signup".into());
        let updated = store::update_recorded(pending, next, "account.signup", reason)?;
        if store::may_mail(&email)? {
            mail_verification(&updated)?;
        }
        return accepted();
    }
    let id = store::random_hex(16);
    let account = Account {
        id: id.clone(),
        email: email.clone(),
        display_name,
        locale: None,
        password_hash,
        state: State::Pending,
        roles: Vec::new(),
        version: 1,
        created_at: store::now(),
        verified_at: None,
    };
    if existing.is_some() || !store::create(&account)? {
        store::record("account.signup", &store::sha256(&email), Audit::Failure, Some("address taken".into()))?;
        if store::may_mail(&email)? {
            store::mail(
                &email,
                "notice",
                "Someone tried to sign up with your address",
                "Someone tried to create an account with this address, which already has one. If it was you, \
                 sign in or reset your password; otherwise you can ignore this message."
                    .into(),
            )?;
        }
        return accepted();
    }
    store::record("account.signup", &id, Audit::Success, None)?;
    store::sync_principal(&account)?;
    if store::may_mail(&email)? {
        mail_verification(&account)?;
    }
    accepted()
}

/// Mails a pending account its verification link.
fn mail_verification(account: &Account) -> Result<(), Error> {
    store::mail_link(
        &account.email,
        &Token {
            purpose: Purpose::Verify,
            account_id: Some(account.id.clone()),
            email: None,
            roles: Vec::new(),
            expires_at: store::now() + store::seconds("verify_ttl", "24h"),
            stamp: Some(account.credential_stamp()),
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verify {
    token: String,
    password: String,
}

/// Activates a pending account. The link proves the address; the password
/// proves that whoever follows it is who signed up, so a link mailed for
/// somebody else's signup cannot hand its owner an account with a
/// password they did not choose.
pub fn verify(req: &Request) -> Result<Response> {
    let input: Verify = req.json()?;
    let (held, stored) = store::peek_for_account(&input.token, Purpose::Verify)?;
    crate::signin::check_password_attempt(&stored.account, &input.password)?;
    let state = stored.account.state.apply(Action::Verify).map_err(|why| Error::new(409, "invalid_transition", why))?;
    store::consume(held)?;
    let next = Account { state, ..stored.account.clone() };
    let updated = store::update_recorded(&stored, next, "account.verified", None)?;
    store::sync_principal(&updated)?;
    Ok(Response::empty(204))
}

pub fn conflict() -> Error {
    Error::new(409, "conflict", "the account changed meanwhile; retry")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    email: String,
    #[serde(default)]
    roles: Vec<String>,
}

pub fn invite(req: &Request) -> Result<Response> {
    req.require_role(crate::ADMIN_ROLE)?;
    let input: Invite = req.json()?;
    let email = fields::email("email", &input.email)?;
    if let Some(role) = input
        .roles
        .iter()
        .find(|r| r.is_empty() || r.len() > 64 || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(Error::invalid("roles", &format!("`{role}` is not a role name (a-z, 0-9, `-`, `_`)")));
    }
    // An unverified signup does not hold the address: accepting takes it over.
    if store::account_by_email(&email)?.is_some_and(|s| s.account.state != State::Pending) {
        return Err(Error::new(409, "email_taken", "an account with this address exists"));
    }
    store::record(
        "account.invited",
        &store::sha256(&email),
        Audit::Success,
        Some(format!("roles=[{}]", input.roles.join(","))),
    )?;
    store::mail_link(
        &email,
        &Token {
            purpose: Purpose::Invite,
            account_id: None,
            email: Some(email.clone()),
            roles: input.roles,
            expires_at: store::now() + store::seconds("invite_ttl", "72h"),
            stamp: None,
        },
    )?;
    Ok(Response::json(201, &serde_json::json!({ "status": "invited", "email": email })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptInvite {
    token: String,
    password: String,
    display_name: String,
}

/// Creates the invited account. The token is looked up before any costly
/// check, and used only once the account can be made. The invitation
/// proves the address, so an unverified signup holding it is taken over.
pub fn accept_invite(req: &Request) -> Result<Response> {
    let input: AcceptInvite = req.json()?;
    let display_name = fields::display_name(&input.display_name)?;
    let held = store::peek(&input.token, Purpose::Invite)?;
    let email = held.token.email.clone().unwrap_or_default();
    check_password(&input.password, &[&email, &display_name])?;
    let password_hash = hash(&input.password)?;
    let taken = || Error::new(409, "email_taken", "an account with this address exists");
    let existing = store::account_by_email(&email)?;
    if existing.as_ref().is_some_and(|s| s.account.state != State::Pending) {
        return Err(taken());
    }
    let token = store::consume(held)?;
    let account = match existing {
        Some(pending) => {
            let next = Account {
                display_name,
                password_hash,
                state: State::Active,
                roles: token.roles,
                ..pending.account.clone()
            };
            store::update(&pending, next)?.ok_or_else(conflict)?
        }
        None => {
            let account = Account {
                id: store::random_hex(16),
                email,
                display_name,
                locale: None,
                password_hash,
                state: State::Active,
                roles: token.roles,
                version: 1,
                created_at: store::now(),
                verified_at: Some(store::now()),
            };
            if !store::create(&account)? {
                return Err(taken());
            }
            account
        }
    };
    store::sync_principal(&account)?;
    store::record("account.invite_accepted", &account.id, Audit::Success, None)?;
    Ok(Response::json(201, &serde_json::json!({ "account_id": account.id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

pub fn request_reset(req: &Request) -> Result<Response> {
    let input: ResetRequest = req.json()?;
    let email = fields::email("email", &input.email)?;
    let Some(stored) = store::account_by_email(&email)? else {
        store::record("account.reset_requested", &store::sha256(&email), Audit::Failure, Some("no account".into()))?;
        return accepted();
    };
    // A pending account may reset too: the link proves the address, so its
    // owner can take it over from whoever signed up with it.
    if !matches!(stored.account.state, State::Active | State::Pending) {
        store::record(
            "account.reset_requested",
            &stored.account.id,
            Audit::Denied,
            Some(stored.account.state.name().into()),
        )?;
        return accepted();
    }
    store::record("account.reset_requested", &stored.account.id, Audit::Success, None)?;
    if !store::may_mail(&email)? {
        return accepted();
    }
    let ttl = store::seconds("reset_ttl", "1h").clamp(60, MAX_RESET_TTL);
    store::mail_link(
        &email,
        &Token {
            purpose: Purpose::Reset,
            account_id: Some(stored.account.id.clone()),
            email: None,
            roles: Vec::new(),
            expires_at: store::now() + ttl,
            stamp: Some(stored.account.credential_stamp()),
        },
    )?;
    accepted()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetConfirm {
    token: String,
    password: String,
}

/// Sets a new password from a reset link. Every older link of the account
/// (resets, verification) stops working, as the credential stamp changes;
/// a pending account becomes active, its address now proven.
pub fn confirm_reset(req: &Request) -> Result<Response> {
    let input: ResetConfirm = req.json()?;
    let (held, stored) = store::peek_for_account(&input.token, Purpose::Reset)?;
    if !matches!(stored.account.state, State::Active | State::Pending) {
        return Err(Error::new(400, "invalid_token", "the link is invalid, used or expired"));
    }
    check_password(&input.password, &[&stored.account.email, &stored.account.display_name])?;
    let next = Account { password_hash: hash(&input.password)?, state: State::Active, ..stored.account.clone() };
    store::consume(held)?;
    let updated = store::update_recorded(&stored, next, "account.password_reset", None)?;
    if stored.account.state != updated.state {
        store::sync_principal(&updated)?;
    }
    crate::signin::revoke_all(&updated.id, None)?;
    store::mail(&updated.email, "notice", "Your password was changed", "Your password was just reset, and every session was signed out. If this was not you, reset it again and contact support.".into())?;
    Ok(Response::empty(204))
}
