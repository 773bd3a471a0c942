//! Guest stdout and stderr, line by line into the host log, tagged with the
//! plugin name (and, through the request span, the trace id).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes of output one request may log; the rest is dropped (once noted),
/// so a chatty or hostile plugin cannot flood the log.
pub const MAX_GUEST_OUTPUT_BYTES: usize = 64 * 1024;
/// Longest line logged as one event.
const MAX_LINE_BYTES: usize = 4096;

/// One guest stream (stdout or stderr) of one request.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    /// Plugin name, for the log field.
    plugin: Arc<str>,
    /// `stdout` or `stderr`.
    stream: &'static str,
    /// The unfinished line.
    pending: Vec<u8>,
    /// Bytes still allowed for this request.
    budget: usize,
    /// Whether the budget ran out (noted once).
    truncated: bool,
}

impl GuestOutput {
    /// A stream for `plugin` named `stream`.
    pub fn new(plugin: Arc<str>, stream: &'static str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LineBuffer {
                plugin,
                stream,
                pending: Vec::new(),
                budget: MAX_GUEST_OUTPUT_BYTES,
                truncated: false,
            })),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        self.inner.lock().expect("guest output lock poisoned").write(bytes);
    }
}

impl LineBuffer {
    fn write(&mut self, bytes: &[u8]) {
        let allowed = bytes.len().min(self.budget);
        self.budget -= allowed;
        if allowed < bytes.len() && !self.truncated {
            self.truncated = true;
            tracing::warn!(target: "plugin", plugin = &*self.plugin, stream = self.stream,
                "guest output over {MAX_GUEST_OUTPUT_BYTES} bytes for this request; the rest is dropped");
        }
        for &b in &bytes[..allowed] {
            if b == b'\n' || self.pending.len() >= MAX_LINE_BYTES {
                self.emit();
            }
            if b != b'\n' {
                self.pending.push(b);
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = crate::log_text::escaped(&line);
        tracing::info!(target: "plugin", plugin = &*self.plugin, stream = self.stream, "{line}");
        self.pending.clear();
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always accept: output over the budget is dropped, not refused, so
        // a guest never fails (or panics) because the host stopped listening.
        Ok(MAX_LINE_BYTES)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_logs_at_most_its_budget_in_bounded_lines() {
        let output = GuestOutput::new("chatty".into(), "stdout");
        let line = [b'x'; 999];
        for _ in 0..200 {
            output.write_bytes(&line);
            output.write_bytes(b"\n");
        }
        output.write_bytes(&[b'y'; 3 * MAX_LINE_BYTES]);
        let buffer = output.inner.lock().unwrap();
        assert_eq!(buffer.budget, 0, "200 KB written, {MAX_GUEST_OUTPUT_BYTES} bytes logged");
        assert!(buffer.truncated);
        assert!(buffer.pending.len() <= MAX_LINE_BYTES);
    }
}
