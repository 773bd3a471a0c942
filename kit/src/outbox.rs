//! E-mail the host delivers: queued durably, sent with retries.

pub use crate::bindings::plinth::platform::outbox::Message;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::outbox::send;
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::outbox::send;
