//! A cap on how much of a shared capacity one client may hold at once
//! (connections, requests in flight), so that no single client, on one
//! connection or many, can take all of it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// At most `max` concurrent holders per key. Memory is bounded by the
/// number of current holders: a key is forgotten when its last guard drops.
#[derive(Debug)]
pub struct PerClientLimit<K: Eq + Hash> {
    /// Holders per key at most.
    max: usize,
    /// Current holders per key; a plain mutex, held for one map operation.
    held: Mutex<HashMap<K, usize>>,
}

/// One holder's share; gives it back on drop.
#[derive(Debug)]
pub struct Share<K: Eq + Hash + Clone> {
    /// The limit it came from.
    limit: Arc<PerClientLimit<K>>,
    /// Whose share it is.
    key: K,
}

impl<K: Eq + Hash + Clone> PerClientLimit<K> {
    /// A limit of `max` holders per key.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, held: Mutex::new(HashMap::new()) })
    }

    /// The per-key cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// How many shares `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.held.lock().expect("the per-client map lock is never poisoned").get(key).copied().unwrap_or(0)
    }

    /// A share for `key`, or `None` when it already holds `max`.
    pub fn try_acquire(self: &Arc<Self>, key: K) -> Option<Share<K>> {
        let mut held = self.held.lock().expect("the per-client map lock is never poisoned");
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Share { limit: self.clone(), key })
    }
}

impl<K: Eq + Hash + Clone> Drop for Share<K> {
    fn drop(&mut self) {
        let mut held = self.limit.held.lock().expect("the per-client map lock is never poisoned");
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_at_most_its_share_and_is_forgotten_when_done() {
        let limit = PerClientLimit::new(2);
        let a1 = limit.try_acquire("a").unwrap();
        let _a2 = limit.try_acquire("a").unwrap();
        assert!(limit.try_acquire("a").is_none(), "a third share for `a`");
        let b = limit.try_acquire("b").expect("another key is not affected");
        drop(a1);
        assert_eq!(limit.held.lock().unwrap().get("a"), Some(&1));
        assert!(limit.try_acquire("a").is_some(), "a share comes back on drop");
        drop(b);
        assert!(limit.held.lock().unwrap().get("b").is_none(), "an idle key takes no memory");
    }
}
