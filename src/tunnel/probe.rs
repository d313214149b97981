//! The readiness probe: `GET http://<metrics>/ready` with a timeout. cloudflared
//! answers 200 with `{"readyConnections":N}` only while connected to the edge; a
//! process that is alive but not connected answers 503, and a wedged one may not
//! answer at all, which the timeout turns into a failure.

use hubkeeper_base::http::exchange::exchange;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Ready { connections: u32 },
    NotReady { status: u16 },
    NoAnswer { reason: String },
}

impl Probe {
    pub fn is_ready(&self) -> bool {
        matches!(self, Probe::Ready { connections } if *connections > 0)
    }

    pub fn detail(&self) -> String {
        match self {
            Probe::Ready { connections } => {
                format!("cloudflared ready, {connections} edge connections")
            }
            Probe::NotReady { status } => {
                format!("cloudflared /ready answered {status}: not connected to the edge")
            }
            Probe::NoAnswer { reason } => format!("cloudflared /ready did not answer: {reason}"),
        }
    }
}

#[derive(Deserialize)]
struct ReadyBody {
    #[serde(rename = "readyConnections")]
    ready_connections: u32,
}

/// cloudflared's `/ready` body is a few dozen bytes.
const MAX_READY_BODY: usize = 64 * 1024;

/// Asks cloudflared's metrics server whether it is connected to the edge. Plain HTTP to
/// a loopback port: no TLS, no proxy, a fresh connection each time (one probe every
/// `health.interval` does not need a pool).
pub async fn probe(metrics: SocketAddr, timeout: Duration) -> Probe {
    let work = async {
        let stream = TcpStream::connect(metrics)
            .await
            .map_err(|e| e.to_string())?;
        exchange(
            stream,
            Method::GET,
            &metrics.to_string(),
            "/ready",
            MAX_READY_BODY,
        )
        .await
        .map_err(|e| e.to_string())
    };
    let (status, body) = match tokio::time::timeout(timeout, work).await {
        Err(_) => {
            return Probe::NoAnswer {
                reason: format!("no answer within {}ms", timeout.as_millis()),
            };
        }
        Ok(Err(reason)) => return Probe::NoAnswer { reason },
        Ok(Ok(answer)) => answer,
    };
    if status != StatusCode::OK {
        return Probe::NotReady {
            status: status.as_u16(),
        };
    }
    match serde_json::from_slice::<ReadyBody>(&body) {
        Ok(b) if b.ready_connections > 0 => Probe::Ready {
            connections: b.ready_connections,
        },
        Ok(_) => Probe::NotReady {
            status: status.as_u16(),
        },
        Err(_) => Probe::NoAnswer {
            reason: "the /ready answer was not the expected JSON".into(),
        },
    }
}
