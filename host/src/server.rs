//! The listener: accepts connections (TLS when configured), serves HTTP/1.1
//! and HTTP/2 through hyper, bounds connections, and drains on shutdown.
//! Invariant: only this module and `edge` know hyper.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::edge;

/// Time a client has to finish the TLS handshake or send request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest read buffer hyper accepts.
const MIN_HYPER_BUF: usize = 8192;

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting (new connections are refused), lets in-flight requests finish
/// within the configured grace, and returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let server = &app.server;
    let tls = server.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let builder = Arc::new(http_builder(&app));
    let connections = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    tracing::info!(
        address = %listener.local_addr()?,
        tls = tls.is_some(),
        "listening"
    );
    let (stop_outbox, outbox_stopped) = tokio::sync::oneshot::channel::<()>();
    let outbox = tokio::spawn(app.outbox.clone().run(async {
        let _ = outbox_stopped.await;
    }));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("the connection semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE or a connection reset before accept; pause so a
                    // persistent error does not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(edge::handle(&app, req, peer).await) }
            });
            let served = match tls {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                        watcher.watch(conn).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        Ok(())
                    }
                },
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = app.server.shutdown_grace();
    tracing::info!(connections = graceful.count(), ?grace, "shutting down; draining in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain bound reached; closing the remaining connections");
    }
    let _ = stop_outbox.send(());
    let _ = outbox.await;
    Ok(())
}

fn http_builder(app: &App) -> auto::Builder<TokioExecutor> {
    let server = &app.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits sit above ours, so that a request just over ours
    // still reaches the edge and gets the JSON 431; hyper answers beyond.
    let header_bytes = usize::try_from(server.max_header_bytes.0).unwrap_or(usize::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_headers(server.max_headers.saturating_mul(2).max(100))
        .max_buf_size(header_bytes.saturating_mul(2).max(MIN_HYPER_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(u32::try_from(server.max_in_flight).unwrap_or(u32::MAX))
        .max_header_list_size(u32::try_from(header_bytes.saturating_mul(2)).unwrap_or(u32::MAX));
    builder
}
