//! The Cloudflare API stand-in (`cloudflare-api-standin`, the real binary) for tests,
//! with its R2 buckets on a real S3 store: buckets it creates are made there, and a
//! mirror thread restarts the store whenever the set of live minted keys changes, so
//! a minted key starts working [`PROPAGATION`] after it was minted (R2's take up to a
//! minute) and a revoked one stops.

use super::s3::{S3Server, free_port};
use super::{tcp, wait_for};
use serde_json::Value;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The account the stand-in serves, and the master token it accepts.
pub const ACCOUNT_ID: &str = "0123456789abcdef0123456789abcdef";
pub const MASTER_TOKEN: &str = "cf-master-token-5e8a1f3b9c";

/// How long a minted, rolled or revoked key takes to take effect on the store.
pub const PROPAGATION: Duration = Duration::from_secs(2);

pub struct CloudflareApi {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub s3: Arc<S3Server>,
    stop: Arc<AtomicBool>,
    mirror: Option<JoinHandle<()>>,
}

impl CloudflareApi {
    /// Starts the stand-in with `zone`, its buckets on `s3` (whose first key pair in
    /// `admin` it uses, and which the store keeps accepting).
    pub fn start(s3: Arc<S3Server>, admin: &[(&str, &str)], zone: &str) -> CloudflareApi {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("master-token"), MASTER_TOKEN).unwrap();
        let port = free_port();
        let log = dir.path().join("standin.log");
        let mut api = CloudflareApi {
            child: None,
            port,
            log,
            s3,
            dir,
            stop: Arc::new(AtomicBool::new(false)),
            mirror: None,
        };
        api.spawn(admin, zone);
        let admin: Vec<(String, String)> = admin
            .iter()
            .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
            .collect();
        let (stop, s3, port) = (api.stop.clone(), api.s3.clone(), api.port);
        api.mirror = Some(std::thread::spawn(move || {
            let mut applied: Vec<(String, String)> = Vec::new();
            // A change is applied once it is PROPAGATION old, as R2's keys take a while
            // to work everywhere (up to a minute there).
            let mut seen: Option<(Vec<(String, String)>, Instant)> = None;
            while !stop.load(Ordering::SeqCst) {
                if let Some(minted) = minted_keys(port) {
                    if minted == applied {
                        seen = None;
                    } else if seen.as_ref().is_none_or(|(k, _)| *k != minted) {
                        seen = Some((minted, Instant::now()));
                    }
                }
                if let Some((keys, at)) = &seen
                    && at.elapsed() >= PROPAGATION
                {
                    let mut all = admin.clone();
                    all.extend(keys.iter().cloned());
                    s3.set_keys(&all);
                    applied = keys.clone();
                    seen = None;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
        api
    }

    fn spawn(&mut self, admin: &[(&str, &str)], zone: &str) {
        let d = self.dir.path();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let (ak, sk) = admin[0];
        let child = Command::new(super::workspace_bin("cloudflare-api-standin"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--token-file")
            .arg(d.join("master-token"))
            .arg("--account-id")
            .arg(ACCOUNT_ID)
            .arg("--zone")
            .arg(zone)
            .arg("--s3-endpoint")
            .arg(&self.s3.endpoint)
            .env("STANDIN_S3_ACCESS_KEY_ID", ak)
            .env("STANDIN_S3_SECRET_ACCESS_KEY", sk)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn cloudflare-api-standin");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            Duration::from_secs(20),
            "the Cloudflare API stand-in to listen",
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// The API base, as `api_base` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/client/v4", self.port)
    }

    fn hook(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} /__standin/{path} HTTP/1.1\r\nHost: standin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let r = tcp(self.port, req.as_bytes()).unwrap();
        assert!(r.status < 300, "{method} {path}: {}", r.text());
        r.json()
    }

    /// One API call with the master token, as an operator's script would make it.
    pub fn api_call(&self, method: &str, path: &str, body: &Value) -> super::Resp {
        let body = body.to_string();
        let req = format!(
            "{method} /client/v4{path} HTTP/1.1\r\nHost: standin\r\nAuthorization: Bearer {MASTER_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp(self.port, req.as_bytes()).unwrap()
    }

    /// Sets the fault switches (`{"status_5xx":503,"only":"POST /accounts/{acct}/tokens","count":1}`, …).
    pub fn set_faults(&self, faults: Value) {
        self.hook("PUT", "faults", Some(&faults));
    }

    /// How many times each call was made, as `"METHOD /template"` → count.
    pub fn calls(&self) -> Value {
        self.hook("GET", "calls", None)
    }

    /// The calls' templates in the order they came.
    pub fn call_log(&self) -> Vec<String> {
        self.hook("GET", "calls/log", None)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    pub fn reset_calls(&self) {
        self.hook("DELETE", "calls", None);
    }

    /// How many account tokens may exist (Cloudflare: 500).
    pub fn set_token_quota(&self, max: u64) {
        self.hook(
            "PUT",
            "token-quota",
            Some(&serde_json::json!({ "max": max })),
        );
    }

    /// Marks a tunnel's connector as connected (`status` healthy) or not.
    pub fn set_connected(&self, tunnel_id: &str, connected: bool) {
        self.hook(
            "PUT",
            &format!("tunnels/{tunnel_id}/connections"),
            Some(&serde_json::json!({ "connected": connected })),
        );
    }

    /// The state file: everything the account holds (tunnels, records, buckets, tokens).
    pub fn state(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("state/state.json"))
            .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The live minted keys, sorted; `None` when the stand-in does not answer.
fn minted_keys(port: u16) -> Option<Vec<(String, String)>> {
    let req = "GET /__standin/keys HTTP/1.1\r\nHost: standin\r\nConnection: close\r\n\r\n";
    let r = tcp(port, req.as_bytes()).ok()?;
    if r.status != 200 {
        return None;
    }
    let mut keys: Vec<(String, String)> = r
        .json()
        .as_array()?
        .iter()
        .filter_map(|k| {
            Some((
                k["access_key_id"].as_str()?.to_owned(),
                k["secret_access_key"].as_str()?.to_owned(),
            ))
        })
        .collect();
    keys.sort();
    Some(keys)
}

impl Drop for CloudflareApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(m) = self.mirror.take() {
            let _ = m.join();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
