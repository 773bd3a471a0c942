//! The open connections: admission (a total and a per-client cap), idleness,
//! and shedding. At capacity the accept loop never waits: it closes the
//! connection that has been idle longest to make room, or refuses the new
//! one when every connection has a request in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::edge::client::{ClientKey, limit_key};
use crate::per_client::{PerClientLimit, Share};

/// Every open connection, with the caps new ones are admitted under.
pub struct Connections {
    /// Open connections at most.
    max_total: usize,
    /// Open connections per client address.
    per_client: Arc<PerClientLimit<ClientKey>>,
    /// Open connections by id; a plain mutex held for one map operation (or
    /// one scan of at most `max_total` entries when shedding).
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    /// Id of the next connection.
    next_id: AtomicU64,
    /// When this registry started; idle times are kept relative to it.
    epoch: Instant,
    /// Woken whenever a connection closes, for the shutdown drain.
    closed: Notify,
}

/// What one connection's task and its requests share.
pub struct ConnectionState {
    /// Requests of this connection in progress.
    in_flight: AtomicUsize,
    /// Milliseconds after the registry's epoch since which no request has
    /// been in flight (meaningless while one is).
    idle_since_ms: AtomicU64,
    /// True once a request has started: the first request has a shorter
    /// deadline than the idle time between requests.
    served: std::sync::atomic::AtomicBool,
    /// Tells the connection's task to close it (shed, or shutting down).
    close: Notify,
    /// Tells the connection's task that its last request finished, so it
    /// can start the idle clock.
    went_idle: Notify,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client address holds its share already.
    ClientFull,
    /// Every connection has a request in flight.
    Full,
}

impl Refusal {
    /// A label for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::ClientFull => "client_full",
            Refusal::Full => "full",
        }
    }
}

/// An admitted connection; leaves the registry when dropped.
pub struct Admitted {
    /// Its id.
    id: u64,
    /// What its requests need to mark it busy.
    tracker: Tracker,
    /// Its client's share, given back on drop; `None` for trusted proxies.
    _share: Option<Share<ClientKey>>,
}

/// Marks requests in progress on one connection.
#[derive(Clone)]
pub struct Tracker {
    /// The registry, for the clock.
    connections: Arc<Connections>,
    /// The connection.
    state: Arc<ConnectionState>,
}

/// One request in progress on a connection; marks the connection busy.
pub struct Busy(Tracker);

impl Connections {
    /// A registry admitting `max_total` connections, `max_per_client` from
    /// each client address.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            per_client: PerClientLimit::new(max_per_client),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            closed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Admits a connection from `peer`, shedding the longest-idle one when
    /// full. A trusted proxy (`exempt`) carries many clients and has no
    /// per-client cap.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, exempt: bool) -> Result<Admitted, Refusal> {
        let share =
            if exempt { None } else { Some(self.per_client.try_acquire(limit_key(peer)).ok_or(Refusal::ClientFull)?) };
        let mut open = self.open.lock().expect("the connection map lock is never poisoned");
        if open.len() >= self.max_total {
            let idlest = open
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(id, c)| (c.idle_since_ms.load(Ordering::Acquire), **id))
                .map(|(id, _)| *id);
            let Some(id) = idlest else {
                return Err(Refusal::Full);
            };
            // It no longer counts; its task closes it at once.
            let shed = open.remove(&id).expect("found above");
            shed.close.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            served: std::sync::atomic::AtomicBool::new(false),
            close: Notify::new(),
            went_idle: Notify::new(),
        });
        open.insert(id, state.clone());
        Ok(Admitted { id, tracker: Tracker { connections: self.clone(), state }, _share: share })
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.open.lock().expect("the connection map lock is never poisoned").len()
    }

    /// Asks every open connection to close (gracefully: requests in flight
    /// finish first).
    pub fn close_all(&self) {
        for state in self.open.lock().expect("the connection map lock is never poisoned").values() {
            state.close.notify_one();
        }
    }

    /// Waits until no connection is open.
    pub async fn drained(&self) {
        loop {
            let closed = self.closed.notified();
            if self.count() == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Tracker {
    /// Marks a request in progress until the returned guard drops.
    pub fn busy(&self) -> Busy {
        self.state.in_flight.fetch_add(1, Ordering::AcqRel);
        self.state.served.store(true, Ordering::Release);
        Busy(self.clone())
    }
}

impl Admitted {
    /// What the connection's requests use to mark it busy.
    pub fn tracker(&self) -> Tracker {
        self.tracker.clone()
    }

    /// When the connection should close for idleness if nothing changes,
    /// or `None` while a request is in flight.
    pub fn idle_deadline(&self, first_request: Duration, between_requests: Duration) -> Option<Instant> {
        let state = &self.tracker.state;
        if state.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let limit = if state.served.load(Ordering::Acquire) { between_requests } else { first_request };
        let since = Duration::from_millis(state.idle_since_ms.load(Ordering::Acquire));
        Some(self.tracker.connections.epoch + since + limit)
    }

    /// Resolves when the registry asks this connection to close.
    pub async fn close_requested(&self) {
        self.tracker.state.close.notified().await;
    }

    /// Resolves when the connection's last request in flight finishes.
    pub async fn went_idle(&self) {
        self.tracker.state.went_idle.notified().await;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let Tracker { connections, state } = &self.0;
        state.idle_since_ms.store(connections.now_ms(), Ordering::Release);
        if state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.went_idle.notify_one();
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let connections = &self.tracker.connections;
        connections.open.lock().expect("the connection map lock is never poisoned").remove(&self.id);
        connections.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_client_gets_its_share_and_proxies_are_exempt() {
        let connections = Connections::new(10, 2);
        let _a = connections.admit(ip("192.0.2.1"), false).unwrap();
        let _b = connections.admit(ip("192.0.2.1"), false).unwrap();
        assert_eq!(connections.admit(ip("192.0.2.1"), false).err(), Some(Refusal::ClientFull));
        assert!(connections.admit(ip("192.0.2.2"), false).is_ok(), "another client");
        let proxied: Vec<_> = (0..5).map(|_| connections.admit(ip("10.0.0.1"), true).unwrap()).collect();
        assert_eq!(proxied.len(), 5);
    }

    #[test]
    fn at_capacity_the_longest_idle_connection_is_shed() {
        let connections = Connections::new(2, 10);
        let first = connections.admit(ip("192.0.2.1"), false).unwrap();
        let second = connections.admit(ip("192.0.2.2"), false).unwrap();
        let _working = second.tracker().busy();
        let third = connections.admit(ip("192.0.2.3"), false).expect("sheds the idle one");
        assert_eq!(connections.count(), 2);
        let notified = first.tracker.state.close.notified();
        tokio::pin!(notified);
        assert!(notified.as_mut().enable(), "the idle connection was told to close");
        let _busy = third.tracker().busy();
        assert_eq!(connections.admit(ip("192.0.2.4"), false).err(), Some(Refusal::Full), "nothing idle to shed");
    }

    #[test]
    fn a_busy_connection_has_no_idle_deadline() {
        let connections = Connections::new(2, 2);
        let conn = connections.admit(ip("192.0.2.1"), false).unwrap();
        let (first, later) = (Duration::from_secs(1), Duration::from_secs(60));
        let fresh = conn.idle_deadline(first, later).unwrap();
        assert!(fresh <= Instant::now() + first, "a new connection gets the first-request time");
        let busy = conn.tracker().busy();
        assert!(conn.idle_deadline(first, later).is_none());
        drop(busy);
        assert!(conn.idle_deadline(first, later).unwrap() > Instant::now() + first, "then the idle time");
    }
}
