//! Sign-in through an external provider, once the host has verified the
//! provider's ID token: who gets in, as which account.
//!
//! A person a provider names (provider, subject) is linked to one account
//! for good (`link/{provider}/{sha256 of subject}` → account id). The first
//! time, the link is made only through an address the provider says it
//! verified: to the account holding that address, or to a new one. An
//! unverified or missing address is refused rather than trusted, so a
//! provider that lets anyone claim any address cannot reach someone else's
//! account. A pending account (a signup nobody has verified) holding the
//! address is taken over and loses its password: whoever signed up with
//! someone else's address must not keep a way in (account pre-hijacking).

use plinth_kit::external_sign_in::{Identity, Refusal};

use plinth_kit::bindings::plinth::platform::audit::Outcome as Audit;

use crate::fields;
use crate::model::{Account, State};
use crate::store::{self, Stored};

fn link_key(identity: &Identity) -> String {
    format!("link/{}/{}", identity.provider, store::sha256(&identity.subject))
}

fn unavailable(error: impl std::fmt::Display) -> Refusal {
    Refusal::new("storage_unavailable", format!("the account store is unavailable: {error}"))
}

/// The account `identity` signs in as, or why not.
pub fn admit(identity: Identity) -> Result<String, Refusal> {
    let key = link_key(&identity);
    if let Some(id) = plinth_kit::kv::get(&key).map_err(unavailable)? {
        let id = String::from_utf8_lossy(&id).into_owned();
        let stored = store::account(&id).map_err(unavailable)?.ok_or_else(|| gone(&id))?;
        return active(&stored.account).map(|()| id);
    }
    let Some(raw) = identity.email.as_deref() else {
        return Err(Refusal::new(
            "email_required",
            "the provider did not share an e-mail address, which a first sign-in needs",
        ));
    };
    let email = fields::email("email", raw)
        .map_err(|_| Refusal::new("email_invalid", "the provider's e-mail address is not one this service takes"))?;
    if !identity.email_verified {
        store::record("account.external_refused", &store::sha256(&email), Audit::Denied, Some(refused_why(&identity)))
            .map_err(unavailable)?;
        return Err(Refusal::new(
            "email_unverified",
            "the provider has not verified this e-mail address, so it cannot be linked to an account",
        ));
    }
    let account = match store::account_by_email(&email).map_err(unavailable)? {
        Some(stored) if stored.account.state == State::Pending && !identity.may_create => {
            return Err(Refusal::new(
                "account_creation_paused",
                "accounts are not activated this way while emergency mode is on; an admin can send you a sign-in link",
            ));
        }
        Some(stored) if stored.account.state == State::Pending => take_over(&stored)?,
        Some(stored) => {
            active(&stored.account)?;
            stored.account
        }
        None if !identity.may_create => {
            return Err(Refusal::new(
                "account_creation_paused",
                "new accounts are not made while emergency mode is on; an admin can send you a sign-in link",
            ));
        }
        None => create(&identity, email)?,
    };
    // One person, one link: a concurrent first sign-in of the same person
    // finds the link made and follows it.
    match plinth_kit::kv::compare_and_swap(&key, None, Some(account.id.as_bytes())).map_err(unavailable)? {
        plinth_kit::kv::Swap::Swapped => {}
        plinth_kit::kv::Swap::Conflict(Some(id)) => return Ok(String::from_utf8_lossy(&id).into_owned()),
        plinth_kit::kv::Swap::Conflict(None) => return Err(unavailable("the link vanished while it was made")),
    }
    let reason = Some(format!("provider={}", identity.provider));
    store::record("account.external_linked", &account.id, Audit::Success, reason).map_err(unavailable)?;
    Ok(account.id)
}

fn refused_why(identity: &Identity) -> String {
    format!("provider={} address not verified by the provider", identity.provider)
}

fn gone(id: &str) -> Refusal {
    Refusal::new("account_missing", format!("the account linked to this sign-in ({id}) no longer exists"))
}

fn active(account: &Account) -> Result<(), Refusal> {
    match account.state {
        State::Active => Ok(()),
        state => Err(Refusal::new(
            &format!("account_{}", state.name()),
            format!("the account is {}; it cannot sign in", state.name()),
        )),
    }
}

/// An unverified signup holding the address: now proven by the provider,
/// active, and without the password its unknown author chose.
fn take_over(stored: &Stored) -> Result<Account, Refusal> {
    let next = Account { state: State::Active, password_hash: String::new(), ..stored.account.clone() };
    let reason = Some("an unverified signup, taken over by a provider-verified sign-in".into());
    let updated = store::update_recorded(stored, next, "account.verified", reason)
        .map_err(|e| Refusal::new("conflict", format!("the account changed meanwhile; sign in again ({e:?})")))?;
    store::sync_principal(&updated).map_err(unavailable)?;
    Ok(updated)
}

fn create(identity: &Identity, email: String) -> Result<Account, Refusal> {
    let fallback = email.split('@').next().unwrap_or("member").to_owned();
    let display_name = identity
        .name
        .as_deref()
        .and_then(|name| fields::display_name(name).ok())
        .unwrap_or_else(|| fields::display_name(&fallback).unwrap_or_else(|_| "member".to_owned()));
    let now = store::now();
    let account = Account {
        id: store::random_hex(16),
        email,
        display_name,
        locale: None,
        password_hash: String::new(),
        state: State::Active,
        roles: Vec::new(),
        version: 1,
        created_at: now,
        verified_at: Some(now),
    };
    if !store::create(&account).map_err(unavailable)? {
        return Err(Refusal::new("conflict", "an account took this address meanwhile; sign in again"));
    }
    let reason = Some(format!("provider={}", identity.provider));
    store::record("account.created", &account.id, Audit::Success, reason).map_err(unavailable)?;
    store::sync_principal(&account).map_err(unavailable)?;
    Ok(account)
}
