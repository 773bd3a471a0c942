//! `plinth:platform/log`: plugin and worker log lines into the host's
//! tracing, tagged with the plugin (or worker) name, within bounds: a
//! guest that logs in a loop, or piles fields onto one call, cannot flood
//! the host's log.

use crate::log_text::escaped;
use crate::runtime::bindings::log::{Host, Level};
use crate::runtime::state::HostState;

/// Longest message, field name or field value kept; the rest is cut.
const MAX_LOG_TEXT: usize = 4096;
/// Most bytes of one line's fields together; the rest are cut.
const MAX_LOG_FIELDS: usize = 8192;
/// Lines one request may log.
pub const MAX_LINES_PER_REQUEST: u32 = 256;
/// Lines one job may log.
pub const MAX_LINES_PER_JOB: u32 = 1024;
/// Lines one call into a plugin's migrations may log (a million records
/// each logging would flood the host's log).
pub const MAX_LINES_PER_CONVERSION: u32 = 16;

fn bounded(text: &str) -> &str {
    &text[..text.floor_char_boundary(MAX_LOG_TEXT)]
}

/// The lines one store's guest may still write: past the budget, one
/// warning says the rest are dropped, and the rest are.
pub struct LogBudget {
    written: u32,
    limit: u32,
    /// What the store runs, for the warning: "a request", "a job".
    what: &'static str,
}

impl LogBudget {
    /// A budget of `limit` lines for `what` the store runs.
    pub fn new(limit: u32, what: &'static str) -> Self {
        Self { written: 0, limit, what }
    }

    /// Writes one line from `who` while the budget lasts.
    pub fn emit(&mut self, who: &str, level: Level, message: &str, fields: &[(String, String)]) {
        match self.take() {
            Take::Write => emit(who, level, message, fields),
            Take::SayDropped => tracing::warn!(
                target: "plugin",
                plugin = who,
                "{} logged more than {} lines; the rest are dropped",
                self.what,
                self.limit
            ),
            Take::Drop => {}
        }
    }

    fn take(&mut self) -> Take {
        self.written = self.written.saturating_add(1);
        match self.written.checked_sub(self.limit) {
            None | Some(0) => Take::Write,
            Some(1) => Take::SayDropped,
            Some(_) => Take::Drop,
        }
    }
}

/// What becomes of one line under a [`LogBudget`].
#[derive(Debug, PartialEq, Eq)]
enum Take {
    Write,
    /// The first line past the budget: a warning instead.
    SayDropped,
    Drop,
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.log.emit(&self.plugin.name, level, &message, &fields);
        Ok(())
    }
}

/// One line's fields as `name="value"` pairs: names escaped, values
/// quoted with Rust's escapes, each cut at [`MAX_LOG_TEXT`] and all of them
/// at [`MAX_LOG_FIELDS`].
fn fields_text(fields: &[(String, String)]) -> String {
    let mut text = String::new();
    for (name, value) in fields {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!("{}={:?}", escaped(bounded(name)), bounded(value)));
        if text.len() > MAX_LOG_FIELDS {
            text.truncate(text.floor_char_boundary(MAX_LOG_FIELDS));
            text.push_str(" …(cut)");
            break;
        }
    }
    text
}

/// Writes one guest log line, tagged with the plugin (or worker) name.
fn emit(plugin: &str, level: Level, message: &str, fields: &[(String, String)]) {
    let message = escaped(bounded(message));
    let fields = fields_text(fields);
    match level {
        Level::Trace => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
        Level::Debug => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
        Level::Info => tracing::info!(target: "plugin", plugin, fields, "{message}"),
        Level::Warn => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
        Level::Error => tracing::error!(target: "plugin", plugin, fields, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_cut_as_a_whole() {
        let many: Vec<(String, String)> = (0..200).map(|i| (format!("field{i}"), "x".repeat(100))).collect();
        let text = fields_text(&many);
        assert!(text.len() <= MAX_LOG_FIELDS + " …(cut)".len(), "{}", text.len());
        assert!(text.starts_with("field0=\"xxx") && text.ends_with(" …(cut)"));
        let few = fields_text(&[("a\nb".into(), "say \"hi\"\n".into())]);
        assert_eq!(few, "a\\u{a}b=\"say \\\"hi\\\"\\n\"");
    }

    #[test]
    fn a_budget_writes_its_lines_says_once_and_drops_the_rest() {
        let mut budget = LogBudget::new(3, "a request");
        let takes: Vec<Take> = (0..6).map(|_| budget.take()).collect();
        use Take::*;
        assert_eq!(takes, [Write, Write, Write, SayDropped, Drop, Drop]);
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(3000);
        assert_eq!(bounded(&long).len(), MAX_LOG_TEXT);
        assert_eq!(bounded("short"), "short");
    }
}
