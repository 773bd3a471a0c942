//! Structured logging into the host's log, tagged with plugin and trace id.

pub use crate::bindings::plinth::platform::log::Level;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::log::log;
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::log::log;

/// Logs at `level` with `key = value` fields.
pub fn at(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    log(level, message, &fields);
}

/// Logs at `debug`.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    at(Level::Debug, message, fields);
}

/// Logs at `info`.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    at(Level::Info, message, fields);
}

/// Logs at `warn`.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    at(Level::Warn, message, fields);
}

/// Logs at `error`.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    at(Level::Error, message, fields);
}
