//! `plinth:platform/audit`: a plugin's domain events, in an envelope the
//! host fills (time, plugin, actor, client address, trace id).

use crate::audit::{Actor, Outcome, RecordDraft};
use crate::runtime::bindings::audit::{self, Event, Host};
use crate::runtime::state::HostState;

impl Host for HostState {
    async fn emit(&mut self, event: Event) -> wasmtime::Result<Result<(), String>> {
        let actor = match &self.request.principal {
            Some(p) => Actor::Principal(p.account_id.clone()),
            None => Actor::Anonymous,
        };
        let draft = RecordDraft {
            actor,
            action: event.action,
            target: event.target,
            outcome: match event.outcome {
                audit::Outcome::Success => Outcome::Success,
                audit::Outcome::Failure => Outcome::Failure,
                audit::Outcome::Denied => Outcome::Denied,
            },
            reason: event.reason,
            client_address: Some(self.request.client_address.clone()),
            trace_id: Some(self.request.trace_id.clone()),
            plugin: Some(self.plugin.name.to_string()),
        };
        let result = self.plugin.audit.append(draft).await;
        if result.is_ok() {
            self.wrote = true;
        }
        Ok(result.map(drop).map_err(|e| e.to_string()))
    }
}
