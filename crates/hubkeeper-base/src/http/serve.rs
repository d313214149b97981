//! The accept loop both APIs run (the mini-redis shape): connections bounded by a
//! semaphore and by a per-peer share of it, one hyper HTTP/1.1 connection task each
//! with a header size limit and one time bound on everything a peer can stall (the
//! request head, an idle keep-alive, a write the peer does not read), and a graceful
//! stop through a cancellation token. Generic over the listener, so the Unix socket
//! and TCP share it; what a connection is served with is the caller's, built per
//! connection by a factory that sees the stream.

use super::HttpError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

/// Requests whose head (request line and headers) is larger get 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Who a connection comes from, as far as sharing the permits goes: the uid on a Unix
/// socket (from SO_PEERCRED), the address over TCP (an IPv6 peer by its /64, which
/// one host usually has whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Uid(u32),
    Ip(IpAddr),
    /// The kernel would not say; all such connections share one share.
    Unknown,
}

impl Peer {
    fn of_ip(ip: IpAddr) -> Peer {
        Peer::Ip(match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
            },
        })
    }
}

/// A listener the loop can accept connections from.
pub trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>> + Send;
    /// Writes what fits of `bytes` without waiting (a refusal on a fresh connection).
    fn try_write(stream: &Self::Stream, bytes: &[u8]);
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept(&self) -> io::Result<(UnixStream, Peer)> {
        let (s, _) = UnixListener::accept(self).await?;
        let peer = s.peer_cred().map_or(Peer::Unknown, |c| Peer::Uid(c.uid()));
        Ok((s, peer))
    }
    fn try_write(stream: &UnixStream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept(&self) -> io::Result<(TcpStream, Peer)> {
        let (s, addr) = TcpListener::accept(self).await?;
        // Answers are small and whole: send them now rather than wait on Nagle.
        let _ = s.set_nodelay(true);
        Ok((s, Peer::of_ip(addr.ip())))
    }
    fn try_write(stream: &TcpStream, bytes: &[u8]) {
        let _ = stream.try_write(bytes);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Names the server in log lines.
    pub name: &'static str,
    /// Connections served at once; one peer may hold at most three quarters of them
    /// (see [`per_peer_limit`]).
    pub max_connections: usize,
    /// The request head within this; an idle keep-alive connection is closed after
    /// it, and so is one whose peer has not taken a byte of an answer for this long.
    pub request_timeout: Duration,
    /// How long open connections (and `drain_also`) may finish after shutdown begins.
    pub drain: Duration,
}

/// The most connections one peer may hold: a quarter of `max_connections` stays for
/// everyone else, so a peer that fills its share (on purpose or by a bug) cannot
/// starve the others. With a bound under 4 nothing is kept back.
pub fn per_peer_limit(max_connections: usize) -> usize {
    (max_connections - max_connections / 4).max(1)
}

/// How many connections each peer holds now. A plain mutex: touched only for a
/// moment, at accept and at close, never across an await.
#[derive(Debug, Default)]
struct PeerCounts(Mutex<HashMap<Peer, usize>>);

/// One connection's place in its peer's count, given back on drop.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: Peer,
}

impl PeerCounts {
    fn take(self: &Arc<Self>, peer: Peer, limit: usize) -> Option<PeerSlot> {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(peer).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

/// The whole answer to a connection beyond its peer's share, sent without waiting.
fn refusal(limit: usize) -> Vec<u8> {
    let body = HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        format!(
            "this client already holds {limit} connections, the most one client may: close idle ones, then retry"
        ),
    )
    .body();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
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
    let counts = Arc::new(PeerCounts::default());
    let per_peer = per_peer_limit(opts.max_connections);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Also covers an idle keep-alive: the timer starts when hyper waits for a head.
        .header_read_timeout(opts.request_timeout)
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
        let (stream, peer) = tokio::select! {
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
        let Some(slot) = counts.take(peer, per_peer) else {
            tracing::debug!(
                server = opts.name,
                ?peer,
                limit = per_peer,
                "refused a connection beyond its peer's share"
            );
            L::try_write(&stream, &refusal(per_peer));
            continue;
        };
        let service = make_service(&stream);
        // hyper bounds reading a head but not writing an answer: a peer that stops
        // reading would hold the connection (and its permit) forever. A write that
        // makes no progress for request_timeout fails, and the connection with it.
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(opts.request_timeout));
        let io = TokioIo::new(Box::pin(io));
        let conn = graceful.watch(builder.serve_connection(io, service));
        let name = opts.name;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = name, error = %e, "connection ended with an error");
            }
            drop(slot);
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
