//! `plinth:platform/webhooks`: the plugin's endpoints and messages, kept
//! and delivered by [`crate::webhooks`].

use crate::runtime::bindings::webhooks::{Delivery, Endpoint, Error, Host};
use crate::runtime::state::HostState;
use crate::webhooks::{self as hooks, WebhookError};

fn endpoint(e: hooks::Endpoint) -> Endpoint {
    Endpoint {
        id: e.id,
        url: e.url,
        secret: e.secret,
        enabled: e.enabled,
        failures: e.failures,
        disabled_reason: e.disabled_reason,
    }
}

fn error(e: WebhookError) -> Error {
    match e {
        WebhookError::InvalidUrl(why) => Error::InvalidUrl(why),
        WebhookError::NotFound => Error::NotFound,
        WebhookError::Disabled => Error::Disabled,
        WebhookError::InvalidPayload(limit) => Error::InvalidPayload(limit),
        WebhookError::Storage(detail) => Error::Storage(detail),
    }
}

impl Host for HostState {
    async fn endpoint_for(&mut self, url: String) -> wasmtime::Result<Result<Endpoint, Error>> {
        let plugin = self.plugin.clone();
        let found = plugin.webhooks.endpoint(&plugin.name, &url).await;
        if found.is_ok() {
            self.wrote = true;
        }
        Ok(found.map(endpoint).map_err(error))
    }

    async fn send(
        &mut self,
        id: String,
        event_type: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<String, Error>> {
        let plugin = self.plugin.clone();
        let sent = plugin.webhooks.send(&plugin.name, &id, &event_type, &payload).await;
        if sent.is_ok() {
            self.wrote = true;
        }
        Ok(sent.map_err(error))
    }

    async fn deliveries(&mut self, id: String) -> wasmtime::Result<Result<Vec<Delivery>, Error>> {
        let plugin = self.plugin.clone();
        let log = plugin.webhooks.deliveries(Some(&plugin.name), &id).await.map_err(error);
        Ok(log.map(|log| {
            log.into_iter()
                .map(|d| Delivery {
                    message_id: d.message_id,
                    event_type: d.event_type,
                    attempt: d.attempt,
                    at: d.at,
                    status: d.status,
                    error: d.error,
                    duration_ms: d.duration_ms,
                })
                .collect()
        }))
    }

    async fn enable(&mut self, id: String) -> wasmtime::Result<Result<Endpoint, Error>> {
        let plugin = self.plugin.clone();
        let envelope = self.envelope();
        let enabled = plugin.webhooks.enable(Some(&plugin.name), &id, &envelope).await;
        Ok(enabled.map(endpoint).map_err(error))
    }
}
