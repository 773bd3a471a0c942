//! Webhooks the host delivers: signed (Standard Webhooks), retried,
//! switched off after repeated failures. A plugin names an endpoint by its
//! URL once ([`endpoint_for`]) and sends to its id.

pub use crate::bindings::plinth::platform::webhooks::{Delivery, Endpoint, Error};
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::webhooks::{deliveries, enable, endpoint_for, send};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::webhooks::{deliveries, enable, endpoint_for, send};
