//! Accepting connections: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on
//! one port, a header-read timeout against slow clients, and a graceful
//! shutdown that stops accepting, lets in-flight requests finish (up to the
//! grace period) and then returns.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{App, router};

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router(app.clone());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.handle(req.map(axum::body::Body::new)).await) }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(app.config.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(20)));
    let graceful = GracefulShutdown::new();
    // The status page's history; ends with the server's runtime.
    let sampler = tokio::spawn(app.history.clone().run(app.registry.clone()));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // hyper's header-read timeout starts only once it has seen enough
                // bytes to pick HTTP/1 or HTTP/2; a client that connects and sends
                // nothing gets the same budget for its first byte.
                let first_byte = app.config.header_read_timeout;
                let (builder, service, watcher) = (builder.clone(), service.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let mut probe = [0u8; 1];
                    match tokio::time::timeout(first_byte, stream.peek(&mut probe)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return, // silent, closed or failed: drop the connection
                    }
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!("connection ended with an error: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    sampler.abort();
    app.start_draining();
    drop(listener); // new connections are refused from here on
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(app.config.shutdown_grace) => {
            tracing::warn!("grace period of {:?} over; closing remaining connections", app.config.shutdown_grace);
        }
    }
    Ok(())
}
