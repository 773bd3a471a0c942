//! GCRA rate limits (governor) per route class, keyed by client address and
//! by principal, over a store that forgets the least recently seen keys
//! first, so memory stays bounded however many distinct keys arrive.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use http::HeaderValue;
use lru::LruCache;

use crate::config::{Rate, RateLimitConfig};
use crate::edge::client::ClientKey;

/// Shards of the key store; spreads lock contention across cores.
const SHARDS: usize = 16;

/// A keyed GCRA state store of bounded size: per shard an LRU map. Cheap
/// to clone; clones share the keys (the limiter owns one, we keep one to
/// read its size).
#[derive(Clone)]
pub struct BoundedStore<K>(Arc<Shards<K>>);

struct Shards<K> {
    shards: Vec<Mutex<LruCache<K, Nanos>>>,
    /// Picks the shard; random per process so keys cannot be aimed at one.
    hasher: RandomState,
}

impl<K: Hash + Eq> BoundedStore<K> {
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

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let shard = &self.0.shards[(self.0.hasher.hash_one(key) as usize) % SHARDS];
        let mut cache = shard.lock().expect("rate-limit shard poisoned");
        if let Some(state) = cache.get_mut(key) {
            let (result, next) = f(Some(*state))?;
            *state = next;
            return Ok(result);
        }
        let (result, next) = f(None)?;
        cache.put(key.clone(), next);
        Ok(result)
    }
}

type Limiter<K> = RateLimiter<K, BoundedStore<K>, DefaultClock, StateInformationMiddleware>;

/// One dimension (address or principal) of one class.
struct Dimension<K: Hash + Eq + Clone> {
    /// `address` or `principal`, as the headers name it.
    name: &'static str,
    limiter: Limiter<K>,
    /// The limiter's store, for its size.
    store: BoundedStore<K>,
    /// How often one request's worth comes back.
    interval: Duration,
    /// Requests allowed at once.
    burst: u32,
    /// Its `RateLimit-Policy` value, the same for every request.
    policy: HeaderValue,
}

impl<K: Hash + Eq + Clone> Dimension<K> {
    fn new(name: &'static str, rate: Rate, capacity: usize) -> Self {
        let count = NonZeroU32::new(rate.count).expect("rates are validated non-zero");
        let quota = Quota::with_period(rate.per / rate.count).expect("non-zero period").allow_burst(count);
        let store = BoundedStore::new(capacity);
        let limiter =
            RateLimiter::<K, BoundedStore<K>, DefaultClock>::new(quota, store.clone(), DefaultClock::default())
                .with_middleware::<StateInformationMiddleware>();
        let policy = header_value(format!("\"{name}\";q={};w={}", rate.count, rate.per.as_secs()));
        Self { name, limiter, store, interval: rate.per / rate.count, burst: rate.count, policy }
    }

    /// Counts one request of `key`. `t` is at most the time until the
    /// quota is whole again (GCRA gives back one request's worth every
    /// interval; counted in whole intervals), or the time until the next
    /// request may come, as `Retry-After` says it.
    fn check(&self, key: &K, clock: &DefaultClock) -> Verdict {
        let name = self.name;
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let whole_in = whole_seconds(self.interval * self.burst.saturating_sub(remaining));
                Verdict {
                    policy: self.policy.clone(),
                    state: header_value(format!("\"{name}\";r={remaining};t={whole_in}")),
                    remaining,
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now());
                Verdict {
                    policy: self.policy.clone(),
                    state: header_value(format!("\"{name}\";r=0;t={}", retry_after_seconds(wait))),
                    remaining: 0,
                    retry_after: Some(wait),
                }
            }
        }
    }
}

/// `duration` in whole seconds, rounded up: a client that waits this long
/// is never early.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The `Retry-After` of a refusal that asked to wait `wait`: whole seconds,
/// rounded up, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    whole_seconds(wait).max(1)
}

/// A header value of ours: quoted names and numbers only.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("rate-limit header values are ASCII")
}

/// What the response should say about the limit, allowed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `RateLimit-Policy` value.
    pub policy: HeaderValue,
    /// `RateLimit` value.
    pub state: HeaderValue,
    /// Requests left under this limit now.
    pub remaining: u32,
    /// Set when refused: wait this long (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// The limiters of every class: per client address (or IPv6 /64), and per
/// principal where the class says so.
pub struct RateLimits {
    classes: HashMap<String, (Dimension<ClientKey>, Option<Dimension<String>>)>,
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
                let principal = limits.per_principal.map(|r| Dimension::new("principal", r, capacity));
                (name.clone(), (Dimension::new("address", limits.per_address, capacity), principal))
            })
            .collect();
        Self { classes, clock: DefaultClock::default() }
    }

    /// Counts one request of `class` from `address` (and `principal`): the
    /// verdict of the first limit that refuses, else of the one with the
    /// fewest requests left, so the headers name the limit that will
    /// refuse first.
    pub fn check(&self, class: &str, address: ClientKey, principal: Option<&str>) -> Verdict {
        let (per_address, per_principal) = match self.classes.get(class) {
            Some(dims) => dims,
            None => self.classes.get(crate::policy::DEFAULT_CLASS).expect("the default class always exists"),
        };
        let by_address = per_address.check(&address, &self.clock);
        match (per_principal, principal) {
            (Some(dim), Some(who)) if by_address.retry_after.is_none() => {
                let by_principal = dim.check(&who.to_owned(), &self.clock);
                if by_principal.retry_after.is_some() || by_principal.remaining < by_address.remaining {
                    by_principal
                } else {
                    by_address
                }
            }
            _ => by_address,
        }
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
    use crate::edge::client::limit_key;

    fn at(address: &str) -> ClientKey {
        limit_key(address.parse().unwrap())
    }

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
        // One request's worth comes back every 20 s: whole again in 20, 40, 60.
        for (remaining, whole_in) in [(2, 20), (1, 40), (0, 60)] {
            let v = limits.check("default", at("192.0.2.1"), None);
            assert_eq!(v.retry_after, None);
            assert_eq!(v.state, format!("\"address\";r={remaining};t={whole_in}"));
        }
        let refused = limits.check("default", at("192.0.2.1"), None);
        let wait = refused.retry_after.unwrap();
        assert!(wait > Duration::from_secs(15));
        assert_eq!(refused.state, format!("\"address\";r=0;t={}", retry_after_seconds(wait)), "as Retry-After says");
        assert_eq!(refused.policy, "\"address\";q=3;w=60");
        assert!(limits.check("default", at("192.0.2.2"), None).retry_after.is_none(), "other keys are unaffected");
    }

    #[test]
    fn the_headers_name_the_limit_with_the_fewest_requests_left() {
        // 3 per address, 2 per principal.
        let limits = limits("3/min", 100);
        let first = limits.check("default", at("192.0.2.1"), Some("ann"));
        assert_eq!(first.state, "\"principal\";r=1;t=30");
        let roomier = limits.check("default", at("192.0.2.2"), Some("bob"));
        assert_eq!(roomier.policy, "\"principal\";q=2;w=60");
        // Ann's address has 1 left after two more; her own limit refuses first.
        assert!(limits.check("default", at("192.0.2.1"), None).retry_after.is_none());
        let address_tighter = limits.check("default", at("192.0.2.1"), Some("cy"));
        assert_eq!((address_tighter.policy, address_tighter.remaining), ("\"address\";q=3;w=60".parse().unwrap(), 0));
    }

    #[test]
    fn principals_are_limited_across_addresses() {
        let limits = limits("100/min", 100);
        assert!(limits.check("default", at("192.0.2.1"), Some("ann")).retry_after.is_none());
        assert!(limits.check("default", at("192.0.2.2"), Some("ann")).retry_after.is_none());
        let refused = limits.check("default", at("192.0.2.3"), Some("ann"));
        assert_eq!(refused.policy, "\"principal\";q=2;w=60");
        assert!(refused.retry_after.is_some());
    }

    #[test]
    fn memory_stays_bounded_under_a_key_flood() {
        let limits = limits("1/h", 1_000);
        for i in 0..200_000u32 {
            limits.check("default", ClientKey::V4(i.into()), None);
        }
        let tracked = limits.tracked_addresses("default");
        assert!(tracked <= 1_000 + SHARDS, "{tracked} keys tracked");
        // The most recent keys are still limited.
        assert!(limits.check("default", ClientKey::V4((200_000u32 - 1).into()), None).retry_after.is_some());
    }
}
