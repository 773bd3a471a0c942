//! Counters of events per hour and per key (failed sign-ins per address,
//! mails per recipient), kept in kv and counted with compare-and-swap so
//! concurrent events all count.

use serde::{Deserialize, Serialize};

use crate::store;
use plinth_kit::{Error, kv};

/// The window events are counted in.
pub const WINDOW: u64 = 3600;
/// Compare-and-swap attempts before a contended counter gives up.
const MAX_ATTEMPTS: usize = 16;

#[derive(Serialize, Deserialize)]
struct Count {
    window_start: u64,
    count: u64,
}

/// Events under `key` in the current window, and the seconds until it ends.
pub fn current(key: &str) -> Result<(u64, u64), Error> {
    let Some(bytes) = kv::get(key).map_err(Error::unavailable)? else {
        return Ok((0, 0));
    };
    let count: Count = serde_json::from_slice(&bytes).map_err(Error::unavailable)?;
    let (now, end) = (store::now(), count.window_start + WINDOW);
    Ok(if now < end { (count.count, end - now) } else { (0, 0) })
}

/// Counts one event under `key`; returns the count in this window with it.
pub fn count(key: &str) -> Result<u64, Error> {
    for _ in 0..MAX_ATTEMPTS {
        let current = kv::get(key).map_err(Error::unavailable)?;
        let now = store::now();
        let next = match current.as_deref().and_then(|b| serde_json::from_slice::<Count>(b).ok()) {
            Some(c) if now < c.window_start + WINDOW => Count { count: c.count + 1, ..c },
            _ => Count { window_start: now, count: 1 },
        };
        let bytes = serde_json::to_vec(&next).expect("counters serialize");
        if let kv::Swap::Swapped =
            kv::compare_and_swap(key, current.as_deref(), Some(&bytes)).map_err(Error::unavailable)?
        {
            return Ok(next.count);
        }
    }
    Err(Error::unavailable("counter contended"))
}
