//! The `exports` worker: the records under the prefix its job may read
//! (form submissions, for the forms plugin), written as CSV or JSON Lines
//! into one blob, a page at a time, so memory stays the same whatever the
//! number of records. See README.md.

mod format;
#[cfg(target_arch = "wasm32")]
mod guest;

pub use format::{Format, Params, Rows};
