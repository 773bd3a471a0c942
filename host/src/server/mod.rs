//! The listener: accepts connections (TLS when configured), serves HTTP/1.1
//! and HTTP/2 through hyper, bounds connections, and drains on shutdown.
//! Invariant: only this module and `edge` know hyper.

mod connections;
mod refusals;
mod version;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use connections::Connections;
use version::{Builders, Speaks};

use crate::app::App;
use crate::edge;
use crate::metrics::Metrics;

/// Smallest read buffer hyper accepts.
const MIN_HYPER_BUF: usize = 8192;
/// How long a connection closed for idleness or shed may take to say
/// goodbye (HTTP/2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// File descriptors wanted beyond one per connection: the listener, sled's
/// files, the log, the compiled cache, the mail sink.
const SPARE_DESCRIPTORS: u64 = 256;

/// Raises the soft limit on open files to what `max_connections` needs (up
/// to the hard limit): past it `accept` fails before admission can shed a
/// connection, and silent clients keep everyone out. Warns when the hard
/// limit is too low. [`run`] calls it; `plinth serve` calls it before it
/// says it is listening.
pub fn raise_open_file_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let needed = max_connections as u64 + SPARE_DESCRIPTORS;
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current < needed) {
        limit.current = Some(limit.maximum.map_or(needed, |hard| hard.min(needed)));
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let current = getrlimit(Resource::Nofile).current;
    if current.is_some_and(|current| current < needed) {
        tracing::warn!(
            open_files = current,
            needed,
            "the open-file limit is below server.max_connections + {SPARE_DESCRIPTORS}: connections past it fail \
             at accept, before they can be shed; raise the hard limit (ulimit -Hn) or lower max_connections"
        );
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting (new connections are refused), lets in-flight requests finish
/// within the configured grace, and returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let server = &app.server;
    raise_open_file_limit(server.max_connections);
    let tls = server.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let builders = Arc::new(Builders::new(http_builder(&app)));
    let render: refusals::Render = {
        let app = app.clone();
        Arc::new(move |status| edge::refusal_bytes(&app, status))
    };
    let connections = Connections::new(server.max_connections, server.connections_per_client());
    tracing::info!(
        address = %listener.local_addr()?,
        tls = tls.is_some(),
        "listening"
    );
    let (stop_webhooks, webhooks_stopped) = tokio::sync::oneshot::channel::<()>();
    let webhooks = tokio::spawn(app.webhooks.clone().run(async {
        let _ = webhooks_stopped.await;
    }));
    let (stop_outbox, outbox_stopped) = tokio::sync::oneshot::channel::<()>();
    let outbox = tokio::spawn(app.outbox.clone().run(async {
        let _ = outbox_stopped.await;
    }));
    let audit_config = app.deployment.load().config.audit.clone();
    let retention = crate::audit::Retention { max_age: audit_config.retention.0, max_bytes: audit_config.max_bytes.0 };
    let (stop_upkeep, upkeep_stopped) = tokio::sync::oneshot::channel::<()>();
    let upkeep = tokio::spawn(crate::audit::upkeep(app.audit.clone(), retention, async {
        let _ = upkeep_stopped.await;
    }));
    let (stop_sweeper, sweeper_stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = tokio::spawn(app.blobs.clone().sweep_until(async {
        let _ = sweeper_stopped.await;
    }));
    let (stop_scanner, scanner_stopped) = tokio::sync::oneshot::channel::<()>();
    let scanner = tokio::spawn(app.blobs.clone().scan_until(app.audit.clone(), async {
        let _ = scanner_stopped.await;
    }));
    let (stop_jobs, jobs_stopped) = tokio::sync::oneshot::channel::<()>();
    let jobs = tokio::spawn(crate::jobs::dispatch::run_until(app.clone(), async {
        let _ = jobs_stopped.await;
    }));
    let (stopping, stop) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
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
        // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`:
        // as itself, so that IPv4 proxy ranges and limits apply to it.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let proxied = app.deployment.load().config.proxies.trusted.iter().any(|net| net.contains(&peer.ip()));
        let admitted = match connections.admit(peer.ip(), proxied) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::debug!(%peer, reason = refusal.name(), "connection refused");
                Metrics::count(&app.metrics.connections_refused, refusal.name());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builders = builders.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let render = render.clone();
        let task = async move {
            let served = match tls {
                // Boxed: the handshake and a TLS stream would make every
                // connection's task, plain ones too, about 7 KiB larger.
                Some(acceptor) => {
                    let serve_tls = async {
                        let header_timeout = app.server.header_timeout();
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let speaks = Speaks::negotiated(stream.get_ref().1.alpn_protocol());
                                let stream = refusals::EdgeRefusals::new(stream, render);
                                serve(builders.speaking(speaks), stream, peer, app, &admitted, stop).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                Ok(())
                            }
                        }
                    };
                    Box::pin(serve_tls).await
                }
                None => match Speaks::sniffed(&stream, app.server.header_timeout(), &admitted).await {
                    Some(speaks) => {
                        let stream = refusals::EdgeRefusals::new(stream, render);
                        serve(builders.speaking(speaks), stream, peer, app, &admitted, stop).await
                    }
                    None => Ok(()),
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(admitted);
        };
        tokio::spawn(task);
    }
    drop(listener);
    let grace = app.server.shutdown_grace();
    tracing::info!(connections = connections.count(), ?grace, "shutting down; draining in-flight requests");
    let _ = stopping.send(true);
    app.events.close_all();
    connections.close_all();
    if tokio::time::timeout(grace, connections.drained()).await.is_err() {
        tracing::warn!("drain bound reached; closing the remaining connections");
    }
    let _ = stop_outbox.send(());
    let _ = outbox.await;
    let _ = stop_webhooks.send(());
    let _ = webhooks.await;
    let _ = stop_upkeep.send(());
    let _ = upkeep.await;
    let _ = stop_sweeper.send(());
    let _ = sweeper.await;
    let _ = stop_scanner.send(());
    let _ = scanner.await;
    let _ = stop_jobs.send(());
    let _ = jobs.await;
    Ok(())
}

/// Serves one connection until the client closes it, it is idle too long,
/// the registry sheds it, or the server stops (then in-flight requests
/// finish first).
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    builder: &auto::Builder<TokioExecutor>,
    stream: refusals::EdgeRefusals<S>,
    peer: SocketAddr,
    app: Arc<App>,
    admitted: &connections::Admitted,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (header_timeout, idle_timeout) = (app.server.header_timeout(), app.server.idle_timeout());
    let tracker = admitted.tracker();
    let dispatched = stream.dispatched();
    let service = service_fn(move |req| {
        dispatched.mark();
        let app = app.clone();
        let busy = tracker.busy();
        async move {
            // Boxed: hyper keeps a request's future in place for as long as
            // its response streams (a task per HTTP/2 stream, a slot per
            // HTTP/1 connection), so its size is paid per open stream. The
            // box is freed once the response is ready.
            let mut response = Box::pin(edge::handle(&app, req, peer)).await;
            // A stream keeps its connection busy (never idle, never shed)
            // until it ends.
            response.body_mut().hold(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let idle = admitted.idle_deadline(header_timeout, idle_timeout);
        let wake = closing.or(idle.map(tokio::time::Instant::from_std));
        tokio::select! {
            served = conn.as_mut() => return served,
            () = sleep_until(wake) => {
                if closing.is_some() {
                    return Ok(());
                }
                if admitted.idle_deadline(header_timeout, idle_timeout).is_some_and(|d| d <= std::time::Instant::now()) {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
            () = admitted.went_idle() => {}
            () = admitted.close_requested(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                // Shed while idle: close soon. Shutting down: let requests finish.
                if !*stop.borrow_and_update() {
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn http_builder(app: &App) -> auto::Builder<TokioExecutor> {
    let server = &app.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits sit above ours, so that a request just over ours
    // still reaches the edge and gets the JSON 431; beyond them hyper
    // refuses it, and `refusals` swaps in the edge's answer.
    let header_bytes = usize::try_from(server.max_header_bytes.0).unwrap_or(usize::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout())
        .max_headers(server.max_headers.saturating_mul(2).max(100))
        .max_buf_size(header_bytes.saturating_mul(2).max(MIN_HYPER_BUF));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(u32::try_from(server.streams_per_connection()).unwrap_or(u32::MAX))
        .max_header_list_size(u32::try_from(header_bytes.saturating_mul(2)).unwrap_or(u32::MAX));
    builder
}
