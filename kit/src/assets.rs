//! The plugin's read-only files (`assets` in its `[[plugins]]` entry),
//! such as definitions shipped with the deployment.

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::assets::{get, names};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::assets::{get, names};
