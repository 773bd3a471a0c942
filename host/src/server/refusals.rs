//! hyper answers some malformed HTTP/1 requests itself, before the edge
//! sees them (400 for bytes it cannot parse, 431 past its own header
//! bounds), with a bare head: no security headers, no JSON body, no trace
//! id. This wraps a connection's stream and swaps such an answer for the
//! edge's, so that every response really does pass the headers layer.
//!
//! A hyper answer is recognised by its shape: a whole head with
//! `content-length: 0` and no `x-trace-id`, which every response of the
//! edge carries. HTTP/2 frames never start with a status line. And only
//! while hyper could be answering by itself: between bytes read from the
//! client and the request reaching the edge. Once the edge has a request,
//! what is written is its response, and a body may hold any bytes (a file
//! made to look like a refusal must be served as it is, or the response's
//! length and the connection's framing would change).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Renders the edge's answer for a status, as HTTP/1.1 bytes.
pub type Render = Arc<dyn Fn(StatusCode) -> Vec<u8> + Send + Sync>;

/// A stream whose hyper-made refusals are replaced by the edge's.
pub struct EdgeRefusals<S> {
    /// The connection.
    inner: S,
    /// The edge's answer for a status.
    render: Render,
    /// A replacement being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
    /// Set by bytes from the client, cleared when a request reaches the
    /// edge: whether a head written now could be hyper's own.
    armed: Arc<AtomicBool>,
}

/// Tells the stream that hyper handed a request to the edge.
#[derive(Clone)]
pub struct Dispatched(Arc<AtomicBool>);

impl Dispatched {
    /// Called as each request reaches the edge.
    pub fn mark(&self) {
        // Read and written on the connection's own task, in order: hyper
        // reads, then calls the service, then writes.
        self.0.store(false, Ordering::Relaxed);
    }
}

impl<S> EdgeRefusals<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, render: Render) -> Self {
        Self { inner, render, pending: None, armed: Arc::default() }
    }

    /// The handle the connection's service marks requests with.
    pub fn dispatched(&self) -> Dispatched {
        Dispatched(self.armed.clone())
    }
}

/// The status of a head hyper wrote by itself, if `buf` is one.
fn hyper_refusal(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    // Most heads are the edge's successes: read no further for them.
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    if !status.is_client_error() && !status.is_server_error() {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_ascii_lowercase();
    (head.contains("\r\ncontent-length: 0") && !head.contains("\r\nx-trace-id:")).then_some(status)
}

impl<S: AsyncWrite + Unpin> EdgeRefusals<S> {
    /// Writes out a pending replacement.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written when it is a hyper refusal, queueing the
    /// edge's answer instead.
    fn replace(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if !self.armed.load(Ordering::Relaxed) {
            return None;
        }
        let status = hyper_refusal(buf)?;
        self.pending = Some(((self.render)(status), 0));
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // The rest goes out on the flush or shutdown that follows.
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EdgeRefusals<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.armed.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EdgeRefusals<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some(replaced) = this.replace(cx, buf) {
            return replaced;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(replaced) = this.replace(cx, first)
        {
            return replaced.map_ok(|_| bufs.iter().map(|b| b.len()).sum());
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_refusals_are_recognised() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 00:10:08 GMT\r\n\r\n";
        assert_eq!(hyper_refusal(hyper), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let bad = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(bad), Some(StatusCode::BAD_REQUEST));
        let ours = b"HTTP/1.1 400 Bad Request\r\nx-trace-id: 1756\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(ours), None, "the edge's own answers carry a trace id");
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_refusal(ok), None);
        assert_eq!(hyper_refusal(b"\x00\x00\x12\x04\x00"), None, "HTTP/2 frames pass");
        assert_eq!(hyper_refusal(b"HTTP/1.1 431 Request Header"), None, "only a whole head");
    }

    #[tokio::test]
    async fn a_refusal_is_replaced_and_everything_else_passes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let render: Render = Arc::new(|status| format!("EDGE {}", status.as_u16()).into_bytes());
        let (client, server) = tokio::io::duplex(1024);
        let mut wrapped = EdgeRefusals::new(server, render);
        let mut client = client;
        client.write_all(b"GET /").await.unwrap();
        wrapped.read_exact(&mut [0; 5]).await.unwrap();
        wrapped.write_all(b"HTTP/1.1 200 OK\r\nx-trace-id: 1\r\ncontent-length: 2\r\n\r\nhi").await.unwrap();
        wrapped.write_all(b"HTTP/1.1 431 Too Large\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        wrapped.shutdown().await.unwrap();
        let mut seen = String::new();
        client.read_to_string(&mut seen).await.unwrap();
        assert_eq!(seen, "HTTP/1.1 200 OK\r\nx-trace-id: 1\r\ncontent-length: 2\r\n\r\nhiEDGE 431");
    }

    #[tokio::test]
    async fn a_body_that_looks_like_a_refusal_is_written_as_it_is() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let render: Render = Arc::new(|status| format!("EDGE {}", status.as_u16()).into_bytes());
        let (mut client, server) = tokio::io::duplex(4096);
        let mut wrapped = EdgeRefusals::new(server, render);
        let dispatched = wrapped.dispatched();
        let fake = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        // Nothing read yet: nothing hyper could be refusing.
        wrapped.write_all(fake).await.unwrap();
        // A request read and handed to the edge: its response's chunks pass.
        client.write_all(b"GET /file HTTP/1.1\r\n\r\n").await.unwrap();
        wrapped.read_exact(&mut [0; 22]).await.unwrap();
        dispatched.mark();
        wrapped.write_all(b"HTTP/1.1 200 OK\r\nx-trace-id: 1\r\ncontent-length: 96\r\n\r\n").await.unwrap();
        wrapped.write_all(fake).await.unwrap();
        wrapped.write_all(fake).await.unwrap();
        // The next request's bytes arrive and hyper refuses them: replaced.
        client.write_all(b"\x01\x02").await.unwrap();
        wrapped.read_exact(&mut [0; 2]).await.unwrap();
        wrapped.write_all(fake).await.unwrap();
        wrapped.shutdown().await.unwrap();
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).await.unwrap();
        let ok = b"HTTP/1.1 200 OK\r\nx-trace-id: 1\r\ncontent-length: 96\r\n\r\n";
        let expected = [&fake[..], ok, fake, fake, b"EDGE 400"].concat();
        assert_eq!(String::from_utf8_lossy(&seen), String::from_utf8_lossy(&expected));
    }
}
