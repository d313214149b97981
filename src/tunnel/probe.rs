//! The readiness probe: `GET http://<metrics>/ready` with a timeout. cloudflared
//! answers 200 with `{"readyConnections":N}` only while connected to the edge; a
//! process that is alive but not connected answers 503, and a wedged one may not
//! answer at all, which the timeout turns into a failure.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

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

#[derive(Debug, Clone)]
pub struct Prober {
    http: reqwest::Client,
}

impl Prober {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .expect("a plain HTTP client always builds");
        Self { http }
    }

    pub async fn probe(&self, metrics: SocketAddr, timeout: Duration) -> Probe {
        let url = format!("http://{metrics}/ready");
        let resp = match self.http.get(&url).timeout(timeout).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Probe::NoAnswer {
                    reason: format!("no answer within {}ms", timeout.as_millis()),
                };
            }
            Err(e) => {
                return Probe::NoAnswer {
                    reason: root_cause(&e),
                };
            }
        };
        let status = resp.status().as_u16();
        if status != 200 {
            return Probe::NotReady { status };
        }
        match resp.json::<ReadyBody>().await {
            Ok(b) if b.ready_connections > 0 => Probe::Ready {
                connections: b.ready_connections,
            },
            Ok(_) => Probe::NotReady { status },
            Err(e) if e.is_timeout() => Probe::NoAnswer {
                reason: format!("no answer within {}ms", timeout.as_millis()),
            },
            Err(_) => Probe::NoAnswer {
                reason: "the /ready answer was not the expected JSON".into(),
            },
        }
    }
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

/// The innermost cause of a reqwest error ("Connection refused"), which is what an
/// admin needs; the outer layers only say "error sending request".
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
