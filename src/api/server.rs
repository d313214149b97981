//! The socket API server: what it shares with its handlers (`Context`), its limits,
//! and the per-connection service, which carries the peer's credentials read once per
//! connection. The accept loop itself is `http::serve`.

use super::peer::{PostPolicy, peer_of};
use super::routes::{ConnFacts, handle};
use crate::daemon::commands::CommandTx;
use crate::status::StatusRx;
use crate::status::metrics::Metrics;
use hubkeeper_base::http::serve;
use hyper::service::service_fn;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

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
    let opts = serve::Options {
        name: "socket",
        max_connections: limits.max_connections,
        request_timeout: limits.request_timeout,
        drain: DRAIN,
    };
    let per_connection = |stream: &UnixStream| {
        // ⚠️ Security-critical: who may POST is decided here, once per connection,
        // from the kernel's SO_PEERCRED / SO_PEERGROUPS for this very stream, before
        // a byte of any request is served; nothing in a request can change it.
        let peer = peer_of(stream);
        let facts = ConnFacts {
            may_post: policy.allows(peer.as_ref()),
        };
        let ctx = ctx.clone();
        service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(handle(req, &ctx, facts).await) }
        })
    };
    let drained = serve::serve(listener, opts, shutdown, per_connection, async {}).await;
    if !drained {
        tracing::debug!("socket connections still open at shutdown were dropped");
    }
}
