//! Administration: list accounts, suspend, reactivate, deactivate.

use crate::http::{self, Failure, Outcome};
use crate::model::{Account, Action, State};
use crate::plinth::platform::types::Request;
use crate::store;

/// Most accounts one listing returns.
const MAX_LIST: u32 = 1000;

pub fn list(req: &Request) -> Outcome {
    let query = req.query().unwrap_or_default();
    let filter = match query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == "state") {
        Some((_, value)) => Some(State::parse(value).ok_or_else(|| {
            Failure::new(400, "invalid_query", "`state` must be pending, active, suspended or deactivated")
        })?),
        None => None,
    };
    let accounts: Vec<_> = store::accounts(MAX_LIST)?
        .iter()
        .filter(|a| filter.is_none_or(|s| a.state == s))
        .map(Account::profile)
        .collect();
    Ok(http::json(200, &serde_json::json!({ "accounts": accounts })))
}

pub fn transition(id: &str, action: &str) -> Outcome {
    let action = match action {
        "suspend" => Action::Suspend,
        "reactivate" => Action::Reactivate,
        "deactivate" => Action::Deactivate,
        _ => return Err(Failure::new(404, "not_found", "no such account action")),
    };
    let stored = store::account(id)?.ok_or_else(|| Failure::new(404, "not_found", "no such account"))?;
    let state = stored.account.state.apply(action).map_err(|why| Failure::new(409, "invalid_transition", why))?;
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
    Ok(http::json(200, &serde_json::json!({ "id": updated.id, "state": updated.state.name() })))
}

fn past_tense(action: Action) -> &'static str {
    match action {
        Action::Verify => "verified",
        Action::Suspend => "suspended",
        Action::Reactivate => "reactivated",
        Action::Deactivate => "deactivated",
    }
}
