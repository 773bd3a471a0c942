//! GCRA rate limits (governor) per route class, keyed by client address and
//! by principal, over a store that forgets the least recently seen keys
//! first, so memory stays bounded however many distinct keys arrive.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use lru::LruCache;

use crate::config::{Rate, RateLimitConfig};

/// Shards of the key store; spreads lock contention across cores.
const SHARDS: usize = 16;

/// A keyed GCRA state store of bounded size: per shard an LRU map. Cheap
/// to clone; clones share the keys (the limiter owns one, we keep one to
/// read its size).
#[derive(Clone)]
pub struct BoundedStore(Arc<Shards>);

struct Shards {
    shards: Vec<Mutex<LruCache<String, Nanos>>>,
    /// Picks the shard; random per process so keys cannot be aimed at one.
    hasher: RandomState,
}

impl BoundedStore {
    /// A store remembering about `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        let per_shard = std::num::NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).expect("non-zero");
        Self(Arc::new(Shards {
            shards: (0..SHARDS).map(|_| Mutex::new(LruCache::new(per_shard))).collect(),
            hasher: RandomState::new(),
        }))
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.0.shards.iter().map(|s| s.lock().expect("rate-limit shard poisoned").len()).sum()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateStore for BoundedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let shard = &self.0.shards[(self.0.hasher.hash_one(key) as usize) % SHARDS];
        let mut cache = shard.lock().expect("rate-limit shard poisoned");
        let (result, next) = f(cache.get(key).copied())?;
        cache.put(key.clone(), next);
        Ok(result)
    }
}

type Limiter = RateLimiter<String, BoundedStore, DefaultClock, StateInformationMiddleware>;

/// One dimension (address or principal) of one class.
struct Dimension {
    limiter: Limiter,
    /// The limiter's store, for its size.
    store: BoundedStore,
    rate: Rate,
}

impl Dimension {
    fn new(rate: Rate, capacity: usize) -> Self {
        let count = NonZeroU32::new(rate.count).expect("rates are validated non-zero");
        let quota = Quota::with_period(rate.per / rate.count).expect("non-zero period").allow_burst(count);
        let store = BoundedStore::new(capacity);
        let limiter =
            RateLimiter::<String, BoundedStore, DefaultClock>::new(quota, store.clone(), DefaultClock::default())
                .with_middleware::<StateInformationMiddleware>();
        Self { limiter, store, rate }
    }
}

/// What the response should say about the limit, allowed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `RateLimit-Policy` value.
    pub policy: String,
    /// `RateLimit` value.
    pub state: String,
    /// Set when refused: wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// The limiters of every class.
pub struct RateLimits {
    classes: HashMap<String, (Dimension, Option<Dimension>)>,
    /// Reads the time for `Retry-After`; made once, since making a clock
    /// calibrates it (tens of microseconds).
    clock: DefaultClock,
}

impl RateLimits {
    /// Limiters for the configured classes.
    pub fn new(config: &RateLimitConfig) -> Self {
        let capacity = config.max_tracked_keys;
        let classes = config
            .classes
            .iter()
            .map(|(name, limits)| {
                let principal = limits.per_principal.map(|r| Dimension::new(r, capacity));
                (name.clone(), (Dimension::new(limits.per_address, capacity), principal))
            })
            .collect();
        Self { classes, clock: DefaultClock::default() }
    }

    /// Counts one request of `class` from `address` (and `principal`).
    pub fn check(&self, class: &str, address: &str, principal: Option<&str>) -> Verdict {
        let (per_address, per_principal) = match self.classes.get(class) {
            Some(dims) => dims,
            None => self.classes.get(crate::policy::DEFAULT_CLASS).expect("the default class always exists"),
        };
        let mut checks = vec![("address", per_address, address)];
        if let (Some(dim), Some(who)) = (per_principal, principal) {
            checks.push(("principal", dim, who));
        }
        let mut tightest: Option<Verdict> = None;
        for (name, dim, key) in checks {
            let window = dim.rate.per.as_secs();
            let policy = format!("\"{name}\";q={};w={window}", dim.rate.count);
            let verdict = match dim.limiter.check_key(&key.to_owned()) {
                Ok(snapshot) => Verdict {
                    policy,
                    state: format!("\"{name}\";r={};t={window}", snapshot.remaining_burst_capacity()),
                    retry_after: None,
                },
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    Verdict {
                        policy,
                        state: format!("\"{name}\";r=0;t={}", wait.as_secs().max(1)),
                        retry_after: Some(wait),
                    }
                }
            };
            let refused = verdict.retry_after.is_some();
            tightest = Some(verdict);
            if refused {
                break;
            }
        }
        tightest.expect("every class checks the address")
    }

    /// Keys remembered by a class's address limiter (for tests and metrics).
    pub fn tracked_addresses(&self, class: &str) -> usize {
        self.classes.get(class).map_or(0, |(dim, _)| dim.store.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassLimits;

    fn limits(rate: &str, keys: usize) -> RateLimits {
        let config = RateLimitConfig {
            max_tracked_keys: keys,
            classes: [(
                "default".to_owned(),
                ClassLimits {
                    per_address: Rate::parse(rate).unwrap(),
                    per_principal: Some(Rate::parse("2/min").unwrap()),
                },
            )]
            .into(),
        };
        RateLimits::new(&config)
    }

    #[test]
    fn refuses_past_the_burst_with_a_retry_after() {
        let limits = limits("3/min", 100);
        for remaining in [2, 1, 0] {
            let v = limits.check("default", "a", None);
            assert_eq!((v.retry_after, v.state), (None, format!("\"address\";r={remaining};t=60")));
        }
        let refused = limits.check("default", "a", None);
        assert!(refused.retry_after.unwrap() > Duration::from_secs(15));
        assert_eq!(refused.policy, "\"address\";q=3;w=60");
        assert!(limits.check("default", "b", None).retry_after.is_none(), "other keys are unaffected");
    }

    #[test]
    fn principals_are_limited_across_addresses() {
        let limits = limits("100/min", 100);
        assert!(limits.check("default", "a", Some("ann")).retry_after.is_none());
        assert!(limits.check("default", "b", Some("ann")).retry_after.is_none());
        let refused = limits.check("default", "c", Some("ann"));
        assert!(refused.policy.starts_with("\"principal\""));
        assert!(refused.retry_after.is_some());
    }

    #[test]
    fn memory_stays_bounded_under_a_key_flood() {
        let limits = limits("1/h", 1_000);
        for i in 0..200_000u32 {
            limits.check("default", &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), None);
        }
        let tracked = limits.tracked_addresses("default");
        assert!(tracked <= 1_000 + SHARDS, "{tracked} keys tracked");
        // The most recent keys are still limited.
        assert!(limits.check("default", "10.3.13.63", None).retry_after.is_some());
    }
}
