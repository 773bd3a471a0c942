//! Compiled components on disk, so a restart or a reload of a known
//! component skips compilation. Entries are keyed by the component's digest
//! and the engine's compatibility fingerprint, and carry the BLAKE3 hash of
//! their own bytes (a language runtime's entry is ~35 MB, checked at every
//! start, and BLAKE3 reads it several times faster than SHA-256): an entry
//! that does not match is discarded and rebuilt, never handed to wasmtime.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components for one engine configuration.
pub struct CompiledCache {
    /// Where entries live.
    dir: PathBuf,
    /// The engine's compatibility fingerprint and this build's version.
    fingerprint: String,
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Deserialized from a valid cache entry.
    Cache,
    /// Compiled now (and written to the cache when there is one).
    Compiled,
}

impl CompiledCache {
    /// A cache in `dir` for `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        Self { dir, fingerprint: format!("{:016x}", hasher.finish()) }
    }

    fn paths(&self, digest: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{digest}-{}", self.fingerprint);
        (self.dir.join(format!("{stem}.cwasm")), self.dir.join(format!("{stem}.blake3")))
    }

    /// A valid entry for this digest, if there is one; a corrupt or
    /// truncated one is removed.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let (code, sum) = self.paths(digest);
        let bytes = std::fs::read(&code).ok()?;
        let expected = std::fs::read_to_string(&sum).unwrap_or_default();
        if blake3::hash(&bytes).to_hex().as_str() != expected.trim() {
            tracing::warn!(entry = %code.display(), "compiled cache entry does not match its checksum; rebuilding");
            let _ = std::fs::remove_file(&code);
            let _ = std::fs::remove_file(&sum);
            return None;
        }
        // SAFETY: `Component::deserialize` needs bytes that wasmtime itself
        // serialized for a compatible engine. These bytes are exactly what
        // `store` wrote from `Component::serialize` (their BLAKE3 hash, written
        // beside them, matches), under a name carrying this engine's
        // compatibility fingerprint; wasmtime also checks its own header and
        // engine settings and refuses a mismatch with an error.
        #[allow(unsafe_code, reason = "wasmtime's deserialize is unsafe; see the SAFETY comment")]
        let component = unsafe { Component::deserialize(engine, &bytes) };
        match component {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(entry = %code.display(), error = %e, "compiled cache entry refused; rebuilding");
                let _ = std::fs::remove_file(&code);
                None
            }
        }
    }

    /// Writes an entry (through a temporary file, so readers never see half).
    pub fn store(&self, digest: &str, component: &Component) {
        let result = (|| -> anyhow::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let bytes = component.serialize()?;
            let (code, sum) = self.paths(digest);
            // Its own temporary file, so servers sharing a cache never
            // write into one another's.
            static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = code.with_extension(format!("{}-{write}.tmp", std::process::id()));
            if let Err(e) = std::fs::write(&tmp, &bytes) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::write(&sum, blake3::hash(&bytes).to_hex().as_str())?;
            std::fs::rename(&tmp, &code)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not write the compiled cache; the next start compiles again");
        }
    }
}
