//! A published status: the object plus its JSON, rendered once when it changes, so
//! serving `GET /v1/status` is a memory copy that never waits on anything.

use bytes::Bytes;
use hubkeeper_proto::status::{State, Status};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Snapshot {
    pub status: Status,
    /// `GET /v1/status` body.
    pub json: Bytes,
    /// `GET /v1/health` body: `{"state":"..."}`.
    pub health_json: Bytes,
}

impl Snapshot {
    pub fn new(status: Status) -> Arc<Self> {
        // The status is strings, numbers and lists: encoding cannot fail, and if a future
        // field could, the UI still gets JSON that says so.
        let mut json = serde_json::to_vec_pretty(&status).unwrap_or_else(|_| {
            br#"{"state":"error","errors":[{"component":"config","code":"status_unencodable","message":"the status could not be encoded","hint":"report this bug"}]}"#
                .to_vec()
        });
        json.push(b'\n');
        let health_json = format!("{{\"state\":\"{}\"}}\n", status.state.as_str());
        Arc::new(Self {
            status,
            json: Bytes::from(json),
            health_json: Bytes::from(health_json),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.status.state == State::Ready
    }
}

pub type StatusTx = watch::Sender<Arc<Snapshot>>;
pub type StatusRx = watch::Receiver<Arc<Snapshot>>;

/// Publishes `status` unless it equals the current one; returns whether it changed.
pub fn publish(tx: &StatusTx, status: Status) -> bool {
    tx.send_if_modified(|cur| {
        if cur.status == status {
            false
        } else {
            *cur = Snapshot::new(status);
            true
        }
    })
}
