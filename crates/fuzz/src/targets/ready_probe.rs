//! cloudflared's `/ready` answers, served raw from loopback to the real probe
//! (`hubkeeper::tunnel::probe::probe`, which reads them through
//! `hubkeeper_base::http::exchange`). Properties: no panic, a verdict within the time
//! limit, and "ready" only for a 200 whose body counts at least one connection.

use super::{Target, runtime};
use crate::craft::{self, U};
use crate::http::{Peer, answer};
use hubkeeper::tunnel::probe::{Probe, probe};
use std::time::Duration;
use tokio::runtime::Runtime;

pub struct ReadyProbe {
    rt: Runtime,
    peer: Peer,
}

impl ReadyProbe {
    pub fn new() -> Result<Self, String> {
        let rt = runtime()?;
        let peer = rt
            .block_on(Peer::start())
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        Ok(Self { rt, peer })
    }
}

fn body(u: U) -> arbitrary::Result<Vec<u8>> {
    let mut s = String::new();
    match u.int_in_range(0..=4u8)? {
        0 => craft::json_value(u, &["readyConnections", "connectorId"], 0, &mut s)?,
        1 => {
            let n = *u.choose(craft::NUMBERS)?;
            s = format!("{{\"status\":200,\"readyConnections\":{n},\"connectorId\":\"x\"}}");
        }
        _ => craft::json_object(u, &["readyConnections", "status", "connectorId"], 0, &mut s)?,
    }
    Ok(s.into_bytes())
}

impl Target for ReadyProbe {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        answer(u, &mut body)
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        self.peer.set(input);
        let verdict = self
            .rt
            .block_on(probe(self.peer.addr, Duration::from_secs(60)));
        // HTTP/1.1 lets a client skip empty lines before the status line (RFC 9112 §2.2).
        let start = input.iter().position(|b| !b"\r\n".contains(b)).unwrap_or(0);
        let status_line = &input[start..];
        let ok_status =
            status_line.starts_with(b"HTTP/1.1 200") || status_line.starts_with(b"HTTP/1.0 200");
        if let Probe::Ready { connections } = verdict
            && (connections == 0 || !ok_status)
        {
            return Err(format!(
                "ready with {connections} connections from a non-200 answer"
            ));
        }
        let _ = verdict.detail();
        Ok(())
    }
}
