//! The socket API server: an accept loop bounded by a semaphore, one hyper HTTP/1.1
//! connection task per client, peer credentials read once per connection, and a
//! graceful stop through a cancellation token (the mini-redis shape).

use super::peer::{PostPolicy, peer_of};
use super::routes::{ConnFacts, handle};
use crate::commands::CommandTx;
use crate::metrics::Metrics;
use crate::status::StatusRx;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Requests whose head (request line and headers) is larger get 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long in-flight requests may finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(2);

/// What request handlers share. Reading status is a `watch` borrow: it never waits on
/// a probe, the network or a child.
#[derive(Debug)]
pub struct Context {
    pub status: StatusRx,
    pub commands: CommandTx,
    pub metrics: Arc<Metrics>,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Whole request head within this, and idle keep-alive connections closed after it.
    pub request_timeout: Duration,
}

/// Serves `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish for a moment.
pub async fn run(
    listener: UnixListener,
    ctx: Arc<Context>,
    policy: PostPolicy,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);

    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a socket connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let peer = peer_of(&stream);
        let facts = ConnFacts {
            may_post: policy.allows(peer.as_ref()),
        };
        let ctx = ctx.clone();
        let service = service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(req, &ctx, facts).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "socket connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::debug!("socket connections still open at shutdown were dropped"),
    }
}
