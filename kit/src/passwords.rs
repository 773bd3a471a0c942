//! Password hashing with argon2id on the host's bounded blocking pool.

pub use crate::bindings::plinth::platform::passwords::Verdict;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::passwords::{check_strength, hash, verify};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::passwords::{check_strength, hash, verify};
