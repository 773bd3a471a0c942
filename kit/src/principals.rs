//! The host's registry of accounts: id, roles and status.

pub use crate::bindings::plinth::platform::principals::{Account, Error, Status};
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::principals::{get, put};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::principals::{get, put};
