//! `plinth:platform/passwords`: argon2id and strength checks on the host's
//! hashing threads, never on the edge's.

use crate::runtime::bindings::passwords::{Host, Verdict};
use crate::runtime::state::HostState;

impl Host for HostState {
    async fn hash(&mut self, password: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self.plugin.passwords.hash(password).await)
    }

    async fn verify(&mut self, password: String, stored: Option<String>) -> wasmtime::Result<Verdict> {
        let verdict = self.plugin.passwords.verify(password, stored).await;
        Ok(Verdict { valid: verdict.valid, needs_rehash: verdict.needs_rehash })
    }

    async fn check_strength(&mut self, password: String, related: Vec<String>) -> wasmtime::Result<Result<(), String>> {
        Ok(self.plugin.passwords.check_strength(password, related).await)
    }
}
