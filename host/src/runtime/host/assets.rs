//! `plinth:platform/assets`: the plugin's read-only files.

use crate::runtime::bindings::assets::Host;
use crate::runtime::state::HostState;

impl Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.plugin.assets.get(&name).map(|bytes| bytes.to_vec()))
    }

    fn names(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.plugin.assets.names().map(str::to_owned).collect())
    }
}
