//! The plugin's own settings, from `[plugins.settings]` in plinth.toml.

use std::str::FromStr;

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::settings::get;
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::settings::get;

/// A setting parsed as `T`, `default` when it is not set; a value that does
/// not parse is 500 `misconfigured` naming the setting (an operator's
/// mistake, which the client cannot fix).
pub fn parse_or<T: FromStr>(name: &str, default: T) -> crate::Result<T> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| misconfigured(name, &raw)),
    }
}

/// A setting that must be present: 500 `misconfigured` naming it if not.
pub fn require(name: &str) -> crate::Result<String> {
    get(name).ok_or_else(|| misconfigured(name, "(not set)"))
}

fn misconfigured(name: &str, value: &str) -> crate::Error {
    crate::log::error("plugin setting is missing or invalid", &[("setting", name), ("value", value)]);
    crate::Error::new(500, "misconfigured", format!("the plugin's setting `{name}` is missing or invalid"))
}
