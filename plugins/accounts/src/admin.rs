//! Administration: list accounts, suspend, reactivate, deactivate.

use crate::model::{Account, Action, State};
use crate::store;
use plinth_kit::{Error, Request, Response, Result};

/// Most accounts one listing returns.
const MAX_LIST: u32 = 1000;

pub fn list(req: &Request) -> Result<Response> {
    req.require_role(crate::ADMIN_ROLE)?;
    let query = req.query().unwrap_or_default();
    let filter = match query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == "state") {
        Some((_, value)) => Some(State::parse(value).ok_or_else(|| {
            Error::new(400, "invalid_query", "`state` must be pending, active, suspended or deactivated")
        })?),
        None => None,
    };
    let accounts: Vec<_> = store::accounts(MAX_LIST)?
        .iter()
        .filter(|a| filter.is_none_or(|s| a.state == s))
        .map(Account::profile)
        .collect();
    Ok(Response::json(200, &serde_json::json!({ "accounts": accounts })))
}

/// `POST /v1/admin/accounts/{id}/{action}`.
pub fn transition(req: &Request) -> Result<Response> {
    req.require_role(crate::ADMIN_ROLE)?;
    let id: String = req.param("id")?;
    let action = match req.param::<String>("action")?.as_str() {
        "suspend" => Action::Suspend,
        "reactivate" => Action::Reactivate,
        "deactivate" => Action::Deactivate,
        _ => return Err(Error::new(404, "not_found", "no such account action")),
    };
    let stored = store::account(&id)?.ok_or_else(|| Error::new(404, "not_found", "no such account"))?;
    let state = stored.account.state.apply(action).map_err(|why| Error::new(409, "invalid_transition", why))?;
    let action_name = format!("account.{}", past_tense(action));
    let next = Account { state, ..stored.account.clone() };
    let updated = store::update_recorded(&stored, next, &action_name, Some("by an admin".into()))?;
    store::sync_principal(&updated)?;
    if state != State::Active {
        store::mail(
            &updated.email,
            "notice",
            &format!("Your account was {}", past_tense(action)),
            format!(
                "An administrator {} your account. Contact support if you think this is a mistake.",
                past_tense(action)
            ),
        )?;
    }
    Ok(Response::json(200, &serde_json::json!({ "id": updated.id, "state": updated.state.name() })))
}

fn past_tense(action: Action) -> &'static str {
    match action {
        Action::Verify => "verified",
        Action::Suspend => "suspended",
        Action::Reactivate => "reactivated",
        Action::Deactivate => "deactivated",
    }
}
