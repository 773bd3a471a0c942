//! Sessions the host keeps; the host sets and clears the cookie.

pub use crate::bindings::plinth::platform::sessions::{Error, Issued, IssuedToken, PasswordPolicy, SessionInfo};
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::sessions::{
    issue, issue_token, list, password_sign_in, revoke, revoke_all, revoke_current,
};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::sessions::{issue, issue_token, list, password_sign_in, revoke, revoke_all, revoke_current};
