//! Audit records for refusals at the edge (rate limits, CSRF, authorization)
//! without letting a flood of them grow the audit log: per kind of refusal,
//! client address and actor, the first in each window is recorded and the
//! rest counted, the count going into the next record.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// How long one record stands for the same refusals of one client.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(60);
/// Clients × actors × kinds remembered; the least recently refused are
/// forgotten.
const MAX_TRACKED: usize = 10_000;

/// Decides which refusals get an audit record.
pub struct DenialSampler {
    /// (action, client key and actor) → its window; a plain mutex held for
    /// one lookup.
    seen: Mutex<LruCache<(&'static str, String), Window>>,
}

/// The current window of one client's refusals of one kind.
struct Window {
    /// When its recorded refusal happened.
    started: Instant,
    /// Refusals since, not recorded.
    suppressed: u64,
}

impl Default for DenialSampler {
    fn default() -> Self {
        Self { seen: Mutex::new(LruCache::new(NonZeroUsize::new(MAX_TRACKED).expect("non-zero"))) }
    }
}

impl DenialSampler {
    /// `Some(n)` when this refusal is to be recorded, `n` being how many
    /// like it went unrecorded in the window before; `None` to skip it.
    /// `client` names the client address and the actor.
    pub fn sample(&self, action: &'static str, client: &str) -> Option<u64> {
        self.sample_at(action, client, Instant::now())
    }

    fn sample_at(&self, action: &'static str, client: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().expect("the denial map lock is never poisoned");
        let key = (action, client.to_owned());
        match seen.get_mut(&key) {
            Some(window) if now.duration_since(window.started) < DENIAL_WINDOW => {
                window.suppressed += 1;
                None
            }
            Some(window) => {
                let suppressed = std::mem::take(&mut window.suppressed);
                window.started = now;
                Some(suppressed)
            }
            None => {
                seen.put(key, Window { started: now, suppressed: 0 });
                Some(0)
            }
        }
    }
}

/// The reason of a recorded refusal, with the count of unrecorded ones.
pub fn with_suppressed(reason: String, suppressed: u64) -> String {
    if suppressed == 0 {
        reason
    } else {
        format!("{reason} (+{suppressed} more like it in the window before, not recorded one by one)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_client_and_kind_per_window_with_the_rest_counted() {
        let sampler = DenialSampler::default();
        let t0 = Instant::now();
        assert_eq!(sampler.sample_at("authz.denied", "192.0.2.1", t0), Some(0));
        for _ in 0..500 {
            assert_eq!(sampler.sample_at("authz.denied", "192.0.2.1", t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(sampler.sample_at("csrf.refused", "192.0.2.1", t0), Some(0), "another kind");
        assert_eq!(sampler.sample_at("authz.denied", "192.0.2.2", t0), Some(0), "another client");
        let later = t0 + DENIAL_WINDOW + Duration::from_secs(1);
        assert_eq!(sampler.sample_at("authz.denied", "192.0.2.1", later), Some(500));
        assert_eq!(sampler.sample_at("authz.denied", "192.0.2.1", later), None);
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_clients() {
        let sampler = DenialSampler::default();
        for i in 0..(MAX_TRACKED + 100) {
            sampler.sample("authz.denied", &i.to_string());
        }
        assert_eq!(sampler.seen.lock().unwrap().len(), MAX_TRACKED);
    }
}
