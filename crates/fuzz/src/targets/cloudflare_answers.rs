//! Cloudflare API answers, served raw from loopback to the real client
//! (`cloudflare_api::Client`, one attempt, no pacing): the envelope, `errors[]` and
//! their codes, `result_info` paging, `retry-after`, the status classes, wrong types and
//! missing fields in tunnels, tokens, buckets, zones and records, string results (a
//! tunnel token, a rolled token value). Properties: no panic, an answer within the time
//! limit, a secret accepted is never empty, and no error repeats a secret value (the
//! generator puts a marker only where Cloudflare puts secrets) or the API token.

use super::{Target, runtime};
use crate::craft::{self, U};
use crate::http::{Peer, answer};
use cloudflare_api::{Client, ConfigSrc, Secret, Settings};
use std::time::Duration;
use tokio::runtime::Runtime;

const MARK: &str = "SEKRIT";
const TOKEN: &str = "cf-api-token-SEKRET";
/// Fields where Cloudflare puts secrets: token values, tunnel tokens and secrets.
const SECRET_FIELDS: &[&str] = &["value", "token", "tunnel_secret", "credentials_file"];
const FIELDS: &[&str] = &[
    "success",
    "errors",
    "messages",
    "result",
    "result_info",
    "page",
    "per_page",
    "count",
    "total_count",
    "total_pages",
    "code",
    "message",
    "id",
    "name",
    "status",
    "deleted_at",
    "config_src",
    "content",
    "comment",
    "type",
    "rules",
    "creation_date",
    "policies",
];

pub struct CloudflareAnswers {
    rt: Runtime,
    peer: Peer,
    /// One client for every input (building one loads the TLS roots): its permission
    /// groups, once an answer gave them, are cached, as in production.
    client: Client,
}

impl CloudflareAnswers {
    pub fn new() -> Result<Self, String> {
        let rt = runtime()?;
        let peer = rt
            .block_on(Peer::start())
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let mut settings = Settings::new("acct", Secret::new(TOKEN));
        settings.api_base = format!("http://{}/client/v4", peer.addr);
        settings.attempts = 1;
        settings.min_interval = Duration::ZERO;
        settings.attempt_timeout = Duration::from_millis(300);
        settings.connect_timeout = Duration::from_secs(2);
        settings.max_retry_after = Duration::ZERO;
        settings.max_body = 256 * 1024;
        let client = Client::new(settings).map_err(|e| e.to_string())?;
        Ok(Self { rt, peer, client })
    }
}

/// An answer body: an envelope whose `result` is an object, a list or a string, with
/// secrets marked; or any JSON; or not JSON at all (from `answer`'s mutations).
fn body(u: U) -> arbitrary::Result<Vec<u8>> {
    let mut s = String::new();
    match u.int_in_range(0..=4u8)? {
        0 => craft::json_value(u, FIELDS, 0, &mut s)?,
        1 => s.push_str(&format!(
            "{{\"success\":true,\"errors\":[],\"result\":\"{MARK}-string\"}}"
        )),
        _ => {
            let mut rest = String::new();
            craft::json_object(u, FIELDS, 2, &mut rest)?;
            let rest = rest.replace(MARK, "X");
            let mut result = String::from("{");
            for f in SECRET_FIELDS {
                if u.int_in_range(0..=2u8)? == 0 {
                    result.push_str(&format!("\"{f}\":\"{MARK}-{f}\","));
                }
            }
            result.push_str(&rest[1..]);
            let list = u.arbitrary::<bool>()?;
            let result = if list { format!("[{result}]") } else { result };
            let mut info = String::new();
            craft::json_object(u, FIELDS, 1, &mut info)?;
            s.push_str(&format!(
                "{{\"success\":{},\"errors\":[],\"result\":{result},\"result_info\":{}}}",
                u.arbitrary::<bool>()?,
                info.replace(MARK, "X")
            ));
        }
    }
    Ok(s.into_bytes())
}

impl Target for CloudflareAnswers {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        let call: u8 = u.int_in_range(0..=9u8)?;
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
        let secret = Secret::new("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==");
        let result: Result<Vec<String>, cloudflare_api::Error> = self.rt.block_on(async {
            match call {
                0 => c
                    .list_tunnels(Some("hub-1"))
                    .await
                    .map(|t| t.into_iter().map(|t| t.id).collect()),
                1 => c
                    .create_tunnel("hub-1", ConfigSrc::Cloudflare, Some(&secret))
                    .await
                    .map(|t| t.token.map(|s| s.expose().to_owned()).into_iter().collect()),
                2 => c
                    .tunnel_token("tid")
                    .await
                    .map(|s| vec![s.expose().to_owned()]),
                3 => c
                    .roll_token("kid")
                    .await
                    .map(|s| vec![s.expose().to_owned()]),
                4 => c
                    .create_bucket_token(
                        "hub-1-r2",
                        "bucket",
                        &["Workers R2 Storage Bucket Item Write"],
                    )
                    .await
                    .map(|t| vec![t.value.expose().to_owned()]),
                5 => c
                    .list_tokens()
                    .await
                    .map(|t| t.into_iter().map(|t| t.id).collect()),
                6 => c
                    .zone_by_name("example.com")
                    .await
                    .map(|z| z.map(|z| z.id).into_iter().collect()),
                7 => c.get_bucket("bucket").await.map(|b| vec![b.name]),
                8 => c.verify_token().await.map(|t| vec![t.status]),
                _ => c.delete_dns_record("zone", "rec").await.map(|()| vec![]),
            }
        });
        match result {
            Ok(fields) => {
                // A secret handed back (tunnel token, token value) is never empty.
                if matches!(call, 2..=4) && fields.iter().any(|f| f.trim().is_empty()) {
                    return Err(format!("an accepted secret is empty: call {call}"));
                }
                Ok(())
            }
            Err(e) => {
                let text = format!("{e} {e:?}");
                if text.contains(MARK) || text.contains(TOKEN) {
                    return Err(format!("an error repeats a secret: {text}"));
                }
                Ok(())
            }
        }
    }
}
