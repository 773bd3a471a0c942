//! Counters of events per hour and per key (password checks per address,
//! mails per recipient), kept in kv and counted with the kit's
//! compare-and-swap loop so concurrent events all count, each before it
//! happens.

use serde::{Deserialize, Serialize};

use crate::store;
use plinth_kit::{Error, kv};

/// The window events are counted in.
pub const WINDOW: u64 = 3600;

#[derive(Serialize, Deserialize)]
struct Count {
    window_start: u64,
    count: u64,
}

/// Whether [`take`] counted the event.
pub enum Taken {
    /// Counted.
    Yes,
    /// The window holds its limit already; nothing was written.
    Full {
        /// Seconds until the window ends.
        seconds_left: u64,
    },
}

/// Counts one event under `key` unless `limit` are counted in this window
/// already. An event is taken before it happens (a password check before
/// the password is checked), so events racing each other cannot all pass
/// a check none of them was counted in yet.
pub fn take(key: &str, limit: u64) -> Result<Taken, Error> {
    let mut full = None;
    let taken = kv::update(key, None, |current: Option<Count>| {
        let now = store::now();
        Ok(Some(match current {
            Some(c) if now < c.window_start + WINDOW && c.count >= limit => {
                full = Some(c.window_start + WINDOW - now);
                return Err(Error::new(429, "window_full", "no event left in this window"));
            }
            Some(c) if now < c.window_start + WINDOW => Count { count: c.count + 1, ..c },
            _ => Count { window_start: now, count: 1 },
        }))
    });
    match (taken, full) {
        (_, Some(seconds_left)) => Ok(Taken::Full { seconds_left }),
        (Ok(_), None) => Ok(Taken::Yes),
        (Err(e), None) if e.code == "contended" => {
            Err(Error::new(429, "too_many_attempts", "too many attempts for this address at once; retry in a moment")
                .with_header("retry-after", "1"))
        }
        (Err(e), None) => Err(e),
    }
}

/// Gives back one event [`take`] counted under `key` (a password that
/// turned out right).
pub fn give_back(key: &str) -> Result<(), Error> {
    kv::update(key, None, |current: Option<Count>| {
        Ok(current.map(|c| Count { count: c.count.saturating_sub(1), ..c }).filter(|c| c.count > 0))
    })?;
    Ok(())
}
