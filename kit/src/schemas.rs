//! JSON Schema validation by the host, which compiles each schema once and
//! keeps it (a plugin compiling its own would redo it on every request).

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::schemas::validate;
pub use crate::bindings::plinth::platform::schemas::{Error, Violation};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::schemas::validate;
