//! The accept loop: TCP connections bounded by a semaphore, one hyper HTTP/1.1
//! connection task each, a header read timeout, and a graceful stop through a
//! cancellation token that also waits for operations still running (the mini-redis
//! shape, as the socket API's `api::server`).

use super::routes::handle;
use crate::control_service::provision::Provisioner;
use crate::control_service::service::Service;
use crate::secrets::Secret;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Requests whose head (request line and headers) is larger get 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long in-flight requests and operations may finish after shutdown begins. An
/// operation cut off here is resumed by the next enroll or disable of its hub.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// The request head within this, the body within this again; idle keep-alive
    /// connections are closed after it.
    pub request_timeout: Duration,
}

/// What request handlers share.
#[derive(Debug)]
pub struct State<P> {
    pub service: Arc<Service<P>>,
    pub(super) token: Secret,
    pub limits: Limits,
    pub(super) tasks: TaskTracker,
}

impl<P> State<P> {
    pub fn new(service: Service<P>, token: Secret, limits: Limits) -> Self {
        State {
            service: Arc::new(service),
            token,
            limits,
            tasks: TaskTracker::new(),
        }
    }
}

/// Serves `listener` until `shutdown` is cancelled, then lets in-flight requests and
/// operations finish for a moment.
pub async fn run<P: Provisioner>(
    listener: TcpListener,
    state: Arc<State<P>>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(state.limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.request_timeout)
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
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let service = service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(req, st).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    state.tasks.close();
    let drained = async {
        graceful.shutdown().await;
        state.tasks.wait().await;
    };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!("requests still running at shutdown were dropped");
    }
}
