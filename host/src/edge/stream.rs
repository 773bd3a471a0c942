//! Live change streams (Server-Sent Events) the host serves after a plugin
//! answered with `events.follow`: no plugin instance stays open per
//! subscriber.
//!
//! A stream sends the plugin's body, the held changes after the
//! subscriber's version, then live changes, each checked to follow the
//! last one sent (`previous`), so a subscriber never sees a hole: on a gap,
//! a subscriber that fell behind, or a topic pushed out, the stream closes
//! and the client's reconnect (with `Last-Event-ID`) goes back to the
//! plugin. At every heartbeat the session, the route's policy and the
//! plugin's own answer are checked again.

use std::any::Any;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{broadcast, mpsc};

use crate::app::App;
use crate::events::Change;
use crate::metrics::Metrics;
use crate::runtime::host::types::Follow;

/// Frames a stream may have queued for a client before it counts as slow.
const QUEUED_FRAMES: usize = 32;
/// How long a browser waits before reconnecting, sent at the start.
const RETRY_MS: u32 = 1000;

/// A response body: whole, or a stream the host feeds.
pub enum ResponseBody {
    /// Everything at once.
    Whole(Full<Bytes>),
    /// Frames as they come; ends when the stream's task does.
    Stream(EventStream),
    /// A blob's bytes from disk (boxed: every response body is as large as
    /// its largest kind, and most are small).
    File(Box<crate::edge::blob::FileBody>),
}

/// The receiving end of a stream, with whatever must live as long as it.
pub struct EventStream {
    frames: mpsc::Receiver<Bytes>,
    held: Option<Box<dyn Any + Send>>,
}

impl From<Full<Bytes>> for ResponseBody {
    fn from(body: Full<Bytes>) -> Self {
        Self::Whole(body)
    }
}

impl ResponseBody {
    /// No body.
    pub fn empty() -> Self {
        Self::Whole(Full::new(Bytes::new()))
    }

    /// Keeps `guard` (such as the connection's busy mark) until a stream
    /// or a file ends; a whole body drops it at once.
    pub fn hold(&mut self, guard: impl Any + Send) {
        match self {
            Self::Whole(_) => {}
            Self::Stream(stream) => stream.held = Some(Box::new(guard)),
            Self::File(file) => file.held = Some(Box::new(guard)),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Whole(body) => Pin::new(body).poll_frame(cx),
            Self::Stream(stream) => stream.frames.poll_recv(cx).map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
            Self::File(file) => file.poll_frame(cx).map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole(body) => body.is_end_stream(),
            Self::Stream(_) => false,
            Self::File(file) => file.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Whole(body) => body.size_hint(),
            Self::Stream(_) => SizeHint::default(),
            Self::File(file) => SizeHint::with_exact(file.remaining()),
        }
    }
}

/// The request a stream was opened by, to ask again at each heartbeat.
pub struct Origin {
    /// The plugin serving it.
    pub plugin: Arc<str>,
    /// The URI as received (a copy: see [`Origin::new`]).
    uri: Uri,
    /// Headers as received, copied likewise (the plugin sees them
    /// filtered, as always).
    headers: HeaderMap,
    /// The canonical path.
    pub path: String,
    /// The client address.
    pub client: IpAddr,
    /// The session token the client presented, if any.
    pub token: Option<String>,
}

impl Origin {
    /// Keeps copies of `uri` and `headers`: hyper parses both as slices of
    /// the connection's read buffer, which would otherwise stay allocated
    /// (8 KiB) beside the buffer hyper takes for its next read, for as long
    /// as the stream is open.
    pub fn new(
        plugin: Arc<str>,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
        client: IpAddr,
        token: Option<String>,
    ) -> Self {
        // Neither copy can fail for what hyper parsed; were one to, the
        // original serves as well, only holding the buffer.
        let uri = Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone());
        let mut owned = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copy.set_sensitive(value.is_sensitive());
            owned.append(name.clone(), copy);
        }
        Self { plugin, uri, headers: owned, path: path.to_owned(), client, token }
    }

    /// The URI as received.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The headers as received.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// Why a heartbeat's check ended a stream: sent as the `end` event.
pub struct Ended {
    /// The HTTP status the request would get now.
    pub status: u16,
    /// A stable code, such as `session_ended`.
    pub code: String,
}

/// Starts the stream a plugin asked for; `prefix` is its body.
pub fn start(app: Arc<App>, origin: Origin, follow: Follow, prefix: Vec<u8>) -> ResponseBody {
    let (frames, receiver) = mpsc::channel(QUEUED_FRAMES);
    let mut first = format!("retry: {RETRY_MS}\n\n").into_bytes();
    first.extend_from_slice(&prefix);
    let _ = frames.try_send(Bytes::from(first));
    let Follow { key, after, ticket } = follow;
    if let Some(subscription) = app.events.subscribe(&origin.plugin, &key, after) {
        let metrics = app.metrics.clone();
        metrics.streams_opened.inc();
        metrics.streams_open.inc();
        let task = async move {
            let reason = serve(&app, &origin, &key, after, subscription, &frames).await;
            tracing::debug!(plugin = %origin.plugin, reason, "stream closed");
            Metrics::count(&metrics.streams_closed, reason);
            metrics.streams_open.dec();
            drop(ticket);
        };
        tokio::spawn(task);
    }
    ResponseBody::Stream(EventStream { frames: receiver, held: None })
}

/// Feeds one stream until it ends; returns why.
async fn serve(
    app: &Arc<App>,
    origin: &Origin,
    key: &str,
    after: u64,
    subscription: crate::events::Subscription,
    frames: &mpsc::Sender<Bytes>,
) -> &'static str {
    let crate::events::Subscription { backlog, mut live } = subscription;
    let mut last = after;
    for change in backlog {
        if let Err(reason) = send_change(frames, &change, &mut last) {
            return reason;
        }
    }
    let every = app.deployment.load().config.streams.heartbeat.0;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut closing = app.events.closing();
    if *closing.borrow_and_update() {
        return "shutdown";
    }
    loop {
        tokio::select! {
            () = frames.closed() => return "client_gone",
            _ = closing.changed() => return "shutdown",
            received = live.recv() => match received {
                Ok(change) if change.version <= last => {}
                Ok(change) => {
                    if let Err(reason) = send_change(frames, &change, &mut last) {
                        return reason;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return "slow",
                Err(broadcast::error::RecvError::Closed) => return "gap",
            },
            _ = beat.tick() => {
                // Boxed: the plugin call's future is large, and an idle
                // stream should not carry its space between heartbeats.
                if let Err(ended) = Box::pin(super::revalidate(app, origin, key)).await {
                    let data = serde_json::json!({ "status": ended.status, "code": ended.code });
                    let _ = frames.try_send(Bytes::from(format!("event: end\ndata: {data}\n\n")));
                    return "ended";
                }
                if frames.try_send(Bytes::from_static(b": heartbeat\n\n")).is_err() {
                    return "slow";
                }
            }
        }
    }
}

/// Sends one change if it follows the last one sent.
fn send_change(frames: &mpsc::Sender<Bytes>, change: &Change, last: &mut u64) -> Result<(), &'static str> {
    if change.previous != Some(*last) {
        return Err("gap");
    }
    frames.try_send(change.frame.get_or_init(|| event(change)).clone()).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => "slow",
        mpsc::error::TrySendError::Closed(_) => "client_gone",
    })?;
    *last = change.version;
    Ok(())
}

/// One change as an SSE event; data lines split so none holds a newline.
fn event(change: &Change) -> Bytes {
    let mut out = format!("id: {}\nevent: change\n", change.version);
    let text = String::from_utf8_lossy(&change.data).replace("\r\n", "\n");
    for line in text.split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_no_slice_of_its_requests_buffer() {
        let read = Bytes::from_static(b"/v1/state/notes/a/changes?since=3 session=abc");
        let uri = Uri::from_maybe_shared(read.slice(..33)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_maybe_shared(read.slice(34..)).unwrap());
        let origin = Origin::new("state".into(), &uri, &headers, uri.path(), [127, 0, 0, 1].into(), None);
        let buffer = read.as_ptr_range();
        assert_eq!(origin.uri(), &uri);
        assert!(!buffer.contains(&origin.uri().path().as_ptr()), "the URI is a copy");
        let cookie = &origin.headers()[http::header::COOKIE];
        assert_eq!(cookie, "session=abc");
        assert!(!buffer.contains(&cookie.as_bytes().as_ptr()), "the header is a copy");
        assert!(
            buffer.contains(&uri.path().as_ptr())
                && buffer.contains(&headers[http::header::COOKIE].as_bytes().as_ptr())
        );
    }

    #[test]
    fn an_event_never_carries_a_raw_newline_in_data() {
        let change = Change::new(7, Some(3), Bytes::from_static(b"{\"a\":1}\nid: 99\r\n"));
        let text = String::from_utf8(event(&change).to_vec()).unwrap();
        assert_eq!(text, "id: 7\nevent: change\ndata: {\"a\":1}\ndata: id: 99\ndata: \n\n");
    }

    #[test]
    fn a_subscriber_whose_frames_pile_up_is_slow() {
        let (tx, _rx) = mpsc::channel(1);
        let mut last = 1;
        assert_eq!(send_change(&tx, &Change::new(2, Some(1), Bytes::new()), &mut last), Ok(()));
        assert_eq!(send_change(&tx, &Change::new(3, Some(2), Bytes::new()), &mut last), Err("slow"));
        assert_eq!(last, 2, "the change it could not take is not counted as sent");
    }

    #[test]
    fn a_change_that_does_not_follow_is_a_gap() {
        let (tx, _rx) = mpsc::channel(4);
        let mut last = 3;
        let next = Change::new(7, Some(3), Bytes::new());
        assert_eq!(send_change(&tx, &next, &mut last), Ok(()));
        assert_eq!(last, 7);
        let skipped = Change::new(12, Some(9), Bytes::new());
        assert_eq!(send_change(&tx, &skipped, &mut last), Err("gap"));
    }
}
