//! The plugin's data and its host calls: accounts, the e-mail index,
//! single-use tokens, sign-in failure counters, settings, audit and mail.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::model::{Account, Purpose, State, Token};
use plinth_kit::{Error, audit, kv, outbox, principals, settings};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `bytes` random bytes, hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the host provides randomness");
    hex(&buf)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn get<T: DeserializeOwned>(key: &str) -> Result<Option<(T, Vec<u8>)>, Error> {
    match kv::get(key).map_err(Error::unavailable)? {
        Some(bytes) => {
            let value = serde_json::from_slice(&bytes).map_err(Error::unavailable)?;
            Ok(Some((value, bytes)))
        }
        None => Ok(None),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// An account with the bytes it was read as (for compare-and-swap).
pub struct Stored {
    pub account: Account,
    bytes: Vec<u8>,
}

pub fn account(id: &str) -> Result<Option<Stored>, Error> {
    Ok(get::<Account>(&format!("account/{id}"))?.map(|(account, bytes)| Stored { account, bytes }))
}

pub fn account_by_email(email: &str) -> Result<Option<Stored>, Error> {
    match kv::get(&format!("email/{email}")).map_err(Error::unavailable)? {
        Some(id) => account(&String::from_utf8_lossy(&id)),
        None => Ok(None),
    }
}

/// Creates an account and claims its address; false when the address was
/// taken meanwhile.
pub fn create(account: &Account) -> Result<bool, Error> {
    let index = format!("email/{}", account.email);
    match kv::compare_and_swap(&index, None, Some(account.id.as_bytes())).map_err(Error::unavailable)? {
        kv::Swap::Swapped => {}
        kv::Swap::Conflict(_) => return Ok(false),
    }
    kv::set(&format!("account/{}", account.id), &encode(account)).map_err(Error::unavailable)?;
    Ok(true)
}

/// Replaces an account if nobody changed it since it was read; the new
/// version is one more. Returns false on a concurrent change.
pub fn update(stored: &Stored, mut next: Account) -> Result<Option<Account>, Error> {
    next.version = stored.account.version + 1;
    if next.state != State::Pending && next.verified_at.is_none() {
        next.verified_at = Some(now());
    }
    let key = format!("account/{}", next.id);
    match kv::compare_and_swap(&key, Some(&stored.bytes), Some(&encode(&next))).map_err(Error::unavailable)? {
        kv::Swap::Swapped => Ok(Some(next)),
        kv::Swap::Conflict(_) => Ok(None),
    }
}

/// Undoes [`update`] (its audit record could not be written), unless another
/// write has replaced it since.
pub fn revert(previous: &Stored, updated: &Account) -> Result<(), Error> {
    let key = format!("account/{}", updated.id);
    kv::compare_and_swap(&key, Some(&encode(updated)), Some(&previous.bytes)).map_err(Error::unavailable)?;
    Ok(())
}

/// Writes `next` over `stored` and records `action` about it; when the
/// record cannot be written the write is undone. So nothing is done
/// unrecorded, and nothing recorded that was not done.
pub fn update_recorded(stored: &Stored, next: Account, action: &str, reason: Option<String>) -> Result<Account, Error> {
    let updated = update(stored, next)?.ok_or_else(crate::lifecycle::conflict)?;
    if let Err(failure) = record(action, &updated.id, audit::Outcome::Success, reason) {
        revert(stored, &updated)?;
        return Err(failure);
    }
    Ok(updated)
}

/// Points an address at an account in the index; false when it is taken.
pub fn claim_email(id: &str, email: &str) -> Result<bool, Error> {
    match kv::compare_and_swap(&format!("email/{email}"), None, Some(id.as_bytes())).map_err(Error::unavailable)? {
        kv::Swap::Swapped => Ok(true),
        kv::Swap::Conflict(_) => Ok(false),
    }
}

/// Removes an address from the index if it still points at this account.
pub fn release_email(id: &str, email: &str) -> Result<(), Error> {
    kv::compare_and_swap(&format!("email/{email}"), Some(id.as_bytes()), None).map_err(Error::unavailable)?;
    Ok(())
}

/// Every account (first `limit`), for admins.
pub fn accounts(limit: u32) -> Result<Vec<Account>, Error> {
    let page = kv::scan_prefix("account/", None, limit).map_err(Error::unavailable)?;
    page.entries.iter().map(|e| serde_json::from_slice(&e.value).map_err(Error::unavailable)).collect()
}

/// Mirrors an account into the host's registry, which every request checks.
pub fn sync_principal(account: &Account) -> Result<(), Error> {
    let status = match account.state {
        State::Pending => principals::Status::Pending,
        State::Active => principals::Status::Active,
        State::Suspended => principals::Status::Suspended,
        State::Deactivated => principals::Status::Deactivated,
    };
    let record = principals::Account { id: account.id.clone(), roles: account.roles.clone(), status };
    principals::put(&record).map_err(|e| match e {
        principals::Error::AuditUnavailable => audit_unavailable(),
        other => Error::unavailable(other),
    })
}

/// A new single-use token: the secret to send, its record stored by hash.
fn issue_token(token: &Token) -> Result<String, Error> {
    let secret = random_hex(32);
    kv::set(&format!("token/{}", sha256(&secret)), &encode(token)).map_err(Error::unavailable)?;
    Ok(secret)
}

/// A token looked up, valid now, not yet redeemed.
pub struct Held {
    pub token: Token,
    /// Where it is stored and the bytes read, for the compare-and-swap.
    key: String,
    bytes: Vec<u8>,
}

fn invalid_token() -> Error {
    Error::new(400, "invalid_token", "the link is invalid, used or expired")
}

/// Looks up an unexpired token for `purpose` without using it.
pub fn peek(secret: &str, purpose: Purpose) -> Result<Held, Error> {
    if secret.len() != 64 {
        return Err(invalid_token());
    }
    let key = format!("token/{}", sha256(secret));
    let Some((token, bytes)) = get::<Token>(&key)? else {
        return Err(invalid_token());
    };
    if token.purpose != purpose {
        return Err(invalid_token());
    }
    if token.expires_at <= now() {
        // Expired tokens are removed when next presented.
        kv::compare_and_swap(&key, Some(&bytes), None).map_err(Error::unavailable)?;
        return Err(invalid_token());
    }
    Ok(Held { token, key, bytes })
}

/// Uses a token once: of all concurrent redemptions exactly one gets it.
pub fn consume(held: Held) -> Result<Token, Error> {
    match kv::compare_and_swap(&held.key, Some(&held.bytes), None).map_err(Error::unavailable)? {
        kv::Swap::Swapped => Ok(held.token),
        kv::Swap::Conflict(_) => Err(invalid_token()),
    }
}

/// Looks up a token that acts on an account, with the account; refused
/// when the account's password or address changed since it was issued.
pub fn peek_for_account(secret: &str, purpose: Purpose) -> Result<(Held, Stored), Error> {
    let held = peek(secret, purpose)?;
    let id = held.token.account_id.clone().unwrap_or_default();
    let stored = account(&id)?.ok_or_else(invalid_token)?;
    if held.token.stamp.as_deref() != Some(stored.account.credential_stamp().as_str()) {
        return Err(invalid_token());
    }
    Ok((held, stored))
}

/// A setting from plinth.toml, or its default.
pub fn setting(name: &str, default: &str) -> String {
    settings::get(name).unwrap_or_else(|| default.to_owned())
}

/// A duration setting such as `"24h"`, `"30m"`, `"90s"`, in seconds.
pub fn seconds(name: &str, default: &str) -> u64 {
    let text = setting(name, default);
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().unwrap_or(0);
    n * match unit {
        "h" => 3600,
        "m" => 60,
        _ => 1,
    }
}

/// A link into the web front end, always from the configured base URL,
/// never from the request's `Host`.
fn link(path: &str, token: &str) -> String {
    let base = setting("public_base_url", "http://localhost:8080");
    format!("{}/{path}?token={token}", base.trim_end_matches('/'))
}

pub fn audit_unavailable() -> Error {
    Error::new(503, "audit_unavailable", "the action could not be recorded, so it was not taken")
}

/// Records a domain event; the action must not proceed when this fails.
pub fn record(action: &str, target: &str, outcome: audit::Outcome, reason: Option<String>) -> Result<(), Error> {
    audit::emit(&audit::Event { action: action.to_owned(), target: target.to_owned(), outcome, reason })
        .map_err(|_| audit_unavailable())
}

/// Issues `token` and mails its link to `to`; the page it opens, the mail's
/// kind, subject and text follow from the token's purpose.
pub fn mail_link(to: &str, token: &Token) -> Result<(), Error> {
    let (page, kind, subject, lead) = match token.purpose {
        Purpose::Verify => {
            ("verify", "verify", "Confirm your e-mail address", "Open this link to activate your account:")
        }
        Purpose::Invite => ("accept-invite", "invite", "You are invited", "Open this link to create your account:"),
        Purpose::Reset => (
            "reset-password",
            "reset",
            "Reset your password",
            "Open this link within an hour to choose a new password:",
        ),
        Purpose::EmailChange => (
            "confirm-email",
            "email_change",
            "Confirm your new e-mail address",
            "Open this link to make this your account's address:",
        ),
    };
    let secret = issue_token(token)?;
    mail(to, kind, subject, format!("{lead}\n{}\n", link(page, &secret)))
}

/// Most mails anyone may trigger to one address an hour (signup and reset
/// links, signup notices), whatever the settings.
const MAX_MAILS_PER_ADDRESS: u64 = 100;

/// Counts a mail an anonymous request wants sent to `email`; false when the
/// address had its share this hour (the answer stays the same; the mail is
/// not sent), so nobody can flood an inbox through the forms.
pub fn may_mail(email: &str) -> Result<bool, Error> {
    let limit = setting("max_mails_per_address_per_hour", "10").parse().unwrap_or(10).clamp(1, MAX_MAILS_PER_ADDRESS);
    let taken = crate::hourly::take(&format!("mailed/{}", sha256(email)), limit)?;
    Ok(matches!(taken, crate::hourly::Taken::Yes))
}

/// Queues an e-mail.
pub fn mail(to: &str, kind: &str, subject: &str, body: String) -> Result<(), Error> {
    let message = outbox::Message { to: to.to_owned(), subject: subject.to_owned(), body, kind: kind.to_owned() };
    outbox::send(&message).map(drop).map_err(Error::unavailable)
}
