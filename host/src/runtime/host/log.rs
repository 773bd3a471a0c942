//! `plinth:platform/log`: plugin and worker log lines into the host's
//! tracing, tagged with the plugin (or worker) name.

use crate::runtime::bindings::log::{Host, Level};
use crate::runtime::state::HostState;

/// Longest message or field value kept; the rest is cut so a plugin cannot
/// flood the host log with one call.
const MAX_LOG_TEXT: usize = 4096;

fn bounded(text: &str) -> &str {
    if text.len() <= MAX_LOG_TEXT {
        return text;
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        emit(&self.plugin.name, level, &message, &fields);
        Ok(())
    }
}

/// Writes one guest log line, tagged with the plugin (or worker) name.
pub fn emit(plugin: &str, level: Level, message: &str, fields: &[(String, String)]) {
    let message = crate::log_text::escaped(bounded(message));
    let fields = fields
        .iter()
        .map(|(k, v)| format!("{}={:?}", crate::log_text::escaped(bounded(k)), bounded(v)))
        .collect::<Vec<_>>()
        .join(" ");
    match level {
        Level::Trace => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
        Level::Debug => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
        Level::Info => tracing::info!(target: "plugin", plugin, fields, "{message}"),
        Level::Warn => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
        Level::Error => tracing::error!(target: "plugin", plugin, fields, "{message}"),
    }
}
