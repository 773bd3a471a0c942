//! Compact signed tokens under the plugin's own key (grant `signing`): for
//! URLs and links a client carries and hands back.

pub use crate::bindings::plinth::platform::signing::Error;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::signing::{sign, verify};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::signing::{sign, verify};

impl From<Error> for crate::Error {
    /// An altered, foreign or malformed token 400, an expired one 410.
    fn from(e: Error) -> Self {
        match e {
            Error::Malformed(why) => crate::Error::new(400, "token_malformed", format!("not a valid token: {why}")),
            Error::BadSignature => crate::Error::new(400, "token_invalid", "the token was altered or is not ours"),
            Error::RetiredKey => crate::Error::new(400, "token_retired", "the token's signing key has been retired"),
            Error::Expired(_) => crate::Error::new(410, "token_expired", "the token has expired"),
        }
    }
}
