//! `plinth:platform/audit`: a plugin's domain events, in an envelope the
//! host fills (time, plugin, actor, client address, trace id).

use crate::audit::Outcome;
use crate::runtime::bindings::audit::{self, Event, Host};
use crate::runtime::state::HostState;

impl Host for HostState {
    async fn emit(&mut self, event: Event) -> wasmtime::Result<Result<(), String>> {
        let outcome = match event.outcome {
            audit::Outcome::Success => Outcome::Success,
            audit::Outcome::Failure => Outcome::Failure,
            audit::Outcome::Denied => Outcome::Denied,
        };
        let draft = self.envelope().draft(&event.action, &event.target, outcome, event.reason);
        let result = self.plugin.audit.append(draft).await;
        if result.is_ok() {
            self.wrote = true;
        }
        Ok(result.map(drop).map_err(|e| e.to_string()))
    }
}
