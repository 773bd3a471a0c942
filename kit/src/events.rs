//! Change feeds: a versioned write that publishes its change, the changes
//! the host still holds, and live streams ([`crate::Response::follow`]).
//! Needs grant `events` (with `kv`).

pub use crate::bindings::plinth::platform::events::{Change, StreamRefusal};
pub use crate::bindings::plinth::platform::kv::WriteOutcome;
use crate::kv::Op;

/// Largest change data the host takes.
pub const MAX_CHANGE_BYTES: usize = 64 * 1024;

/// Writes like [`crate::kv::write_if_version`] and, once written, publishes
/// `data` as the key's change to its subscribers, in commit order.
pub fn publish_write(
    key: &str,
    expected: Option<u64>,
    value: Option<&[u8]>,
    also: &[Op],
    data: &[u8],
) -> crate::Result<WriteOutcome> {
    Ok(host::publish_write(key, expected, value, also, data)?)
}

/// The changes of `key` after version `after`, oldest first, when the host
/// holds an unbroken run of them; none when it does not (send the current
/// value instead).
pub fn since(key: &str, after: u64) -> Option<Vec<Change>> {
    host::since(key, after)
}

#[cfg(target_arch = "wasm32")]
mod host {
    pub use crate::bindings::plinth::platform::events::{follow, publish_write, since};
}
#[cfg(not(target_arch = "wasm32"))]
mod host {
    pub use crate::testing::events::{publish_write, since};
}

impl From<StreamRefusal> for crate::Error {
    /// Too many for this client 429, for the host 503.
    fn from(refusal: StreamRefusal) -> Self {
        match refusal {
            StreamRefusal::TooManyForClient(n) => {
                crate::Error::new(429, "too_many_streams", format!("you have {n} streams open already; close one"))
                    .with_header("retry-after", "5")
            }
            StreamRefusal::TooMany(_) => {
                crate::Error::new(503, "streams_full", "the server holds all the streams it can; retry shortly")
                    .with_header("retry-after", "5")
            }
            StreamRefusal::Invalid(why) => crate::Error::new(500, "invalid_stream", why),
        }
    }
}

/// The host call that starts a stream.
#[cfg(target_arch = "wasm32")]
type Start = fn(&crate::bindings::plinth::platform::types::Response, &str, u64) -> Result<(), StreamRefusal>;

/// A response's stream: the key and the version it follows from.
#[derive(Debug, Clone)]
pub(crate) struct Follow {
    pub(crate) key: String,
    pub(crate) after: u64,
    /// `events.follow`, reached through this pointer so that only a plugin
    /// that calls [`crate::Response::follow`] imports `events` (and needs
    /// its grant); the kit's response path alone never names it.
    #[cfg(target_arch = "wasm32")]
    start: Start,
}

impl PartialEq for Follow {
    fn eq(&self, other: &Self) -> bool {
        (&self.key, self.after) == (&other.key, other.after)
    }
}

impl Eq for Follow {}

impl Follow {
    pub(crate) fn new(key: &str, after: u64) -> Self {
        Self {
            key: key.to_owned(),
            after,
            #[cfg(target_arch = "wasm32")]
            start: host::follow,
        }
    }

    /// Asks the host to stream after `response`.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn start(&self, response: &crate::bindings::plinth::platform::types::Response) -> crate::Result<()> {
        Ok((self.start)(response, &self.key, self.after)?)
    }
}
