//! The accept loop both APIs run (the mini-redis shape): connections bounded by a
//! semaphore, one hyper HTTP/1.1 connection task each with a header read timeout and
//! a header size limit, and a graceful stop through a cancellation token. Generic over
//! the listener, so the Unix socket and TCP share it; what a connection is served
//! with is the caller's, built per connection by a factory that sees the stream.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Requests whose head (request line and headers) is larger get 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A listener the loop can accept connections from.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<TcpStream> {
        let (s, _) = TcpListener::accept(self).await?;
        // Answers are small and whole: send them now rather than wait on Nagle.
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Names the server in log lines.
    pub name: &'static str,
    pub max_connections: usize,
    /// The request head within this; idle keep-alive connections are closed after it.
    pub header_read_timeout: Duration,
    /// How long open connections (and `drain_also`) may finish after shutdown begins.
    pub drain: Duration,
}

/// Serves `listener` until `shutdown` is cancelled, each connection with the service
/// `make_service` builds for it. The factory runs on the accepted stream before a
/// byte of it is read as HTTP, so what it learns of the peer (the socket API's
/// SO_PEERCRED) holds for every request on that connection. Then stops accepting and
/// gives open connections, and `drain_also` (started only then), `opts.drain` to
/// finish. Returns whether all of it finished in time.
pub async fn serve<L, F, S>(
    listener: L,
    opts: Options,
    shutdown: CancellationToken,
    mut make_service: F,
    drain_also: impl Future<Output = ()> + Send,
) -> bool
where
    L: Listener,
    F: FnMut(&L::Stream) -> S + Send,
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);

    loop {
        // The permit comes first: past the limit, connections wait in the backlog
        // instead of costing a task each.
        let permit = tokio::select! {
            // Nobody closes the semaphore; if that ever changed, stop accepting.
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(server = opts.name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = make_service(&stream);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let name = opts.name;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = name, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let drained = async {
        graceful.shutdown().await;
        drain_also.await;
    };
    tokio::time::timeout(opts.drain, drained).await.is_ok()
}
