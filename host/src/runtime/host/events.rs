//! `plinth:platform/events`: versioned writes that publish, and streams.
//! Topics are the plugin's own keys; the plugin's name comes from the host.

use bytes::Bytes;
use wasmtime::component::Resource;

use crate::events::{Change as HeldChange, MAX_CHANGE_BYTES, StreamRefusal as Refusal};
use crate::runtime::bindings::events::{Change, Host, StreamRefusal};
use crate::runtime::bindings::kv::{Error, Op, WriteOutcome};
use crate::runtime::host::kv::ops;
use crate::runtime::host::types::{Follow, ResponseData};
use crate::runtime::state::HostState;
use crate::storage::{self, MAX_KEY_BYTES};

impl Host for HostState {
    async fn publish_write(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: Option<Vec<u8>>,
        also: Vec<Op>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<WriteOutcome, Error>> {
        if data.len() > MAX_CHANGE_BYTES {
            return Ok(Err(Error::ValueTooLarge(MAX_CHANGE_BYTES as u64)));
        }
        let ctx = self.plugin.clone();
        let data = Bytes::from(data);
        let publish = |version| {
            let change = HeldChange::new(version, expected, data.clone());
            ctx.events.publish(&ctx.name, &key, change);
        };
        let op = storage::VersionedOp { key: key.clone(), expected, value, also: ops(also) };
        let result = ctx.namespace.write_versioned(op, &publish).await;
        Ok(self.wrote(result).map(|write| ctx.count(write)))
    }

    async fn since(&mut self, key: String, after: u64) -> wasmtime::Result<Option<Vec<Change>>> {
        let ctx = &self.plugin;
        let changes = ctx.events.since(&ctx.name, &key, after);
        Ok(changes.map(|changes| {
            changes
                .into_iter()
                .map(|c| Change { version: c.version, previous: c.previous, data: c.data.to_vec() })
                .collect()
        }))
    }

    async fn follow(
        &mut self,
        response: Resource<ResponseData>,
        key: String,
        after: u64,
    ) -> wasmtime::Result<Result<(), StreamRefusal>> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Ok(Err(StreamRefusal::Invalid(format!("a key is 1 to {MAX_KEY_BYTES} bytes"))));
        }
        let request = &self.request;
        if request.revalidation {
            self.table.get_mut(&response)?.follow = Some(Follow { key, after, ticket: None });
            return Ok(Ok(()));
        }
        let account = request.principal.as_ref().map(|p| p.account_id.as_str());
        let client = crate::events::client_key(account, &request.client_address);
        let ticket = match self.plugin.events.admit(&self.plugin.name, client) {
            Ok(ticket) => ticket,
            Err(Refusal::TooManyForClient(n)) => return Ok(Err(StreamRefusal::TooManyForClient(n))),
            Err(Refusal::TooMany(n)) => return Ok(Err(StreamRefusal::TooMany(n))),
        };
        self.table.get_mut(&response)?.follow = Some(Follow { key, after, ticket: Some(ticket) });
        Ok(Ok(()))
    }
}
