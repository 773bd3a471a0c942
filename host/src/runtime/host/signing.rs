//! `plinth:platform/signing`: tokens under the plugin's own derived key.
//! The plugin's name comes from the host, never from the guest.

use crate::runtime::bindings::signing::{Error, Host};
use crate::runtime::state::HostState;
use crate::signing::VerifyError;

impl Host for HostState {
    fn sign(
        &mut self,
        purpose: String,
        payload: Vec<u8>,
        expires_at: Option<u64>,
    ) -> wasmtime::Result<Result<String, String>> {
        let ctx = &self.plugin;
        Ok(ctx.signing.sign(&ctx.name, &purpose, &payload, expires_at).map_err(|e| e.to_string()))
    }

    fn verify(&mut self, purpose: String, token: String) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        let ctx = &self.plugin;
        Ok(ctx.signing.verify(&ctx.name, &purpose, &token).map_err(|e| match e {
            VerifyError::Malformed(why) => Error::Malformed(why),
            VerifyError::BadSignature => Error::BadSignature,
            VerifyError::RetiredKey => Error::RetiredKey,
            VerifyError::Expired(at) => Error::Expired(at),
        }))
    }
}
