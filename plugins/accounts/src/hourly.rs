//! Counters of events per hour and per key (failed sign-ins per address,
//! mails per recipient), kept in kv and counted with the kit's
//! compare-and-swap loop so concurrent events all count.

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

/// Events under `key` in the current window, and the seconds until it ends.
pub fn current(key: &str) -> Result<(u64, u64), Error> {
    let Some(count) = kv::get_json::<Count>(key)? else {
        return Ok((0, 0));
    };
    let (now, end) = (store::now(), count.window_start + WINDOW);
    Ok(if now < end { (count.count, end - now) } else { (0, 0) })
}

/// Counts one event under `key`; returns the count in this window with it.
pub fn count(key: &str) -> Result<u64, Error> {
    let counted = kv::update(key, None, |current: Option<Count>| {
        let now = store::now();
        Ok(Some(match current {
            Some(c) if now < c.window_start + WINDOW => Count { count: c.count + 1, ..c },
            _ => Count { window_start: now, count: 1 },
        }))
    })?;
    Ok(counted.expect("a count is always written").value.count)
}
