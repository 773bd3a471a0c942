//! `plinth:platform/settings`: the plugin's own `[plugins.settings]`.

use crate::runtime::bindings::settings::Host;
use crate::runtime::state::HostState;

impl Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.settings.get(&name).cloned())
    }
}
