//! `plinth:platform/outbox`: queue e-mail for the host to deliver.

use crate::runtime::bindings::outbox::{Host, Message};
use crate::runtime::state::HostState;

impl Host for HostState {
    async fn send(&mut self, message: Message) -> wasmtime::Result<Result<String, String>> {
        let outbox = self.plugin.outbox.clone();
        let queued = outbox.queue(&self.plugin.name, &message.to, &message.subject, &message.body, &message.kind).await;
        if queued.is_ok() {
            self.wrote = true;
        }
        Ok(queued)
    }
}
