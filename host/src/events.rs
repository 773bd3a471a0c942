//! Change feeds: what plugins publish with their versioned writes, held
//! briefly per key and fanned out to the streams the host serves.
//!
//! Each key is a topic of its own plugin. A topic keeps its last
//! [`RECENT`] changes (for `since` and for streams that resume) and a
//! broadcast channel to its live streams. Changes of one key arrive in
//! commit order: they are published from the storage's commit hook, while
//! that namespace's writes are held back. Held changes are bounded per
//! topic ([`TOPIC_BYTES`]) and in all ([`HELD_BYTES`]) by their data; a
//! change that was streamed also keeps its formatted frame (about as large
//! again), and each topic a broadcast ring of [`LAG`] slots. Topics live in
//! a bounded LRU; a topic pushed out closes its streams, whose clients
//! reconnect (and resume or reset).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use crate::per_client::{PerClientLimit, Share};

/// Changes a topic holds for resuming.
pub const RECENT: usize = 32;
/// Largest change data.
pub const MAX_CHANGE_BYTES: usize = 64 * 1024;
/// Topics held at once.
const MAX_TOPICS: usize = 10_000;
/// Change data one topic holds at most (its oldest changes go first).
pub const TOPIC_BYTES: usize = 256 * 1024;
/// Change data all topics hold at most (the least recently published go first).
pub const HELD_BYTES: usize = 64 * 1024 * 1024;
/// Changes a live stream may fall behind before it is closed as too slow.
const LAG: usize = 64;

/// One published change of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The version the write gave the key.
    pub version: u64,
    /// The version it replaced.
    pub previous: Option<u64>,
    /// What the plugin published.
    pub data: Bytes,
    /// The change as the streams send it, made once for all subscribers
    /// by the first that sends it.
    pub frame: std::sync::OnceLock<Bytes>,
}

impl Change {
    /// A change not yet sent anywhere.
    pub fn new(version: u64, previous: Option<u64>, data: Bytes) -> Self {
        Self { version, previous, data, frame: std::sync::OnceLock::new() }
    }
}

/// A topic: its plugin and key.
type TopicId = (Arc<str>, String);

struct Topic {
    recent: std::collections::VecDeque<Arc<Change>>,
    /// Bytes of data in `recent`.
    bytes: usize,
    live: broadcast::Sender<Arc<Change>>,
}

/// The topics and the bytes they hold.
struct Held {
    topics: lru::LruCache<TopicId, Topic>,
    bytes: usize,
}

impl Held {
    /// The topic, made (pushing out the least recently used, its bytes
    /// counted) when there is none.
    fn topic(&mut self, id: TopicId) -> &mut Topic {
        if self.topics.len() == MAX_TOPICS
            && !self.topics.contains(&id)
            && let Some((_, evicted)) = self.topics.pop_lru()
        {
            self.bytes -= evicted.bytes;
        }
        self.topics.get_or_insert_mut(id, Topic::new)
    }
}

impl Topic {
    fn new() -> Self {
        Self { recent: std::collections::VecDeque::with_capacity(4), bytes: 0, live: broadcast::channel(LAG).0 }
    }

    /// Drops the oldest held change; its bytes.
    fn drop_oldest(&mut self) -> usize {
        let freed = self.recent.pop_front().map_or(0, |c| c.data.len());
        self.bytes -= freed;
        freed
    }

    /// The held changes after `after`, if they run unbroken from it to the
    /// last: each follows the one before. A key deleted and created again
    /// breaks the run (its creation follows nothing), so a cursor from an
    /// earlier life of the key never reaches the changes of that life.
    fn after(&self, after: u64) -> Option<Vec<Arc<Change>>> {
        let Some(start) = self.recent.iter().position(|c| c.version > after) else {
            return self.recent.back().is_some_and(|c| c.version == after).then(Vec::new);
        };
        let run: Vec<Arc<Change>> = self.recent.range(start..).cloned().collect();
        let mut last = after;
        for change in &run {
            if change.previous != Some(last) {
                return None;
            }
            last = change.version;
        }
        Some(run)
    }
}

/// Why a stream could not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRefusal {
    /// This principal or address holds its share.
    TooManyForClient(u32),
    /// The host holds its total.
    TooMany(u32),
}

/// The right to hold one stream open; counted until dropped.
#[derive(Debug)]
pub struct StreamTicket {
    _total: OwnedSemaphorePermit,
    _client: Share<String>,
    _plugin: Share<Arc<str>>,
}

/// A stream's start: what it missed, then what comes.
pub struct Subscription {
    /// Held changes after the subscriber's version, in order.
    pub backlog: Vec<Arc<Change>>,
    /// Live changes from here on.
    pub live: broadcast::Receiver<Arc<Change>>,
}

/// Whose share a stream counts against: its account, or signed out its
/// address as rate limits key it (IPv6 by /64, so a range of addresses is
/// one client).
pub fn client_key(account: Option<&str>, address: &str) -> String {
    match (account, address.parse()) {
        (Some(account), _) => format!("account:{account}"),
        (None, Ok(ip)) => format!("address:{}", crate::edge::client::limit_key(ip)),
        (None, Err(_)) => format!("address:{address}"),
    }
}

/// The host's topics and its stream limits.
pub struct Events {
    held: Mutex<Held>,
    total: Arc<Semaphore>,
    max_total: u32,
    per_client: Arc<PerClientLimit<String>>,
    /// Streams per plugin (counted, not limited beyond the total).
    per_plugin: Arc<PerClientLimit<Arc<str>>>,
    /// Set when the server stops: every stream ends.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Events {
    /// No topics yet; at most `max_total` streams, `max_per_client` each.
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            held: Mutex::new(Held {
                topics: lru::LruCache::new(NonZeroUsize::new(MAX_TOPICS).expect("non-zero")),
                bytes: 0,
            }),
            total: Arc::new(Semaphore::new(max_total)),
            max_total: u32::try_from(max_total).unwrap_or(u32::MAX),
            per_client: PerClientLimit::new(max_per_client),
            per_plugin: PerClientLimit::new(max_total),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Records a committed change and hands it to the key's live streams.
    pub fn publish(&self, plugin: &Arc<str>, key: &str, change: Change) {
        let mut held = self.held.lock().expect("topics lock");
        let topic = held.topic((plugin.clone(), key.to_owned()));
        let change = Arc::new(change);
        let size = change.data.len();
        topic.recent.push_back(change.clone());
        topic.bytes += size;
        let mut freed = 0;
        while topic.recent.len() > RECENT || (topic.bytes > TOPIC_BYTES && topic.recent.len() > 1) {
            freed += topic.drop_oldest();
        }
        // No receivers is not an error: nobody is listening.
        let _ = topic.live.send(change);
        held.bytes = held.bytes + size - freed;
        // Over the whole budget: the least recently published topics go.
        while held.bytes > HELD_BYTES && held.topics.len() > 1 {
            match held.topics.pop_lru() {
                Some((_, evicted)) => held.bytes -= evicted.bytes,
                None => break,
            }
        }
    }

    /// Bytes of change data held.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.held.lock().expect("topics lock").bytes
    }

    /// The held changes of a key after `after`, when they run unbroken.
    pub fn since(&self, plugin: &Arc<str>, key: &str, after: u64) -> Option<Vec<Change>> {
        let held = self.held.lock().expect("topics lock");
        let topic = held.topics.peek(&(plugin.clone(), key.to_owned()))?;
        topic.after(after).map(|changes| changes.iter().map(|c| (**c).clone()).collect())
    }

    /// Counts a stream of `plugin` against the limits, for `client` (a
    /// principal or an address).
    pub fn admit(&self, plugin: &Arc<str>, client: String) -> Result<StreamTicket, StreamRefusal> {
        let client = self
            .per_client
            .try_acquire(client)
            .ok_or(StreamRefusal::TooManyForClient(u32::try_from(self.per_client.max()).unwrap_or(u32::MAX)))?;
        let total = self.total.clone().try_acquire_owned().map_err(|_| StreamRefusal::TooMany(self.max_total))?;
        let plugin = self.per_plugin.try_acquire(plugin.clone()).expect("the total bounds every plugin's count");
        Ok(StreamTicket { _total: total, _client: client, _plugin: plugin })
    }

    /// Subscribes to a key from version `after`; `None` when the changes
    /// after it are no longer held unbroken (the client must start over).
    pub fn subscribe(&self, plugin: &Arc<str>, key: &str, after: u64) -> Option<Subscription> {
        let mut held = self.held.lock().expect("topics lock");
        let topic = held.topic((plugin.clone(), key.to_owned()));
        // Subscribed under the lock: nothing published between the backlog
        // and the first live change is missed or repeated.
        let live = topic.live.subscribe();
        let backlog = match topic.after(after) {
            Some(backlog) => backlog,
            // Nothing held yet: the next change must follow `after`.
            None if topic.recent.is_empty() => Vec::new(),
            None => return None,
        };
        Some(Subscription { backlog, live })
    }

    /// Tells every stream to end (the server is stopping).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Whether streams must end; changes once.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Open streams.
    #[cfg(test)]
    fn open_streams(&self) -> usize {
        self.max_total as usize - self.total.available_permits()
    }

    /// Open streams of one plugin.
    pub fn open_streams_of(&self, plugin: &str) -> usize {
        self.per_plugin.held(&Arc::from(plugin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: u64, previous: Option<u64>) -> Change {
        Change::new(version, previous, Bytes::from(format!("v{version}")))
    }

    #[test]
    fn since_needs_an_unbroken_run() {
        let events = Events::new(10, 2);
        let plugin: Arc<str> = "state".into();
        assert_eq!(events.since(&plugin, "doc", 1), None, "nothing held");
        events.publish(&plugin, "doc", change(5, Some(1)));
        events.publish(&plugin, "doc", change(9, Some(5)));
        assert_eq!(events.since(&plugin, "doc", 1).unwrap(), vec![change(5, Some(1)), change(9, Some(5))]);
        assert_eq!(events.since(&plugin, "doc", 5).unwrap(), vec![change(9, Some(5))]);
        assert_eq!(events.since(&plugin, "doc", 9).unwrap(), vec![]);
        assert_eq!(events.since(&plugin, "doc", 3), None, "3 is not in the chain");
        assert_eq!(events.since(&"other".into(), "doc", 1), None, "topics are per plugin");
        // Deleted (9 → 10) and created again (11 follows nothing): no run
        // from the earlier life reaches the new one.
        events.publish(&plugin, "doc", change(10, Some(9)));
        events.publish(&plugin, "doc", change(11, None));
        assert_eq!(events.since(&plugin, "doc", 5), None);
        assert_eq!(events.since(&plugin, "doc", 10), None);
        assert_eq!(events.since(&plugin, "doc", 11).unwrap(), vec![]);
        events.publish(&plugin, "doc", change(12, Some(11)));
        assert_eq!(events.since(&plugin, "doc", 11).unwrap(), vec![change(12, Some(11))]);
        for v in 13..13 + RECENT as u64 {
            events.publish(&plugin, "doc", change(v, Some(v - 1)));
        }
        assert_eq!(events.since(&plugin, "doc", 11), None, "12 was pushed out of the recent changes");
    }

    #[test]
    fn held_changes_are_bounded_in_bytes() {
        let events = Events::new(10, 2);
        let plugin: Arc<str> = "state".into();
        let big = |version: u64| Change::new(version, Some(version - 1), Bytes::from(vec![b'x'; MAX_CHANGE_BYTES]));
        for version in 1..=10 {
            events.publish(&plugin, "doc", big(version));
        }
        assert_eq!(events.held_bytes(), TOPIC_BYTES, "the oldest changes of a topic go first");
        assert!(events.since(&plugin, "doc", 6).is_some() && events.since(&plugin, "doc", 5).is_none());
        let topics = HELD_BYTES / TOPIC_BYTES + 8;
        for t in 0..topics {
            for version in 1..=4 {
                events.publish(&plugin, &format!("doc{t}"), big(version));
            }
        }
        assert!(events.held_bytes() <= HELD_BYTES, "{} held", events.held_bytes());
        assert!(events.since(&plugin, "doc0", 1).is_none(), "the least recently published topic went");
        assert!(events.since(&plugin, &format!("doc{}", topics - 1), 1).is_some());
    }

    #[test]
    fn a_subscriber_gets_the_backlog_then_live_changes() {
        let events = Events::new(10, 2);
        let plugin: Arc<str> = "state".into();
        events.publish(&plugin, "doc", change(2, None));
        events.publish(&plugin, "doc", change(3, Some(2)));
        let mut sub = events.subscribe(&plugin, "doc", 2).unwrap();
        assert_eq!(sub.backlog.iter().map(|c| c.version).collect::<Vec<_>>(), vec![3]);
        events.publish(&plugin, "doc", change(4, Some(3)));
        assert_eq!(sub.live.try_recv().unwrap().version, 4);
        assert!(events.subscribe(&plugin, "doc", 1).is_none(), "1 is before what is held");
        let fresh = events.subscribe(&plugin, "new", 7).unwrap();
        assert!(fresh.backlog.is_empty());
    }

    #[test]
    fn signed_out_streams_share_their_address_range() {
        let one = client_key(None, "2001:db8:1:2:aaaa::1");
        assert_eq!(one, client_key(None, "2001:db8:1:2:bbbb::7"), "one /64 is one client");
        assert_ne!(one, client_key(None, "2001:db8:1:3::1"));
        assert_eq!(client_key(None, "192.0.2.1"), "address:192.0.2.1");
        assert_eq!(client_key(Some("ada"), "192.0.2.1"), "account:ada");
    }

    #[test]
    fn streams_are_counted_per_client_and_in_total() {
        let events = Events::new(3, 2);
        let (state, forms): (Arc<str>, Arc<str>) = ("state".into(), "forms".into());
        let a1 = events.admit(&state, "alice".into()).unwrap();
        let _a2 = events.admit(&forms, "alice".into()).unwrap();
        assert_eq!(events.admit(&state, "alice".into()).unwrap_err(), StreamRefusal::TooManyForClient(2));
        let _b = events.admit(&state, "bob".into()).unwrap();
        assert_eq!(events.admit(&state, "carol".into()).unwrap_err(), StreamRefusal::TooMany(3));
        assert_eq!(
            (events.open_streams(), events.open_streams_of("state"), events.open_streams_of("forms")),
            (3, 2, 1)
        );
        drop(a1);
        assert!(events.admit(&state, "carol".into()).is_ok());
    }
}
