//! The HTTP/1 accept loop, in place of `axum::serve`, which exposes none of the limits a
//! connection's memory needs: hyper's read buffer grows with the largest head a connection
//! ever sent (to ~400 KiB by default) and keeps that size while the connection lives, and
//! the number of connections has no bound.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

use crate::config::HttpConfig;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, asks
/// every connection to finish its request in flight and waits for them, as `axum::serve`'s
/// graceful shutdown did.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_buf_size(limits.max_header_bytes.max(crate::config::MIN_HEADER_BYTES))
        .max_header_size(limits.max_header_bytes);
    let builder = Arc::new(builder);
    // Permits are taken before `accept`: past the limit, connections wait in the kernel's
    // listen backlog, costing this process nothing, instead of being refused.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(Body::new)
            });
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(JsonTooLarge::new(stream));
            let conn = builder.serve_connection(io, TowerToHyperService::new(service));
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    tracing::debug!("not accepting connections; draining");
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds a permit until it ends.
    let _all = slots
        .acquire_many(limits.max_connections as u32)
        .await
        .expect("never closed");
    Ok(())
}

/// Out of file descriptors and the like: wait, as hyper's examples and `axum::serve` do,
/// rather than spin on an error that persists. A connection reset before it was accepted
/// is the client's business and is retried at once.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What hyper writes by itself when a request head is past `max_header_bytes`: a 431 with
/// no body, before the request reaches the router. Every other error is JSON.
const HYPER_TOO_LARGE: &[u8] = b"HTTP/1.1 431 ";

/// The answer written instead, with the body [`crate::http::error::json_error`] would give.
const JSON_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
content-type: application/json\r\n\
content-length: 41\r\n\
connection: close\r\n\
\r\n\
{\"error\":\"request headers are too large\"}";

/// A client connection whose one hyper-made answer, the bodiless 431 for a head past the
/// limit (the only 431 this server sends: no handler makes one), is replaced by a JSON one.
/// hyper flushes each response before it writes the next and closes the connection after
/// this one, so it starts a write and nothing follows it.
struct JsonTooLarge {
    stream: TcpStream,
    /// How much of [`JSON_TOO_LARGE`] is written, once hyper has started its 431.
    replacing: Option<usize>,
}

impl JsonTooLarge {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            replacing: None,
        }
    }

    /// Writes the rest of [`JSON_TOO_LARGE`]; then claims `claimed` bytes of hyper's.
    fn poll_replace(&mut self, cx: &mut Context<'_>, claimed: usize) -> Poll<io::Result<usize>> {
        let Some(written) = self.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *written < JSON_TOO_LARGE.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &JSON_TOO_LARGE[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(claimed))
    }
}

impl AsyncRead for JsonTooLarge {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonTooLarge {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() && buf.starts_with(HYPER_TOO_LARGE) {
            this.replacing = Some(0);
        }
        if this.replacing.is_some() {
            return this.poll_replace(cx, buf.len());
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        if this.replacing.is_none() && first.is_some_and(|b| b.starts_with(HYPER_TOO_LARGE)) {
            this.replacing = Some(0);
        }
        if this.replacing.is_some() {
            return this.poll_replace(cx, bufs.iter().map(|b| b.len()).sum());
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
