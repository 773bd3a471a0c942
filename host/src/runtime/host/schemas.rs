//! `plinth:platform/schemas`: JSON Schema validation with the host's cache.

use crate::runtime::bindings::schemas::{Error, Host, Violation};
use crate::runtime::state::HostState;
use crate::schemas::SchemaError;

impl Host for HostState {
    fn validate(&mut self, schema: String, document: String) -> wasmtime::Result<Result<Vec<Violation>, Error>> {
        let checked = self.plugin.schemas.validate(&schema, &document);
        Ok(checked
            .map(|found| {
                found.into_iter().map(|v| Violation { path: v.path, keyword: v.keyword, message: v.message }).collect()
            })
            .map_err(|e| match e {
                SchemaError::InvalidSchema(why) => Error::InvalidSchema(why),
                SchemaError::InvalidDocument(why) => Error::InvalidDocument(why),
            }))
    }
}
