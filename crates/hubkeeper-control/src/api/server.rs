//! The control API server: what its handlers share (`State`), its limits, and how it
//! stops: the shared accept loop (`hubkeeper_base::http::serve`) over TCP, whose drain also waits for
//! operations still running.

use super::routes::handle;
use crate::provision::Provisioner;
use crate::service::Service;
use crate::store::Store;
use hubkeeper_base::http::serve;
use hubkeeper_proto::Secret;
use hyper::service::service_fn;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
pub struct State<S, P> {
    pub service: Arc<Service<S, P>>,
    pub(super) token: Secret,
    pub limits: Limits,
    pub(super) tasks: TaskTracker,
}

impl<S, P> State<S, P> {
    pub fn new(service: Service<S, P>, token: Secret, limits: Limits) -> Self {
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
pub async fn run<S: Store, P: Provisioner>(
    listener: TcpListener,
    state: Arc<State<S, P>>,
    shutdown: CancellationToken,
) {
    let opts = serve::Options {
        name: "control",
        max_connections: state.limits.max_connections,
        request_timeout: state.limits.request_timeout,
        drain: DRAIN,
    };
    let per_connection = |_: &TcpStream| {
        let st = state.clone();
        service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(handle(req, st).await) }
        })
    };
    // Operations run detached from their connection (see `routes::detached`): the
    // drain waits for them too, within the same deadline.
    let operations = async {
        state.tasks.close();
        state.tasks.wait().await;
    };
    if !serve::serve(listener, opts, shutdown, per_connection, operations).await {
        tracing::warn!("requests still running at shutdown were dropped");
    }
}
