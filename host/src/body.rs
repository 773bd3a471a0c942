//! Request bodies, bounded in size and in how slowly they may arrive: read
//! whole by the edge before a plugin runs, or — on routes whose class
//! allows large bodies — left with hyper until the plugin asks, then read
//! whole (`request.body`) or streamed to disk (`blobs`).
//!
//! A client that trickles bytes is cut off long before any timeout, so it
//! cannot hold its share for long. Time spent waiting for a body's bytes is
//! counted in [`BodyWait`], and the request and plugin deadlines move by
//! it: a large upload is bounded by the minimum rate, not by a deadline
//! meant for computing.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::blobs::Chunks;
use crate::error::ApiError;

/// How long a body may take before the minimum rate applies, so a slow
/// start (TLS, a mobile link waking up) is not punished.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);
/// The span the minimum rate is judged over: after the grace, each span
/// must bring `min_rate × span` bytes, counted from when the last span's
/// bytes were complete. Bytes sent early buy at most one span of silence,
/// where an average since the start would let a fast start pay for a long
/// stall.
pub const BODY_RATE_WINDOW: Duration = Duration::from_secs(10);

/// The error code of a body that arrived too slowly.
pub const TOO_SLOW: &str = "body_too_slow";

/// The time one request has spent waiting for its body — and for the
/// host's file work on it, such as hashing a finished upload — shared by
/// the reader and every deadline of the request.
#[derive(Debug)]
pub struct BodyWait {
    origin: Instant,
    /// Nanoseconds of finished waits.
    waited: AtomicU64,
    /// When the wait going on now began (nanoseconds after `origin`, plus
    /// one), or zero.
    since: AtomicU64,
}

impl Default for BodyWait {
    fn default() -> Self {
        Self { origin: Instant::now(), waited: AtomicU64::new(0), since: AtomicU64::new(0) }
    }
}

impl BodyWait {
    fn nanos(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64 + 1
    }

    /// Time waited so far, including a wait going on now.
    pub fn total(&self) -> Duration {
        let since = self.since.load(Ordering::Acquire);
        let ongoing = if since == 0 { 0 } else { self.nanos().saturating_sub(since) };
        Duration::from_nanos(self.waited.load(Ordering::Acquire) + ongoing)
    }

    /// Runs `wait`, counting its time.
    pub async fn counting<T>(&self, wait: impl Future<Output = T>) -> T {
        let since = self.nanos();
        self.since.store(since, Ordering::Release);
        let out = wait.await;
        self.waited.fetch_add(self.nanos() - since, Ordering::AcqRel);
        self.since.store(0, Ordering::Release);
        out
    }

    /// Runs `work` until `limit` plus the time waited for the body has
    /// passed since `started`; `None` when it ran out.
    pub async fn within<T>(&self, started: Instant, limit: Duration, work: impl Future<Output = T>) -> Option<T> {
        let mut work = std::pin::pin!(work);
        loop {
            let deadline = started + limit + self.total();
            tokio::select! {
                out = &mut work => return Some(out),
                () = tokio::time::sleep_until(deadline) => {
                    if Instant::now() >= started + limit + self.total() {
                        return None;
                    }
                }
            }
        }
    }
}

/// The rules one body is read under.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Most bytes.
    pub limit: u64,
    /// Fewest bytes per second, on average, after [`BODY_RATE_GRACE`].
    pub min_rate: u64,
}

/// A body being read: its bytes one frame at a time, refused past the
/// limit or below the minimum rate.
pub struct BodyReader {
    incoming: Incoming,
    rules: BodyRules,
    wait: std::sync::Arc<BodyWait>,
    /// When the current span's bytes are due; set at the first read.
    due: Option<Instant>,
    /// Bytes of the current span so far.
    span_bytes: u64,
    received: u64,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader").field("rules", &self.rules).field("received", &self.received).finish()
    }
}

impl BodyReader {
    /// A reader of `incoming`; refused at once when its declared length
    /// (`Content-Length`) is past the limit.
    pub fn new(incoming: Incoming, rules: BodyRules, wait: std::sync::Arc<BodyWait>) -> Result<Self, ApiError> {
        let reader = Self { incoming, rules, wait, due: None, span_bytes: 0, received: 0 };
        if reader.declared().is_some_and(|n| n > rules.limit) {
            return Err(too_large(rules.limit));
        }
        Ok(reader)
    }

    /// Bytes the client said the body has.
    pub fn declared(&self) -> Option<u64> {
        hyper::body::Body::size_hint(&self.incoming).exact()
    }

    /// The same body under a lower limit.
    pub fn limited(mut self, limit: u64) -> Result<Self, ApiError> {
        self.rules.limit = self.rules.limit.min(limit);
        if self.declared().is_some_and(|n| n > self.rules.limit) {
            return Err(too_large(self.rules.limit));
        }
        Ok(self)
    }

    /// The rest of the body, whole.
    pub async fn read_all(mut self) -> Result<Bytes, ApiError> {
        let mut received = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            received.extend_from_slice(&chunk);
        }
        Ok(received.freeze())
    }
}

#[async_trait::async_trait]
impl Chunks for BodyReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        // Most requests have no body: no deadline to arm for nothing.
        if hyper::body::Body::is_end_stream(&self.incoming) {
            return Ok(None);
        }
        let span_needs = self.rules.min_rate.max(1) * BODY_RATE_WINDOW.as_secs();
        loop {
            let due = *self.due.get_or_insert_with(|| Instant::now() + BODY_RATE_GRACE + BODY_RATE_WINDOW);
            let frame = self.wait.counting(tokio::time::timeout_at(due, self.incoming.frame())).await;
            let frame = match frame {
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        TOO_SLOW,
                        format!(
                            "the request body arrived slower than {} bytes per second: {} of the {span_needs} bytes \
                             due in {} s came ({} bytes in all)",
                            self.rules.min_rate,
                            self.span_bytes,
                            BODY_RATE_WINDOW.as_secs(),
                            self.received
                        ),
                    ));
                }
                Ok(None) => return Ok(None),
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
                if self.received + data.len() as u64 > self.rules.limit {
                    return Err(too_large(self.rules.limit));
                }
                self.received += data.len() as u64;
                self.span_bytes += data.len() as u64;
                if self.span_bytes >= span_needs {
                    self.span_bytes = 0;
                    self.due = Some(Instant::now() + BODY_RATE_WINDOW);
                }
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}
