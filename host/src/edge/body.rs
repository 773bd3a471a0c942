//! Reading a request body whole, bounded in size and in how slowly it may
//! arrive: a client that trickles bytes is cut off long before the request
//! timeout, so it cannot hold its share for long.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::config::ServerConfig;
use crate::error::ApiError;

/// How long a body may take before the minimum rate applies, so a slow
/// start (TLS, a mobile link waking up) is not punished.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// The error code of a body that arrived too slowly.
pub const TOO_SLOW: &str = "body_too_slow";

/// Reads the whole body: 413 past `max_body` (declared or sent), 408 when,
/// after [`BODY_RATE_GRACE`], fewer than `min_body_rate` bytes per second
/// have arrived on average.
pub async fn read(
    mut body: Incoming,
    declared: Option<&HeaderValue>,
    server: &ServerConfig,
) -> Result<Bytes, ApiError> {
    let limit = server.max_body.0;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let rate = server.min_body_rate.0 as f64;
    let started = Instant::now();
    let mut received = BytesMut::new();
    loop {
        // By then the bytes so far are what the minimum rate asks for.
        let deadline = started + BODY_RATE_GRACE + Duration::from_secs_f64(received.len() as f64 / rate);
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    TOO_SLOW,
                    format!(
                        "the request body arrived slower than {} bytes per second ({} bytes in {:.1} s)",
                        server.min_body_rate.0,
                        received.len(),
                        started.elapsed().as_secs_f64()
                    ),
                ));
            }
            Ok(None) => return Ok(received.freeze()),
            Ok(Some(Err(e))) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    format!("the request body could not be read: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if received.len() as u64 + data.len() as u64 > limit {
                return Err(too_large());
            }
            received.extend_from_slice(&data);
        }
    }
}
