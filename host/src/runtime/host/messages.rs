//! `plinth:platform/messages`: the plugin's Fluent messages, formatted by
//! the host in the request's locale.

use crate::i18n::{Argument as CatalogArgument, Locales};
use crate::runtime::bindings::messages::{Argument, Host};
use crate::runtime::state::HostState;

/// Most placeholders one call fills.
const MAX_ARGUMENTS: usize = 64;

impl Host for HostState {
    fn format(
        &mut self,
        locale: String,
        key: String,
        args: Vec<(String, Argument)>,
    ) -> wasmtime::Result<Option<String>> {
        let Some(catalog) = &self.plugin.messages else { return Ok(None) };
        if args.len() > MAX_ARGUMENTS {
            wasmtime::bail!("messages.format with {} arguments; at most {MAX_ARGUMENTS}", args.len());
        }
        let args: Vec<(String, CatalogArgument)> = args
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    Argument::Text(text) => CatalogArgument::Text(text),
                    Argument::Number(n) => CatalogArgument::Number(n),
                };
                (name, value)
            })
            .collect();
        Ok(catalog.format(&locale, &key, &args))
    }

    fn missing(&mut self, keys: Vec<String>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(match &self.plugin.messages {
            Some(catalog) => catalog.missing(&keys),
            None => {
                self.plugin.locales.names().iter().flat_map(|l| keys.iter().map(|k| (l.clone(), k.clone()))).collect()
            }
        })
    }

    fn locales(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.plugin.locales.names().to_vec())
    }

    fn is_rtl(&mut self, locale: String) -> wasmtime::Result<bool> {
        Ok(Locales::is_rtl(&locale))
    }
}
