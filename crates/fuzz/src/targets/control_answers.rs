//! The control service's answers, served raw from loopback to the daemon's real client
//! (`hubkeeper::modes::control_client::ControlClient`, one attempt): status mapping,
//! `Retry-After`, the JSON of each `hubkeeper_proto::control` answer and its
//! validation, the error body. Properties: no panic, an answer within the time limit,
//! a parsed answer has every field it must, and no error repeats a secret value (the
//! generator puts a marker only into secret fields) or the hub's token. The Cloudflare
//! API client's answers are `cloudflare_answers.rs`.

use super::{Target, runtime};
use crate::craft::{self, U};
use crate::http::{Peer, answer};
use hubkeeper::modes::control_client::{ControlClient, RetryPolicy};
use hubkeeper_proto::Secret;
use hubkeeper_proto::control::{DisableRequest, EnrollRequest};
use tokio::runtime::Runtime;

const MARK: &str = "SEKRIT";
/// The hub's bearer token for the control service.
const TOKEN: &str = "hub-token-SEKRET";
const SECRET_FIELDS: &[&str] = &["tunnel_token", "r2_secret_access_key"];
const FIELDS: &[&str] = &[
    "tunnel_id",
    "hostname",
    "r2_endpoint",
    "r2_bucket",
    "r2_access_key_id",
    "ok",
    "enabled",
    "tunnel_id",
    "last_health_check",
    "errors",
    "error",
    "code",
    "message",
    "component",
    "hint",
];

pub struct ControlAnswers {
    rt: Runtime,
    peer: Peer,
    client: ControlClient,
}

impl ControlAnswers {
    pub fn new() -> Result<Self, String> {
        let rt = runtime()?;
        let peer = rt
            .block_on(Peer::start())
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let url = url::Url::parse(&format!("http://{}", peer.addr)).map_err(|e| e.to_string())?;
        let client = ControlClient::new(url, &Secret::new(TOKEN), RetryPolicy::once())
            .map_err(|e| e.to_string())?;
        Ok(Self { rt, peer, client })
    }
}

/// An answer body: one of the four answer shapes or the error shape, with values of
/// any type; secret fields carry the marker.
fn body(u: U) -> arbitrary::Result<Vec<u8>> {
    let mut s = String::new();
    match u.int_in_range(0..=5u8)? {
        0 => {
            s.push_str("{\"error\":");
            craft::json_object(u, &["code", "message"], 1, &mut s)?;
            s.push('}');
        }
        1 => craft::json_value(u, FIELDS, 0, &mut s)?,
        _ => {
            s.push('{');
            for (i, f) in SECRET_FIELDS.iter().enumerate() {
                if u.int_in_range(0..=4u8)? > 0 {
                    let v = if u.int_in_range(0..=5u8)? > 0 {
                        format!("\"{MARK}-{i}\"")
                    } else {
                        // The wrong type, still a secret.
                        format!("[\"{MARK}-{i}\"]")
                    };
                    s.push_str(&format!("\"{f}\":{v},"));
                }
            }
            let mut rest = String::new();
            craft::json_object(u, FIELDS, 1, &mut rest)?;
            // Keeps the marker out of the generated fields: only secrets carry it.
            s.push_str(&rest.replace(MARK, "X")[1..]);
        }
    }
    Ok(s.into_bytes())
}

impl Target for ControlAnswers {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        let call: u8 = u.int_in_range(0..=3u8)?;
        let mut bytes = answer(u, &mut body)?;
        bytes.insert(0, call);
        Ok(bytes)
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        let Some((&call, raw)) = input.split_first() else {
            return Ok(());
        };
        self.peer.set(raw);
        let c = &self.client;
        let result: Result<Vec<String>, _> = self.rt.block_on(async {
            match call {
                0 => c
                    .enroll(&EnrollRequest {
                        account_id: "acct".into(),
                        hub_id: "hub-1".into(),
                        license_id: "lic".into(),
                        requested_subdomain: None,
                        origin: Some("http://127.0.0.1:8080".into()),
                        no_tls_verify: false,
                    })
                    .await
                    .map(|r| {
                        vec![
                            r.tunnel_id,
                            r.hostname,
                            r.r2_endpoint,
                            r.r2_bucket,
                            r.r2_access_key_id,
                            r.tunnel_token.expose().to_owned(),
                            r.r2_secret_access_key.expose().to_owned(),
                        ]
                    }),
                1 => c.rotate_keys("hub-1").await.map(|r| {
                    vec![
                        r.r2_access_key_id,
                        r.r2_secret_access_key.expose().to_owned(),
                    ]
                }),
                2 => c
                    .disable(&DisableRequest {
                        hub_id: "hub-1".into(),
                        delete_bucket: false,
                        retention_days: 30,
                    })
                    .await
                    .map(|_| vec![]),
                _ => c.status("hub-1").await.map(|_| vec![]),
            }
        });
        match result {
            Ok(fields) => {
                if fields.iter().any(|f| f.trim().is_empty()) {
                    return Err(format!("an accepted answer has an empty field: {fields:?}"));
                }
                Ok(())
            }
            Err(e) => {
                let text = format!("{e} {e:?} {}", e.hint());
                if text.contains(MARK) || text.contains(TOKEN) {
                    return Err(format!("an error repeats a secret: {text}"));
                }
                Ok(())
            }
        }
    }
}
