//! Raw HTTP through hyper into the socket API's real handler
//! (`hubkeeper::api::routes::handle`) with a live status and a command loop answering
//! like the daemon's. Properties: no panic, every connection answers and ends, and a
//! clean request with a body over 64 KiB is refused with 413.

use super::{Target, runtime};
use crate::craft::U;
use crate::http::{Fields, request, serve_bytes, statuses};
use hubkeeper::api::routes::{ConnFacts, MAX_BODY, handle};
use hubkeeper::api::server::Context;
use hubkeeper::daemon::commands::{CommandRequest, Outcome};
use hubkeeper::status::metrics::Metrics;
use hubkeeper::status::{Snapshot, StatusTx};
use hubkeeper_proto::status::Status;
use hyper::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};

const ROUTES: &[(&str, Fields)] = &[
    ("/v1/status", &[]),
    ("/v1/health", &[]),
    ("/metrics", &[]),
    ("/v1/rotate-keys", &[]),
    ("/v1/backup", &[]),
    ("/v1/check", &[]),
    ("/", &[]),
    ("/v1", &[]),
    ("/v2/status", &[]),
];
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SocketApi {
    rt: Runtime,
    ctx: Arc<Context>,
    _status: StatusTx,
}

impl SocketApi {
    pub fn new() -> Result<Self, String> {
        let rt = runtime()?;
        let (status, status_rx) = watch::channel(Snapshot::new(Status::default()));
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<CommandRequest>(16);
        let snap = status.borrow().clone();
        // Answers commands the way the daemon's loop does: at once, with the status.
        rt.spawn(async move {
            while let Some(req) = cmd_rx.recv().await {
                let _ = req.reply.send(Ok(Outcome {
                    status: StatusCode::ACCEPTED,
                    snapshot: snap.clone(),
                }));
            }
        });
        let ctx = Arc::new(Context {
            status: status_rx,
            commands: cmd_tx,
            metrics: Arc::new(Metrics::new()),
            request_timeout: REQUEST_TIMEOUT,
        });
        Ok(Self {
            rt,
            ctx,
            _status: status,
        })
    }
}

impl Target for SocketApi {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        let may_post: bool = u.arbitrary()?;
        let mut bytes = vec![u8::from(may_post), 0];
        for i in 0..u.int_in_range(1..=3u8)? {
            let r = request(u, ROUTES, MAX_BODY, &[])?;
            if i == 0 {
                bytes[1] = u8::from(r.over_cap);
            }
            bytes.extend_from_slice(&r.bytes);
        }
        Ok(bytes)
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        let [may_post, over_cap, raw @ ..] = input else {
            return Ok(());
        };
        let ctx = self.ctx.clone();
        let conn = ConnFacts {
            may_post: *may_post == 1,
        };
        let out = self
            .rt
            .block_on(serve_bytes(raw, REQUEST_TIMEOUT, move |req| {
                let ctx = ctx.clone();
                async move { handle(req, &ctx, conn).await }
            }));
        check(&out, *over_cap == 1)
    }
}

/// What both servers' answers must satisfy.
pub fn check(out: &[u8], over_cap: bool) -> Result<(), String> {
    if !out.is_empty() && !out.starts_with(b"HTTP/1.1 ") && !out.starts_with(b"HTTP/1.0 ") {
        return Err(format!(
            "the answer does not start with a status line: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(40)])
        ));
    }
    let codes = statuses(out);
    if std::env::var_os("HUBKEEPER_FUZZ_TRACE").is_some() {
        // For tuning the generators: which answers do inputs reach?
        eprintln!(
            "answers {codes:?} {:?}",
            String::from_utf8_lossy(&out[..out.len().min(400)])
        );
    }
    if over_cap && codes.first() != Some(&413) {
        return Err(format!(
            "a clean request with a body over the cap got {:?}, not 413",
            codes.first()
        ));
    }
    if codes.iter().any(|c| *c >= 500 && *c != 503) {
        return Err(format!("a server error: {codes:?}"));
    }
    Ok(())
}
