//! Domain events for the host's audit log.

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::audit::emit;
pub use crate::bindings::plinth::platform::audit::{Event, Outcome};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::audit::emit;

/// Records an event, or fails with 503 `unavailable`: when the record
/// cannot be stored, the action it describes must not be acknowledged.
pub fn record(action: &str, target: &str, outcome: Outcome, reason: Option<&str>) -> crate::Result<()> {
    let event =
        Event { action: action.to_owned(), target: target.to_owned(), outcome, reason: reason.map(str::to_owned) };
    emit(&event).map_err(crate::Error::unavailable)
}
